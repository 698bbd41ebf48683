/**
 * Discovery documents (/version, /api, /api/v1, /apis, /apis/<group>[/<version>])
 * rendered from the registry table. Legacy (non-aggregated) discovery only:
 * newer clients that ask for the aggregated form fall back to it because the
 * answer's Content-Type is plain application/json.
 */
import { groupVersion, resources, servedGroups } from './resources.js';
import type { ResourceInfo } from './resources.js';

export const serverVersion = {
  major: '1',
  minor: '32',
  gitVersion: 'v1.32.0-knode',
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2026-01-01T00:00:00Z',
  goVersion: `node${process.versions.node}`,
  compiler: 'knode',
  platform: `linux/${process.arch === 'x64' ? 'amd64' : process.arch}`,
};

export function apiVersions(serverAddress: string): unknown {
  return {
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
  };
}

function groupDoc(group: string, versions: string[]): Record<string, unknown> {
  const vs = versions.map((v) => ({ groupVersion: `${group}/${v}`, version: v }));
  return { name: group, versions: vs, preferredVersion: vs[0] };
}

export function apiGroupList(): unknown {
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: servedGroups().map((g) => groupDoc(g.group, g.versions)) };
}

export function apiGroup(group: string): unknown | undefined {
  const g = servedGroups().find((x) => x.group === group);
  return g ? { kind: 'APIGroup', apiVersion: 'v1', ...groupDoc(g.group, g.versions) } : undefined;
}

function entries(r: ResourceInfo): Record<string, unknown>[] {
  const main: Record<string, unknown> = {
    name: r.resource,
    singularName: r.singular,
    namespaced: r.namespaced,
    kind: r.kind,
    verbs: r.verbs,
  };
  if (r.shortNames.length) main.shortNames = r.shortNames;
  if (r.categories.length) main.categories = r.categories;
  const out = [main];
  for (const sub of r.subresources) {
    const base = { name: `${r.resource}/${sub}`, singularName: '', namespaced: r.namespaced };
    if (sub === 'status') out.push({ ...base, kind: r.kind, verbs: ['get', 'patch', 'update'] });
    else if (sub === 'binding') out.push({ ...base, kind: 'Binding', verbs: ['create'] });
    else if (sub === 'log') out.push({ ...base, kind: 'Pod', verbs: ['get'] });
    else if (sub === 'scale') out.push({ ...base, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
    else if (sub === 'finalize') out.push({ ...base, kind: r.kind, verbs: ['update'] });
    else if (sub === 'approval') out.push({ ...base, kind: r.kind, verbs: ['get', 'patch', 'update'] });
    else if (sub === 'token') out.push({ ...base, group: 'authentication.k8s.io', version: 'v1', kind: 'TokenRequest', verbs: ['create'] });
  }
  return out;
}

export function apiResourceList(group: string, version: string): unknown | undefined {
  const served = resources.filter((r) => r.group === group && r.version === version);
  if (served.length === 0) return undefined;
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: groupVersion({ group, version }),
    resources: served.flatMap(entries),
  };
}

/**
 * The pod network until the overlay lands: a CNI conflist for the runtime
 * (reference `bridge` + `portmap` plugins, host-local IPAM over the Node's
 * spec.podCIDR) and host-gw routes to the other nodes' pod CIDRs.
 *
 * Design notes:
 * - Pure renderers (`renderConflist`, `hostGwRoutes`, `routeChanges`) and two
 *   small appliers: the conflist is written atomically (temp file + rename)
 *   and only when its text changes (the runtime reloads on change); routes go
 *   through `ip route` in the agent's own network namespace, tagged with
 *   their own protocol number so the agent only ever removes routes it made.
 * - Loopback is set up by the runtime itself; no `loopback` plugin needed.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import type { V1Node } from '@kubernetes/client-node';
import { errnoCode } from '../../lib/errors.js';
import { execFile } from '../../lib/exec.js';

export const conflistName = '10-knode.conflist';
export const networkName = 'knode';
export const bridgeName = 'cni0';
/** rtnetlink protocol of the routes the agent owns (`ip route ... proto 77`). */
export const routeProtocol = 77;

export interface ConflistInput {
  podCIDR: string;
  /** host-local's dataDir (under the agent's root dir). */
  ipamDataDir: string;
}

/** The conflist text (stable: same input, same bytes). Pure. */
export function renderConflist(i: ConflistInput): string {
  const conf = {
    cniVersion: '1.0.0',
    name: networkName,
    plugins: [
      {
        type: 'bridge',
        bridge: bridgeName,
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: i.podCIDR }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: i.ipamDataDir },
      },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
    ],
  };
  return JSON.stringify(conf, null, 2) + '\n';
}

/** Writes `<dir>/10-knode.conflist` atomically when its content differs; returns whether it wrote. */
export async function writeConflistIfChanged(dir: string, content: string): Promise<boolean> {
  const file = join(dir, conflistName);
  try {
    if ((await readFile(file, 'utf8')) === content) return false;
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${conflistName}.${process.pid}.tmp`);
  await writeFile(tmp, content, { mode: 0o644 });
  await rename(tmp, file);
  return true;
}

export interface HostGwRoute {
  /** The other node's pod CIDR. */
  dst: string;
  /** The other node's InternalIP. */
  via: string;
}

/** The InternalIP (IPv4) of a node, if it has one. */
export function internalIPv4(node: V1Node): string | undefined {
  return (node.status?.addresses ?? []).find((a) => a.type === 'InternalIP' && isIPv4(a.address))?.address;
}

/** IPv4 pod CIDR of a node (spec.podCIDRs, else spec.podCIDR). */
export function podCIDRv4(node: V1Node): string | undefined {
  const all = [...(node.spec?.podCIDRs ?? []), ...(node.spec?.podCIDR !== undefined ? [node.spec.podCIDR] : [])];
  return all.find((c) => isIPv4(c.split('/')[0] ?? ''));
}

/** One route per other node that has a pod CIDR and an InternalIP, sorted by destination. Pure. */
export function hostGwRoutes(nodes: readonly V1Node[], self: string): HostGwRoute[] {
  const out: HostGwRoute[] = [];
  for (const n of nodes) {
    if (n.metadata?.name === self) continue;
    const dst = podCIDRv4(n);
    const via = internalIPv4(n);
    if (dst !== undefined && via !== undefined) out.push({ dst, via });
  }
  return out.sort((a, b) => a.dst.localeCompare(b.dst));
}

/** What to add/replace and what to delete to go from `current` to `desired`. Pure. */
export function routeChanges(current: readonly HostGwRoute[], desired: readonly HostGwRoute[]): { replace: HostGwRoute[]; remove: HostGwRoute[] } {
  const cur = new Map(current.map((r) => [r.dst, r.via]));
  const want = new Set(desired.map((r) => r.dst));
  return {
    replace: desired.filter((r) => cur.get(r.dst) !== r.via),
    remove: current.filter((r) => !want.has(r.dst)),
  };
}

/** The agent's routes in the current network namespace (`ip -j route show proto 77`). */
export async function readOwnRoutes(): Promise<HostGwRoute[]> {
  const r = await execFile('ip', ['-j', '-4', 'route', 'show', 'proto', String(routeProtocol)]);
  const rows = JSON.parse(r.stdout.trim() === '' ? '[]' : r.stdout) as { dst?: string; gateway?: string }[];
  return rows.filter((x) => x.dst !== undefined && x.gateway !== undefined).map((x) => ({ dst: x.dst!, via: x.gateway! }));
}

/** Makes the agent's routes equal `desired`; returns what changed. */
export async function syncRoutes(desired: readonly HostGwRoute[]): Promise<{ replaced: HostGwRoute[]; removed: HostGwRoute[] }> {
  const { replace, remove } = routeChanges(await readOwnRoutes(), desired);
  for (const r of remove) await execFile('ip', ['-4', 'route', 'del', r.dst, 'proto', String(routeProtocol)], { allowFailure: true });
  for (const r of replace) await execFile('ip', ['-4', 'route', 'replace', r.dst, 'via', r.via, 'proto', String(routeProtocol)]);
  return { replaced: replace, removed: remove };
}

/**
 * Server-side printing: meta.k8s.io/v1 Table responses as kubectl asks for
 * them (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`). Columns
 * follow upstream's printers for the resources kubectl users look at; every
 * other resource gets NAME and AGE. Pure.
 */
import { getArray, getMap, getNumber, getString, isObject } from './object.js';
import type { Json, KubeObject } from './object.js';
import type { ResourceInfo } from './resources.js';
import { csrCondition } from './certificates.js';

export interface Column {
  name: string;
  type: 'string' | 'integer' | 'date';
  format?: string;
  description: string;
  priority: number;
}

type Cell = string | number;

interface Printer {
  columns: Column[];
  row(o: KubeObject, now: number): Cell[];
}

const nameCol: Column = { name: 'Name', type: 'string', format: 'name', description: 'Name must be unique within a namespace.', priority: 0 };
const ageCol: Column = { name: 'Age', type: 'string', description: 'CreationTimestamp of the object.', priority: 0 };

function col(name: string, priority = 0, type: Column['type'] = 'string'): Column {
  return { name, type, description: name, priority };
}

/** upstream k8s.io/apimachinery/pkg/util/duration.HumanDuration */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const d = Math.floor(hours / 24) % 365;
    return d === 0 ? `${Math.floor(hours / 24 / 365)}y` : `${Math.floor(hours / 24 / 365)}y${d}d`;
  }
  return `${Math.floor(hours / 24 / 365)}y`;
}

function age(o: KubeObject, now: number): string {
  const t = o.metadata.creationTimestamp;
  return t ? humanDuration(now - Date.parse(t)) : '<unknown>';
}

function none(v: string | undefined): string {
  return v === undefined || v === '' ? '<none>' : v;
}

function podStatus(o: KubeObject): { ready: string; status: string; restarts: number } {
  const status = getMap(o, 'status');
  const spec = getMap(o, 'spec');
  // Sidecars (init containers with restartPolicy Always) count as containers of the pod, as kubectl's printer does.
  const sidecars = new Set(
    (getArray(spec, 'initContainers') ?? []).filter((c) => getString(c, 'restartPolicy') === 'Always').map((c) => getString(c, 'name') ?? ''),
  );
  const total = (getArray(spec, 'containers') ?? []).length + sidecars.size;
  let reason = getString(status, 'reason') ?? getString(status, 'phase') ?? 'Unknown';
  let ready = 0;
  let restarts = 0;
  for (const cs of getArray(status, 'initContainerStatuses') ?? []) {
    restarts += getNumber(cs, 'restartCount') ?? 0;
    if (isObject(cs) && sidecars.has(getString(cs, 'name') ?? '') && cs.started === true && cs.ready === true) ready++;
  }
  for (const cs of getArray(status, 'containerStatuses') ?? []) {
    restarts += getNumber(cs, 'restartCount') ?? 0;
    const state = getMap(cs, 'state');
    const waiting = getString(getMap(state, 'waiting'), 'reason');
    const terminated = getMap(state, 'terminated');
    if (waiting) reason = waiting;
    else if (terminated) reason = getString(terminated, 'reason') ?? `ExitCode:${getNumber(terminated, 'exitCode') ?? 0}`;
    else if (isObject(cs) && cs.ready === true && getMap(state, 'running')) ready++;
  }
  if (o.metadata.deletionTimestamp) reason = getString(status, 'reason') === 'NodeLost' ? 'Unknown' : 'Terminating';
  return { ready: `${ready}/${total}`, status: reason, restarts };
}

function nodeStatus(o: KubeObject): string {
  const conds = getArray(getMap(o, 'status'), 'conditions') ?? [];
  const ready = conds.find((c) => isObject(c) && c.type === 'Ready');
  let s = !ready ? 'Unknown' : getString(ready, 'status') === 'True' ? 'Ready' : 'NotReady';
  if (getMap(o, 'spec')?.unschedulable === true) s += ',SchedulingDisabled';
  return s;
}

function nodeRoles(o: KubeObject): string {
  const roles = Object.keys(o.metadata.labels ?? {})
    .filter((k) => k.startsWith('node-role.kubernetes.io/'))
    .map((k) => k.slice('node-role.kubernetes.io/'.length));
  return roles.length ? roles.sort().join(',') : '<none>';
}

function nodeAddress(o: KubeObject, type: string): string {
  const a = (getArray(getMap(o, 'status'), 'addresses') ?? []).find((x) => isObject(x) && x.type === type);
  return none(getString(a, 'address'));
}

function servicePorts(o: KubeObject): string {
  const ports = getArray(getMap(o, 'spec'), 'ports') ?? [];
  if (ports.length === 0) return '<none>';
  return ports
    .map((p) => {
      const np = getNumber(p, 'nodePort');
      return `${getNumber(p, 'port') ?? ''}${np ? `:${np}` : ''}/${getString(p, 'protocol') ?? 'TCP'}`;
    })
    .join(',');
}

function selectorText(sel: Json | undefined): string {
  if (!isObject(sel)) return '<none>';
  const parts = Object.entries(sel).map(([k, v]) => `${k}=${String(v)}`);
  return parts.length ? parts.join(',') : '<none>';
}

function endpointsText(o: KubeObject): string {
  const out: string[] = [];
  for (const s of getArray(o, 'subsets') ?? []) {
    const ports = (getArray(s, 'ports') ?? []).map((p) => getNumber(p, 'port'));
    for (const a of getArray(s, 'addresses') ?? []) {
      const ip = getString(a, 'ip') ?? '';
      if (ports.length === 0) out.push(ip);
      for (const p of ports) out.push(`${ip}:${p ?? ''}`);
    }
  }
  if (out.length === 0) return '<none>';
  return out.length > 3 ? `${out.slice(0, 3).join(',')} + ${out.length - 3} more...` : out.join(',');
}

const printers: Record<string, Printer> = {
  pods: {
    columns: [nameCol, col('Ready'), col('Status'), col('Restarts', 0, 'string'), ageCol, col('IP', 1), col('Node', 1), col('Nominated Node', 1), col('Readiness Gates', 1)],
    row: (o, now) => {
      const s = podStatus(o);
      const status = getMap(o, 'status');
      return [o.metadata.name ?? '', s.ready, s.status, String(s.restarts), age(o, now), none(getString(status, 'podIP')), none(getString(getMap(o, 'spec'), 'nodeName')), none(getString(status, 'nominatedNodeName')), '<none>'];
    },
  },
  nodes: {
    columns: [nameCol, col('Status'), col('Roles'), ageCol, col('Version'), col('Internal-IP', 1), col('External-IP', 1), col('OS-Image', 1), col('Kernel-Version', 1), col('Container-Runtime', 1)],
    row: (o, now) => {
      const info = getMap(getMap(o, 'status'), 'nodeInfo');
      return [
        o.metadata.name ?? '',
        nodeStatus(o),
        nodeRoles(o),
        age(o, now),
        getString(info, 'kubeletVersion') ?? '',
        nodeAddress(o, 'InternalIP'),
        nodeAddress(o, 'ExternalIP'),
        getString(info, 'osImage') ?? '<unknown>',
        getString(info, 'kernelVersion') ?? '<unknown>',
        getString(info, 'containerRuntimeVersion') ?? '<unknown>',
      ];
    },
  },
  services: {
    columns: [nameCol, col('Type'), col('Cluster-IP'), col('External-IP'), col('Port(s)'), ageCol, col('Selector', 1)],
    row: (o, now) => {
      const spec = getMap(o, 'spec');
      const type = getString(spec, 'type') ?? 'ClusterIP';
      const ext = getArray(spec, 'externalIPs')?.map(String).join(',') ?? (type === 'ExternalName' ? getString(spec, 'externalName') : undefined);
      return [o.metadata.name ?? '', type, none(getString(spec, 'clusterIP')), none(ext), servicePorts(o), age(o, now), selectorText(spec?.selector)];
    },
  },
  namespaces: {
    columns: [nameCol, col('Status'), ageCol],
    row: (o, now) => [o.metadata.name ?? '', getString(getMap(o, 'status'), 'phase') ?? '', age(o, now)],
  },
  endpoints: {
    columns: [nameCol, col('Endpoints'), ageCol],
    row: (o, now) => [o.metadata.name ?? '', endpointsText(o), age(o, now)],
  },
  configmaps: {
    columns: [nameCol, col('Data', 0, 'integer'), ageCol],
    row: (o, now) => [o.metadata.name ?? '', Object.keys(getMap(o, 'data') ?? {}).length + Object.keys(getMap(o, 'binaryData') ?? {}).length, age(o, now)],
  },
  secrets: {
    columns: [nameCol, col('Type'), col('Data', 0, 'integer'), ageCol],
    row: (o, now) => [o.metadata.name ?? '', getString(o, 'type') ?? '', Object.keys(getMap(o, 'data') ?? {}).length, age(o, now)],
  },
  'certificatesigningrequests.certificates.k8s.io': {
    columns: [nameCol, ageCol, col('SignerName'), col('Requestor'), col('RequestedDuration'), col('Condition')],
    row: (o, now) => {
      const spec = getMap(o, 'spec');
      const exp = getNumber(spec, 'expirationSeconds');
      return [o.metadata.name ?? '', age(o, now), getString(spec, 'signerName') ?? '', getString(spec, 'username') ?? '', exp === undefined ? '<none>' : humanDuration(exp * 1000), csrCondition(o)];
    },
  },
  'deployments.apps': {
    columns: [nameCol, col('Ready'), col('Up-to-date', 0, 'integer'), col('Available', 0, 'integer'), ageCol],
    row: (o, now) => {
      const st = getMap(o, 'status');
      const want = getNumber(getMap(o, 'spec'), 'replicas') ?? 0;
      return [o.metadata.name ?? '', `${getNumber(st, 'readyReplicas') ?? 0}/${want}`, getNumber(st, 'updatedReplicas') ?? 0, getNumber(st, 'availableReplicas') ?? 0, age(o, now)];
    },
  },
  'replicasets.apps': {
    columns: [nameCol, col('Desired', 0, 'integer'), col('Current', 0, 'integer'), col('Ready', 0, 'integer'), ageCol],
    row: (o, now) => {
      const st = getMap(o, 'status');
      return [o.metadata.name ?? '', getNumber(getMap(o, 'spec'), 'replicas') ?? 0, getNumber(st, 'replicas') ?? 0, getNumber(st, 'readyReplicas') ?? 0, age(o, now)];
    },
  },
};

const generic: Printer = { columns: [nameCol, ageCol], row: (o, now) => [o.metadata.name ?? '', age(o, now)] };

export type IncludeObject = 'None' | 'Metadata' | 'Object';

export function toTable(info: ResourceInfo, objects: KubeObject[], opts: { includeObject?: IncludeObject; resourceVersion?: string; continue?: string; withColumns?: boolean }): unknown {
  const printer = printers[info.storage] ?? generic;
  const now = Date.now();
  const include = opts.includeObject ?? 'Metadata';
  const metadata: Record<string, string> = {};
  if (opts.resourceVersion) metadata.resourceVersion = opts.resourceVersion;
  if (opts.continue) metadata.continue = opts.continue;
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata,
    ...(opts.withColumns === false ? {} : { columnDefinitions: printer.columns }),
    rows: objects.map((o) => ({
      cells: printer.row(o, now),
      object:
        include === 'None'
          ? null
          : include === 'Object'
            ? o
            : { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata },
    })),
  };
}

/**
 * Service × pods → the desired EndpointSlices and v1 Endpoints, as pure
 * functions (upstream's endpointslice and endpoints controllers):
 * - only pods with a podIP that are not Succeeded/Failed;
 * - ready = Ready condition and not terminating; serving = Ready;
 *   terminating = deletionTimestamp set; publishNotReadyAddresses makes every
 *   endpoint ready and serving;
 * - ports from the service's ports, targetPort resolved per pod (a number, or
 *   a named container port with the same protocol; unset = port); a pod whose
 *   named port does not resolve has no endpoint for that port;
 * - endpoints grouped by their resolved port set: one slice per group;
 * - v1 Endpoints: ready pods in `addresses`, not-ready non-terminating ones in
 *   `notReadyAddresses`, terminating ones left out (as upstream).
 */
import type { Endpoint, EndpointAddress, EndpointPort, EndpointSubset, Node, Pod, Service, ServicePort } from './types.js';

export const serviceNameLabel = 'kubernetes.io/service-name';
export const managedByLabel = 'endpointslice.kubernetes.io/managed-by';
export const managedBy = 'endpointslice-controller.k8s.io';
export const zoneLabel = 'topology.kubernetes.io/zone';

export interface EndpointGroup {
  ports: EndpointPort[];
  endpoints: Endpoint[];
}

export function podReady(pod: Pod): boolean {
  return (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

export function podIP(pod: Pod): string | undefined {
  return pod.status?.podIP || pod.status?.podIPs?.[0]?.ip || undefined;
}

export function includedPod(pod: Pod): boolean {
  const phase = pod.status?.phase;
  return podIP(pod) !== undefined && phase !== 'Succeeded' && phase !== 'Failed';
}

/** The container port number `sp.targetPort` names on `pod`, or undefined. */
export function resolveTargetPort(sp: ServicePort, pod: Pod): number | undefined {
  const tp = sp.targetPort;
  if (tp === undefined || tp === '') return sp.port;
  if (typeof tp === 'number') return tp;
  if (/^\d+$/.test(tp)) return Number(tp);
  const protocol = sp.protocol ?? 'TCP';
  for (const c of pod.spec.containers ?? []) {
    for (const p of c.ports ?? []) if (p.name === tp && (p.protocol ?? 'TCP') === protocol) return p.containerPort;
  }
  return undefined;
}

export function endpointPorts(svc: Service, pod: Pod): EndpointPort[] {
  const out: EndpointPort[] = [];
  for (const sp of svc.spec?.ports ?? []) {
    const port = resolveTargetPort(sp, pod);
    if (port === undefined) continue;
    const ep: EndpointPort = { name: sp.name ?? '', port, protocol: sp.protocol ?? 'TCP' };
    if (sp.appProtocol) ep.appProtocol = sp.appProtocol;
    out.push(ep);
  }
  return out;
}

export function portsKey(ports: EndpointPort[] | null): string {
  return JSON.stringify([...(ports ?? [])].map((p) => [p.name ?? '', p.port, p.protocol ?? 'TCP', p.appProtocol ?? '']).sort());
}

function byName(a: Pod, b: Pod): number {
  return (a.metadata.name ?? '').localeCompare(b.metadata.name ?? '');
}

/** Selected pods → endpoint groups (sorted, so equal inputs give equal outputs). */
export function renderEndpointGroups(svc: Service, pods: Pod[], nodes: Map<string, Node>): EndpointGroup[] {
  const groups = new Map<string, EndpointGroup>();
  const publish = svc.spec?.publishNotReadyAddresses === true;
  for (const pod of [...pods].filter(includedPod).sort(byName)) {
    const ports = endpointPorts(svc, pod);
    if ((svc.spec?.ports ?? []).length > 0 && ports.length === 0) continue;
    const ready = podReady(pod);
    const terminating = pod.metadata.deletionTimestamp !== undefined;
    const ep: Endpoint = {
      addresses: [podIP(pod)!],
      conditions: { ready: publish || (ready && !terminating), serving: publish || ready, terminating },
      targetRef: { kind: 'Pod', namespace: pod.metadata.namespace, name: pod.metadata.name ?? '', uid: pod.metadata.uid },
    };
    if (pod.spec.nodeName) {
      ep.nodeName = pod.spec.nodeName;
      const zone = nodes.get(pod.spec.nodeName)?.metadata.labels?.[zoneLabel];
      if (zone) ep.zone = zone;
    }
    const key = portsKey(ports);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { ports, endpoints: [] }));
    g.endpoints.push(ep);
  }
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, g]) => g);
}

/** The v1 Endpoints subsets (upstream's endpoints controller, repacked per port set). */
export function renderEndpointSubsets(svc: Service, pods: Pod[]): EndpointSubset[] {
  const publish = svc.spec?.publishNotReadyAddresses === true;
  const subsets = new Map<string, EndpointSubset>();
  for (const pod of [...pods].filter(includedPod).sort(byName)) {
    const terminating = pod.metadata.deletionTimestamp !== undefined;
    if (terminating && !publish) continue;
    const ports = endpointPorts(svc, pod);
    if ((svc.spec?.ports ?? []).length > 0 && ports.length === 0) continue;
    const addr: EndpointAddress = { ip: podIP(pod)!, targetRef: { kind: 'Pod', namespace: pod.metadata.namespace, name: pod.metadata.name ?? '', uid: pod.metadata.uid } };
    if (pod.spec.nodeName) addr.nodeName = pod.spec.nodeName;
    const key = portsKey(ports);
    let s = subsets.get(key);
    if (!s) subsets.set(key, (s = { ports: ports.map(({ name, port, protocol, appProtocol }) => ({ ...(name ? { name } : {}), port, protocol, ...(appProtocol ? { appProtocol } : {}) })) }));
    if (publish || podReady(pod)) (s.addresses ??= []).push(addr);
    else (s.notReadyAddresses ??= []).push(addr);
  }
  return [...subsets.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([, s]) => {
      s.addresses?.sort((a, b) => a.ip.localeCompare(b.ip));
      s.notReadyAddresses?.sort((a, b) => a.ip.localeCompare(b.ip));
      return s;
    });
}

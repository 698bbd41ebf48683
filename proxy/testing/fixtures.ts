/**
 * Objects and a traffic probe shared by the proxy backends' integration tests
 * (services in namespace default with one http port, endpoint slices on node1).
 */
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { Topology } from './topology.js';

export function service(name: string, clusterIP: string, extra: Partial<NonNullable<V1Service['spec']>> = {}): V1Service {
  return { metadata: { namespace: 'default', name }, spec: { clusterIP, ports: [{ name: 'http', port: 80 }], ...extra } };
}
export function endpoints(name: string, ips: string[]): V1EndpointSlice {
  return {
    metadata: { namespace: 'default', name: `${name}-abc`, labels: { 'kubernetes.io/service-name': name } },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], nodeName: 'node1', conditions: { ready: true } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

export async function hits(topo: Topology, role: 'client' | 'node', url: string, n: number): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const r = await topo.get(role, url);
    const key = r.ok ? r.body : `error: ${r.body}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  return seen;
}

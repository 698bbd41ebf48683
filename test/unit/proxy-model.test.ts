/**
 * knode-proxy model and change tracker: service ports, endpoint merging and selection, chain-name
 * hashing against upstream values, the probability sequence, and which services a take() reports.
 */
import t from 'tap';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { ChangeTracker } from '../../proxy/changes.js';
import { conntrackCommands } from '../../proxy/conntrack.js';
import { categorizeEndpoints, endpointsOfSlices, servicePortsOf, type ModelWarning } from '../../proxy/model.js';
import { endpointHash, hashName, portProtoHash } from '../../proxy/names.js';
import { endpointChain, probability, serviceChains } from '../../proxy/backends/iptables/render.js';
import { nftEndpointChains, nftServiceChains } from '../../proxy/backends/nftables/render.js';

function svc(ns: string, name: string, spec: NonNullable<V1Service['spec']>, status?: V1Service['status']): V1Service {
  return { metadata: { namespace: ns, name }, spec, status };
}

interface Ep {
  ip: string;
  node?: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}
function slice(ns: string, svcName: string, name: string, eps: Ep[], ports: { name: string; port: number; protocol?: string }[]): V1EndpointSlice {
  return {
    metadata: { namespace: ns, name, labels: { 'kubernetes.io/service-name': svcName } },
    addressType: 'IPv4',
    endpoints: eps.map((e) => ({
      addresses: [e.ip],
      nodeName: e.node,
      conditions: { ready: e.ready, serving: e.serving, terminating: e.terminating },
    })),
    ports: ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol ?? 'TCP' })),
  };
}

t.test('chain-name hashing matches upstream', async (t) => {
  // pkg/proxy/iptables/proxier_test.go: ns1/svc1:p80 → KUBE-SVC-XPGD46QRK7WJZT7O
  t.equal(portProtoHash('ns1/svc1:p80', 'tcp'), 'XPGD46QRK7WJZT7O');
  t.equal(hashName('ns1/svc1:p80tcp', 16), 'XPGD46QRK7WJZT7O');
  t.equal(endpointHash('ns1/svc1:p80', 'tcp', '10.180.0.1:80').length, 16);
  const [sp] = servicePortsOf(svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [{ name: 'p80', port: 80 }] }), 'IPv4');
  t.equal(serviceChains(sp!).svc, 'KUBE-SVC-XPGD46QRK7WJZT7O');
  // pkg/proxy/iptables/proxier_test.go: endpoint 10.180.0.1:80 of ns1/svc1:p80 → KUBE-SEP-SXIVWICOYRO3J4NJ
  const eps = endpointsOfSlices([slice('ns1', 'svc1', 's1', [{ ip: '10.180.0.1' }], [{ name: 'p80', port: 80 }])], { family: 'IPv4', nodeName: 'n' });
  t.equal(endpointChain(sp!, eps.get('ns1/svc1:p80')![0]!), 'KUBE-SEP-SXIVWICOYRO3J4NJ');
  // pkg/proxy/nftables/proxier_test.go: service-ULMVA6XW-ns1/svc1/tcp/p80, endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
  t.equal(nftServiceChains(sp!).svc, 'service-ULMVA6XW-ns1/svc1/tcp/p80');
  t.equal(nftEndpointChains(sp!, eps.get('ns1/svc1:p80')![0]!).chain, 'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80');
});

t.test('probability sequence 1/(n-i) with 10 decimals', async (t) => {
  t.same([3, 2].map(probability), ['0.3333333333', '0.5000000000']);
  t.same([5, 4, 3, 2].map(probability), ['0.2000000000', '0.2500000000', '0.3333333333', '0.5000000000']);
  t.equal(probability(7), '0.1428571429');
  t.equal(probability(1000), '0.0010000000');
});

t.test('service ports: fields, families, invalid input', async (t) => {
  const warnings: ModelWarning[] = [];
  const s = svc(
    'ns',
    'web',
    {
      type: 'LoadBalancer',
      clusterIP: '10.96.0.10',
      clusterIPs: ['10.96.0.10', 'fd00::10'],
      externalIPs: ['192.168.1.5', 'fd00::5'],
      externalTrafficPolicy: 'Local',
      healthCheckNodePort: 32000,
      sessionAffinity: 'ClientIP',
      sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } },
      loadBalancerSourceRanges: [' 203.0.113.0/25', 'bogus'],
      ports: [
        { name: 'http', port: 80, nodePort: 30080 },
        { name: 'dns', port: 53, protocol: 'UDP' },
        { name: 'bad', port: 70000 },
        { name: 'weird', port: 1, protocol: 'ICMP' },
        { name: 'http', port: 81 },
      ],
    },
    { loadBalancer: { ingress: [{ ip: '1.2.3.4' }, { ip: '5.6.7.8', ipMode: 'Proxy' }, { hostname: 'lb.example' }] } },
  );
  const v4 = servicePortsOf(s, 'IPv4', warnings);
  t.equal(v4.length, 2);
  const http = v4[0]!;
  t.equal(http.key, 'ns/web:http');
  t.equal(http.clusterIP, '10.96.0.10');
  t.same(http.externalIPs, ['192.168.1.5']);
  t.same(http.loadBalancerIPs, ['1.2.3.4'], 'ipMode Proxy and hostnames are not proxied');
  t.same(http.loadBalancerSourceRanges, ['203.0.113.0/25']);
  t.equal(http.affinitySeconds, 60);
  t.equal(http.externalPolicyLocal, true);
  t.equal(http.healthCheckNodePort, 32000);
  t.equal(v4[1]!.protocol, 'UDP');
  t.ok(warnings.length >= 4, 'bad port, protocol, duplicate name and source range reported');
  const v6 = servicePortsOf(s, 'IPv6');
  t.equal(v6[0]!.clusterIP, 'fd00::10');
  t.same(v6[0]!.externalIPs, ['fd00::5']);
  t.same(servicePortsOf(svc('ns', 'h', { clusterIP: 'None', ports: [{ port: 80 }] }), 'IPv4'), [], 'headless');
  t.same(servicePortsOf(svc('ns', 'x', { type: 'ExternalName', externalName: 'a.b', ports: [{ port: 80 }] }), 'IPv4'), []);
  const unnamed = servicePortsOf(svc('ns', 'u', { clusterIP: '10.96.0.11', ports: [{ port: 80 }] }), 'IPv4');
  t.equal(unnamed[0]!.key, 'ns/u', 'unnamed port: no ":" suffix');
  const clusterPolicy = servicePortsOf(svc('ns', 'c', { clusterIP: '10.96.0.12', externalTrafficPolicy: 'Local', ports: [{ port: 80 }] }), 'IPv4');
  t.equal(clusterPolicy[0]!.externalPolicyLocal, false, 'Local external policy without external access is ignored');
  const defaultAffinity = servicePortsOf(svc('ns', 'd', { clusterIP: '10.96.0.13', sessionAffinity: 'ClientIP', ports: [{ port: 80 }] }), 'IPv4');
  t.equal(defaultAffinity[0]!.affinitySeconds, 10800);
});

t.test('endpoint slices merge; ready wins; sorted', async (t) => {
  const a = slice('ns', 'web', 'web-a', [{ ip: '10.0.0.2', ready: false }, { ip: '10.0.0.9', node: 'me' }], [{ name: 'http', port: 8080 }]);
  const b = slice('ns', 'web', 'web-b', [{ ip: '10.0.0.2' }, { ip: '10.0.0.10' }, { ip: 'not-an-ip' }], [{ name: 'http', port: 8080 }]);
  const warnings: ModelWarning[] = [];
  const eps = endpointsOfSlices([b, a], { family: 'IPv4', nodeName: 'me' }, warnings).get('ns/web:http')!;
  t.same(eps.map((e) => e.key), ['10.0.0.10:8080', '10.0.0.2:8080', '10.0.0.9:8080']);
  t.equal(eps.find((e) => e.ip === '10.0.0.2')!.ready, true);
  t.equal(eps.find((e) => e.ip === '10.0.0.9')!.isLocal, true);
  t.equal(warnings.length, 1);
});

t.test('endpoint selection: ready, terminating fallback, Local policies', async (t) => {
  const mk = (spec: Partial<NonNullable<V1Service['spec']>>) =>
    servicePortsOf(svc('ns', 's', { clusterIP: '10.96.0.1', ports: [{ name: 'p', port: 80, nodePort: 30001 }], ...spec }), 'IPv4')[0]!;
  const eps = (list: Ep[]) =>
    endpointsOfSlices([slice('ns', 's', 's1', list, [{ name: 'p', port: 80 }])], { family: 'IPv4', nodeName: 'me' }).get('ns/s:p')!;

  const mixed = eps([{ ip: '10.0.0.1' }, { ip: '10.0.0.2', ready: false, serving: true, terminating: true }]);
  let c = categorizeEndpoints(mk({}), mixed);
  t.same(c.cluster.map((e) => e.ip), ['10.0.0.1'], 'ready only');

  const terminating = eps([
    { ip: '10.0.0.2', ready: false, serving: true, terminating: true },
    { ip: '10.0.0.3', ready: false, serving: false, terminating: true },
  ]);
  c = categorizeEndpoints(mk({}), terminating);
  t.same(c.cluster.map((e) => e.ip), ['10.0.0.2'], 'serving+terminating fallback');
  t.equal(c.hasAny, true);

  const none = eps([{ ip: '10.0.0.3', ready: false, serving: false, terminating: true }]);
  t.equal(categorizeEndpoints(mk({}), none).hasAny, false);

  const local = eps([{ ip: '10.0.0.1', node: 'me' }, { ip: '10.0.0.2', node: 'other' }]);
  const internalOnly = servicePortsOf(svc('ns', 's', { clusterIP: '10.96.0.1', internalTrafficPolicy: 'Local', ports: [{ name: 'p', port: 80 }] }), 'IPv4')[0]!;
  c = categorizeEndpoints(internalOnly, local);
  t.same(c.cluster.map((e) => e.ip), [], 'no cluster chain for an internal-only Local service');
  t.same(c.local.map((e) => e.ip), ['10.0.0.1']);
  t.same(c.allReachable.map((e) => e.ip), ['10.0.0.1']);

  c = categorizeEndpoints(mk({ type: 'NodePort', externalTrafficPolicy: 'Local' }), local);
  t.same(c.cluster.map((e) => e.ip), ['10.0.0.1', '10.0.0.2'], 'cluster chain still used for internal traffic');
  t.same(c.local.map((e) => e.ip), ['10.0.0.1']);
  t.same(c.allReachable.map((e) => e.ip), ['10.0.0.1', '10.0.0.2']);

  const remoteOnly = eps([{ ip: '10.0.0.2', node: 'other' }]);
  c = categorizeEndpoints(internalOnly, remoteOnly);
  t.equal(c.local.length, 0);
  t.equal(c.hasAny, true, 'endpoints exist elsewhere: DROP, not REJECT');
});

t.test('change tracker reports only real changes, per service', async (t) => {
  const tr = new ChangeTracker({ family: 'IPv4', nodeName: 'me' });
  const s1 = svc('ns', 'a', { clusterIP: '10.96.0.1', ports: [{ name: 'p', port: 80 }] });
  const s2 = svc('ns', 'b', { clusterIP: '10.96.0.2', ports: [{ name: 'p', port: 80, protocol: 'UDP' }] });
  tr.updateService(s1);
  tr.updateService(s2);
  tr.updateEndpointSlice(slice('ns', 'a', 'a-1', [{ ip: '10.0.0.1' }], [{ name: 'p', port: 80 }]));
  tr.updateEndpointSlice(slice('ns', 'a', 'a-2', [{ ip: '10.0.0.2' }], [{ name: 'p', port: 80 }]));
  tr.updateEndpointSlice(slice('ns', 'b', 'b-1', [{ ip: '10.0.0.3' }], [{ name: 'p', port: 80, protocol: 'UDP' }]));
  let r = tr.take();
  t.same([...r.changed].sort(), ['ns/a', 'ns/b']);
  t.equal(r.state.services.size, 2);
  t.same(r.state.endpoints.get('ns/a:p')!.map((e) => e.ip), ['10.0.0.1', '10.0.0.2'], 'two slices merged');
  t.same(r.newlyServedUdp.map((s) => s.key), ['ns/b:p']);

  // Same object again (e.g. resourceVersion bump): not a change.
  tr.updateService({ ...s1, metadata: { ...s1.metadata, resourceVersion: '2' } });
  t.equal(tr.pending(), true);
  r = tr.take();
  t.equal(r.changed.size, 0, 'no-op update dropped');

  tr.deleteEndpointSlice('ns', 'a-2');
  r = tr.take();
  t.same([...r.changed], ['ns/a']);
  t.same(r.state.endpoints.get('ns/a:p')!.map((e) => e.ip), ['10.0.0.1']);

  tr.updateEndpointSlice(slice('ns', 'b', 'b-1', [{ ip: '10.0.0.4' }], [{ name: 'p', port: 80, protocol: 'UDP' }]));
  r = tr.take();
  t.same(r.staleUdpEndpoints.map((s) => `${s.servicePort.key} ${s.endpoint.key}`), ['ns/b:p 10.0.0.3:80']);

  tr.deleteService('ns', 'a');
  r = tr.take();
  t.same([...r.changed], ['ns/a']);
  t.equal(r.state.services.has('ns/a:p'), false);
  t.equal(r.state.endpoints.has('ns/a:p'), true, 'endpoints outlive their service until the slices go');
});

t.test('conntrack deletions for stale UDP flows', async (t) => {
  const tr = new ChangeTracker({ family: 'IPv4', nodeName: 'me' });
  tr.updateService(svc('ns', 'dns', { type: 'NodePort', clusterIP: '10.96.0.10', externalIPs: ['192.168.1.9'], ports: [{ name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 }] }));
  let r = tr.take();
  t.same(conntrackCommands(r, 'IPv4'), [], 'no endpoints yet: nothing to clear');
  tr.updateEndpointSlice(slice('ns', 'dns', 'dns-1', [{ ip: '10.0.0.1' }], [{ name: 'dns', port: 5353, protocol: 'UDP' }]));
  r = tr.take();
  t.same(conntrackCommands(r, 'IPv4'), [
    ['-D', '-f', 'ipv4', '--orig-dst', '10.96.0.10', '-p', 'udp'],
    ['-D', '-f', 'ipv4', '--orig-dst', '192.168.1.9', '-p', 'udp'],
    ['-D', '-f', 'ipv4', '-p', 'udp', '--dport', '30053'],
  ], 'first endpoint: flows rejected before are cleared');
  tr.updateEndpointSlice(slice('ns', 'dns', 'dns-1', [{ ip: '10.0.0.2' }], [{ name: 'dns', port: 5353, protocol: 'UDP' }]));
  r = tr.take();
  t.same(conntrackCommands(r, 'IPv4'), [
    ['-D', '-f', 'ipv4', '--orig-dst', '10.96.0.10', '--dst-nat', '10.0.0.1', '-p', 'udp'],
    ['-D', '-f', 'ipv4', '--orig-dst', '192.168.1.9', '--dst-nat', '10.0.0.1', '-p', 'udp'],
    ['-D', '-f', 'ipv4', '-p', 'udp', '--dport', '30053', '--dst-nat', '10.0.0.1'],
  ], 'endpoint replaced: flows to the old one are cleared');
});

t.test('hostile names and huge services never reach the rule text', async (t) => {
  const warnings: ModelWarning[] = [];
  t.same(servicePortsOf(svc('ns', 'a b', { clusterIP: '10.96.0.1', ports: [{ port: 80 }] }), 'IPv4', warnings), []);
  t.same(servicePortsOf(svc('ns"x', 'a', { clusterIP: '10.96.0.1', ports: [{ port: 80 }] }), 'IPv4', warnings), []);
  t.same(servicePortsOf(svc('ns', 'x'.repeat(64), { clusterIP: '10.96.0.1', ports: [{ port: 80 }] }), 'IPv4', warnings), []);
  const ports = servicePortsOf(
    svc('ns', 'a', { clusterIP: '10.96.0.1', ports: [{ name: 'ok', port: 80 }, { name: 'bad"name', port: 81 }, { name: 'UPPER', port: 82 }] }),
    'IPv4',
    warnings,
  );
  t.same(ports.map((p) => p.portName), ['ok']);
  t.same(servicePortsOf(svc('ns', 'a', { clusterIP: '10.96.0.1; rm', ports: [{ port: 80 }] }), 'IPv4'), [], 'invalid clusterIP');
  t.ok(warnings.length >= 5);
  const many = servicePortsOf(
    svc('ns', 'big', { clusterIP: '10.96.0.2', ports: Array.from({ length: 5000 }, (_, i) => ({ name: `p${i}`, port: 1 + i })) }),
    'IPv4',
  );
  t.equal(many.length, 5000);
});

/**
 * knode-proxy renderers: golden iptables-restore texts and nft scripts for a table of services,
 * conformance with kube-proxy's own expected output, and full vs partial sync decisions of the
 * backends (with fake ports that record what would be applied).
 *
 * Goldens live in test/unit/golden/proxy/; KNODE_UPDATE_GOLDEN=1 rewrites them.
 */
import t, { type Test } from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { ChangeTracker } from '../../proxy/changes.js';
import type { ProxyState } from '../../proxy/model.js';
import { renderIptables, JUMP_RULES, type IptablesRenderOptions } from '../../proxy/backends/iptables/render.js';
import { IptablesBackend } from '../../proxy/backends/iptables/backend.js';
import type { IptablesPort } from '../../proxy/backends/iptables/apply.js';
import { applyNftUpdates, renderNftables, type NftKernelView, type NftRenderOptions } from '../../proxy/backends/nftables/render.js';
import { NftablesBackend, STALE_DELETE_AGE_MS, STALE_DELETE_BATCH } from '../../proxy/backends/nftables/backend.js';
import type { NftPort } from '../../proxy/backends/nftables/apply.js';
import { backends, isProxyMode } from '../../proxy/backends/index.js';
import { KnodeError } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';

const goldenDir = join(dirname(fileURLToPath(import.meta.url)), 'golden', 'proxy');
const update = process.env.KNODE_UPDATE_GOLDEN === '1';
const quiet = createLogger({ component: 'test', write: () => undefined });

function golden(t: Test, name: string, actual: string): void {
  const file = join(goldenDir, name);
  if (update) writeFileSync(file, actual);
  t.equal(actual, readFileSync(file, 'utf8'), `golden ${name}`);
}

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
function slice(ns: string, svcName: string, eps: Ep[], ports: { name: string; port: number; protocol?: string }[], name = `${svcName}-1`): V1EndpointSlice {
  return {
    metadata: { namespace: ns, name, labels: { 'kubernetes.io/service-name': svcName } },
    addressType: 'IPv4',
    endpoints: eps.map((e) => ({ addresses: [e.ip], nodeName: e.node, conditions: { ready: e.ready, serving: e.serving, terminating: e.terminating } })),
    ports: ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol ?? 'TCP' })),
  };
}
const p80 = [{ name: 'p80', port: 80 }];

/** The table of services the goldens cover. */
function knodeTable(): { services: V1Service[]; slices: V1EndpointSlice[] } {
  return {
    services: [
      // ClusterIP, one endpoint
      svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [{ name: 'p80', port: 80 }] }),
      // three endpoints → 0.3333333333, 0.5000000000
      svc('ns2', 'svc2', { clusterIP: '172.30.0.42', ports: [{ name: 'http', port: 80 }] }),
      // NodePort
      svc('ns3', 'svc3', { type: 'NodePort', clusterIP: '172.30.0.43', ports: [{ name: 'p80', port: 80, nodePort: 30003 }] }),
      // externalIP
      svc('ns4', 'svc4', { clusterIP: '172.30.0.44', externalIPs: ['192.168.99.33'], ports: [{ name: 'p80', port: 80 }] }),
      // LoadBalancer ingress, ClientIP affinity, source ranges
      svc(
        'ns5',
        'svc5',
        {
          type: 'LoadBalancer',
          clusterIP: '172.30.0.45',
          sessionAffinity: 'ClientIP',
          sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
          loadBalancerSourceRanges: ['203.0.113.0/25'],
          ports: [{ name: 'p80', port: 80, nodePort: 30002 }],
        },
        { loadBalancer: { ingress: [{ ip: '5.6.7.8' }] } },
      ),
      // no endpoints → REJECT
      svc('ns6', 'svc6', { type: 'NodePort', clusterIP: '172.30.0.46', externalIPs: ['192.168.99.46'], ports: [{ name: 'p80', port: 80, nodePort: 30006 }] }),
      // externalTrafficPolicy Local, one local + one remote endpoint
      svc(
        'ns7',
        'svc7',
        {
          type: 'LoadBalancer',
          clusterIP: '172.30.0.47',
          externalTrafficPolicy: 'Local',
          healthCheckNodePort: 32000,
          ports: [{ name: 'p80', port: 80, nodePort: 30007 }],
        },
        { loadBalancer: { ingress: [{ ip: '1.2.3.4' }] } },
      ),
      // terminating fallback
      svc('ns8', 'svc8', { clusterIP: '172.30.0.48', ports: [{ name: 'p80', port: 80 }] }),
      // UDP
      svc('ns9', 'dns', { clusterIP: '172.30.0.10', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }),
      // multiple ports
      svc('ns10', 'web', {
        clusterIP: '172.30.0.50',
        ports: [
          { name: 'http', port: 80 },
          { name: 'https', port: 443 },
        ],
      }),
      // internalTrafficPolicy Local without local endpoints → DROP
      svc('ns11', 'svc11', { clusterIP: '172.30.0.51', internalTrafficPolicy: 'Local', ports: [{ name: 'p80', port: 80 }] }),
      // headless: ignored
      svc('ns12', 'headless', { clusterIP: 'None', ports: [{ name: 'p80', port: 80 }] }),
    ],
    slices: [
      slice('ns1', 'svc1', [{ ip: '10.180.0.1' }], p80),
      slice('ns2', 'svc2', [{ ip: '10.180.0.1' }, { ip: '10.180.0.2' }, { ip: '10.180.0.3' }], [{ name: 'http', port: 8080 }]),
      slice('ns3', 'svc3', [{ ip: '10.180.0.3' }], p80),
      slice('ns4', 'svc4', [{ ip: '10.180.0.4' }, { ip: '10.180.0.5', node: 'node1' }], p80),
      slice('ns5', 'svc5', [{ ip: '10.180.0.5' }, { ip: '10.180.1.5' }], p80),
      slice('ns7', 'svc7', [{ ip: '10.180.0.7', node: 'node1' }, { ip: '10.180.1.7', node: 'node2' }], p80),
      slice('ns8', 'svc8', [
        { ip: '10.180.0.8', ready: false, serving: true, terminating: true },
        { ip: '10.180.0.9', ready: false, serving: false, terminating: true },
      ], p80),
      slice('ns9', 'dns', [{ ip: '10.180.0.10' }], [{ name: 'dns', port: 5353, protocol: 'UDP' }]),
      slice('ns10', 'web', [{ ip: '10.180.0.11' }], [
        { name: 'http', port: 8080 },
        { name: 'https', port: 8443 },
      ]),
      slice('ns11', 'svc11', [{ ip: '10.180.1.11', node: 'node2' }], p80),
    ],
  };
}

function trackerWith(services: V1Service[], slices: V1EndpointSlice[], nodeName = 'node1'): ChangeTracker {
  const tr = new ChangeTracker({ family: 'IPv4', nodeName });
  for (const s of services) tr.updateService(s);
  for (const s of slices) tr.updateEndpointSlice(s);
  return tr;
}

const iptOpts: IptablesRenderOptions = { family: 'IPv4', masqueradeBit: 14, masqueradeAll: false, clusterCIDR: '10.0.0.0/8', nodeIPs: ['192.168.0.2'] };
const nftOpts: NftRenderOptions = { family: 'IPv4', masqueradeBit: 14, masqueradeAll: false, clusterCIDR: '10.0.0.0/8', nodeIPs: ['192.168.0.2'] };

/** table → chain → ordered rules, plus declared chains; the canary and jumps are ignored. */
function parseRestore(text: string): Map<string, { chains: Set<string>; rules: Map<string, string[]> }> {
  const out = new Map<string, { chains: Set<string>; rules: Map<string, string[]> }>();
  let cur: { chains: Set<string>; rules: Map<string, string[]> } | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) out.set(line.slice(1), (cur = { chains: new Set(), rules: new Map() }));
    else if (line.startsWith(':') && cur) {
      const c = line.slice(1).split(' ')[0]!;
      if (c !== 'KUBE-PROXY-CANARY') cur.chains.add(c);
    } else if (line.startsWith('-A ') && cur) {
      const c = line.split(' ')[1]!;
      if (!cur.rules.has(c)) cur.rules.set(c, []);
      cur.rules.get(c)!.push(line);
    }
  }
  return out;
}

t.test('iptables: same rules as kube-proxy for its TestOverallIPTablesRulesWithMultipleServices', async (t) => {
  const tcp = (name: string, port: number, nodePort?: number) => [{ name, port, nodePort }];
  const services = [
    svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: tcp('p80', 80) }),
    svc(
      'ns2',
      'svc2',
      { type: 'LoadBalancer', externalTrafficPolicy: 'Local', clusterIP: '172.30.0.42', ports: tcp('p80', 80, 3001), externalIPs: ['192.168.99.22'], healthCheckNodePort: 30000 },
      { loadBalancer: { ingress: [{ ip: '1.2.3.4' }] } },
    ),
    svc('ns3', 'svc3', { type: 'NodePort', clusterIP: '172.30.0.43', ports: tcp('p80', 80, 3003) }),
    svc('ns4', 'svc4', { type: 'NodePort', clusterIP: '172.30.0.44', externalIPs: ['192.168.99.33'], ports: tcp('p80', 80) }),
    svc(
      'ns5',
      'svc5',
      { type: 'LoadBalancer', externalTrafficPolicy: 'Cluster', clusterIP: '172.30.0.45', ports: tcp('p80', 80, 3002), healthCheckNodePort: 30000, loadBalancerSourceRanges: [' 203.0.113.0/25'] },
      { loadBalancer: { ingress: [{ ip: '5.6.7.8' }] } },
    ),
    svc('ns6', 'svc6', { type: 'ClusterIP', clusterIP: '172.30.0.46', ports: tcp('p80', 80) }),
  ];
  const slices = [
    slice('ns1', 'svc1', [{ ip: '10.180.0.1' }], p80),
    slice('ns2', 'svc2', [{ ip: '10.180.0.2' }], p80),
    slice('ns3', 'svc3', [{ ip: '10.180.0.3' }], p80),
    slice('ns4', 'svc4', [{ ip: '10.180.0.4' }, { ip: '10.180.0.5', node: 'test-hostname' }], p80),
    slice('ns5', 'svc5', [{ ip: '10.180.0.3' }], p80),
  ];
  const { state } = trackerWith(services, slices, 'test-hostname').take();
  const r = renderIptables(
    state,
    { family: 'IPv4', masqueradeBit: 14, masqueradeAll: false, clusterCIDR: '10.0.0.0/8', localhostNodePorts: true, randomFully: false, nodeIPs: ['192.168.0.2'] },
    { full: true, changed: new Set(), existingNatChains: new Set() },
  );
  const mine = parseRestore(r.text);
  const theirs = parseRestore(readFileSync(join(goldenDir, 'upstream-iptables-overall.txt'), 'utf8'));
  for (const table of ['filter', 'nat']) {
    t.same([...mine.get(table)!.chains].sort(), [...theirs.get(table)!.chains].sort(), `${table}: same chains`);
    for (const [chain, rules] of theirs.get(table)!.rules) {
      t.same(mine.get(table)!.rules.get(chain), rules, `${table} ${chain}: same rules in the same order`);
    }
    t.same([...mine.get(table)!.rules.keys()].sort(), [...theirs.get(table)!.rules.keys()].sort(), `${table}: no extra chains with rules`);
  }
});

t.test('nftables: names and rules as kube-proxy for its TestOverallNFTablesRules', async (t) => {
  const services = [
    svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [{ name: 'p80', port: 80 }] }),
    svc(
      'ns2',
      'svc2',
      { type: 'LoadBalancer', externalTrafficPolicy: 'Local', clusterIP: '172.30.0.42', ports: [{ name: 'p80', port: 80, nodePort: 3001 }], externalIPs: ['192.168.99.22'], healthCheckNodePort: 30000 },
      { loadBalancer: { ingress: [{ ip: '1.2.3.4' }] } },
    ),
    svc('ns4', 'svc4', { type: 'NodePort', clusterIP: '172.30.0.44', externalIPs: ['192.168.99.33'], ports: [{ name: 'p80', port: 80 }] }),
    svc(
      'ns5',
      'svc5',
      {
        type: 'LoadBalancer',
        clusterIP: '172.30.0.45',
        ports: [{ name: 'p80', port: 80, nodePort: 3002 }],
        loadBalancerSourceRanges: [' 203.0.113.0/25'],
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 10800 } },
      },
      { loadBalancer: { ingress: [{ ip: '5.6.7.8' }] } },
    ),
    svc('ns6', 'svc6', { clusterIP: '172.30.0.46', ports: [{ name: 'p80', port: 80 }] }),
  ];
  const slices = [
    slice('ns1', 'svc1', [{ ip: '10.180.0.1' }], p80),
    slice('ns2', 'svc2', [{ ip: '10.180.0.2' }], p80),
    slice('ns4', 'svc4', [{ ip: '10.180.0.4' }, { ip: '10.180.0.5', node: 'test-hostname' }], p80),
    slice('ns5', 'svc5', [{ ip: '10.180.0.3' }], p80),
  ];
  const { state } = trackerWith(services, slices, 'test-hostname').take();
  const r = renderNftables(state, nftOpts, { full: true, changed: new Set(), deletableChains: new Set() });
  const lines = new Set(r.text.split('\n'));
  for (const expected of [
    'add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }',
    'add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade',
    'add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80',
    'add element ip kube-proxy cluster-ips { 172.30.0.41 }',
    'add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }',
    'add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 , 1 : goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 }',
    'add rule ip kube-proxy external-LAUZTJTB-ns4/svc4/tcp/p80 jump mark-for-masquerade',
    'add rule ip kube-proxy external-LAUZTJTB-ns4/svc4/tcp/p80 goto service-LAUZTJTB-ns4/svc4/tcp/p80',
    'add element ip kube-proxy service-ips { 192.168.99.33 . tcp . 80 : goto external-LAUZTJTB-ns4/svc4/tcp/p80 }',
    'add element ip kube-proxy cluster-ips { 172.30.0.46 }',
    'add element ip kube-proxy no-endpoint-services { 172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : goto reject-chain }',
    'add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000',
    'add rule ip kube-proxy masquerading mark and 0x4000 == 0 return',
    'add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips',
    'add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services',
    'add rule ip kube-proxy reject-chain reject',
    // ns2/svc2: Local policy without local endpoints
    'add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 ip saddr 10.0.0.0/8 goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit pod traffic"',
    'add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"',
    'add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit local traffic"',
    'add element ip kube-proxy service-nodeports { tcp . 3001 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }',
    'add element ip kube-proxy no-endpoint-nodeports { tcp . 3001 comment "ns2/svc2:p80" : drop }',
    'add element ip kube-proxy no-endpoint-services { 1.2.3.4 . tcp . 80 comment "ns2/svc2:p80" : drop }',
    'add element ip kube-proxy no-endpoint-services { 192.168.99.22 . tcp . 80 comment "ns2/svc2:p80" : drop }',
    // ns5/svc5: affinity and source ranges
    'add set ip kube-proxy affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }',
    'add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr @affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80',
    'add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 }',
    'add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 update @affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { ip saddr }',
    'add rule ip kube-proxy firewall-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr != { 203.0.113.0/25 } drop',
    'add element ip kube-proxy firewall-ips { 5.6.7.8 . tcp . 80 : goto firewall-HVFWP5L3-ns5/svc5/tcp/p80 }',
    'add element ip kube-proxy service-ips { 5.6.7.8 . tcp . 80 : goto external-HVFWP5L3-ns5/svc5/tcp/p80 }',
  ]) {
    t.ok(lines.has(expected), expected);
  }
});

t.test('golden: the service table, full and partial', async (t) => {
  const { services, slices } = knodeTable();
  const tr = trackerWith(services, slices);
  const first = tr.take();
  const ipt = renderIptables(first.state, iptOpts, { full: true, changed: first.changed, existingNatChains: new Set(), missingJumps: JUMP_RULES });
  golden(t, 'iptables-full.txt', ipt.text);
  const nft = renderNftables(first.state, nftOpts, {
    full: true,
    changed: first.changed,
    deletableChains: new Set(),
    recreateBaseChains: true,
  });
  golden(t, 'nftables-full.nft', nft.text);

  const text = ipt.text;
  t.match(text, /--probability 0\.3333333333 -j KUBE-SEP-/);
  t.match(text, /--probability 0\.5000000000 -j KUBE-SEP-/);
  t.match(text, /-A KUBE-SERVICES -m comment --comment "ns6\/svc6:p80 has no endpoints" -m tcp -p tcp -d 172\.30\.0\.46 --dport 80 -j REJECT/);
  t.match(text, /-A KUBE-SERVICES -m comment --comment "ns11\/svc11:p80 has no local endpoints" .* -j DROP/);
  t.match(text, /-m recent --name KUBE-SEP-\S+ --rcheck --seconds 600 --reap -j KUBE-SEP-/);
  t.match(text, /-m recent --name KUBE-SEP-\S+ --set -m tcp -p tcp -j DNAT/);
  t.match(text, /-m udp -p udp -d 172\.30\.0\.10 --dport 53/);
  t.match(text, /--to-destination 10\.180\.0\.8:80/, 'terminating+serving endpoint used as fallback');
  t.notMatch(text, /10\.180\.0\.9/, 'terminating, not serving: never used');
  t.notMatch(text, /headless/);
  const lastNatRule = text.split('COMMIT')[2]!.split('\n').filter((l) => l.startsWith('-A KUBE-SERVICES')).at(-1);
  t.match(lastNatRule, /NOTE: this must be the last rule in this chain/);
  t.match(nft.text, /numgen random mod 3 vmap/);
  t.match(nft.text, /flags dynamic,timeout ; timeout 600s/);

  // Partial: one endpoint of ns2/svc2 goes away.
  tr.updateEndpointSlice(slice('ns2', 'svc2', [{ ip: '10.180.0.1' }, { ip: '10.180.0.3' }], [{ name: 'http', port: 8080 }]));
  const second = tr.take();
  t.same([...second.changed], ['ns2/svc2']);
  const iptPartial = renderIptables(second.state, iptOpts, { full: false, changed: second.changed, prevChainsByService: ipt.chainsByService });
  golden(t, 'iptables-partial.txt', iptPartial.text);
  t.equal(iptPartial.stats.writtenServices, 1);
  t.equal(iptPartial.stats.deletedChains, 1, 'the removed endpoint chain is deleted');
  t.match(iptPartial.text, /^-X KUBE-SEP-/m);
  const natChains = iptPartial.text.split('*nat')[1]!.split('\n').filter((l) => l.startsWith(':')).map((l) => l.slice(1).split(' ')[0]);
  const svc2Chains = iptPartial.chainsByService.get('ns2/svc2')!;
  t.same(natChains.filter((c) => c!.startsWith('KUBE-SVC-') || c!.startsWith('KUBE-SEP-')).sort(), [...svc2Chains, ...ipt.chainsByService.get('ns2/svc2')!.filter((c) => !svc2Chains.includes(c))].sort(),
    'only the changed service chains (and the one being deleted) are declared');
  t.equal(svc2Chains.length, ipt.chainsByService.get('ns2/svc2')!.length - 1);
  t.same(iptPartial.chainsByService.get('ns1/svc1'), ipt.chainsByService.get('ns1/svc1'), 'unchanged services keep their chains');

  const nftPartial = renderNftables(second.state, nftOpts, { full: false, changed: second.changed, deletableChains: new Set(), prev: nft.view });
  golden(t, 'nftables-partial.nft', nftPartial.text);
  t.equal(nftPartial.flushedStale.length, 1);
  t.notMatch(nftPartial.text, /add table/);
  t.notMatch(nftPartial.text, /add element/, 'no element changed: the service chain still exists');
});

t.test('partial syncs under churn end where a full sync would', async (t) => {
  const { services, slices } = knodeTable();
  const tr = trackerWith(services, slices);
  let r = tr.take();
  let chains = renderIptables(r.state, iptOpts, { full: true, changed: r.changed, existingNatChains: new Set() }).chainsByService;
  let view: NftKernelView = renderNftables(r.state, nftOpts, { full: true, changed: r.changed, deletableChains: new Set() }).view!;
  const dump = (v: NftKernelView) =>
    JSON.stringify({
      e: [...v.elements].map(([c, m]) => [c, [...m].sort()]),
      s: [...v.services].sort(([a], [b]) => (a < b ? -1 : 1)),
    });
  const steps: [string, () => void][] = [
    ['endpoint removed', () => tr.updateEndpointSlice(slice('ns2', 'svc2', [{ ip: '10.180.0.1' }], [{ name: 'http', port: 8080 }]))],
    ['all endpoints gone', () => tr.deleteEndpointSlice('ns1', 'svc1-1')],
    ['endpoints back', () => tr.updateEndpointSlice(slice('ns1', 'svc1', [{ ip: '10.180.0.77' }], p80))],
    ['service deleted', () => tr.deleteService('ns4', 'svc4')],
    ['service added with a port and affinity', () => tr.updateService(svc('ns13', 'new', { clusterIP: '172.30.0.60', sessionAffinity: 'ClientIP', ports: [{ name: 'p80', port: 80, nodePort: 30060 }] }))],
    ['its endpoints', () => tr.updateEndpointSlice(slice('ns13', 'new', [{ ip: '10.180.0.60' }, { ip: '10.180.0.61' }], p80))],
    ['affinity off, nodePort changed', () => tr.updateService(svc('ns13', 'new', { clusterIP: '172.30.0.60', ports: [{ name: 'p80', port: 80, nodePort: 30061 }] }))],
    ['local endpoint appears for svc11', () => tr.updateEndpointSlice(slice('ns11', 'svc11', [{ ip: '10.180.0.11', node: 'node1' }], p80))],
    ['port renamed', () => tr.updateService(svc('ns10', 'web', { clusterIP: '172.30.0.50', ports: [{ name: 'http2', port: 80 }] }))],
  ];
  for (const [what, step] of steps) {
    step();
    r = tr.take();
    const ipt = renderIptables(r.state, iptOpts, { full: false, changed: r.changed, prevChainsByService: chains });
    const nft = renderNftables(r.state, nftOpts, { full: false, changed: r.changed, deletableChains: new Set(), prev: view });
    chains = ipt.chainsByService;
    view = applyNftUpdates(view, nft);
    const fullIpt = renderIptables(r.state, iptOpts, { full: true, changed: r.changed, existingNatChains: new Set() });
    const fullNft = renderNftables(r.state, nftOpts, { full: true, changed: r.changed, deletableChains: new Set() });
    t.same([...chains].sort(), [...fullIpt.chainsByService].sort(), `${what}: iptables chains`);
    t.equal(dump(view), dump(fullNft.view!), `${what}: nftables elements and chains`);
    t.notMatch(nft.text, /delete element .* \{ (.*) \}\n(?:.*\n)*delete element .* \{ \1 \}/, `${what}: no element deleted twice`);
  }
});

/** Commands that make nft 1.0.6 dump every chain and set of the namespace before its transaction. */
const CACHE_FETCHING = /^(add rule|add element|delete (element|chain|set)) /m;

t.test('nftables partial sync: which chains and elements one change touches', async (t) => {
  const { services, slices } = knodeTable();
  const tr = trackerWith(services, slices);
  const first = tr.take();
  let view = renderNftables(first.state, nftOpts, { full: true, changed: first.changed, deletableChains: new Set() }).view!;
  const step = (change: () => void, deletable: ReadonlySet<string> = new Set()) => {
    change();
    const r = tr.take();
    const out = renderNftables(r.state, nftOpts, { full: false, changed: r.changed, deletableChains: deletable, prev: view });
    view = applyNftUpdates(view, out);
    return out;
  };
  const written = (text: string) => [...text.matchAll(/^add chain ip kube-proxy (\S+) \{/gm)].map((m) => m[1]!.replace(/-[A-Z0-9]{8}-/, '-H-'));
  const ns2 = 'ns2/svc2/tcp/http';

  await t.test('one endpoint replaced: the new endpoint chain and the service chain, nothing else', async (t) => {
    const r = step(() => tr.updateEndpointSlice(slice('ns2', 'svc2', [{ ip: '10.180.0.1' }, { ip: '10.180.0.2' }, { ip: '10.180.0.7' }], [{ name: 'http', port: 8080 }])));
    t.same(written(r.text).sort(), [`endpoint-H-${ns2}__10.180.0.7/8080`, `service-H-${ns2}`]);
    t.same(r.flushedStale.map((c) => c.replace(/-[A-Z0-9]{8}-/, '-H-')), [`endpoint-H-${ns2}__10.180.0.3/8080`]);
    t.equal(r.stats.writtenChains, 2);
    t.same(r.elementUpdates, [], 'no map element changes');
    t.notMatch(r.text, CACHE_FETCHING, 'nothing that makes nft fetch its cache');
    t.equal(r.needsCache, false);
  });

  await t.test('an endpoint removed: only the service chain is rewritten', async (t) => {
    const r = step(() => tr.updateEndpointSlice(slice('ns2', 'svc2', [{ ip: '10.180.0.1' }, { ip: '10.180.0.7' }], [{ name: 'http', port: 8080 }])));
    t.same(written(r.text), [`service-H-${ns2}`]);
    t.equal(r.flushedStale.length, 1);
    t.equal(r.needsCache, false);
  });

  await t.test('affinity switched on: every endpoint chain is rewritten (its rules change)', async (t) => {
    const r = step(() =>
      tr.updateService(svc('ns2', 'svc2', { clusterIP: '172.30.0.42', sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80 }] })),
    );
    t.same(written(r.text).sort(), [`endpoint-H-${ns2}__10.180.0.1/8080`, `endpoint-H-${ns2}__10.180.0.7/8080`, `service-H-${ns2}`]);
    t.match(r.text, /^add set ip kube-proxy affinity-\S+ \{ type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; \}$/m);
    t.match(r.text, /update @affinity-/);
    t.equal(r.needsCache, false);
  });

  await t.test('a new service: its elements go in as map blocks, not `add element`', async (t) => {
    const r = step(() => {
      tr.updateService(svc('ns20', 'new', { clusterIP: '172.30.0.90', type: 'NodePort', ports: [{ name: 'p80', port: 80, nodePort: 30090 }] }));
      tr.updateEndpointSlice(slice('ns20', 'new', [{ ip: '10.180.0.90' }], p80));
    });
    t.match(r.text, /^add set ip kube-proxy cluster-ips \{ type ipv4_addr ; comment "Active ClusterIPs" ; elements = \{ 172\.30\.0\.90 \} ; \}$/m);
    t.match(r.text, /^add map ip kube-proxy service-ips \{ type ipv4_addr \. inet_proto \. inet_service : verdict ; comment "[^"]+" ; elements = \{ 172\.30\.0\.90 \. tcp \. 80 : goto service-\S+-ns20\/new\/tcp\/p80 \} ; \}$/m);
    t.match(r.text, /^add map ip kube-proxy service-nodeports \{ .* elements = \{ tcp \. 30090 : goto external-\S+ \} ; \}$/m);
    t.notMatch(r.text, CACHE_FETCHING);
  });

  await t.test('a service deleted: element deletions pay the cache fetch, so waiting stale chains go too', async (t) => {
    const waiting = new Set(['endpoint-WAITING0-ns/x/tcp/p__10.0.0.1/80']);
    const r = step(() => tr.deleteService('ns20', 'new'), waiting);
    t.match(r.text, /^delete element ip kube-proxy service-ips \{ 172\.30\.0\.90 \. tcp \. 80 \}$/m);
    t.match(r.text, /^delete element ip kube-proxy cluster-ips \{ 172\.30\.0\.90 \}$/m);
    t.match(r.text, /^delete chain ip kube-proxy endpoint-WAITING0/m);
    t.equal(r.needsCache, true);
  });

  await t.test('deletable stale chains wait when nothing else needs the cache, unless asked', async (t) => {
    const waiting = new Set(['endpoint-WAITING1-ns/x/tcp/p__10.0.0.1/80']);
    const change = (ip: string) => () => tr.updateEndpointSlice(slice('ns1', 'svc1', [{ ip }], p80));
    let r = step(change('10.180.0.31'), waiting);
    t.same(r.deletedChains, []);
    t.equal(r.needsCache, false);
    r = step(change('10.180.0.32'), waiting);
    t.same(r.deletedChains, []);
    const asked = renderNftables(tr.state(), nftOpts, { full: false, changed: new Set(), deletableChains: waiting, prev: view, deleteStaleNow: true });
    t.same(asked.deletedChains, [...waiting]);
    t.equal(asked.needsCache, true);
  });
});

t.test('nftables backend: a large backlog of deletable stale chains is deleted at once', async (t) => {
  const services: V1Service[] = [];
  const slices: V1EndpointSlice[] = [];
  for (let i = 0; i < 3; i++) {
    services.push(svc('ns', `s${i}`, { clusterIP: `172.30.1.${i}`, ports: p80 }));
    slices.push(slice('ns', `s${i}`, [{ ip: `10.180.1.${i}` }], p80));
  }
  const tr = trackerWith(services, slices);
  const port = new FakeNft();
  let now = 1_000_000;
  const be = new NftablesBackend({ family: 'IPv4', masqueradeBit: 14, masqueradeAll: false, port, logger: quiet, now: () => now });
  await be.sync({ full: true, ...state(tr) });
  // Churn: each round replaces every service's endpoint, leaving one stale chain per service.
  let round = 0;
  let r = await be.sync({ full: false, ...state(tr) });
  while (r.stats.staleChains! < STALE_DELETE_BATCH) {
    round++;
    for (let i = 0; i < 3; i++) tr.updateEndpointSlice(slice('ns', `s${i}`, [{ ip: `10.181.${round >> 8}.${round & 255}` }], p80));
    now += 10;
    r = await be.sync({ full: false, ...state(tr) });
    t.notMatch(port.scripts.at(-1)!, CACHE_FETCHING, `round ${round}: nothing that makes nft fetch its cache`);
    if (t.counts.fail > 0) break;
  }
  now += 1000;
  tr.updateEndpointSlice(slice('ns', 's0', [{ ip: '10.182.0.1' }], p80));
  r = await be.sync({ full: false, ...state(tr) });
  t.ok(r.stats.staleChains! <= 3, `backlog deleted (${r.stats.staleChains} left)`);
  t.ok((port.scripts.at(-1)!.match(/^delete chain /gm)?.length ?? 0) >= STALE_DELETE_BATCH);
});

// ---- backends with fake ports ----

class FakeIptables implements IptablesPort {
  restores: string[] = [];
  saved = '';
  canary = true;
  failNext = false;
  async restore(text: string): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      throw new KnodeError('IPTABLES_RESTORE_FAILED', 'boom');
    }
    this.restores.push(text);
  }
  async save(): Promise<string> {
    return this.saved;
  }
  async chainExists(): Promise<boolean> {
    return this.canary;
  }
}

function state(tr: ChangeTracker): { state: ProxyState; changed: ReadonlySet<string> } {
  const r = tr.take();
  return { state: r.state, changed: r.changed };
}

t.test('iptables backend: full vs partial decisions', async (t) => {
  const { services, slices } = knodeTable();
  const tr = trackerWith(services, slices);
  const port = new FakeIptables();
  port.saved = '*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SEP-STALESTALESTALE1 - [0:0]\n:OTHER-CHAIN - [0:0]\n-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\nCOMMIT\n*filter\nCOMMIT\n';
  const be = new IptablesBackend({ family: 'IPv4', masqueradeBit: 14, masqueradeAll: false, clusterCIDR: '10.0.0.0/8', port, logger: quiet });

  let r = await be.sync({ full: false, ...state(tr) });
  t.equal(r.full, true, 'first sync is full even when a partial one is asked');
  let text = port.restores.at(-1)!;
  t.match(text, /^-X KUBE-SEP-STALESTALESTALE1$/m, 'stale service chain from iptables-save deleted');
  t.notMatch(text, /OTHER-CHAIN/, 'foreign chains untouched');
  t.notMatch(text, /-I PREROUTING/, 'existing jump not inserted again');
  t.match(text, /^-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES$/m);
  t.match(text, /^-I INPUT 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES$/m);

  r = await be.sync({ full: false, ...state(tr) });
  t.equal(r.full, false);
  t.equal(r.stats.writtenServices, 0, 'nothing changed: no service chain written');
  text = port.restores.at(-1)!;
  t.notMatch(text, /^:KUBE-SVC-/m);
  t.match(text, /^-A KUBE-SERVICES .*ns1\/svc1:p80 cluster IP/m, 'KUBE-SERVICES is always complete');

  tr.deleteService('ns1', 'svc1');
  r = await be.sync({ full: false, ...state(tr) });
  text = port.restores.at(-1)!;
  t.equal(r.full, false);
  t.match(text, /^-X KUBE-SVC-XPGD46QRK7WJZT7O$/m, 'deleted service: chains removed in a partial sync');

  port.failNext = true;
  tr.updateService(svc('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: [{ name: 'p80', port: 80 }] }));
  await t.rejects(be.sync({ full: false, ...state(tr) }), { code: 'IPTABLES_RESTORE_FAILED' });
  r = await be.sync({ full: false, ...state(tr) });
  t.equal(r.full, true, 'after a failure the next sync is full');

  port.canary = false;
  r = await be.sync({ full: false, ...state(tr) });
  t.equal(r.full, true, 'canary gone: full sync');
});

class FakeNft implements NftPort {
  scripts: string[] = [];
  failNext = false;
  chains = new Set<string>();
  async apply(script: string): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      throw new KnodeError('NFT_FAILED', 'boom');
    }
    this.scripts.push(script);
  }
  async list(): Promise<{ chains: Set<string>; sets: Set<string> }> {
    return { chains: this.chains, sets: new Set(['affinity-STALE000-x/y/tcp/p__1.2.3.4/80']) };
  }
  async deleteTable(): Promise<void> {
    this.scripts.push('delete table');
  }
}

t.test('nftables backend: full vs partial, stale chains deleted later', async (t) => {
  const { services, slices } = knodeTable();
  const tr = trackerWith(services, slices);
  const port = new FakeNft();
  port.chains = new Set(['services', 'endpoint-OLD00000-ns/x/tcp/p__10.0.0.1/80']);
  let now = 1_000_000;
  const be = new NftablesBackend({ family: 'IPv4', masqueradeBit: 14, masqueradeAll: false, clusterCIDR: '10.0.0.0/8', port, logger: quiet, now: () => now });
  let r = await be.sync({ full: false, ...state(tr) });
  t.equal(r.full, true);
  let text = port.scripts.at(-1)!;
  t.match(text, /^add table ip kube-proxy/m);
  t.match(text, /^flush chain ip kube-proxy endpoint-OLD00000-ns\/x\/tcp\/p__10\.0\.0\.1\/80$/m, 'stale chain flushed first');
  t.match(text, /^delete set ip kube-proxy affinity-STALE000/m);

  tr.updateEndpointSlice(slice('ns1', 'svc1', [{ ip: '10.180.0.99' }], p80));
  now += 500;
  r = await be.sync({ full: false, ...state(tr) });
  text = port.scripts.at(-1)!;
  t.equal(r.full, false);
  t.notMatch(text, /delete chain .*OLD00000/, 'not deleted within a second');
  t.match(text, /^add chain ip kube-proxy endpoint-\S+-ns1\/svc1\/tcp\/p80__10\.180\.0\.99\/80$/m);
  t.match(text, /^flush chain ip kube-proxy endpoint-\S+-ns1\/svc1\/tcp\/p80__10\.180\.0\.1\/80$/m);
  t.notMatch(text, /ns2\/svc2/, 'unchanged services untouched');

  now += 2000;
  r = await be.sync({ full: false, ...state(tr) });
  text = port.scripts.at(-1)!;
  t.notMatch(text, /delete chain/, 'deletable, but batched: `delete chain` makes nft fetch its cache');
  t.equal(r.stats.staleChains, 2);
  t.equal(r.stats.nftCacheFetch, 0);

  now += STALE_DELETE_AGE_MS;
  r = await be.sync({ full: false, ...state(tr) });
  text = port.scripts.at(-1)!;
  t.match(text, /^delete chain ip kube-proxy endpoint-OLD00000/m);
  t.match(text, /^delete chain ip kube-proxy endpoint-\S+-ns1\/svc1\/tcp\/p80__10\.180\.0\.1\/80$/m);
  t.equal(r.stats.staleChains, 0);
  t.equal(r.stats.nftCacheFetch, 1);

  port.failNext = true;
  tr.deleteService('ns3', 'svc3');
  await t.rejects(be.sync({ full: false, ...state(tr) }), { code: 'NFT_FAILED' });
  r = await be.sync({ full: false, ...state(tr) });
  t.equal(r.full, true);
});

t.test('backend map', async (t) => {
  t.ok(isProxyMode('iptables') && isProxyMode('nftables'));
  t.ok(isProxyMode('ipvs'), 'ipvs is a backend now');
  t.notOk(isProxyMode('toString'));
  const be = backends.nftables({ family: 'IPv4', masqueradeBit: 14, masqueradeAll: false, logger: quiet });
  t.equal(be.mode, 'nftables');
});

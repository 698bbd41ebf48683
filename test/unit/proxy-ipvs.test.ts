/**
 * knode-proxy IPVS mode, pure parts: the rendered desired state for a table of services (golden
 * virtual servers, ipsets, iptables text), the generic netlink encoding of IPVS commands against
 * bytes laid out by hand from include/uapi/linux/ip_vs.h, the ipset diff, and the backend's
 * incremental apply against a recording fake kernel.
 *
 * Goldens: test/unit/golden/proxy/ipvs-*.txt; KNODE_UPDATE_GOLDEN=1 rewrites them.
 */
import t, { type Test } from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { ChangeTracker } from '../../proxy/changes.js';
import { formatVirtualServers, ipsetName, iptablesModeLeftovers, iptablesRestoreText, IPVS_JUMP_RULES, renderIpvs, type IpvsRenderOptions } from '../../proxy/backends/ipvs/render.js';
import { parseIptablesSave } from '../../proxy/backends/iptables/apply.js';
import { IpvsBackend } from '../../proxy/backends/ipvs/backend.js';
import type { IpvsKernel } from '../../proxy/backends/ipvs/apply.js';
import { parseIpsetSave, planIpsetRestore, type IpsetPort, type SavedIpset } from '../../proxy/ipset.js';
import type { IptablesPort } from '../../proxy/backends/iptables/apply.js';
import { encodeDest, encodeService, genlRequestBytes, IPVS_CMD, parseServiceReply, serviceKey, type IpvsDestination, type IpvsService, type IpvsServiceId } from '../../lib/netlink/ipvs.js';
import { backends, isProxyMode } from '../../proxy/backends/index.js';
import { resolveMode } from '../../proxy/ipvs-probe.js';
import { createLogger } from '../../lib/log.js';
import { isKnodeError } from '../../lib/errors.js';
import { NetlinkError } from '../../lib/netlink/socket.js';
import { parseProxyArgs } from '../../proxy/config.js';

const goldenDir = join(dirname(fileURLToPath(import.meta.url)), 'golden', 'proxy');
const update = process.env.KNODE_UPDATE_GOLDEN === '1';
const quiet = createLogger({ component: 'test', write: () => undefined });

function golden(t: Test, name: string, actual: string): void {
  const file = join(goldenDir, name);
  if (update) writeFileSync(file, actual);
  t.equal(actual, readFileSync(file, 'utf8'), `golden ${name}`);
}

function svc(name: string, spec: NonNullable<V1Service['spec']>, status?: V1Service['status']): V1Service {
  return { metadata: { namespace: 'ns1', name }, spec, status };
}
function slice(svcName: string, eps: { ip: string; node?: string; ready?: boolean }[], ports: { name: string; port: number; protocol?: string }[]): V1EndpointSlice {
  return {
    metadata: { namespace: 'ns1', name: `${svcName}-1`, labels: { 'kubernetes.io/service-name': svcName } },
    addressType: 'IPv4',
    endpoints: eps.map((e) => ({ addresses: [e.ip], nodeName: e.node ?? 'node1', conditions: { ready: e.ready ?? true } })),
    ports: ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol ?? 'TCP' })),
  };
}

function table(): { services: V1Service[]; slices: V1EndpointSlice[] } {
  return {
    services: [
      svc('cluster', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] }),
      svc('affinity', {
        type: 'NodePort',
        clusterIP: '10.96.0.11',
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
        ports: [{ name: 'http', port: 80, nodePort: 30080 }],
      }),
      svc('dns', {
        clusterIP: '10.96.0.12',
        type: 'NodePort',
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 },
          { name: 'dns-tcp', port: 53, protocol: 'TCP' },
        ],
      }),
      svc('local', {
        type: 'LoadBalancer',
        clusterIP: '10.96.0.13',
        externalIPs: ['192.0.2.10'],
        externalTrafficPolicy: 'Local',
        healthCheckNodePort: 32000,
        ports: [{ name: 'http', port: 80, nodePort: 30081 }],
      }, { loadBalancer: { ingress: [{ ip: '198.51.100.7' }] } }),
      svc('empty', { clusterIP: '10.96.0.14', ports: [{ name: 'http', port: 80 }] }),
      svc('sctp', { type: 'NodePort', clusterIP: '10.96.0.15', ports: [{ name: 's', port: 9000, protocol: 'SCTP', nodePort: 30900 }] }),
    ],
    slices: [
      slice('cluster', [{ ip: '10.244.1.2' }, { ip: '10.244.2.2', node: 'node2' }, { ip: '10.244.1.9', ready: false }], [{ name: 'http', port: 8080 }]),
      slice('affinity', [{ ip: '10.244.1.3' }, { ip: '10.244.2.3', node: 'node2' }], [{ name: 'http', port: 8080 }]),
      slice('dns', [{ ip: '10.244.1.4' }], [
        { name: 'dns', port: 5353, protocol: 'UDP' },
        { name: 'dns-tcp', port: 5353 },
      ]),
      slice('local', [{ ip: '10.244.1.5' }, { ip: '10.244.2.5', node: 'node2' }], [{ name: 'http', port: 8080 }]),
      slice('sctp', [{ ip: '10.244.2.6', node: 'node2' }], [{ name: 's', port: 9000, protocol: 'SCTP' }]),
    ],
  };
}

function stateOf(services: V1Service[], slices: V1EndpointSlice[]): ReturnType<ChangeTracker['take']> {
  const tr = new ChangeTracker({ family: 'IPv4', nodeName: 'node1' });
  for (const s of services) tr.updateService(s);
  for (const s of slices) tr.updateEndpointSlice(s);
  return tr.take();
}

const opts: IpvsRenderOptions = { family: 'IPv4', scheduler: 'rr', masqueradeBit: 14, masqueradeAll: false, clusterCIDR: '10.244.0.0/16', nodePortAddresses: ['192.168.0.2'] };

t.test('render: golden virtual servers, ipsets and iptables rules', async (t) => {
  const { services, slices } = table();
  const d = renderIpvs(stateOf(services, slices).state, opts);
  golden(t, 'ipvs-virtual-servers.txt', formatVirtualServers(d));
  const sets = [...d.ipsets].map(([name, s]) => [`${name} ${s.type}`, ...s.entries.map((e) => `  ${e}`)].join('\n')).join('\n') + '\n';
  golden(t, 'ipvs-ipsets.txt', sets);
  golden(t, 'ipvs-iptables.txt', iptablesRestoreText(d, IPVS_JUMP_RULES));
  t.same(d.addresses, ['10.96.0.10', '10.96.0.11', '10.96.0.12', '10.96.0.13', '10.96.0.14', '10.96.0.15', '192.0.2.10', '198.51.100.7']);

  // the facts the goldens must show, spelled out
  const vs = (k: string): { service: IpvsService; destinations: IpvsDestination[] } => d.virtualServers.get(k)!;
  t.same(vs('TCP/10.96.0.10:80').destinations.map((x) => x.address), ['10.244.1.2', '10.244.2.2'], 'ready endpoints only');
  t.equal(vs('TCP/10.96.0.11:80').service.timeout, 600, 'ClientIP affinity → persistence timeout');
  t.equal(vs('TCP/10.96.0.11:80').service.flags, 1);
  t.ok(d.virtualServers.has('TCP/192.168.0.2:30080'), 'NodePort on the node address');
  t.same(vs('TCP/192.168.0.2:30081').destinations.map((x) => x.address), ['10.244.1.5'], 'externalTrafficPolicy Local: local endpoints only');
  t.same(vs('TCP/10.96.0.13:80').destinations.map((x) => x.address), ['10.244.1.5', '10.244.2.5'], 'ClusterIP keeps all endpoints');
  t.same(vs('TCP/10.96.0.14:80').destinations, [], 'no endpoints: virtual server without real servers');
  t.equal(vs('UDP/10.96.0.12:53').destinations[0]?.port, 5353);
  t.same(d.ipsets.get('KUBE-NODE-PORT-TCP')?.entries, ['30080', '30081']);
  t.same(d.ipsets.get('KUBE-NODE-PORT-SCTP-HASH')?.entries, ['192.168.0.2,sctp:30900']);
  t.same(d.ipsets.get('KUBE-LOOP-BACK')?.entries.includes('10.244.1.2,tcp:8080,10.244.1.2'), true);

  t.equal(ipsetName('nodePortLocalSCTP', 'IPv6'), 'KUBE-6-NODE-PORT-LOCAL-SCTP-HAS', 'IPv6 names: KUBE-6-, at most 31 characters');
  t.equal(ipsetName('clusterIP', 'IPv6'), 'KUBE-6-CLUSTER-IP');
  const sched = renderIpvs(stateOf(services, slices).state, { ...opts, scheduler: 'lc' });
  t.ok([...sched.virtualServers.values()].every((v) => v.service.scheduler === 'lc'), '--ipvs-scheduler');
});

t.test('render: masquerade choices for the ClusterIP set', async (t) => {
  const { services, slices } = table();
  const st = stateOf(services, slices).state;
  const rule = (o: Partial<IpvsRenderOptions>): string | undefined => renderIpvs(st, { ...opts, ...o }).iptables.nat.find((r) => r.includes('KUBE-CLUSTER-IP') && r.includes('KUBE-MARK-MASQ'));
  t.match(rule({}), /dst,dst ! -s 10\.244\.0\.0\/16 -j KUBE-MARK-MASQ/);
  t.match(rule({ clusterCIDR: undefined }), /src,dst -j KUBE-MARK-MASQ/);
  t.match(rule({ masqueradeAll: true }), /--match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ/);
});

t.test('genl encoding: NEW_SERVICE and NEW_DEST against known bytes', async (t) => {
  const service = { address: '10.96.0.10', protocol: 'TCP', port: 80, scheduler: 'rr', flags: 0, timeout: 0 } as const;
  const bytes = genlRequestBytes(0x23, IPVS_CMD.NEW_SERVICE, [encodeService(service, true)], { flags: 0x5, seq: 1, port: 0 });
  const hex = [
    '68000000 2300 0500 01000000 00000000', // nlmsghdr: len 104, family id, REQUEST|ACK, seq, port
    '01010000', // genlmsghdr: cmd NEW_SERVICE, version 1
    '5400 0180', // IPVS_CMD_ATTR_SERVICE, nested, 84 bytes
    '0600 0100 0200 0000', // AF = AF_INET
    '0600 0200 0600 0000', // PROTOCOL = 6 (TCP)
    '1400 0300 0a60000a 00000000 00000000 00000000', // ADDR = 10.96.0.10 in a 16-byte nf_inet_addr
    '0600 0400 0050 0000', // PORT = 80, network order
    '0700 0600 727200 00', // SCHED_NAME = "rr\0"
    '0c00 0700 00000000 ffffffff', // FLAGS = { flags 0, mask ~0 }
    '0800 0800 00000000', // TIMEOUT = 0
    '0800 0900 ffffffff', // NETMASK = /32
  ].join('').replace(/\s/g, '');
  t.equal(bytes.toString('hex'), hex);

  const dest = encodeDest({ address: '10.244.1.2', port: 8080, weight: 1, fwdMethod: 0 }, true);
  const destHex = [
    '4800 0280', // IPVS_CMD_ATTR_DEST, nested, 72 bytes
    '1400 0100 0af40102 00000000 00000000 00000000', // ADDR
    '0600 0200 1f90 0000', // PORT = 8080
    '0800 0300 00000000', // FWD_METHOD = MASQ
    '0800 0400 01000000', // WEIGHT = 1
    '0800 0500 00000000', // U_THRESH
    '0800 0600 00000000', // L_THRESH
    '0600 0b00 0200 0000', // ADDR_FAMILY = AF_INET
  ].join('').replace(/\s/g, '');
  t.equal(dest.toString('hex'), destHex);

  const persistent = { ...service, flags: 1, timeout: 10800 };
  t.same(parseServiceReply(encodeService(persistent, true)), persistent, 'a GET_SERVICE reply parses back');
  t.equal(serviceKey({ address: 'fd00::1', protocol: 'UDP', port: 53 }), 'UDP/[fd00::1]:53');
  t.throws(() => encodeService({ ...service, address: 'not-an-ip' }, true), { code: 'IPVS_INVALID' });
});

t.test('ipset: save parsing and the incremental restore text', async (t) => {
  const saved = parseIpsetSave(
    [
      'create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1',
      'add KUBE-CLUSTER-IP 10.96.0.10,tcp:80',
      'add KUBE-CLUSTER-IP 10.96.0.99,tcp:80',
      'create KUBE-NODE-PORT-TCP bitmap:port range 0-65535',
      'add KUBE-NODE-PORT-TCP 30080',
      '',
    ].join('\n'),
  );
  t.same([...saved.get('KUBE-CLUSTER-IP')!.entries], ['10.96.0.10,tcp:80', '10.96.0.99,tcp:80']);
  const plan = planIpsetRestore(
    new Map([
      ['KUBE-CLUSTER-IP', { type: 'hash:ip,port', entries: ['10.96.0.10,tcp:80', '10.96.0.11,tcp:80'] }],
      ['KUBE-NODE-PORT-TCP', { type: 'bitmap:port', entries: ['30080'] }],
      ['KUBE-LOOP-BACK', { type: 'hash:ip,port,ip', entries: [] }],
    ]),
    saved,
    'IPv4',
  );
  t.equal(
    plan.text,
    [
      'create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536',
      'del KUBE-CLUSTER-IP 10.96.0.99,tcp:80',
      'add KUBE-CLUSTER-IP 10.96.0.11,tcp:80',
      'create KUBE-NODE-PORT-TCP bitmap:port range 0-65535',
      'create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536',
      '',
    ].join('\n'),
  );
  t.same([plan.added, plan.removed], [1, 1]);
});

/** A kernel in memory that records the IPVS calls. */
function fakeKernel(): { kernel: IpvsKernel; calls: string[]; services: Map<string, { s: IpvsService; d: Map<string, IpvsDestination> }>; addrs: Set<string> } {
  const services = new Map<string, { s: IpvsService; d: Map<string, IpvsDestination> }>();
  const addrs = new Set<string>();
  const calls: string[] = [];
  const get = (s: IpvsServiceId) => services.get(serviceKey(s))!;
  const kernel: IpvsKernel = {
    listServices: async () => [...services.values()].map((v) => v.s),
    listDestinations: async (s) => (calls.push(`dump ${serviceKey(s)}`), [...get(s).d.values()]),
    newService: async (s) => void (calls.push(`new ${serviceKey(s)}`), services.set(serviceKey(s), { s, d: new Map() })),
    setService: async (s) => void (calls.push(`set ${serviceKey(s)}`), (get(s).s = s)),
    delService: async (s) => void (calls.push(`del ${serviceKey(s)}`), services.delete(serviceKey(s))),
    newDestination: async (s, d) => void (calls.push(`new ${serviceKey(s)} -> ${d.address}`), get(s).d.set(`${d.address}:${d.port}`, d)),
    setDestination: async (s, d) => void get(s).d.set(`${d.address}:${d.port}`, d),
    delDestination: async (s, d) => void (calls.push(`del ${serviceKey(s)} -> ${d.address}`), get(s).d.delete(`${d.address}:${d.port}`)),
    ensureDevice: async () => 7,
    deviceIndex: async () => 7,
    deleteDevice: async () => undefined,
    deviceAddresses: async () => [...addrs],
    addDeviceAddress: async (_i, ip) => void addrs.add(ip),
    delDeviceAddress: async (_i, ip) => void addrs.delete(ip),
    localAddresses: async () => ['192.168.0.2'],
    ensureSysctls: () => undefined,
    close: () => undefined,
  };
  return { kernel, calls, services, addrs };
}

t.test('backend: incremental syncs against a recording kernel', async (t) => {
  const k = fakeKernel();
  const sets = new Map<string, SavedIpset>();
  const ipset: IpsetPort = {
    save: async () => sets,
    restore: async (text) => {
      const after = parseIpsetSave(text.replace(/^del .*$/gm, ''));
      for (const [n, s] of after) {
        const have = sets.get(n) ?? { type: s.type, entries: new Set<string>() };
        for (const e of s.entries) have.entries.add(e);
        sets.set(n, have);
      }
      for (const m of text.matchAll(/^del (\S+) (\S+)$/gm)) sets.get(m[1]!)?.entries.delete(m[2]!);
    },
    destroy: async () => undefined,
  };
  const restored: string[] = [];
  const iptables: IptablesPort = { restore: async (x) => void restored.push(x), save: async () => '', chainExists: async () => true };
  const b = new IpvsBackend({ family: 'IPv4', masqueradeBit: 14, masqueradeAll: false, kernel: k.kernel, ipset, iptables, logger: quiet });

  const { services, slices } = table();
  const tr = new ChangeTracker({ family: 'IPv4', nodeName: 'node1' });
  for (const s of services) tr.updateService(s);
  for (const s of slices) tr.updateEndpointSlice(s);
  let r = tr.take();
  const first = await b.sync({ full: false, state: r.state, changed: r.changed });
  t.equal(first.full, true, 'first sync is full');
  t.ok(k.services.has('TCP/10.96.0.10:80'));
  t.equal(k.addrs.size, 8);
  t.match(restored[0], /-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES/);

  // one endpoint goes: only that real server is removed, only that service's dests are dumped
  k.calls.length = 0;
  tr.updateEndpointSlice(slice('cluster', [{ ip: '10.244.1.2' }], [{ name: 'http', port: 8080 }]));
  r = tr.take();
  const second = await b.sync({ full: false, state: r.state, changed: r.changed });
  t.equal(second.full, false);
  t.same(k.calls, ['dump TCP/10.96.0.10:80', 'del TCP/10.96.0.10:80 -> 10.244.2.2']);

  // a service goes: its virtual servers, address and ipset entries go
  k.calls.length = 0;
  tr.deleteService('ns1', 'affinity');
  r = tr.take();
  await b.sync({ full: false, state: r.state, changed: r.changed });
  t.same(k.calls.sort(), ['del TCP/10.96.0.11:80', 'del TCP/192.168.0.2:30080']);
  t.notOk(k.addrs.has('10.96.0.11'));
  t.notOk(sets.get('KUBE-CLUSTER-IP')!.entries.has('10.96.0.11,tcp:80'));

  // an unknown scheduler: a clear error, and the next sync is full
  const bad = new IpvsBackend({
    family: 'IPv4',
    masqueradeBit: 14,
    masqueradeAll: false,
    ipvsScheduler: 'nope',
    kernel: { ...fakeKernel().kernel, newService: async () => Promise.reject(new NetlinkError('add IPVS service', 2)) },
    ipset,
    iptables,
    logger: quiet,
  });
  await t.rejects(bad.sync({ full: true, state: r.state, changed: new Set() }), { code: 'IPVS_SCHEDULER_UNAVAILABLE', message: /IPVS scheduler "nope" is not available/ });

  // a virtual server that is not ours (address neither on kube-ipvs0 nor a node address) stays
  await k.kernel.newService({ address: '203.0.113.1', protocol: 'TCP', port: 1, scheduler: 'rr', flags: 0, timeout: 0 });
  await b.sync({ full: true, state: r.state, changed: new Set() });
  t.ok(k.services.has('TCP/203.0.113.1:1'), 'foreign virtual server left alone');
});

t.test('mode switch iptables → ipvs: iptables mode leftovers go in the same restore', async (t) => {
  // what iptables mode loaded (its golden), as iptables-save would print it
  const saved = parseIptablesSave(readFileSync(join(goldenDir, 'iptables-full.txt'), 'utf8').replace(/^-I (\S+) 1 /gm, '-A $1 '));
  const left = iptablesModeLeftovers(saved);
  const nat = left.chains.get('nat')!;
  t.ok(nat.some((c) => c.startsWith('KUBE-SVC-')) && nat.some((c) => c.startsWith('KUBE-SEP-')), 'per-service chains');
  t.ok(nat.includes('KUBE-NODEPORTS') && nat.includes('KUBE-PROXY-CANARY'));
  t.notOk(nat.includes('KUBE-SERVICES') || nat.includes('KUBE-POSTROUTING') || nat.includes('KUBE-MARK-MASQ'), 'chains IPVS mode uses stay');
  t.same(left.chains.get('filter'), ['KUBE-EXTERNAL-SERVICES', 'KUBE-NODEPORTS', 'KUBE-SERVICES']);
  t.same(left.chains.get('mangle'), ['KUBE-PROXY-CANARY']);
  t.ok(left.unjumps.get('filter')!.includes('-D OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'), 'jumps to them are deleted');
  t.notOk(left.unjumps.get('nat')!.some((r) => r.startsWith('-D KUBE-SERVICES')), 'rules of chains IPVS mode flushes anyway are not deleted one by one');

  const { services, slices } = table();
  const text = iptablesRestoreText(renderIpvs(stateOf(services, slices).state, opts), [], left);
  const svcChain = nat.find((c) => c.startsWith('KUBE-SVC-'))!;
  t.ok(text.indexOf(`:${svcChain} - [0:0]`) < text.indexOf(`-X ${svcChain}`), 'flushed, then deleted');
  t.match(text, /\*mangle\n:KUBE-PROXY-CANARY - \[0:0\]\n-X KUBE-PROXY-CANARY\nCOMMIT/);
  t.same(iptablesModeLeftovers(parseIptablesSave(iptablesRestoreText(renderIpvs(stateOf(services, slices).state, opts)).replace(/^-I (\S+) 1 /gm, '-A $1 '))).chains.size, 0, 'IPVS mode leaves nothing to clean');
});

t.test('mode switch ipvs → iptables: IPVS-only leftovers go, shared chains stay', async (t) => {
  const k = fakeKernel();
  await k.kernel.newService({ address: '10.96.0.10', protocol: 'TCP', port: 80, scheduler: 'rr', flags: 0, timeout: 0 });
  const { services, slices } = table();
  const ipvsText = iptablesRestoreText(renderIpvs(stateOf(services, slices).state, opts), IPVS_JUMP_RULES);
  const restored: string[] = [];
  const iptables: IptablesPort = { restore: async (x) => void restored.push(x), save: async () => ipvsText.replace(/^-I (\S+) 1 /gm, '-A $1 '), chainExists: async () => true };
  const destroyed: string[] = [];
  const ipset: IpsetPort = {
    save: async () => new Map([['KUBE-CLUSTER-IP', { type: 'hash:ip,port', entries: new Set(['10.96.0.10,tcp:80']) }]]),
    restore: async () => undefined,
    destroy: async (names) => void destroyed.push(...names),
  };
  const b = new IpvsBackend({ family: 'IPv4', masqueradeBit: 14, masqueradeAll: false, kernel: k.kernel, ipset, iptables, logger: quiet });
  t.ok((await b.cleanupIpvsOnlyLeftovers()) > 0);
  t.equal(k.services.size, 0, 'virtual servers flushed');
  t.same(destroyed, ['KUBE-CLUSTER-IP'], 'ipsets destroyed');
  const text = restored.join('');
  t.match(text, /-D INPUT -m comment --comment "kubernetes health check rules" -j KUBE-NODE-PORT/, 'jump to the IPVS-only chain deleted');
  t.match(text, /-X KUBE-NODE-PORT\n/);
  t.match(text, /-X KUBE-LOAD-BALANCER\n/);
  t.notMatch(text, /-X KUBE-(SERVICES|POSTROUTING|MARK-MASQ|FORWARD)\n/, 'chains iptables mode uses too are left to it');
  t.match(text, /-D KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT/, 'a jump still present in a shared chain is deleted too (else -X fails)');
});

t.test('config: --ipvs-scheduler and ipvs.scheduler', async (t) => {
  const noFile = { readFile: (): string => '' };
  t.equal(parseProxyArgs([], noFile).ipvsScheduler, 'rr', 'default rr');
  t.equal(parseProxyArgs(['--proxy-mode', 'ipvs', '--ipvs-scheduler', 'lc'], noFile).ipvsScheduler, 'lc');
  const file = 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  scheduler: sh\n';
  t.equal(parseProxyArgs(['--config', '/f'], { readFile: () => file }).ipvsScheduler, 'sh', 'from the config file');
  let problems: unknown;
  try {
    parseProxyArgs(['--ipvs-scheduler', 'r r; rm'], noFile);
  } catch (err) {
    if (isKnodeError(err, 'PROXY_CONFIG_INVALID')) problems = err.details?.problems;
  }
  t.match(problems, [/IPVS scheduler "r r; rm" is not a scheduler name/], 'bad scheduler names are rejected');
});

t.test('selection: ipvs in the backend map; the probe decides', async (t) => {
  t.ok(isProxyMode('ipvs'));
  t.equal(backends.ipvs({ family: 'IPv4', masqueradeBit: 14, masqueradeAll: false, logger: quiet }).mode, 'ipvs');
  const lines: string[] = [];
  const logger = createLogger({ component: 'test', write: (l) => lines.push(l) });
  t.equal(await resolveMode('ipvs', { logger, probe: async () => ({ available: true, reason: 'test' }) }), 'ipvs');
  t.equal(await resolveMode('ipvs', { logger, probe: async () => ({ available: false, reason: 'no family' }) }), 'iptables');
  t.match(lines.join('\n'), /IPVS is not available in this kernel \(no family\): falling back to iptables mode/);
});

import t from 'tap';
import {
  containerAddresses,
  dnatChain,
  dnatChainName,
  dnatComment,
  formatChainName,
  mappedContainers,
  parsePortmapConf,
  planTeardown,
  renderPortmap,
  splitRuleLine,
  staleUdpConntrackDeletes,
} from '../../cni/portmap.js';
import type { PortMapping } from '../../cni/portmap.js';
import { CniError } from '../../cni/types.js';
import type { JsonObject } from '../../cni/types.js';
import { parseIpNet } from '../../cni/ip.js';

const pm = (mappings: unknown[], over: Record<string, unknown> = {}): JsonObject =>
  ({ name: 'knode-t-pm', runtimeConfig: { portMappings: mappings }, ...over }) as JsonObject;

t.test('chain names are the reference ones', async (t) => {
  // Read off the reference /usr/lib/cni/portmap (containernetworking-plugins 1.1.1): network
  // "knode-t-pm", container ID "ctr-ref" → this chain (the integration test re-checks it live).
  t.equal(dnatChainName('knode-t-pm', 'ctr-ref'), 'CNI-DN-95d59c4eb3ecea76b5ab7');
  t.equal(dnatChainName('a', 'b').length, 28);
  t.match(formatChainName('a', 'b', 'SN-'), /^CNI-SN-[0-9a-f]{21}$/);
  t.match(formatChainName('a', 'b'), /^CNI-[0-9a-f]{24}$/);
  t.equal(dnatComment('net', 'id1'), 'dnat name: "net" id: "id1"');
  const long = dnatComment('n', 'x'.repeat(300));
  t.equal(long.length, 256);
  t.ok(long.endsWith('...'));
});

t.test('config defaults, options and errors', async (t) => {
  const c = parsePortmapConf(pm([{ hostPort: 18080, containerPort: 8080, protocol: 'TCP' }, { hostPort: 53, containerPort: 53 }]));
  t.same(c, {
    snat: true,
    markMasqBit: 13,
    externalSetMarkChain: undefined,
    masqAll: false,
    conditionsV4: undefined,
    conditionsV6: undefined,
    mappings: [
      { hostPort: 18080, containerPort: 8080, protocol: 'tcp', hostIP: '' },
      { hostPort: 53, containerPort: 53, protocol: 'tcp', hostIP: '' },
    ],
  });
  t.same(parsePortmapConf({ name: 'n' }).mappings, [], 'no runtimeConfig: no mappings');
  // containerd 1.6 (go-cni) sends its struct's Go field names; Go's JSON matching is case-insensitive.
  t.same(
    parsePortmapConf(pm([{ HostPort: 18080, ContainerPort: 8080, Protocol: 'tcp', HostIP: '' }])).mappings,
    [{ hostPort: 18080, containerPort: 8080, protocol: 'tcp', hostIP: '' }],
    'go-cni field names',
  );
  const cases: [string, JsonObject][] = [
    ['markMasqBit and externalSetMarkChain', pm([], { markMasqBit: 14, externalSetMarkChain: 'KUBE-MARK-MASQ' })],
    ['markMasqBit 32', pm([], { markMasqBit: 32 })],
    ['markMasqBit -1', pm([], { markMasqBit: -1 })],
    ['hostPort 0', pm([{ hostPort: 0, containerPort: 80 }])],
    ['containerPort -1', pm([{ hostPort: 80, containerPort: -1 }])],
    ['hostPort 70000', pm([{ hostPort: 70000, containerPort: 80 }])],
    ['protocol icmp', pm([{ hostPort: 80, containerPort: 80, protocol: 'icmp' }])],
    ['bad hostIP', pm([{ hostPort: 80, containerPort: 80, hostIP: 'x' }])],
    ['bad chain name', pm([], { externalSetMarkChain: 'a b' })],
    ['conditions not strings', pm([], { conditionsV4: [1] })],
    ['snat string', pm([], { snat: 'yes' })],
  ];
  for (const [what, conf] of cases) {
    t.throws(() => parsePortmapConf(conf), CniError, what);
    try {
      parsePortmapConf(conf);
    } catch (err) {
      t.equal((err as CniError).cniCode, 7, `${what} → 7`);
    }
  }
});

t.test('container addresses from prevResult', async (t) => {
  const prev = {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'cni0' }, { name: 'veth1' }, { name: 'eth0', sandbox: '/run/netns/x' }, { name: 'net1', sandbox: '/run/netns/x' }],
    ips: [
      { address: '10.9.9.9/24', interface: 0 },
      { address: '10.1.0.5/24', interface: 2 },
      { address: '10.1.0.6/24', interface: 2 },
      { address: '10.2.0.5/24', interface: 3 },
      { address: 'fd00::5/64', interface: 2 },
      { address: '10.3.0.1/24' },
    ],
  };
  t.same(containerAddresses(prev, 'eth0').map((a) => `${a.ip.family}`), ['4', '6']);
  const [v4, v6] = containerAddresses(prev, 'eth0');
  t.same(v4, parseIpNet('10.1.0.5/24'));
  t.same(v6, parseIpNet('fd00::5/64'));
  t.same(containerAddresses({ cniVersion: '1.0.0', ips: [{ address: '10.3.0.1/24' }] }, 'eth0'), [parseIpNet('10.3.0.1/24')]);
});

t.test('rendered rules are the reference layout', async (t) => {
  const conf = parsePortmapConf(
    pm([
      { hostPort: 18080, containerPort: 8080, protocol: 'tcp' },
      { hostPort: 18081, containerPort: 81, protocol: 'udp', hostIP: '10.77.0.1' },
      { hostPort: 18082, containerPort: 82, protocol: 'tcp', hostIP: 'fd00::1' },
      { hostPort: 18083, containerPort: 83, protocol: 'tcp', hostIP: '0.0.0.0' },
    ]),
  );
  const addr = parseIpNet('10.77.0.5/24')!;
  const chains = renderPortmap(conf, 'knode-t-pm', 'ctr-ref', addr);
  t.same(
    chains.map((c) => c.name),
    ['CNI-HOSTPORT-SETMARK', 'CNI-HOSTPORT-MASQ', 'CNI-HOSTPORT-DNAT', 'CNI-DN-95d59c4eb3ecea76b5ab7'],
  );
  t.same(chains[0]!.rules, [['-m', 'comment', '--comment', 'CNI portfwd masquerade mark', '-j', 'MARK', '--set-xmark', '0x2000/0x2000']]);
  t.same(chains[1]!.rules, [['-m', 'mark', '--mark', '0x2000/0x2000', '-j', 'MASQUERADE']]);
  t.same(chains[1]!.entryChains, ['POSTROUTING']);
  t.equal(chains[1]!.prependEntry, true);
  t.same(chains[2]!.entryChains, ['PREROUTING', 'OUTPUT']);
  t.same(chains[2]!.entryRules, [['-m', 'addrtype', '--dst-type', 'LOCAL']]);
  const dn = chains[3]!;
  const comment = 'dnat name: "knode-t-pm" id: "ctr-ref"';
  t.same(dn.entryChains, ['CNI-HOSTPORT-DNAT']);
  t.same(dn.entryRules, [
    ['-m', 'comment', '--comment', comment, '-m', 'multiport', '-p', 'tcp', '--destination-ports', '18080,18082,18083'],
    ['-m', 'comment', '--comment', comment, '-m', 'multiport', '-p', 'udp', '--destination-ports', '18081'],
  ]);
  t.same(dn.rules, [
    ['-p', 'tcp', '--dport', '18080', '-s', '10.77.0.5/24', '-j', 'CNI-HOSTPORT-SETMARK'],
    ['-p', 'tcp', '--dport', '18080', '-s', '127.0.0.1', '-j', 'CNI-HOSTPORT-SETMARK'],
    ['-p', 'tcp', '--dport', '18080', '-j', 'DNAT', '--to-destination', '10.77.0.5:8080'],
    ['-p', 'udp', '--dport', '18081', '-d', '10.77.0.1', '-s', '10.77.0.5/24', '-j', 'CNI-HOSTPORT-SETMARK'],
    ['-p', 'udp', '--dport', '18081', '-d', '10.77.0.1', '-s', '127.0.0.1', '-j', 'CNI-HOSTPORT-SETMARK'],
    ['-p', 'udp', '--dport', '18081', '-d', '10.77.0.1', '-j', 'DNAT', '--to-destination', '10.77.0.5:81'],
    // the v6 hostIP is skipped for a v4 container address; 0.0.0.0 adds no -d
    ['-p', 'tcp', '--dport', '18083', '-s', '10.77.0.5/24', '-j', 'CNI-HOSTPORT-SETMARK'],
    ['-p', 'tcp', '--dport', '18083', '-s', '127.0.0.1', '-j', 'CNI-HOSTPORT-SETMARK'],
    ['-p', 'tcp', '--dport', '18083', '-j', 'DNAT', '--to-destination', '10.77.0.5:83'],
  ]);

  const v6 = dnatChain(conf, 'knode-t-pm', 'ctr-ref', parseIpNet('fd00::5/64')!);
  t.same(v6.rules, [
    ['-p', 'tcp', '--dport', '18080', '-s', 'fd00::5/64', '-j', 'CNI-HOSTPORT-SETMARK'],
    ['-p', 'tcp', '--dport', '18080', '-j', 'DNAT', '--to-destination', '[fd00::5]:8080'],
    ['-p', 'tcp', '--dport', '18082', '-d', 'fd00::1', '-s', 'fd00::5/64', '-j', 'CNI-HOSTPORT-SETMARK'],
    ['-p', 'tcp', '--dport', '18082', '-d', 'fd00::1', '-j', 'DNAT', '--to-destination', '[fd00::5]:82'],
  ]);
});

t.test('options: snat off, masqAll, external mark chain, mark bit, conditions, >15 ports', async (t) => {
  const addr = parseIpNet('10.1.0.5/24')!;
  const m = [{ hostPort: 80, containerPort: 8080 }];
  const off = parsePortmapConf(pm(m, { snat: false }));
  t.same(renderPortmap(off, 'n', 'c', addr).map((c) => c.name), ['CNI-HOSTPORT-DNAT', dnatChainName('n', 'c')]);
  t.same(dnatChain(off, 'n', 'c', addr).rules, [['-p', 'tcp', '--dport', '80', '-j', 'DNAT', '--to-destination', '10.1.0.5:8080']]);
  const all = dnatChain(parsePortmapConf(pm(m, { masqAll: true })), 'n', 'c', addr);
  t.same(all.rules.map((r) => r.join(' ')), ['-p tcp --dport 80 -s 0.0.0.0/0 -j CNI-HOSTPORT-SETMARK', '-p tcp --dport 80 -j DNAT --to-destination 10.1.0.5:8080']);
  const ext = parsePortmapConf(pm(m, { externalSetMarkChain: 'KUBE-MARK-MASQ' }));
  t.same(renderPortmap(ext, 'n', 'c', addr).length, 2, 'no own SETMARK/MASQ chains');
  t.equal(dnatChain(ext, 'n', 'c', addr).rules[0]!.at(-1), 'KUBE-MARK-MASQ');
  const bit = renderPortmap(parsePortmapConf(pm(m, { markMasqBit: 31 })), 'n', 'c', addr);
  t.equal(bit[0]!.rules[0]!.at(-1), '0x80000000/0x80000000');
  const cond = dnatChain(parsePortmapConf(pm(m, { conditionsV4: ['!', '-d', '192.168.0.0/16'] })), 'n', 'c', addr);
  t.same(cond.entryRules[0]!.slice(-3), ['!', '-d', '192.168.0.0/16']);
  const many = Array.from({ length: 17 }, (_, i) => ({ hostPort: 1000 + i, containerPort: 80 }));
  const split = dnatChain(parsePortmapConf(pm(many)), 'n', 'c', addr);
  t.same(
    split.entryRules.map((r) => r.at(-1)),
    [Array.from({ length: 15 }, (_, i) => 1000 + i).join(','), '1015,1016'],
    'multiport takes at most 15 ports',
  );
});

t.test('iptables -S lines split and teardown planning', async (t) => {
  t.same(splitRuleLine('-A X -m comment --comment "dnat name: \\"n\\" id: \\"c\\"" -j Y'), [
    '-A',
    'X',
    '-m',
    'comment',
    '--comment',
    'dnat name: "n" id: "c"',
    '-j',
    'Y',
  ]);
  t.same(splitRuleLine('-A X --comment ""  -j Y'), ['-A', 'X', '--comment', '', '-j', 'Y']);
  const chain = dnatChainName('knode-t-pm', 'ctr-ref');
  const other = dnatChainName('knode-t-pm', 'other');
  const listing = [
    '-P PREROUTING ACCEPT',
    `-N ${chain}`,
    '-N CNI-HOSTPORT-DNAT',
    `-N ${other}`,
    '-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT',
    `-A ${chain} -p tcp -m tcp --dport 18080 -j DNAT --to-destination 10.77.0.5:8080`,
    `-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"knode-t-pm\\" id: \\"ctr-ref\\"" -m multiport --dports 18080 -j ${chain}`,
    `-A CNI-HOSTPORT-DNAT -p udp -m comment --comment "dnat name: \\"knode-t-pm\\" id: \\"ctr-ref\\"" -m multiport --dports 18081 -j ${chain}`,
    `-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"knode-t-pm\\" id: \\"other\\"" -m multiport --dports 9 -j ${other}`,
  ].join('\n');
  const plan = planTeardown(listing, [chain, formatChainName('knode-t-pm', 'ctr-ref', 'SN-')]);
  t.same(plan.chains, [chain]);
  t.same(plan.deletes, [
    ['CNI-HOSTPORT-DNAT', '-p', 'tcp', '-m', 'comment', '--comment', 'dnat name: "knode-t-pm" id: "ctr-ref"', '-m', 'multiport', '--dports', '18080', '-j', chain],
    ['CNI-HOSTPORT-DNAT', '-p', 'udp', '-m', 'comment', '--comment', 'dnat name: "knode-t-pm" id: "ctr-ref"', '-m', 'multiport', '--dports', '18081', '-j', chain],
  ]);
  t.same(planTeardown('-P PREROUTING ACCEPT\n', [chain]), { deletes: [], chains: [] }, 'nothing there: nothing to do');
});

t.test('GC finds the containers of a network by the jump comments', async (t) => {
  const line = (net: string, id: string, port: number): string =>
    `-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"${net}\\" id: \\"${id}\\"" -m multiport --dports ${port} -j ${dnatChainName(net, id)}`;
  const listing = ['-N CNI-HOSTPORT-DNAT', line('n1', 'a', 1), line('n1', 'a', 2), line('n1', 'b', 3), line('n2', 'c', 4), '-A PREROUTING -j CNI-HOSTPORT-DNAT'].join('\n');
  t.same(mappedContainers(listing, 'n1'), ['a', 'b']);
  t.same(mappedContainers(listing, 'n2'), ['c']);
  t.same(mappedContainers(listing, 'n3'), []);
});

t.test('stale UDP conntrack deletes: one per UDP hostPort, in the address family', async (t) => {
  const m = (hostPort: number, protocol: string): PortMapping => ({ hostPort, containerPort: 1, protocol, hostIP: '' });
  t.same(staleUdpConntrackDeletes([m(53, 'udp'), m(53, 'udp'), m(80, 'tcp'), m(5353, 'udp')], 4), [
    ['-D', '-f', 'ipv4', '-p', 'udp', '--orig-port-dst', '53'],
    ['-D', '-f', 'ipv4', '-p', 'udp', '--orig-port-dst', '5353'],
  ]);
  t.same(staleUdpConntrackDeletes([m(53, 'udp')], 6), [['-D', '-f', 'ipv6', '-p', 'udp', '--orig-port-dst', '53']]);
  t.same(staleUdpConntrackDeletes([m(80, 'tcp'), m(9, 'sctp')], 4), []);
});

// The overlay's pure renders: flannel annotations, vxlan peers and the neigh/fdb/route plan,
// host-gw routes, subnet.env, the conflist, the masquerade rules, the NetworkUnavailable patch,
// and the overlay flags/config keys.
import t from 'tap';
import type { V1Node } from '@kubernetes/client-node';
import { annotationKeys, annotationsPatch, flannelPeers, podCIDRv4, renderAnnotations } from '../../agent/network/overlay/annotations.js';
import { describeVxlanOp, parseVxlanBackendData, planVxlan, renderVxlanState, vxlanPeers } from '../../agent/network/overlay/vxlan/render.js';
import type { VxlanState } from '../../agent/network/overlay/vxlan/render.js';
import { hostGwRoutes, routeChanges } from '../../agent/network/overlay/host-gw/render.js';
import { vxlanIncompatibility } from '../../agent/network/overlay/vxlan/backend.js';
import { renderSubnetEnv } from '../../agent/network/subnet-env.js';
import { renderConflist } from '../../agent/network/cni-config.js';
import { missingJumps, renderMasqRules } from '../../agent/network/masq.js';
import { networkConditionPatch, networkDown, networkUp } from '../../agent/network/condition.js';
import { parseSubnetEnv, renderDelegate, parseFlannelConf } from '../../cni/flannel.js';
import { resolveConfig } from '../../agent/config/index.js';
import { parseFlags } from '../../agent/config/flags.js';
import { parseConfigFile } from '../../agent/config/file.js';
import { parseIp, parseIpNet } from '../../lib/netlink/ip.js';
import type { Ip, IpNet } from '../../lib/netlink/ip.js';
import type { JsonObject } from '../../cni/types.js';

const ip = (s: string): Ip => parseIp(s)!;
const net = (s: string): IpNet => parseIpNet(s)!;

function node(name: string, o: { cidr?: string; ip?: string; type?: string; data?: unknown; rawData?: string }): V1Node {
  const annotations: Record<string, string> = {};
  if (o.type !== undefined) annotations[annotationKeys.backendType] = o.type;
  if (o.rawData !== undefined) annotations[annotationKeys.backendData] = o.rawData;
  else if (o.data !== undefined) annotations[annotationKeys.backendData] = JSON.stringify(o.data);
  if (o.ip !== undefined) annotations[annotationKeys.publicIP] = o.ip;
  return {
    metadata: { name, annotations },
    spec: o.cidr === undefined ? {} : { podCIDR: o.cidr, podCIDRs: [o.cidr] },
    status: { addresses: o.ip === undefined ? [] : [{ type: 'InternalIP', address: o.ip }] },
  };
}

const macA = '0a:00:00:00:00:0a';
const macB = '0a:00:00:00:00:0b';
const macC = '0a:00:00:00:00:0c';

t.test('annotations: flannel keys and values; patch only what differs', async (t) => {
  const a = renderAnnotations({ backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: macA }, publicIP: '172.31.0.11' });
  t.same(a, {
    'flannel.alpha.coreos.com/backend-data': `{"VNI":1,"VtepMAC":"${macA}"}`,
    'flannel.alpha.coreos.com/backend-type': 'vxlan',
    'flannel.alpha.coreos.com/kube-subnet-manager': 'true',
    'flannel.alpha.coreos.com/public-ip': '172.31.0.11',
  });
  t.equal(renderAnnotations({ backendType: 'host-gw', backendData: null, publicIP: '1.2.3.4' })['flannel.alpha.coreos.com/backend-data'], 'null', 'host-gw: null as flannel');
  const n: V1Node = { metadata: { name: 'x', annotations: { ...a, other: 'kept' } } };
  t.equal(annotationsPatch(n, a), undefined, 'nothing to patch');
  t.same(annotationsPatch(n, { ...a, [annotationKeys.publicIP]: '172.31.0.99' }), { [annotationKeys.publicIP]: '172.31.0.99' });
  t.same(annotationsPatch(undefined, a), a);
});

t.test('flannelPeers: complete, other nodes only; subnet normalised', async (t) => {
  const nodes = [
    node('node-1', { cidr: '10.244.0.0/24', ip: '172.31.0.11', type: 'vxlan', data: { VNI: 1, VtepMAC: macA } }),
    node('node-3', { cidr: '10.244.2.7/24', ip: '172.31.0.13', type: 'vxlan', data: { VNI: 1, VtepMAC: macC } }),
    node('node-2', { cidr: '10.244.1.0/24', ip: '172.31.0.12', type: 'vxlan', data: { VNI: 1, VtepMAC: macB } }),
    node('no-cidr', { ip: '172.31.0.14', type: 'vxlan', data: { VNI: 1, VtepMAC: macB } }),
    node('no-ip', { cidr: '10.244.4.0/24', type: 'vxlan' }),
    node('no-type', { cidr: '10.244.5.0/24', ip: '172.31.0.15' }),
    node('v6-only', { cidr: 'fd00::/64', ip: '172.31.0.16', type: 'vxlan' }),
  ];
  const peers = flannelPeers(nodes, 'node-1');
  t.same(peers.map((p) => p.node), ['node-2', 'node-3']);
  t.equal(peers[1]!.subnet.ip.value, ip('10.244.2.0').value, 'host bits cleared');
  t.equal(podCIDRv4({ spec: { podCIDRs: ['fd00::/64', '10.244.9.0/24'] } }), '10.244.9.0/24', 'the IPv4 one of a dual-stack node');
});

t.test('vxlan peers: backend-type vxlan, valid backend-data, same VNI', async (t) => {
  t.same(parseVxlanBackendData({ VNI: 1, VtepMAC: 'AA:BB:CC:DD:EE:FF' }), { VNI: 1, VtepMAC: 'aa:bb:cc:dd:ee:ff' });
  t.equal(parseVxlanBackendData({ VNI: 1, VtepMAC: 'nope' }), undefined);
  t.equal(parseVxlanBackendData(null), undefined);
  const nodes = [
    node('node-1', { cidr: '10.244.0.0/24', ip: '172.31.0.11', type: 'vxlan', data: { VNI: 1, VtepMAC: macA } }),
    node('node-2', { cidr: '10.244.1.0/24', ip: '172.31.0.12', type: 'vxlan', data: { VNI: 1, VtepMAC: macB } }),
    node('gw', { cidr: '10.244.2.0/24', ip: '172.31.0.13', type: 'host-gw', data: null }),
    node('vni2', { cidr: '10.244.3.0/24', ip: '172.31.0.14', type: 'vxlan', data: { VNI: 2, VtepMAC: macC } }),
    node('garbage', { cidr: '10.244.4.0/24', ip: '172.31.0.15', type: 'vxlan', rawData: '{not json' }),
  ];
  const peers = vxlanPeers(nodes, 'node-1');
  t.same(peers.map((p) => p.node), ['node-2']);
  const st = renderVxlanState(peers);
  t.same(st.neighbours.map((n) => [n.ip.value, n.mac]), [[ip('10.244.1.0').value, macB]], 'neighbour: subnet .0 -> VtepMAC');
  t.same(st.fdb.map((f) => [f.mac, f.dst.value]), [[macB, ip('172.31.0.12').value]], 'fdb: VtepMAC -> public-ip');
  t.same(st.routes.map((r) => [r.dst.ip.value, r.dst.prefix, r.gw.value]), [[ip('10.244.1.0').value, 24, ip('10.244.1.0').value]], 'route: subnet via .0');
});

t.test('planVxlan: neigh, fdb, route in order; nothing when in place; removal of a gone node', async (t) => {
  const two = [
    node('node-2', { cidr: '10.244.1.0/24', ip: '172.31.0.12', type: 'vxlan', data: { VNI: 1, VtepMAC: macB } }),
    node('node-3', { cidr: '10.244.2.0/24', ip: '172.31.0.13', type: 'vxlan', data: { VNI: 1, VtepMAC: macC } }),
  ];
  const empty: VxlanState = { neighbours: [], fdb: [], routes: [] };
  const add = planVxlan(empty, vxlanPeers(two, 'node-1'));
  t.same(add.map(describeVxlanOp), [
    `set-neigh 10.244.1.0 lladdr ${macB}`,
    `set-fdb ${macB} dst 172.31.0.12`,
    'set-route 10.244.1.0/24 via 10.244.1.0 onlink',
    `set-neigh 10.244.2.0 lladdr ${macC}`,
    `set-fdb ${macC} dst 172.31.0.13`,
    'set-route 10.244.2.0/24 via 10.244.2.0 onlink',
  ]);
  const inPlace = renderVxlanState(vxlanPeers(two, 'node-1'));
  t.same(planVxlan(inPlace, vxlanPeers(two, 'node-1')), [], 'idempotent: nothing to do');
  const gone = planVxlan(inPlace, vxlanPeers([two[0]!], 'node-1'));
  t.same(gone.map(describeVxlanOp), ['del-route 10.244.2.0/24 via 10.244.2.0 onlink', `del-fdb ${macC} dst 172.31.0.13`, `del-neigh 10.244.2.0 lladdr ${macC}`], 'node-3 left');
  // node-2 moved to another underlay IP: the stale FDB destination goes, the three entries are replaced.
  const moved = [node('node-2', { cidr: '10.244.1.0/24', ip: '172.31.0.22', type: 'vxlan', data: { VNI: 1, VtepMAC: macB } })];
  const plan = planVxlan(renderVxlanState(vxlanPeers([two[0]!], 'node-1')), vxlanPeers(moved, 'node-1'));
  t.same(plan.map(describeVxlanOp), [`del-fdb ${macB} dst 172.31.0.12`, `set-neigh 10.244.1.0 lladdr ${macB}`, `set-fdb ${macB} dst 172.31.0.22`, 'set-route 10.244.1.0/24 via 10.244.1.0 onlink']);
});

t.test('vxlanIncompatibility: keep a compatible device, recreate an incompatible one', async (t) => {
  const base = { index: 5, name: 'flannel.1', kind: 'vxlan', mtu: 1450, mac: macA, up: true, promisc: false, master: undefined, peerIndex: undefined, linkNetnsid: undefined };
  const want = { vni: 1, port: 8472, local: '172.31.0.11', vtepIndex: 2 };
  t.equal(vxlanIncompatibility({ ...base, vxlan: { vni: 1, port: 8472, local: ip('172.31.0.11'), vtepIndex: 2, learning: false } }, want), undefined);
  t.match(vxlanIncompatibility({ ...base, vxlan: { vni: 2, port: 8472, local: ip('172.31.0.11'), vtepIndex: 2, learning: false } }, want), /vni/);
  t.match(vxlanIncompatibility({ ...base, vxlan: { vni: 1, port: 4789, local: ip('172.31.0.11'), vtepIndex: 2, learning: false } }, want), /port/);
  t.match(vxlanIncompatibility({ ...base, vxlan: { vni: 1, port: 8472, local: ip('172.31.0.12'), vtepIndex: 2, learning: false } }, want), /local/);
  t.match(vxlanIncompatibility({ ...base, kind: 'bridge', vxlan: undefined }, want), /link type bridge/);
});

t.test('host-gw: a route per other host-gw node; replace new/moved, remove gone', async (t) => {
  const nodes = [
    node('node-1', { cidr: '10.244.0.0/24', ip: '172.31.0.11', type: 'host-gw', data: null }),
    node('node-3', { cidr: '10.244.2.0/24', ip: '172.31.0.13', type: 'host-gw', data: null }),
    node('node-2', { cidr: '10.244.1.0/24', ip: '172.31.0.12', type: 'host-gw', data: null }),
    node('vx', { cidr: '10.244.3.0/24', ip: '172.31.0.14', type: 'vxlan', data: { VNI: 1, VtepMAC: macA } }),
    node('bare', { cidr: '10.244.4.0/24' }),
  ];
  t.same(hostGwRoutes(nodes, 'node-1'), [
    { dst: '10.244.1.0/24', via: '172.31.0.12', node: 'node-2' },
    { dst: '10.244.2.0/24', via: '172.31.0.13', node: 'node-3' },
  ]);
  const current = [
    { dst: '10.244.1.0/24', via: '172.31.0.12' },
    { dst: '10.244.2.0/24', via: '172.31.0.13' },
    { dst: '10.244.3.0/24', via: '172.31.0.14' },
  ];
  const desired = [
    { dst: '10.244.1.0/24', via: '172.31.0.12' },
    { dst: '10.244.2.0/24', via: '172.31.0.23' },
    { dst: '10.244.5.0/24', via: '172.31.0.15' },
  ];
  t.same(routeChanges(current, desired), {
    replace: [
      { dst: '10.244.2.0/24', via: '172.31.0.23' },
      { dst: '10.244.5.0/24', via: '172.31.0.15' },
    ],
    remove: [{ dst: '10.244.3.0/24', via: '172.31.0.14' }],
  });
  t.same(routeChanges(desired, desired), { replace: [], remove: [] });
});

t.test('subnet.env: flanneld\'s format, read back by knode-flannel', async (t) => {
  const text = renderSubnetEnv({ network: net('10.244.0.0/16'), subnet: net('10.244.1.0/24'), mtu: 1450, ipMasq: true });
  t.equal(text, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
  const se = parseSubnetEnv(text);
  t.equal(se.mtu, 1450);
  t.equal(se.ipMasq, true);
  t.equal(se.subnet?.ip.value, ip('10.244.1.0').value, 'the plugin sees the subnet');
});

t.test('conflist: knode-flannel (bridge + host-local delegate) and knode-portmap', async (t) => {
  const text = renderConflist({ subnetFile: '/run/knode-lab/node-1/flannel/subnet.env', rootDir: '/var/lib/knode' });
  const c = JSON.parse(text) as { name: string; cniVersion: string; plugins: JsonObject[] };
  t.equal(c.name, 'knode');
  t.same(c.plugins.map((p) => p.type), ['knode-flannel', 'knode-portmap']);
  t.match(c.plugins[0], { subnetFile: '/run/knode-lab/node-1/flannel/subnet.env', dataDir: '/var/lib/knode/cni/flannel', ipam: { dataDir: '/var/lib/knode/cni/networks' } });
  t.same(c.plugins[1]?.capabilities, { portMappings: true });
  t.equal(renderConflist({ subnetFile: '/run/knode-lab/node-1/flannel/subnet.env', rootDir: '/var/lib/knode' }), text, 'stable');
  // What knode-flannel makes of it with the agent's subnet file: bridge + host-local on the lease.
  const se = parseSubnetEnv(renderSubnetEnv({ network: net('10.244.0.0/16'), subnet: net('10.244.1.0/24'), mtu: 1450, ipMasq: true }));
  const d = renderDelegate(parseFlannelConf(c.plugins[0]!), c.name, c.cniVersion, se);
  t.match(d, { type: 'knode-bridge', isGateway: true, isDefaultGateway: true, hairpinMode: true, ipMasq: false, mtu: 1450 });
  t.match(d.ipam, { type: 'knode-host-local', dataDir: '/var/lib/knode/cni/networks', ranges: [[{ subnet: '10.244.1.0/24' }]], routes: [{ dst: '10.244.0.0/16' }] });
});

t.test('masquerade rules: flannel\'s chains; jumps only when missing', async (t) => {
  const text = renderMasqRules({ clusterCIDR: net('10.244.0.0/16'), podCIDR: net('10.244.1.0/24'), jumps: { masq: true, forward: true } });
  t.equal(
    text,
    [
      '*nat',
      ':FLANNEL-POSTRTG - [0:0]',
      '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
      '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
      '-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN',
      '-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN',
      '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN',
      '-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
      '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
      'COMMIT',
      '*filter',
      ':FLANNEL-FWD - [0:0]',
      '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
      '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
      '-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
      'COMMIT',
      '',
    ].join('\n'),
  );
  t.notMatch(renderMasqRules({ clusterCIDR: net('10.244.0.0/16'), podCIDR: net('10.244.1.0/24'), jumps: { masq: false, forward: false } }), /-A POSTROUTING|-A FORWARD/);
  const saved = '*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG\nCOMMIT\n*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n';
  t.same(missingJumps(saved), { masq: false, forward: true });
  t.same(missingJumps(''), { masq: true, forward: true });
});

t.test('NetworkUnavailable: patched when it differs; transition time kept', async (t) => {
  const now = new Date('2026-01-01T00:00:00Z');
  const p = networkConditionPatch(undefined, networkUp, now);
  t.match(p?.status.conditions[0], { type: 'NetworkUnavailable', status: 'False', reason: 'FlannelIsUp', message: 'Flannel is running on this node', lastTransitionTime: now.toISOString() });
  const up: V1Node = { status: { conditions: [{ type: 'NetworkUnavailable', status: 'False', reason: 'FlannelIsUp', message: 'Flannel is running on this node', lastTransitionTime: new Date('2025-01-01T00:00:00Z') }] } };
  t.equal(networkConditionPatch(up, networkUp, now), undefined, 'already so: no patch');
  const down = networkConditionPatch(up, networkDown('boom'), now);
  t.match(down?.status.conditions[0], { status: 'True', reason: 'NetworkPluginNotReady', message: /boom/, lastTransitionTime: now.toISOString() });
});

t.test('flags and config file: --overlay-backend, --cluster-cidr, --flannel-subnet-file', async (t) => {
  const d = resolveConfig({ argv: [], hostname: 'h' });
  if (d.help) throw new Error('unexpected help');
  t.equal(d.config.overlayBackend, 'vxlan', 'vxlan by default');
  t.equal(d.config.clusterCIDR, '10.244.0.0/16');
  t.equal(d.config.flannelSubnetFile, '/run/flannel/subnet.env');
  const c = resolveConfig({ argv: ['--overlay-backend=host-gw', '--cluster-cidr', '10.100.3.4/16', '--flannel-subnet-file=/x/subnet.env'], hostname: 'h' });
  if (c.help) throw new Error('unexpected help');
  t.equal(c.config.overlayBackend, 'host-gw');
  t.equal(c.config.clusterCIDR, '10.100.0.0/16', 'normalised');
  t.equal(c.config.flannelSubnetFile, '/x/subnet.env');
  t.match(parseFlags(['--overlay-backend=geneve']).problems, [/--overlay-backend: "geneve" is not one of vxlan, host-gw, none/]);
  t.match(parseFlags(['--cluster-cidr=fd00::/64']).problems, [/not an IPv4 CIDR/]);
  t.match(parseFlags(['--flannel-subnet-file=rel']).problems, [/absolute path/]);
  const f = parseConfigFile('overlayBackend: none\nclusterCIDR: 10.1.0.0/16\nflannelSubnetFile: /run/x.env\n');
  t.same(f.problems, []);
  t.match(f.layer, { overlayBackend: 'none', clusterCIDR: '10.1.0.0/16', flannelSubnetFile: '/run/x.env' });
  t.match(parseConfigFile('overlayBackend: udp\n').problems, [/overlayBackend: "udp" is not one of/]);
});

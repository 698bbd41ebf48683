// The overlay backends against the real kernel (root): two throw-away knode-t-* namespaces
// joined by a veth pair play two nodes on an underlay. The real vxlan backend code programs
// flannel.1 in both (device, neighbour, FDB, onlink route); ping crosses between the .0
// addresses and to a "pod" address through VXLAN; a peer that leaves loses its entries. The
// host-gw backend does the same with plain routes (proto 77), and the masquerade rules land once.
import t, { type Test } from 'tap';
import type { V1Node } from '@kubernetes/client-node';
import { createLogger } from '../../lib/log.js';
import { parseIp, parseIpNet } from '../../lib/netlink/ip.js';
import { createVxlanBackend } from '../../agent/network/overlay/vxlan/backend.js';
import { createHostGwBackend } from '../../agent/network/overlay/host-gw/backend.js';
import type { OverlayBackend, OverlayLease } from '../../agent/network/overlay/types.js';
import { masqPort } from '../../agent/network/masq.js';
import { removeOtherBackends } from '../../agent/network/overlay/index.js';
import { createNetns, deleteNetns, inNetns } from '../../cni/testing/harness.js';
import type { Netns } from '../../cni/testing/harness.js';
import { execFile } from '../../lib/exec.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const logger = createLogger({ component: 'overlay-test', level: 'warn' });

interface Pair {
  a: Netns;
  b: Netns;
}

/** Two namespaces, veth va (192.0.2.1/24) <-> vb (192.0.2.2/24), all up; removed in teardown. */
async function underlay(t: Test): Promise<Pair> {
  const a = await createNetns();
  t.teardown(() => deleteNetns(a));
  const b = await createNetns();
  t.teardown(() => deleteNetns(b));
  await execFile('ip', ['link', 'add', 'va', 'netns', a.name, 'type', 'veth', 'peer', 'name', 'vb', 'netns', b.name]);
  for (const [ns, dev, addr] of [[a, 'va', '192.0.2.1/24'], [b, 'vb', '192.0.2.2/24']] as const) {
    await inNetns(ns, 'ip', ['addr', 'add', addr, 'dev', dev], false);
    await inNetns(ns, 'ip', ['link', 'set', dev, 'up'], false);
    await inNetns(ns, 'ip', ['link', 'set', 'lo', 'up'], false);
  }
  return { a, b };
}

const leaseA: OverlayLease = { nodeName: 'node-a', subnet: parseIpNet('10.250.1.0/24')!, publicIP: parseIp('192.0.2.1')! };
const leaseB: OverlayLease = { nodeName: 'node-b', subnet: parseIpNet('10.250.2.0/24')!, publicIP: parseIp('192.0.2.2')! };

function nodeObject(name: string, cidr: string, annotations: Record<string, string>): V1Node {
  return { metadata: { name, annotations }, spec: { podCIDR: cidr, podCIDRs: [cidr] } };
}

function ping(ns: Netns, dst: string): Promise<{ code: number }> {
  return inNetns(ns, 'ping', ['-c', '1', '-W', '2', dst]);
}

async function txPackets(ns: Netns, dev: string): Promise<number> {
  const r = await inNetns(ns, 'ip', ['-s', '-j', 'link', 'show', dev], false);
  const rows = JSON.parse(r.stdout) as { stats64?: { tx?: { packets?: number } } }[];
  return rows[0]?.stats64?.tx?.packets ?? 0;
}

t.test('vxlan: flannel.1 in both nodes, ping through VXLAN, a leaving peer loses its entries', async (t) => {
  const { a, b } = await underlay(t);
  const backA: OverlayBackend = createVxlanBackend({ netnsPath: a.path, logger });
  const backB: OverlayBackend = createVxlanBackend({ netnsPath: b.path, logger });
  t.teardown(() => {
    backA.close();
    backB.close();
  });
  const upA = await backA.setUp(leaseA);
  const upB = await backB.setUp(leaseB);
  t.equal(upA.mtu, 1450, 'MTU = underlay 1500 - 50');
  t.equal(upA.annotations['flannel.alpha.coreos.com/backend-type'], 'vxlan');
  t.equal(upA.annotations['flannel.alpha.coreos.com/public-ip'], '192.0.2.1');
  const dataA = JSON.parse(upA.annotations['flannel.alpha.coreos.com/backend-data']!) as { VNI: number; VtepMAC: string };
  const dataB = JSON.parse(upB.annotations['flannel.alpha.coreos.com/backend-data']!) as { VNI: number; VtepMAC: string };
  t.equal(dataA.VNI, 1);
  const macA = (JSON.parse((await inNetns(a, 'ip', ['-j', 'link', 'show', 'flannel.1'], false)).stdout) as { address: string }[])[0]?.address;
  t.equal(dataA.VtepMAC, macA, 'VtepMAC is flannel.1\'s MAC');
  t.same(await backA.setUp(leaseA), upA, 'setUp again: same device, same MAC');

  const link = JSON.parse((await inNetns(a, 'ip', ['-d', '-j', 'link', 'show', 'flannel.1'], false)).stdout) as {
    mtu: number;
    linkinfo: { info_kind: string; info_data: { id: number; port: number; local: string; learning: boolean } };
  }[];
  t.match(link[0], { mtu: 1450, linkinfo: { info_kind: 'vxlan', info_data: { id: 1, port: 8472, local: '192.0.2.1', learning: false } } }, 'vxlan id 1 dstport 8472 local 192.0.2.1 nolearning');
  t.match((await inNetns(a, 'ip', ['-4', 'addr', 'show', 'dev', 'flannel.1'])).stdout, /inet 10\.250\.1\.0\/32/, 'address <subnet>.0/32');

  const nodes = [nodeObject('node-a', '10.250.1.0/24', upA.annotations), nodeObject('node-b', '10.250.2.0/24', upB.annotations)];
  const first = await backA.sync(leaseA, nodes);
  t.same(first.programmed, ['node-b'], 'node-a programs node-b');
  await backB.sync(leaseB, nodes);
  t.same(await backA.sync(leaseA, nodes), { programmed: [], removed: [] }, 'second sync: nothing to do');

  const neigh = (await inNetns(a, 'ip', ['neigh', 'show', 'dev', 'flannel.1'])).stdout;
  t.match(neigh, new RegExp(`10\\.250\\.2\\.0 lladdr ${dataB.VtepMAC} PERMANENT`), 'neighbour .0 -> VtepMAC, permanent');
  const fdb = (await inNetns(a, 'bridge', ['fdb', 'show', 'dev', 'flannel.1'])).stdout;
  t.match(fdb, new RegExp(`${dataB.VtepMAC} dst 192\\.0\\.2\\.2 self permanent`), 'fdb VtepMAC -> public IP');
  const routes = (await inNetns(a, 'ip', ['route', 'show', '10.250.2.0/24'])).stdout;
  t.match(routes, /10\.250\.2\.0\/24 via 10\.250\.2\.0 dev flannel\.1 onlink/, 'onlink route via .0');

  // A "pod" on node-b: an address of its subnet (on lo; no dummy module here).
  await inNetns(b, 'ip', ['addr', 'add', '10.250.2.7/32', 'dev', 'lo'], false);
  const tx0 = await txPackets(a, 'flannel.1');
  t.equal((await ping(a, '10.250.2.0')).code, 0, 'node-a pings node-b\'s flannel.1 (.0)');
  t.equal((await ping(b, '10.250.1.0')).code, 0, 'node-b pings node-a\'s flannel.1 (.0)');
  t.equal((await ping(a, '10.250.2.7')).code, 0, 'node-a pings a pod address on node-b');
  t.ok((await txPackets(a, 'flannel.1')) > tx0, 'the packets went out through flannel.1');

  // node-b leaves.
  const gone = await backA.sync(leaseA, [nodes[0]!]);
  t.equal(gone.removed.length, 3, `route, fdb and neighbour removed: ${gone.removed.join('; ')}`);
  t.notMatch((await inNetns(a, 'ip', ['neigh', 'show', 'dev', 'flannel.1'])).stdout, /10\.250\.2\.0/, 'no neighbour left');
  t.notMatch((await inNetns(a, 'bridge', ['fdb', 'show', 'dev', 'flannel.1'])).stdout, /192\.0\.2\.2/, 'no fdb entry left');
  t.equal((await inNetns(a, 'ip', ['route', 'show', '10.250.2.0/24'])).stdout.trim(), '', 'no route left');
  t.not((await ping(a, '10.250.2.7')).code, 0, 'node-b\'s pods are unreachable');

  // A device with another VNI is recreated.
  await inNetns(a, 'ip', ['link', 'del', 'flannel.1'], false);
  await inNetns(a, 'ip', ['link', 'add', 'flannel.1', 'type', 'vxlan', 'id', '7', 'dstport', '8472', 'local', '192.0.2.1'], false);
  await backA.setUp(leaseA);
  const again = JSON.parse((await inNetns(a, 'ip', ['-d', '-j', 'link', 'show', 'flannel.1'], false)).stdout) as { linkinfo: { info_data: { id: number; learning: boolean } } }[];
  t.match(again[0]?.linkinfo.info_data, { id: 1, learning: false }, 'incompatible device recreated');
});

t.test('host-gw: a proto 77 route per peer, ping across, removal when the peer leaves', async (t) => {
  const { a, b } = await underlay(t);
  const backA = createHostGwBackend({ netnsPath: a.path, logger });
  const backB = createHostGwBackend({ netnsPath: b.path, logger });
  t.teardown(() => {
    backA.close();
    backB.close();
  });
  const upA = await backA.setUp(leaseA);
  const upB = await backB.setUp(leaseB);
  t.equal(upA.mtu, 1500, 'no encapsulation: underlay MTU');
  t.equal(upA.annotations['flannel.alpha.coreos.com/backend-type'], 'host-gw');
  const nodes = [nodeObject('node-a', '10.250.1.0/24', upA.annotations), nodeObject('node-b', '10.250.2.0/24', upB.annotations)];
  t.same((await backA.sync(leaseA, nodes)).programmed, ['node-b']);
  await backB.sync(leaseB, nodes);
  t.same(await backA.sync(leaseA, nodes), { programmed: [], removed: [] }, 'idempotent');
  t.match((await inNetns(a, 'ip', ['route', 'show', 'proto', '77'])).stdout, /10\.250\.2\.0\/24 via 192\.0\.2\.2 dev va/, 'route via the peer');
  await inNetns(b, 'ip', ['addr', 'add', '10.250.2.7/32', 'dev', 'lo'], false);
  t.equal((await ping(a, '10.250.2.7')).code, 0, 'node-a reaches a pod address on node-b');
  // A route the agent did not make is never touched.
  await inNetns(a, 'ip', ['route', 'add', '10.251.0.0/16', 'via', '192.0.2.2'], false);
  const gone = await backA.sync(leaseA, [nodes[0]!]);
  t.same(gone.removed, ['route 10.250.2.0/24 via 192.0.2.2']);
  t.equal((await inNetns(a, 'ip', ['route', 'show', 'proto', '77'])).stdout.trim(), '', 'no proto 77 route left');
  t.match((await inNetns(a, 'ip', ['route'])).stdout, /10\.251\.0\.0\/16/, 'the admin\'s route stays');
});

t.test('masquerade rules: applied once, jumps not duplicated', async (t) => {
  const { a } = await underlay(t);
  const port = masqPort({ netnsPath: a.path });
  const cidrs = { clusterCIDR: parseIpNet('10.250.0.0/16')!, podCIDR: parseIpNet('10.250.1.0/24')! };
  t.equal(await port.ensure(cidrs), true, 'first ensure writes');
  t.equal(await port.ensure(cidrs), false, 'second ensure: nothing to do');
  const saved = (await inNetns(a, 'iptables-save', [], false)).stdout;
  t.equal(saved.split('\n').filter((l) => l.includes('-j FLANNEL-POSTRTG')).length, 1, 'one POSTROUTING jump');
  t.equal(saved.split('\n').filter((l) => l.includes('-j FLANNEL-FWD')).length, 1, 'one FORWARD jump');
  t.match(saved, /-A FLANNEL-POSTRTG -s 10\.250\.0\.0\/16 ! -d 224\.0\.0\.0\/4 .*-j MASQUERADE --random-fully/);
  // Someone flushes POSTROUTING: the next ensure puts the jump back.
  await inNetns(a, 'iptables', ['-t', 'nat', '-F', 'POSTROUTING'], false);
  t.equal(await port.ensure(cidrs), true, 'restored after a flush');
  t.equal((await inNetns(a, 'iptables-save', [], false)).stdout.split('\n').filter((l) => l.includes('-j FLANNEL-POSTRTG')).length, 1, 'jump back, once');
});

t.test('switching backends: what the other one left is removed', async (t) => {
  const { a } = await underlay(t);
  const vx = createVxlanBackend({ netnsPath: a.path, logger });
  t.teardown(() => vx.close());
  await vx.setUp(leaseA);
  await inNetns(a, 'ip', ['route', 'add', '10.250.9.0/24', 'via', '192.0.2.2', 'proto', '77'], false);
  t.same(await removeOtherBackends('vxlan', a.path), ['route 10.250.9.0/24 via 192.0.2.2'], 'vxlan keeps flannel.1, drops proto 77 routes');
  t.same(await removeOtherBackends('host-gw', a.path), ['link flannel.1'], 'host-gw drops flannel.1');
  t.equal((await inNetns(a, 'ip', ['link', 'show', 'flannel.1'])).code !== 0, true, 'flannel.1 gone');
  t.same(await removeOtherBackends('host-gw', a.path), [], 'nothing left: nothing to do');
});

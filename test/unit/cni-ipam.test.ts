import t from 'tap';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allocate, gc, parseHostLocalConf, rangeSetIterator, release } from '../../cni/ipam/host-local.js';
import type { HostLocalConf } from '../../cni/ipam/host-local.js';
import { HostLocalStore } from '../../cni/ipam/store.js';
import { CniError } from '../../cni/types.js';
import type { JsonObject } from '../../cni/types.js';
import { formatIp, parseIp } from '../../cni/ip.js';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'knode-ipam-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function conf(dataDir: string, ranges: JsonObject[][], extra: JsonObject = {}): HostLocalConf {
  return parseHostLocalConf({ cniVersion: '1.0.0', name: 'net1', ipam: { type: 'host-local', dataDir, ranges, ...extra } }, 'net1');
}

function ips(list: { address: string }[]): string[] {
  return list.map((i) => i.address);
}

t.test('allocates in order from rangeStart, skipping network and gateway', async (t) => {
  const c = conf(tempDir(t), [[{ subnet: '10.1.0.0/29' }]]);
  const got: string[] = [];
  for (let i = 0; i < 5; i++) got.push(...ips(await allocate(c, `c${i}`, 'eth0')));
  // .0 network, .1 gateway, .7 broadcast: usable .2-.6
  t.same(got, ['10.1.0.2/29', '10.1.0.3/29', '10.1.0.4/29', '10.1.0.5/29', '10.1.0.6/29']);
  const err = await allocate(c, 'c6', 'eth0').catch((e: unknown) => e);
  t.ok(err instanceof CniError, 'exhaustion is an error');
  t.match((err as CniError).message, /no IP addresses available/);
  t.equal((err as CniError).cniDetails, 'IPAM_EXHAUSTED');
});

t.test('store format is the reference one', async (t) => {
  const dir = tempDir(t);
  const c = conf(dir, [[{ subnet: '10.1.0.0/24' }], [{ subnet: 'fd00:1::/64' }]]);
  const got = await allocate(c, 'abc', 'eth0');
  t.same(got, [
    { address: '10.1.0.2/24', gateway: '10.1.0.1' },
    { address: 'fd00:1::2/64', gateway: 'fd00:1::1' },
  ]);
  t.equal(readFileSync(join(dir, 'net1', '10.1.0.2'), 'utf8'), 'abc\r\neth0');
  t.equal(readFileSync(join(dir, 'net1', 'fd00:1::2'), 'utf8'), 'abc\r\neth0');
  t.equal(readFileSync(join(dir, 'net1', 'last_reserved_ip.0'), 'utf8'), '10.1.0.2');
  t.equal(readFileSync(join(dir, 'net1', 'last_reserved_ip.1'), 'utf8'), 'fd00:1::2');
  t.same(readdirSync(join(dir, 'net1')).sort(), ['10.1.0.2', 'fd00:1::2', 'last_reserved_ip.0', 'last_reserved_ip.1', 'lock']);
});

t.test('round-robin after last_reserved_ip, wraps, and reuses released IPs only after a loop', async (t) => {
  const c = conf(tempDir(t), [[{ subnet: '10.1.0.0/29' }]]);
  t.same(ips(await allocate(c, 'a', 'eth0')), ['10.1.0.2/29']);
  t.same(ips(await allocate(c, 'b', 'eth0')), ['10.1.0.3/29']);
  await release(c, 'a', 'eth0');
  // .2 is free again but round-robin continues after .3
  t.same(ips(await allocate(c, 'c', 'eth0')), ['10.1.0.4/29']);
  t.same(ips(await allocate(c, 'd', 'eth0')), ['10.1.0.5/29']);
  t.same(ips(await allocate(c, 'e', 'eth0')), ['10.1.0.6/29']);
  t.same(ips(await allocate(c, 'f', 'eth0')), ['10.1.0.2/29'], 'wraps to the freed IP');
});

t.test('rangeStart/rangeEnd/gateway, multiple ranges in a set', async (t) => {
  const c = conf(tempDir(t), [
    [
      { subnet: '10.2.0.0/24', rangeStart: '10.2.0.10', rangeEnd: '10.2.0.12', gateway: '10.2.0.11' },
      { subnet: '10.3.0.0/24', rangeStart: '10.3.0.254', rangeEnd: '10.3.0.254' },
    ],
  ]);
  const got: string[] = [];
  for (let i = 0; i < 3; i++) got.push(...ips(await allocate(c, `c${i}`, 'eth0')));
  t.same(got, ['10.2.0.10/24', '10.2.0.12/24', '10.3.0.254/24']);
  await t.rejects(allocate(c, 'c9', 'eth0'));
});

t.test('idempotent ADD for the same container and ifname', async (t) => {
  const c = conf(tempDir(t), [[{ subnet: '10.1.0.0/24' }]]);
  const a = await allocate(c, 'same', 'eth0');
  const b = await allocate(c, 'same', 'eth0');
  t.same(a, b);
  const other = await allocate(c, 'same', 'eth1');
  t.not(other[0]!.address, a[0]!.address, 'another ifname gets another IP');
});

t.test('DEL releases by container and ifname only; DEL twice is fine', async (t) => {
  const dir = tempDir(t);
  const c = conf(dir, [[{ subnet: '10.1.0.0/24' }]]);
  await allocate(c, 'x', 'eth0');
  await allocate(c, 'x', 'eth1');
  t.same((await release(c, 'x', 'eth0')).map(formatIp), ['10.1.0.2']);
  t.same(await release(c, 'x', 'eth0'), []);
  t.same(readdirSync(join(dir, 'net1')).filter((n) => n.startsWith('10.')), ['10.1.0.3']);
});

t.test('requested IP via CNI_ARGS', async (t) => {
  const dir = tempDir(t);
  const c = parseHostLocalConf(
    { cniVersion: '1.0.0', name: 'net1', ipam: { type: 'host-local', dataDir: dir, ranges: [[{ subnet: '10.1.0.0/24' }]] } },
    'net1',
    new Map([['IP', '10.1.0.77']]),
  );
  t.same(ips(await allocate(c, 'r', 'eth0')), ['10.1.0.77/24']);
  await t.rejects(allocate(c, 'r2', 'eth0'), /not available/);
});

t.test('GC keeps valid attachments only', async (t) => {
  const dir = tempDir(t);
  const c = conf(dir, [[{ subnet: '10.1.0.0/24' }]]);
  await allocate(c, 'keep', 'eth0');
  await allocate(c, 'drop', 'eth0');
  await allocate(c, 'keep', 'eth1');
  const removed = await gc(c, [{ containerId: 'keep', ifName: 'eth0' }]);
  t.same(removed.map(formatIp).sort(), ['10.1.0.3', '10.1.0.4']);
  t.same(readdirSync(join(dir, 'net1')).filter((n) => n.startsWith('10.')), ['10.1.0.2']);
});

t.test('iterator order from a last reserved IP and gateway skip', async (t) => {
  const c = conf('/nonexistent', [[{ subnet: '10.1.0.0/29', gateway: '10.1.0.4' }]]);
  const order = [...rangeSetIterator(c.rangeSets[0]!, parseIp('10.1.0.5'))].map((x) => formatIp(x.ip));
  t.same(order, ['10.1.0.6', '10.1.0.1', '10.1.0.2', '10.1.0.3', '10.1.0.5']);
  const v6 = conf('/nonexistent', [[{ subnet: 'fd00::/126' }]]);
  t.same([...rangeSetIterator(v6.rangeSets[0]!, undefined)].map((x) => formatIp(x.ip)), ['fd00::2', 'fd00::3']);
});

t.test('config errors are code 7', async (t) => {
  const cases: [string, JsonObject][] = [
    ['no ipam', {}],
    ['no ranges', { ipam: { type: 'host-local' } }],
    ['bad subnet', { ipam: { ranges: [[{ subnet: 'nope' }]] } }],
    ['host bits', { ipam: { ranges: [[{ subnet: '10.0.0.1/24' }]] } }],
    ['too small', { ipam: { ranges: [[{ subnet: '10.0.0.0/31' }]] } }],
    ['start outside', { ipam: { ranges: [[{ subnet: '10.0.0.0/24', rangeStart: '10.0.1.1' }]] } }],
    ['start > end', { ipam: { ranges: [[{ subnet: '10.0.0.0/24', rangeStart: '10.0.0.9', rangeEnd: '10.0.0.5' }]] } }],
    ['broadcast end', { ipam: { ranges: [[{ subnet: '10.0.0.0/24', rangeEnd: '10.0.0.255' }]] } }],
    ['overlap', { ipam: { ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: '10.0.0.0/25' }]] } }],
    ['mtu type', { ipam: { ranges: 'x' } }],
    ['relative dataDir', { ipam: { dataDir: 'x', ranges: [[{ subnet: '10.0.0.0/24' }]] } }],
  ];
  for (const [what, c] of cases) {
    const err = (() => {
      try {
        parseHostLocalConf({ name: 'n', ...c }, 'n');
        return undefined;
      } catch (e) {
        return e;
      }
    })();
    t.ok(err instanceof CniError && err.cniCode === 7, `${what} → 7`);
  }
  const legacy = parseHostLocalConf({ name: 'n', ipam: { subnet: '10.5.0.0/16', rangeStart: '10.5.1.0' } }, 'n');
  t.equal(formatIp(legacy.rangeSets[0]![0]!.rangeStart), '10.5.1.0', 'legacy single-range form');
});

t.test('the lock excludes a second holder until released', async (t) => {
  const dir = tempDir(t);
  const a = new HostLocalStore(dir, 'n');
  const b = new HostLocalStore(dir, 'n');
  await a.lock();
  let bGot = false;
  const pb = b.lock().then(() => {
    bGot = true;
  });
  await new Promise((r) => setTimeout(r, 100));
  t.notOk(bGot, 'second lock waits');
  a.unlock();
  await pb;
  t.ok(bGot, 'second lock acquired after release');
  b.unlock();
});

t.test('concurrent in-process allocations never share an IP', async (t) => {
  const dir = tempDir(t);
  const c = conf(dir, [[{ subnet: '10.1.0.0/24' }]]);
  const got = await Promise.all(Array.from({ length: 60 }, (_, i) => allocate(c, `p${i}`, 'eth0')));
  const all = got.flat().map((x) => x.address);
  t.equal(new Set(all).size, 60);
  writeFileSync(join(dir, 'net1', 'junk'), 'x');
  t.equal(readdirSync(join(dir, 'net1')).filter((n) => n.startsWith('10.')).length, 60);
});

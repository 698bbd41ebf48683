// Interop with the reference plugins (containernetworking-plugins in /usr/lib/cni):
// knode-bridge + reference host-local, reference bridge + knode-host-local, and both host-local
// implementations sharing one store at the same time (the flock'd `lock` file).
import t from 'tap';
import type { Test } from 'tap';
import type { BuiltPlugins } from '@tapjs/test';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPlugins, createNetns, deleteNetns, inNetns, runPlugin, REFERENCE_DIR, BIN_DIR } from '../../cni/testing/harness.js';
import type { Netns, PluginOutcome } from '../../cni/testing/harness.js';

if (process.getuid?.() !== 0 || !existsSync(join(REFERENCE_DIR, 'bridge'))) {
  t.plan(0, 'needs root and the reference plugins in /usr/lib/cni');
  process.exit(0);
}

await buildPlugins();

type Tap = { teardown(fn: () => void | Promise<void>): void };

async function setup(t: Tap, containers: number): Promise<{ host: Netns; cs: Netns[]; dataDir: string }> {
  const host = await createNetns();
  const cs: Netns[] = [];
  const dataDir = mkdtempSync(join(tmpdir(), 'knode-t-ipam-'));
  t.teardown(async () => {
    for (const c of cs) await deleteNetns(c);
    await deleteNetns(host);
    rmSync(dataDir, { recursive: true, force: true });
  });
  for (let i = 0; i < containers; i++) cs.push(await createNetns());
  return { host, cs, dataDir };
}

function conf(type: string, ipamType: string, dataDir: string): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: 'knode-t-interop',
    type,
    bridge: 'kbr1',
    isGateway: true,
    ipMasq: true,
    ipam: { type: ipamType, dataDir, ranges: [[{ subnet: '10.66.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] },
  };
}

function ipFiles(dataDir: string): string[] {
  const dir = join(dataDir, 'knode-t-interop');
  return existsSync(dir) ? readdirSync(dir).filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n)) : [];
}

type TapT = Test & BuiltPlugins;

async function roundTrip(t: TapT, plugin: string, dir: string, ipamType: string): Promise<void> {
  const { host, cs, dataDir } = await setup(t, 2);
  const c = conf(plugin === 'knode-bridge' ? 'knode-bridge' : 'bridge', ipamType, dataDir);
  const run = (command: string, i: number, extra: Record<string, unknown> = {}): Promise<PluginOutcome> =>
    runPlugin({ plugin, dir, command, host, containerId: `interop${i}`, netns: cs[i]!.path, ifName: 'eth0', config: { ...c, ...extra } });
  const a0 = await run('ADD', 0);
  t.equal(a0.code, 0, `ADD 0 ${a0.stdout}${a0.stderr}`);
  const a1 = await run('ADD', 1);
  t.equal(a1.code, 0, `ADD 1 ${a1.stdout}`);
  t.match(a0.json, { ips: [{ address: '10.66.0.2/24', gateway: '10.66.0.1' }], routes: [{ dst: '0.0.0.0/0' }] });
  t.equal(readFileSync(join(dataDir, 'knode-t-interop', '10.66.0.2'), 'utf8'), 'interop0\r\neth0', 'store format');
  t.equal((await inNetns(cs[0]!, 'ping', ['-c', '1', '-W', '3', '10.66.0.3'])).code, 0, 'pod to pod');
  t.equal((await inNetns(cs[0]!, 'ping', ['-c', '1', '-W', '3', '10.66.0.1'])).code, 0, 'pod to gateway');
  const chk = await run('CHECK', 0, { prevResult: a0.json });
  t.equal(chk.code, 0, `CHECK ${chk.stdout}`);
  t.equal((await run('DEL', 0)).code, 0);
  t.equal((await run('DEL', 0)).code, 0, 'DEL twice');
  await deleteNetns(cs[1]!);
  t.equal((await run('DEL', 1)).code, 0, 'DEL with the netns gone');
  t.same(ipFiles(dataDir), [], 'no IP file left');
  const nat = await inNetns(host, 'iptables', ['-t', 'nat', '-S', 'POSTROUTING'], false);
  if (plugin === 'knode-bridge') {
    t.notMatch(nat.stdout, /CNI-/, 'no masquerade jump left');
  } else {
    // The reference bridge finds the pod IPs to unmasquerade on the container interface, so a
    // DEL after the netns is gone leaves its jump behind; knode-bridge's DEL (same chain names)
    // finds the jump by chain and removes it.
    t.match(nat.stdout, /-j CNI-/, 'reference DEL without netns leaves its masquerade jump');
    const knodeDel = await runPlugin({
      plugin: 'knode-bridge',
      command: 'DEL',
      host,
      containerId: 'interop1',
      netns: cs[1]!.path,
      ifName: 'eth0',
      config: { ...c, type: 'knode-bridge' },
    });
    t.equal(knodeDel.code, 0, 'knode-bridge DEL on the reference leftovers');
    const after = await inNetns(host, 'iptables', ['-t', 'nat', '-S'], false);
    t.notMatch(after.stdout, /CNI-/, 'knode-bridge removed the reference chain and jump');
  }
}

t.test('knode-bridge with the reference host-local', async (t) => {
  await roundTrip(t, 'knode-bridge', BIN_DIR, 'host-local');
});

t.test('the reference bridge with knode-host-local', async (t) => {
  await roundTrip(t, 'bridge', REFERENCE_DIR, 'knode-host-local');
});

t.test('reference and knode host-local allocate concurrently from one store', async (t) => {
  const { host, dataDir } = await setup(t, 0);
  const ipam = { cniVersion: '1.0.0', name: 'knode-t-interop', ipam: { type: 'x', dataDir, ranges: [[{ subnet: '10.66.0.0/24' }]] } };
  const n = 40;
  const calls = Array.from({ length: n }, (_, i) =>
    runPlugin({
      plugin: i % 2 ? 'host-local' : 'knode-host-local',
      dir: i % 2 ? REFERENCE_DIR : BIN_DIR,
      command: 'ADD',
      host,
      containerId: `mix${i}`,
      netns: '/nonexistent',
      ifName: 'eth0',
      config: ipam,
    }),
  );
  const res = await Promise.all(calls);
  t.equal(res.filter((r) => r.code !== 0).length, 0, 'all succeed');
  const ips = res.map((r) => ((r.json?.ips as { address: string }[] | undefined) ?? [])[0]?.address);
  t.equal(new Set(ips).size, n, 'no IP handed out twice');
  t.equal(ipFiles(dataDir).length, n);
  // Each implementation releases what the other allocated.
  const dels = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      runPlugin({
        plugin: i % 2 ? 'knode-host-local' : 'host-local',
        dir: i % 2 ? BIN_DIR : REFERENCE_DIR,
        command: 'DEL',
        host,
        containerId: `mix${i}`,
        netns: '/nonexistent',
        ifName: 'eth0',
        config: ipam,
      }),
    ),
  );
  t.equal(dels.filter((r) => r.code !== 0).length, 0, 'all DELs succeed');
  t.same(ipFiles(dataDir), [], 'store empty');
});

t.test('latency, sequential, same config (informational)', async (t) => {
  const { host, cs, dataDir } = await setup(t, 1);
  const rounds = 10;
  const measure = async (plugin: string, dir: string, ipamType: string): Promise<{ add: number; del: number }> => {
    const c = { ...conf(plugin === 'knode-bridge' ? 'knode-bridge' : 'bridge', ipamType, dataDir), ipMasq: false };
    const add: number[] = [];
    const del: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const call = { plugin, dir, host, containerId: `lat${i}`, netns: cs[0]!.path, ifName: 'eth0', config: c };
      const a = await runPlugin({ ...call, command: 'ADD' });
      t.equal(a.code, 0, `${plugin} ADD ${a.stdout}`);
      add.push(a.ms);
      const d = await runPlugin({ ...call, command: 'DEL' });
      del.push(d.ms);
    }
    const p50 = (v: number[]): number => Math.round([...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!);
    return { add: p50(add), del: p50(del) };
  };
  const ref = await measure('bridge', REFERENCE_DIR, 'host-local');
  const knode = await measure('knode-bridge', BIN_DIR, 'knode-host-local');
  t.comment(`p50 over ${rounds} (nsenter included): reference bridge+host-local ADD ${ref.add} ms DEL ${ref.del} ms; knode ADD ${knode.add} ms DEL ${knode.del} ms`);
});

// knode-bridge + knode-host-local + knode-loopback as real processes, in throw-away namespaces:
// a "host" netns holds the bridge, container netns hold the pods. Nothing touches the root netns.
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { BIN_DIR, buildPlugins, createNetns, deleteNetns, inNetns, runPlugin } from '../../cni/testing/harness.js';
import type { Netns, PluginOutcome } from '../../cni/testing/harness.js';
import { chainName } from '../../cni/ipmasq.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

await buildPlugins();

interface Env {
  host: Netns;
  dataDir: string;
  ns(): Promise<Netns>;
}

async function env(t: Tap): Promise<Env> {
  const host = await createNetns();
  const created: Netns[] = [host];
  const dataDir = mkdtempSync(join(tmpdir(), 'knode-t-ipam-'));
  t.teardown(async () => {
    for (const ns of created.reverse()) await deleteNetns(ns);
    rmSync(dataDir, { recursive: true, force: true });
  });
  await inNetns(host, 'ip', ['link', 'set', 'lo', 'up'], false);
  return {
    host,
    dataDir,
    ns: async () => {
      const ns = await createNetns();
      created.push(ns);
      return ns;
    },
  };
}
type Tap = { teardown(fn: () => void | Promise<void>): void };

function bridgeConf(dataDir: string, over: Record<string, unknown> = {}, ipamType = 'knode-host-local'): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: 'knode-t-net',
    type: 'knode-bridge',
    bridge: 'kbr0',
    isGateway: true,
    isDefaultGateway: true,
    ipMasq: true,
    hairpinMode: true,
    mtu: 1400,
    ipam: { type: ipamType, dataDir, ranges: [[{ subnet: '10.88.0.0/24' }], [{ subnet: 'fd88::/64' }]] },
    ...over,
  };
}

const call = (e: Env, command: string, ns: Netns | string | undefined, id: string, config: unknown, plugin = 'knode-bridge'): Promise<PluginOutcome> =>
  runPlugin({
    plugin,
    command,
    host: e.host,
    containerId: id,
    netns: typeof ns === 'string' ? ns : ns?.path ?? '',
    ifName: plugin === 'knode-loopback' ? 'lo' : 'eth0',
    config,
  });

function ipFiles(dataDir: string, net = 'knode-t-net'): string[] {
  const dir = join(dataDir, net);
  return existsSync(dir) ? readdirSync(dir).filter((n) => /^[0-9a-f.:]+$/.test(n) && n.includes('.') !== n.includes(':')) : [];
}

async function hostVeths(host: Netns): Promise<string[]> {
  const out = await inNetns(host, 'ip', ['-o', 'link', 'show', 'type', 'veth'], false);
  return out.stdout.split('\n').filter((l) => l.trim() !== '');
}

t.test('ADD, CHECK, ping, DEL, DEL again, DEL after the netns is gone', async (t) => {
  const e = await env(t);
  const c1 = await e.ns();
  const c2 = await e.ns();
  const conf = bridgeConf(e.dataDir);
  const a1 = await call(e, 'ADD', c1, 'ctr1', conf);
  t.equal(a1.code, 0, `ADD c1 ok ${a1.stdout}${a1.stderr}`);
  const a2 = await call(e, 'ADD', c2, 'ctr2', conf);
  t.equal(a2.code, 0, `ADD c2 ok ${a2.stdout}`);
  const r1 = a1.json!;
  t.match(r1, {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'kbr0' }, { name: /^veth[0-9a-f]{8}$/ }, { name: 'eth0', sandbox: c1.path }],
    ips: [
      { address: '10.88.0.2/24', gateway: '10.88.0.1', interface: 2 },
      { address: 'fd88::2/64', gateway: 'fd88::1', interface: 2 },
    ],
    routes: [
      { dst: '0.0.0.0/0', gw: '10.88.0.1' },
      { dst: '::/0', gw: 'fd88::1' },
    ],
  });
  const ifaces = r1.interfaces as { name: string; mac: string }[];
  for (const i of ifaces) t.match(i.mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, `${i.name} has a MAC`);

  // The kernel agrees with the result.
  const addr = await inNetns(c1, 'ip', ['-o', 'addr', 'show', 'dev', 'eth0'], false);
  t.match(addr.stdout, /inet 10\.88\.0\.2\/24/);
  t.match(addr.stdout, /inet6 fd88::2\/64/);
  const link = await inNetns(c1, 'ip', ['-o', 'link', 'show', 'dev', 'eth0'], false);
  t.match(link.stdout, /mtu 1400/);
  t.match(link.stdout, new RegExp(ifaces[2]!.mac));
  const routes = await inNetns(c1, 'ip', ['route'], false);
  t.match(routes.stdout, /default via 10\.88\.0\.1 dev eth0/);
  const routes6 = await inNetns(c1, 'ip', ['-6', 'route'], false);
  t.match(routes6.stdout, /default via fd88::1 dev eth0/);
  const br = await inNetns(e.host, 'ip', ['-o', 'addr', 'show', 'dev', 'kbr0'], false);
  t.match(br.stdout, /inet 10\.88\.0\.1\/24/);
  t.match(br.stdout, /inet6 fd88::1\/64/);
  const port = await inNetns(e.host, 'ip', ['-d', 'link', 'show', 'dev', ifaces[1]!.name], false);
  t.match(port.stdout, /master kbr0/);
  t.match(port.stdout, /hairpin on/);
  const fwd = await inNetns(e.host, 'sysctl', ['-n', 'net.ipv4.ip_forward'], false);
  t.equal(fwd.stdout.trim(), '1', 'forwarding on in the host netns');
  const nat = await inNetns(e.host, 'iptables', ['-t', 'nat', '-S'], false);
  const chain = chainName('knode-t-net', 'ctr1');
  t.match(nat.stdout, `-A POSTROUTING -s 10.88.0.2/32 -m comment --comment "name: \\"knode-t-net\\" id: \\"ctr1\\"" -j ${chain}`);
  t.match(nat.stdout, `-A ${chain} -d 10.88.0.0/24`);

  // Traffic across the bridge and to the gateway.
  const ping = await inNetns(c1, 'ping', ['-c', '1', '-W', '3', '10.88.0.3']);
  t.equal(ping.code, 0, 'c1 pings c2 across the bridge');
  const pingGw = await inNetns(c1, 'ping', ['-c', '1', '-W', '3', '10.88.0.1']);
  t.equal(pingGw.code, 0, 'c1 pings the gateway');
  const ping6 = await inNetns(c2, 'ping', ['-6', '-c', '1', '-W', '3', 'fd88::2']);
  t.equal(ping6.code, 0, 'c2 pings c1 over IPv6');

  // CHECK with prevResult, then against a broken reality.
  const chk = await call(e, 'CHECK', c1, 'ctr1', { ...conf, prevResult: r1 });
  t.equal(chk.code, 0, `CHECK ok ${chk.stdout}`);
  await inNetns(c1, 'ip', ['addr', 'del', '10.88.0.2/24', 'dev', 'eth0'], false);
  const chkBad = await call(e, 'CHECK', c1, 'ctr1', { ...conf, prevResult: r1 });
  t.equal(chkBad.code, 1, 'CHECK fails once the address is gone');

  // DEL, DEL again.
  t.equal(ipFiles(e.dataDir).length, 4);
  const d1 = await call(e, 'DEL', c1, 'ctr1', conf);
  t.equal(d1.code, 0, `DEL ok ${d1.stdout}`);
  const d1b = await call(e, 'DEL', c1, 'ctr1', conf);
  t.equal(d1b.code, 0, 'second DEL ok');
  t.equal((await inNetns(c1, 'ip', ['link', 'show', 'eth0'])).code, 1, 'container veth gone');
  t.equal((await hostVeths(e.host)).length, 1, 'only c2 veth left in the host');
  const natAfter = await inNetns(e.host, 'iptables', ['-t', 'nat', '-S'], false);
  t.notMatch(natAfter.stdout, chain, 'masquerade chain removed');

  // DEL after the netns is gone still releases the IPs.
  await deleteNetns(c2);
  const d2 = await call(e, 'DEL', c2, 'ctr2', conf);
  t.equal(d2.code, 0, `DEL with the netns gone ok ${d2.stdout}`);
  const d3 = await call(e, 'DEL', '', 'ctr2', conf);
  t.equal(d3.code, 0, 'DEL without CNI_NETNS ok');
  t.same(ipFiles(e.dataDir), [], 'no IP file left');
  t.same(await hostVeths(e.host), [], 'no veth left');
});

t.test('bridge already holding another address: error, forceAddress replaces', async (t) => {
  const e = await env(t);
  const c1 = await e.ns();
  await inNetns(e.host, 'ip', ['link', 'add', 'kbr0', 'type', 'bridge'], false);
  await inNetns(e.host, 'ip', ['addr', 'add', '10.77.0.1/24', 'dev', 'kbr0'], false);
  const conf = bridgeConf(e.dataDir, { ipMasq: false, ipam: { type: 'knode-host-local', dataDir: e.dataDir, ranges: [[{ subnet: '10.88.0.0/24' }]] } });
  const bad = await call(e, 'ADD', c1, 'ctr1', conf);
  t.equal(bad.code, 1);
  t.match(bad.json, { msg: /already has an IP address different from 10\.88\.0\.1\/24/ });
  t.same(ipFiles(e.dataDir), [], 'failed ADD released its IP');
  t.same(await hostVeths(e.host), [], 'failed ADD removed its veth');
  t.equal((await inNetns(c1, 'ip', ['link', 'show', 'eth0'])).code, 1, 'no eth0 left in the container');
  const ok = await call(e, 'ADD', c1, 'ctr1', { ...conf, forceAddress: true });
  t.equal(ok.code, 0, ok.stdout);
  const br = await inNetns(e.host, 'ip', ['-o', '-4', 'addr', 'show', 'dev', 'kbr0'], false);
  t.match(br.stdout, /10\.88\.0\.1\/24/);
  t.notMatch(br.stdout, /10\.77\.0\.1/);
});

t.test('loopback ADD/CHECK/DEL', async (t) => {
  const e = await env(t);
  const c = await e.ns();
  const conf = { cniVersion: '1.1.0', name: 'lo-net', type: 'knode-loopback' };
  const add = await call(e, 'ADD', c, 'ctrlo', conf, 'knode-loopback');
  t.equal(add.code, 0, add.stdout + add.stderr);
  t.match(add.json, {
    interfaces: [{ name: 'lo', mac: '00:00:00:00:00:00', sandbox: c.path }],
    ips: [{ address: '127.0.0.1/8', interface: 0 }, { address: '::1/128', interface: 0 }],
  });
  t.match((await inNetns(c, 'ip', ['link', 'show', 'lo'], false)).stdout, /UP/);
  t.equal((await call(e, 'CHECK', c, 'ctrlo', { ...conf, prevResult: add.json }, 'knode-loopback')).code, 0);
  t.equal((await call(e, 'DEL', c, 'ctrlo', conf, 'knode-loopback')).code, 0);
  t.notMatch((await inNetns(c, 'ip', ['link', 'show', 'lo'], false)).stdout, /,UP/);
  await deleteNetns(c);
  t.equal((await call(e, 'DEL', c, 'ctrlo', conf, 'knode-loopback')).code, 0, 'DEL with the netns gone');
});

t.test('error codes from the real programs', async (t) => {
  const e = await env(t);
  const c = await e.ns();
  const conf = bridgeConf(e.dataDir);
  const version = await runPlugin({ plugin: 'knode-bridge', command: 'VERSION', host: e.host, config: '' });
  t.equal(version.code, 0);
  t.same(version.json, { cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  const cases: [string, Promise<PluginOutcome>, number][] = [
    ['malformed stdin', call(e, 'ADD', c, 'x1', '{"cniVersion": "1.0.0", "name"'), 6],
    ['bad bridge name', call(e, 'ADD', c, 'x2', bridgeConf(e.dataDir, { bridge: 'a/b' })), 7],
    ['no ipam', call(e, 'ADD', c, 'x3', bridgeConf(e.dataDir, { ipam: undefined })), 7],
    ['unknown ipam plugin', call(e, 'ADD', c, 'x4', bridgeConf(e.dataDir, { ipam: { type: 'no-such-ipam' } })), 7],
    ['mtu not a number', call(e, 'ADD', c, 'x5', bridgeConf(e.dataDir, { mtu: 'big' })), 7],
    ['vlan unsupported', call(e, 'ADD', c, 'x6', bridgeConf(e.dataDir, { vlan: 5 })), 2],
    ['bad container id', call(e, 'ADD', c, '../../x', conf), 4],
    ['netns does not exist', call(e, 'ADD', '/run/netns/knode-t-missing', 'x7', conf), 3],
    ['unsupported version', call(e, 'ADD', c, 'x8', { ...conf, cniVersion: '2.0.0' }), 1],
    ['missing env', runPlugin({ plugin: 'knode-bridge', command: 'ADD', host: e.host, containerId: 'x9', config: conf }), 4],
  ];
  for (const [what, p, code] of cases) {
    const r = await p;
    t.equal(r.code, 1, `${what}: exit 1`);
    t.equal(r.json?.code, code, `${what}: code ${code} (${r.stdout.trim()})`);
  }
  t.same(ipFiles(e.dataDir), [], 'no IP leaked by the failures');
  t.same(await hostVeths(e.host), [], 'no veth leaked by the failures');
});

t.test('kill -9 in the middle of an ADD, then the netns goes and GC leaves nothing', async (t) => {
  const e = await env(t);
  const c = await e.ns();
  const conf = { ...bridgeConf(e.dataDir), cniVersion: '1.1.0' };
  const child = spawn('nsenter', [`--net=${e.host.path}`, join(BIN_DIR, 'knode-bridge')], {
    env: { PATH: process.env.PATH, CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'killed', CNI_NETNS: c.path, CNI_IFNAME: 'eth0', CNI_PATH: BIN_DIR },
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  child.stdin.end(JSON.stringify(conf));
  const exited = new Promise((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  // Kill as soon as the IP reservation is on disk, i.e. half way through the ADD.
  const deadline = Date.now() + 10_000;
  while (ipFiles(e.dataDir).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
  child.kill('SIGKILL');
  t.equal(await exited, 'SIGKILL', 'the plugin was killed');
  t.ok(ipFiles(e.dataDir).length > 0, 'the killed ADD left its reservation');
  // The runtime removes the sandbox's netns, then garbage-collects with the attachments it knows.
  await deleteNetns(c);
  const gc = await runPlugin({
    plugin: 'knode-bridge',
    command: 'GC',
    host: e.host,
    config: { ...conf, 'cni.dev/valid-attachments': [] },
  });
  t.equal(gc.code, 0, `GC ok ${gc.stdout}`);
  t.same(ipFiles(e.dataDir), [], 'no IP file left');
  t.same(await hostVeths(e.host), [], 'no veth left');
  // The lock was released by the kernel when the process died: a new ADD goes through.
  const c2 = await e.ns();
  const again = await call(e, 'ADD', c2, 'after', conf);
  t.equal(again.code, 0, 'the store is usable after the kill');
});

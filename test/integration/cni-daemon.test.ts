// knode-cni-daemon for real: the daemon runs inside a throw-away "host" netns on a temporary
// socket, the bundled plugin shims (harness) are exec'd in that namespace and hand their requests
// to it. Nothing touches the root netns.
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { buildDaemon, buildPlugins, createNetns, deleteNetns, inNetns, runPlugin } from '../../cni/testing/harness.js';
import type { Netns, PluginOutcome } from '../../cni/testing/harness.js';
import { ACK, TRAILER, encodeRequest, parseAnswer } from '../../cni/daemon/protocol.js';
import { chainName } from '../../cni/ipmasq.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const rawClient = join(root, 'build', 'cni-test', 'daemon-raw-client.mjs');

await buildPlugins();
const daemonBundle = await buildDaemon();
// Sends each payload file (argv) as one raw request and prints the raw answers as a JSON array.
writeFileSync(
  rawClient,
  `import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
const [sock, ...files] = process.argv.slice(2);
const out = [];
for (const f of files) {
  out.push(await new Promise((resolve) => {
    const chunks = [];
    const s = connect({ path: sock, allowHalfOpen: true }, () => s.end(readFileSync(f)));
    s.on('data', (b) => chunks.push(b));
    s.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    s.on('error', (e) => resolve('ERROR ' + e.code));
  }));
}
process.stdout.write(JSON.stringify(out));
`,
);

type Tap = { teardown(fn: () => void | Promise<void>): void };

interface Daemon {
  proc: ChildProcess;
  socket: string;
  log(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

async function startDaemon(t: Tap, host: Netns, dir: string, name = 'cni.sock'): Promise<Daemon> {
  const socket = join(dir, name);
  const logLines: string[] = [];
  const proc = spawn('nsenter', [`--net=${host.path}`, process.execPath, daemonBundle, '--socket', socket], {
    env: { ...process.env, KNODE_LOG_LEVEL: 'debug' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  proc.stderr!.on('data', (b: Buffer) => logLines.push(b.toString('utf8')));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    await exited;
  };
  t.teardown(() => stop('SIGKILL'));
  for (let i = 0; i < 200 && !logLines.join('').includes('"listening"'); i++) {
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!logLines.join('').includes('"listening"')) throw new Error(`daemon did not start: ${logLines.join('')}`);
  return { proc, socket, log: () => logLines.join(''), stop };
}

interface Env {
  host: Netns;
  dir: string;
  dataDir: string;
  ns(): Promise<Netns>;
}

async function env(t: Tap): Promise<Env> {
  const host = await createNetns();
  const created: Netns[] = [host];
  const dir = mkdtempSync(join(tmpdir(), 'knode-t-cnid-'));
  t.teardown(async () => {
    for (const ns of created.reverse()) await deleteNetns(ns);
    rmSync(dir, { recursive: true, force: true });
  });
  await inNetns(host, 'ip', ['link', 'set', 'lo', 'up'], false);
  return {
    host,
    dir,
    dataDir: join(dir, 'ipam'),
    ns: async () => {
      const ns = await createNetns();
      created.push(ns);
      return ns;
    },
  };
}

const conf = (dataDir: string): Record<string, unknown> => ({
  cniVersion: '1.0.0',
  name: 'knode-t-net',
  type: 'knode-bridge',
  bridge: 'kbr0',
  isGateway: true,
  isDefaultGateway: true,
  ipMasq: false,
  ipam: { type: 'knode-host-local', dataDir, ranges: [[{ subnet: '10.89.0.0/24' }]] },
});

function call(e: Env, socket: string, command: string, ns: Netns | undefined, id: string, config: unknown, plugin = 'knode-bridge'): Promise<PluginOutcome> {
  return runPlugin({
    plugin,
    command,
    host: e.host,
    containerId: id,
    netns: ns?.path ?? '',
    ifName: plugin === 'knode-loopback' ? 'lo' : 'eth0',
    config,
    env: { KNODE_CNI_SOCKET: socket },
  });
}

function ipFiles(dataDir: string): string[] {
  const d = join(dataDir, 'knode-t-net');
  return existsSync(d) ? readdirSync(d).filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n)) : [];
}

async function hostVeths(host: Netns): Promise<string[]> {
  const out = await inNetns(host, 'ip', ['-o', 'link', 'show', 'type', 'veth'], false);
  return out.stdout.split('\n').filter((l) => l.trim() !== '');
}

function served(d: Daemon, id: string, command: string): boolean {
  return d.log().includes(`"command":"${command}","containerId":"${id}"`);
}

/** The result with what legitimately differs between two pods (names, MACs, IPs) masked. */
function shape(r: Record<string, unknown> | undefined): unknown {
  return JSON.parse(
    JSON.stringify(r ?? {})
      .replace(/"mac":"[0-9a-f:]+"/g, '"mac":"M"')
      .replace(/veth[0-9a-f]{8}/g, 'vethX')
      .replace(/knode-t-[0-9a-f]{8}/g, 'NS')
      .replace(/10\.89\.0\.\d+\/24/g, 'IP'),
  );
}

t.test('through the daemon: same results as in-process, veth present, DEL cleans', async (t) => {
  const e = await env(t);
  const d = await startDaemon(t, e.host, e.dir);
  const c1 = await e.ns();
  const c2 = await e.ns();
  const cfg = conf(e.dataDir);

  const viaDaemon = await call(e, d.socket, 'ADD', c1, 'dctr1', cfg);
  t.equal(viaDaemon.code, 0, `ADD via daemon: ${viaDaemon.stdout}${viaDaemon.stderr}`);
  t.ok(served(d, 'dctr1', 'ADD'), 'the daemon served the ADD');
  const direct = await call(e, join(e.dir, 'absent.sock'), 'ADD', c2, 'dctr2', cfg);
  t.equal(direct.code, 0, `ADD in-process: ${direct.stdout}${direct.stderr}`);
  t.notOk(served(d, 'dctr2', 'ADD'), 'no daemon on that socket: in-process');
  t.same(shape(viaDaemon.json), shape(direct.json), 'same result shape');
  t.match(viaDaemon.json, { ips: [{ address: '10.89.0.2/24', gateway: '10.89.0.1' }] });
  t.match(direct.json, { ips: [{ address: '10.89.0.3/24', gateway: '10.89.0.1' }] }, 'one IPAM store, next IP');

  const link = await inNetns(c1, 'ip', ['-o', 'addr', 'show', 'dev', 'eth0'], false);
  t.match(link.stdout, /inet 10\.89\.0\.2\/24/, 'the veth is in the pod with its address');
  const lo = await call(e, d.socket, 'ADD', c1, 'dctr1', { cniVersion: '1.0.0', name: 'lo', type: 'knode-loopback' }, 'knode-loopback');
  t.equal(lo.code, 0, 'loopback via the daemon');
  t.ok(served(d, 'dctr1', 'ADD') && d.log().includes('"plugin":"knode-loopback"'));

  const check = await call(e, d.socket, 'CHECK', c1, 'dctr1', { ...cfg, prevResult: viaDaemon.json });
  t.equal(check.code, 0, `CHECK via daemon ${check.stdout}`);
  const version = await call(e, d.socket, 'VERSION', undefined, 'x', '');
  t.match(version.json, { cniVersion: '1.1.0' });

  const bad = await call(e, d.socket, 'ADD', c1, 'dctr9', { ...cfg, mtu: 'big' });
  t.equal(bad.code, 1, 'a bad config fails through the daemon too');
  t.match(bad.json, { code: Number, msg: String });

  t.equal((await hostVeths(e.host)).length, 2);
  t.same(ipFiles(e.dataDir).sort(), ['10.89.0.2', '10.89.0.3']);
  for (const [id, ns] of [['dctr1', c1], ['dctr2', c2]] as const) {
    const del = await call(e, d.socket, 'DEL', ns, id, cfg);
    t.equal(del.code, 0, `DEL ${id}`);
    const again = await call(e, d.socket, 'DEL', ns, id, cfg);
    t.equal(again.code, 0, `DEL ${id} again`);
  }
  t.ok(served(d, 'dctr2', 'DEL'), 'the daemon also DELs what an in-process ADD made');
  t.same(ipFiles(e.dataDir), [], 'no IP files left');
  t.same(await hostVeths(e.host), [], 'no veths left');
});

t.test('ipMasq through the daemon: iptables runs in the caller namespace', async (t) => {
  const e = await env(t);
  const d = await startDaemon(t, e.host, e.dir);
  const c = await e.ns();
  const cfg = { ...conf(e.dataDir), ipMasq: true };
  const add = await call(e, d.socket, 'ADD', c, 'masq1', cfg);
  t.equal(add.code, 0, `ADD ${add.stdout}${add.stderr}`);
  t.ok(served(d, 'masq1', 'ADD'));
  const chain = chainName('knode-t-net', 'masq1');
  const nat = await inNetns(e.host, 'iptables', ['-t', 'nat', '-S'], false);
  t.match(nat.stdout, `-A POSTROUTING -s 10.89.0.2/32 -m comment --comment "name: \\"knode-t-net\\" id: \\"masq1\\"" -j ${chain}`, 'the masquerade chain is in the host namespace');
  const fwd = await inNetns(e.host, 'sysctl', ['-n', 'net.ipv4.ip_forward'], false);
  t.equal(fwd.stdout.trim(), '1', 'forwarding on in the host namespace (the sysctl was written from the daemon)');
  t.equal((await call(e, d.socket, 'DEL', c, 'masq1', cfg)).code, 0);
  const after = await inNetns(e.host, 'iptables', ['-t', 'nat', '-S'], false);
  t.notMatch(after.stdout, chain, 'DEL removed it');
});

t.test('the daemon dies mid-way: the plugins fall back transparently', async (t) => {
  const e = await env(t);
  const d = await startDaemon(t, e.host, e.dir);
  const cfg = conf(e.dataDir);
  const pods = await Promise.all([e.ns(), e.ns(), e.ns()]);
  const a1 = await call(e, d.socket, 'ADD', pods[0], 'k1', cfg);
  t.equal(a1.code, 0);
  t.ok(served(d, 'k1', 'ADD'));
  await d.stop('SIGKILL');
  t.ok(existsSync(d.socket), 'kill -9 leaves the socket file (ECONNREFUSED)');
  const a2 = await call(e, d.socket, 'ADD', pods[1], 'k2', cfg);
  t.equal(a2.code, 0, `ADD falls back ${a2.stdout}${a2.stderr}`);
  t.match(a2.json, { ips: [{ address: '10.89.0.3/24' }] });

  // A daemon that is stopped cleanly removes its socket (ENOENT).
  const d2 = await startDaemon(t, e.host, e.dir);
  const a3 = await call(e, d2.socket, 'ADD', pods[2], 'k3', cfg);
  t.equal(a3.code, 0);
  t.ok(served(d2, 'k3', 'ADD'), 'a new daemon took over the stale socket');
  await d2.stop('SIGTERM');
  t.notOk(existsSync(d2.socket), 'SIGTERM removes the socket');
  for (const [i, id] of ['k1', 'k2', 'k3'].entries()) {
    const del = await call(e, d2.socket, 'DEL', pods[i], id, cfg);
    t.equal(del.code, 0, `DEL ${id} in-process`);
  }
  t.same(ipFiles(e.dataDir), []);
  t.same(await hostVeths(e.host), []);
});

t.test('a daemon in another network namespace is not used', async (t) => {
  const e = await env(t);
  const other = await e.ns();
  const d = await startDaemon(t, other, e.dir);
  const c = await e.ns();
  const cfg = conf(e.dataDir);
  const add = await call(e, d.socket, 'ADD', c, 'o1', cfg);
  t.equal(add.code, 0, `ADD ${add.stdout}${add.stderr}`);
  t.notOk(served(d, 'o1', 'ADD'), 'the daemon told the shim to fall back');
  t.equal((await hostVeths(e.host)).length, 1, 'the veth is in the caller namespace');
  const otherLinks = await inNetns(other, 'ip', ['-o', 'link', 'show', 'type', 'veth'], false);
  t.equal(otherLinks.stdout.trim(), '', 'nothing in the daemon namespace');
  t.equal((await call(e, d.socket, 'DEL', c, 'o1', cfg)).code, 0);
});

t.test('50 concurrent ADD and DEL via the daemon: no duplicate IPs, no leaks', async (t) => {
  const e = await env(t);
  const d = await startDaemon(t, e.host, e.dir);
  const cfg = conf(e.dataDir);
  const pods = await Promise.all(Array.from({ length: 50 }, () => e.ns()));
  const adds = await Promise.all(pods.map((p, i) => call(e, d.socket, 'ADD', p, `cc${i}`, cfg)));
  t.equal(adds.filter((a) => a.code === 0).length, 50, 'all ADDs succeed');
  const ips = adds.map((a) => (a.json?.ips as { address: string }[] | undefined)?.[0]?.address);
  t.equal(new Set(ips).size, 50, 'no duplicate IPs');
  t.equal(pods.filter((_, i) => served(d, `cc${i}`, 'ADD')).length, 50, 'all served by the daemon');
  t.equal(ipFiles(e.dataDir).length, 50);
  t.equal((await hostVeths(e.host)).length, 50);
  const dels = await Promise.all(pods.map((p, i) => call(e, d.socket, 'DEL', p, `cc${i}`, cfg)));
  t.equal(dels.filter((a) => a.code === 0).length, 50, 'all DELs succeed');
  t.same(ipFiles(e.dataDir), [], 'no leaked IP files');
  t.same(await hostVeths(e.host), [], 'no leaked veths');
});

t.test('malformed requests over the socket: error JSON, and the daemon keeps serving', async (t) => {
  const e = await env(t);
  const d = await startDaemon(t, e.host, e.dir);
  const payloads: (string | Buffer)[] = [
    '',
    'not the protocol',
    'KNODE-CNI/2 ../../bin/sh\nstdin 0\n\n',
    'KNODE-CNI/2 knode-bridge\nLD_PRELOAD 9\n/tmp/x.so\nstdin 0\n\n',
    encodeRequest({ plugin: 'knode-bridge', env: { CNI_COMMAND: 'ADD' }, stdin: Buffer.from('{') }),
    encodeRequest({
      plugin: 'knode-bridge',
      env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x', CNI_NETNS: '/nonexistent', CNI_IFNAME: 'eth0', CNI_PATH: '/x' },
      stdin: Buffer.from(JSON.stringify(conf(e.dataDir))),
    }),
  ];
  const files = payloads.map((p, i) => {
    const f = join(e.dir, `payload${i}`);
    writeFileSync(f, p);
    return f;
  });
  const res = await inNetns(e.host, process.execPath, [rawClient, d.socket, ...files], false);
  const answers = JSON.parse(res.stdout) as string[];
  t.equal(answers.length, payloads.length);
  for (const [i, a] of answers.entries()) {
    t.ok(a.startsWith(ACK) && a.endsWith(TRAILER), `payload ${i}: a complete KNODE-CNI/2 answer`);
    const r = parseAnswer(a);
    if (r.kind !== 'response') {
      t.fail(`payload ${i}: ${a}`);
      continue;
    }
    t.equal(r.response.exitCode, 1, `payload ${i} fails`);
    t.match(JSON.parse(r.response.stdout), { cniVersion: String, code: Number, msg: String }, `payload ${i}: error JSON ${r.response.stdout}`);
  }
  t.equal(d.proc.exitCode, null, 'the daemon is still running');
  const c = await e.ns();
  const add = await call(e, d.socket, 'ADD', c, 'm1', conf(e.dataDir));
  t.equal(add.code, 0);
  t.ok(served(d, 'm1', 'ADD'), 'and still serving');
  t.equal((await call(e, d.socket, 'DEL', c, 'm1', conf(e.dataDir))).code, 0);
  t.same(ipFiles(e.dataDir), []);
});

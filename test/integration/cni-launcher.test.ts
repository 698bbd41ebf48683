// The sh launcher (cni/launcher.sh, as installed: one file, the plugin names linked to it) for
// real: dash + socat + knode-cni-daemon inside a throw-away "host" netns, on a temporary socket;
// and without a daemon, the plugin bundle it execs. Nothing touches the root netns.
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { buildDaemon, buildPlugins, createNetns, deleteNetns, inNetns, runPlugin } from '../../cni/testing/harness.js';
import type { Netns, PluginOutcome } from '../../cni/testing/harness.js';
import { installLauncher } from '../../cni/launcher.js';
import { execFile } from '../../lib/exec.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bundleDir = join(root, 'build', 'cni-test');

await buildPlugins();
const daemonBundle = await buildDaemon();

type Tap = { teardown(fn: () => void | Promise<void>): void };

interface Daemon {
  proc: ChildProcess;
  log(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

async function startDaemon(t: Tap, ns: Netns, socket: string): Promise<Daemon> {
  const lines: string[] = [];
  const proc = spawn('nsenter', [`--net=${ns.path}`, process.execPath, daemonBundle, '--socket', socket, '--log-requests'], {
    env: { ...process.env, KNODE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  proc.stderr!.on('data', (b: Buffer) => lines.push(b.toString('utf8')));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    await exited;
  };
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGCONT');
    await stop('SIGKILL');
  });
  for (let i = 0; i < 200 && !lines.join('').includes('"listening"'); i++) {
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!lines.join('').includes('"listening"')) throw new Error(`daemon did not start: ${lines.join('')}`);
  return { proc, log: () => lines.join(''), stop };
}

interface Env {
  host: Netns;
  dir: string;
  bin: string;
  socket: string;
  dataDir: string;
  ns(): Promise<Netns>;
}

/** A host netns, and a launcher dir whose socket is dir/cni.sock (no daemon yet). */
async function env(t: Tap): Promise<Env> {
  const host = await createNetns();
  const created: Netns[] = [host];
  const dir = mkdtempSync(join(tmpdir(), 'knode-t-launch-'));
  t.teardown(async () => {
    for (const ns of created.reverse()) await deleteNetns(ns);
    rmSync(dir, { recursive: true, force: true });
  });
  await inNetns(host, 'ip', ['link', 'set', 'lo', 'up'], false);
  const bin = join(dir, 'bin');
  const socket = join(dir, 'cni.sock');
  await installLauncher(bin, { node: process.execPath, dist: bundleDir, socket, generator: 'cni-launcher.test.ts' });
  return {
    host,
    dir,
    bin,
    socket,
    dataDir: join(dir, 'ipam'),
    ns: async () => {
      const ns = await createNetns();
      created.push(ns);
      return ns;
    },
  };
}

const conf = (dataDir: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  cniVersion: '1.0.0',
  name: 'knode-t-net',
  type: 'knode-bridge',
  bridge: 'kbr1',
  isGateway: true,
  ipMasq: false,
  ipam: { type: 'knode-host-local', dataDir, ranges: [[{ subnet: '10.88.0.0/24' }]] },
  ...extra,
});

interface CallOptions {
  plugin?: string;
  env?: Record<string, string>;
  cniArgs?: string;
  netns?: string;
}

function call(e: Env, command: string, ns: Netns | undefined, id: string, config: unknown, o: CallOptions = {}): Promise<PluginOutcome> {
  const plugin = o.plugin ?? 'knode-bridge';
  return runPlugin({
    plugin,
    dir: e.bin,
    command,
    host: e.host,
    containerId: id,
    netns: o.netns ?? ns?.path ?? '',
    ifName: plugin.endsWith('loopback') ? 'lo' : 'eth0',
    config,
    ...(o.cniArgs !== undefined ? { cniArgs: o.cniArgs } : {}),
    env: o.env ?? {},
  });
}

function served(d: Daemon, id: string, command: string): boolean {
  return d.log().includes(`"command":"${command}","containerId":"${id}"`);
}

function ipFiles(dataDir: string): string[] {
  const d = join(dataDir, 'knode-t-net');
  return existsSync(d) ? readdirSync(d).filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n)) : [];
}

async function hostVeths(host: Netns): Promise<string[]> {
  const out = await inNetns(host, 'ip', ['-o', 'link', 'show', 'type', 'veth'], false);
  return out.stdout.split('\n').filter((l) => l.trim() !== '');
}

t.test('the installed launcher: one rendered file, the names linked to it', async (t) => {
  const e = await env(t);
  const text = readFileSync(join(e.bin, 'knode-cni-launcher'), 'utf8');
  t.match(text, /^#!\/bin\/sh\n# knode CNI plugin launcher, made from cni\/launcher.sh by cni-launcher.test.ts/);
  t.notMatch(text, /@[A-Z]+@/, 'every placeholder rendered');
  t.match(text, `sock=\${KNODE_CNI_SOCKET:-'${e.socket}'}`);
  const check = await execFile('sh', ['-n', join(e.bin, 'knode-cni-launcher')], { allowFailure: true });
  t.equal(check.code, 0, `sh -n: ${check.stderr}`);
  for (const name of ['knode-bridge', 'knode-host-local', 'knode-loopback', 'knode-portmap', 'knode-flannel', 'loopback']) {
    t.ok(existsSync(join(e.bin, name)), name);
  }
  t.same(await installLauncher(e.bin, { node: process.execPath, dist: bundleDir, socket: e.socket, generator: 'cni-launcher.test.ts' }), [], 'idempotent');
});

t.test('through launcher + daemon: ADD, CHECK, VERSION, DEL; no Node process per call', async (t) => {
  const e = await env(t);
  const d = await startDaemon(t, e.host, e.socket);
  const c1 = await e.ns();
  const cfg = conf(e.dataDir);

  const add = await call(e, 'ADD', c1, 'l1', cfg);
  t.equal(add.code, 0, `ADD: ${add.stdout}${add.stderr}`);
  t.ok(served(d, 'l1', 'ADD'), 'the daemon served the ADD');
  t.match(add.json, { cniVersion: '1.0.0', ips: [{ address: '10.88.0.2/24', gateway: '10.88.0.1' }], interfaces: Array });
  const link = await inNetns(c1, 'ip', ['-o', 'addr', 'show', 'dev', 'eth0'], false);
  t.match(link.stdout, /inet 10\.88\.0\.2\/24/, 'the veth is in the pod with its address');

  const lo = await call(e, 'ADD', c1, 'l1', { cniVersion: '1.0.0', name: 'lo', type: 'loopback' }, { plugin: 'loopback' });
  t.equal(lo.code, 0, `loopback (the name containerd uses): ${lo.stdout}`);
  t.match(d.log(), /"plugin":"knode-loopback","command":"ADD","containerId":"l1"/, 'served as knode-loopback');

  const check = await call(e, 'CHECK', c1, 'l1', { ...cfg, prevResult: add.json });
  t.equal(check.code, 0, `CHECK ${check.stdout}${check.stderr}`);
  t.equal(check.stdout, '', 'CHECK prints nothing');
  t.ok(served(d, 'l1', 'CHECK'));

  const version = await call(e, 'VERSION', undefined, 'x', '');
  t.equal(version.code, 0);
  t.match(version.json, { cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });

  // The fork count of the fast path: cat (stdin) and socat, and no node.
  const trace = join(e.dir, 'strace');
  const traced = await execFile(
    'nsenter',
    [`--net=${e.host.path}`, 'strace', '-f', '-qq', '-e', 'trace=execve', '-e', 'signal=none', '-o', trace, join(e.bin, 'knode-bridge')],
    { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: 'VERSION' }, input: '{}', allowFailure: true },
  );
  t.equal(traced.code, 0, traced.stderr);
  const execs = readFileSync(trace, 'utf8')
    .split('\n')
    .filter((l) => l.includes('execve(') && l.includes('= 0'))
    .map((l) => /execve\("([^"]+)"/.exec(l)?.[1]);
  t.same(execs.slice(1).map((f) => f?.split('/').pop()), ['cat', 'socat'], `what ran besides the launcher: ${execs.join(' ')}`);

  for (let i = 0; i < 2; i++) {
    const del = await call(e, 'DEL', c1, 'l1', cfg);
    t.equal(del.code, 0, `DEL #${i + 1} ${del.stdout}${del.stderr}`);
  }
  t.ok(served(d, 'l1', 'DEL'));
  t.same(ipFiles(e.dataDir), [], 'no IP file left');
  t.same(await hostVeths(e.host), [], 'no veth left');
});

t.test('errors come back from the daemon with their codes and exit 1', async (t) => {
  const e = await env(t);
  const d = await startDaemon(t, e.host, e.socket);
  const c = await e.ns();
  const bad = await call(e, 'ADD', c, 'e1', conf(e.dataDir, { mtu: 'big' }));
  t.equal(bad.code, 1);
  t.match(bad.json, { code: 7, msg: /mtu/ });
  t.ok(served(d, 'e1', 'ADD'), 'served by the daemon');
  const badId = await call(e, 'ADD', c, 'bad/id', conf(e.dataDir));
  t.equal(badId.code, 1);
  t.match(badId.json, { code: 4, msg: 'invalid characters in containerID' });
  const noNetns = await call(e, 'ADD', c, 'e2', conf(e.dataDir), { netns: '/nonexistent/ns' });
  t.equal(noNetns.code, 1);
  t.match(noNetns.json, { code: 3 });
  const malformed = await call(e, 'ADD', c, 'e3', '{"cniVersion": ');
  t.equal(malformed.code, 1);
  t.match(malformed.json, { code: 6, msg: /error decoding network config/ });
  const unknownCmd = await call(e, 'FROB', c, 'e4', conf(e.dataDir));
  t.match(unknownCmd.json, { code: 4, msg: 'unknown CNI_COMMAND: FROB' });
  t.same(ipFiles(e.dataDir), [], 'nothing allocated');

  // Launcher-side errors: a name that is no plugin, a socket path socat would misparse.
  symlinkSync('knode-cni-launcher', join(e.bin, 'frobnicate'));
  const name = await call(e, 'VERSION', undefined, 'x', '', { plugin: 'frobnicate' });
  t.equal(name.code, 1);
  t.match(name.json, { code: 7, msg: /called by a name that is not a knode plugin/ });
  const comma = await call(e, 'VERSION', undefined, 'x', '', { env: { KNODE_CNI_SOCKET: `${e.socket},fork` } });
  t.equal(comma.code, 1);
  t.match(comma.json, { code: 4, msg: /KNODE_CNI_SOCKET/ });
});

t.test('values with spaces, quotes, newlines, and a large stdin pass unchanged', async (t) => {
  const e = await env(t);
  const d = await startDaemon(t, e.host, e.socket);
  const c = await e.ns();
  // An invalid CNI_ARGS pair comes back verbatim in the error's details: compare with the plugin
  // run in-process (KNODE_CNI_DAEMON=off), which sees the environment itself.
  const odd = 'K8S_POD_NAME=a b;bad pair with "quotes" and \'single\' $HOME `x` \\n\nsecond line\n\n';
  const viaDaemon = await call(e, 'ADD', c, 'v1', conf(e.dataDir), { cniArgs: odd });
  const inProcess = await call(e, 'ADD', c, 'v1', conf(e.dataDir), { cniArgs: odd, env: { KNODE_CNI_DAEMON: 'off' } });
  t.ok(served(d, 'v1', 'ADD'), 'the first went to the daemon');
  t.equal(viaDaemon.code, 1);
  t.match(viaDaemon.json, { code: 4, msg: 'CNI_ARGS: invalid pair' });
  t.equal(viaDaemon.stdout, inProcess.stdout, 'the same error, details included');
  t.equal((viaDaemon.json as { details?: string }).details, 'bad pair with "quotes" and \'single\' $HOME `x` \\n\nsecond line\n\n');

  const spaced = '/nonexistent dir/with "quote"\nns';
  const ns = await call(e, 'ADD', c, 'v2', conf(e.dataDir), { netns: spaced });
  t.ok(served(d, 'v2', 'ADD'));
  t.match(ns.json, { code: 3 });
  t.ok(ns.stdout.includes(JSON.stringify(spaced).slice(1, -1)), `the netns path arrived whole: ${ns.stdout}`);

  // A config far above a pipe buffer (the here-document then has a writer process).
  const big = conf(e.dataDir, { args: { cni: { pad: 'x'.repeat(200_000) } } });
  const add = await call(e, 'ADD', c, 'v3', big, { cniArgs: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=a b' });
  t.equal(add.code, 0, `ADD with a 200 kB config: ${add.stdout.slice(0, 300)}${add.stderr.slice(0, 300)}`);
  t.ok(served(d, 'v3', 'ADD'));
  t.equal((await call(e, 'DEL', c, 'v3', big)).code, 0);
  t.same(ipFiles(e.dataDir), []);
});

t.test('no daemon: the launcher runs the plugin itself', async (t) => {
  const e = await env(t);
  const c = await e.ns();
  const cfg = conf(e.dataDir);
  t.notOk(existsSync(e.socket), 'no socket');
  const add = await call(e, 'ADD', c, 'n1', cfg);
  t.equal(add.code, 0, `ADD ${add.stdout}${add.stderr}`);
  t.match(add.json, { ips: [{ address: '10.88.0.2/24' }] });
  const check = await call(e, 'CHECK', c, 'n1', { ...cfg, prevResult: add.json });
  t.equal(check.code, 0, check.stdout);
  const bad = await call(e, 'ADD', c, 'n2', conf(e.dataDir, { mtu: 'big' }));
  t.match(bad.json, { code: 7 }, 'errors too');
  t.equal((await call(e, 'DEL', c, 'n1', cfg)).code, 0);
  t.same(ipFiles(e.dataDir), []);
  t.same(await hostVeths(e.host), []);
});

t.test('daemon killed, stopped, or in another namespace', async (t) => {
  const e = await env(t);
  const cfg = conf(e.dataDir);
  const pods = await Promise.all([e.ns(), e.ns(), e.ns()]);
  const d = await startDaemon(t, e.host, e.socket);
  t.equal((await call(e, 'ADD', pods[0], 'k1', cfg)).code, 0);
  t.ok(served(d, 'k1', 'ADD'));

  // Stopped (hung): socat times out; CNI error 11, and the request is never run afterwards.
  d.proc.kill('SIGSTOP');
  const hung = await call(e, 'ADD', pods[1], 'k2', cfg, { env: { KNODE_CNI_TIMEOUT: '2' } });
  t.equal(hung.code, 1);
  t.match(hung.json, { code: 11, msg: /try again later/ });
  d.proc.kill('SIGCONT');
  // The resumed daemon finds the client gone (peer refused) or fails to acknowledge (dropped).
  const dropped = async (): Promise<boolean> => /request dropped|"peer refused"/.test(d.log());
  for (let i = 0; i < 100 && !(await dropped()); i++) await new Promise((r) => setTimeout(r, 50));
  t.ok(await dropped(), 'the resumed daemon dropped the request of the client that gave up');
  t.notOk(served(d, 'k2', 'ADD'), 'and did not run it');
  t.equal(ipFiles(e.dataDir).length, 1, 'no IP allocated for it');

  // Killed: the socket file stays (ECONNREFUSED): the next calls run in-process.
  await d.stop('SIGKILL');
  t.ok(existsSync(e.socket), 'kill -9 leaves the socket file');
  const a2 = await call(e, 'ADD', pods[1], 'k2', cfg);
  t.equal(a2.code, 0, `ADD falls back: ${a2.stdout}${a2.stderr}`);
  t.match(a2.json, { ips: [{ address: '10.88.0.3/24' }] });

  // A daemon in another namespace answers "fallback netns": the work happens in the caller's.
  const other = await e.ns();
  const d2 = await startDaemon(t, other, e.socket);
  const a3 = await call(e, 'ADD', pods[2], 'k3', cfg);
  t.equal(a3.code, 0, `ADD ${a3.stdout}${a3.stderr}`);
  t.notOk(served(d2, 'k3', 'ADD'), 'not served there');
  const otherLinks = await inNetns(other, 'ip', ['-o', 'link', 'show', 'type', 'veth'], false);
  t.equal(otherLinks.stdout.trim(), '', 'nothing in the daemon namespace');
  t.equal((await hostVeths(e.host)).length, 3, 'all three veths in the caller namespace');
  await d2.stop('SIGTERM');

  // Back in the right namespace: DELs through the daemon again.
  const d3 = await startDaemon(t, e.host, e.socket);
  for (const [i, id] of ['k1', 'k2', 'k3'].entries()) {
    const del = await call(e, 'DEL', pods[i], id, cfg);
    t.equal(del.code, 0, `DEL ${id}`);
    t.ok(served(d3, id, 'DEL'), `DEL ${id} served by the daemon`);
  }
  t.same(ipFiles(e.dataDir), []);
  t.same(await hostVeths(e.host), []);
});

// The daemon server with fake plugins on a temporary socket (no root, no netlink): framing, bad
// requests, timeouts, concurrency, env and stderr handling, socket file life cycle.
import t from 'tap';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniDaemon } from '../../cni/daemon/server.js';
import { exchangeRaw, requestDaemon } from '../../cni/daemon/client.js';
import { ACK, encodeRequest, requestFromEnv } from '../../cni/daemon/protocol.js';
import type { DaemonRequest } from '../../cni/daemon/protocol.js';
import type { CmdArgs, CniPlugin } from '../../cni/skel.js';
import { CniCode, CniError } from '../../cni/types.js';
import type { CniResult } from '../../cni/types.js';
import { createLogger } from '../../lib/log.js';

const quiet = createLogger({ component: 'test', write: () => undefined });
const dir = mkdtempSync(join(tmpdir(), 'knode-daemon-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const seen: CmdArgs[] = [];
let active = 0;
let maxActive = 0;
const fake: CniPlugin = {
  name: 'knode-bridge',
  async add(args: CmdArgs): Promise<CniResult> {
    seen.push(args);
    active++;
    maxActive = Math.max(maxActive, active);
    args.log.info('adding', { id: args.containerId });
    const wait = Number(args.args.get('WAIT') ?? '0');
    await new Promise((r) => setTimeout(r, wait));
    active--;
    if (args.args.get('FAIL') === 'throw') throw new Error('boom');
    if (args.args.get('FAIL') === 'cni') throw new CniError(CniCode.InvalidConfig, 'bad config');
    return { cniVersion: args.cniVersion, ips: [{ address: '10.1.0.2/24' }] };
  },
  del: async () => undefined,
  check: async () => undefined,
};

const socketPath = join(dir, 'sub', 'cni.sock');
const daemon = new CniDaemon({
  socketPath,
  plugins: { 'knode-bridge': fake },
  requestTimeoutMs: 500,
  baseEnv: { PATH: '/daemon/bin', CNI_COMMAND: 'DEL', CNI_NETNS: '/daemon/ns' },
  log: quiet,
});
await daemon.listen();
t.teardown(() => daemon.close());

const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'net1', type: 'knode-bridge' });
const req = (over: Record<string, string> = {}, plugin: DaemonRequest['plugin'] = 'knode-bridge'): DaemonRequest =>
  requestFromEnv(plugin, { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/c1', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin', ...over }, conf);

t.test('socket file is mode 0600', async (t) => {
  t.equal(statSync(socketPath).mode & 0o777, 0o600);
});

t.test('an ADD runs the plugin through the skeleton', async (t) => {
  const o = await requestDaemon(socketPath, req({ CNI_CONTAINERID: 'ok1' }));
  t.equal(o.kind, 'response');
  if (o.kind !== 'response') return;
  t.equal(o.response.exitCode, 0);
  t.same(JSON.parse(o.response.stdout), { cniVersion: '1.0.0', ips: [{ address: '10.1.0.2/24' }], dns: {} });
  t.match(o.response.stderr, /"msg":"adding".*"id":"ok1"/, 'the request logs come back as stderr');
  const args = seen.find((a) => a.containerId === 'ok1')!;
  t.equal(args.env.PATH, '/daemon/bin', 'PATH from the daemon');
  t.equal(args.netns, '/run/netns/c1', 'CNI_NETNS from the request, never from the daemon env');
  t.equal(args.env.CNI_COMMAND, 'ADD');
});

t.test('VERSION and plugin errors', async (t) => {
  const v = await requestDaemon(socketPath, req({ CNI_COMMAND: 'VERSION' }));
  t.match(v, { kind: 'response', response: { exitCode: 0, stdout: /supportedVersions/ } });
  const cni = await requestDaemon(socketPath, req({ CNI_CONTAINERID: 'f1', CNI_ARGS: 'FAIL=cni' }));
  t.match(cni, { kind: 'response', response: { exitCode: 1 } });
  if (cni.kind === 'response') t.match(JSON.parse(cni.response.stdout), { code: 7, msg: 'bad config' });
  const thrown = await requestDaemon(socketPath, req({ CNI_CONTAINERID: 'f2', CNI_ARGS: 'FAIL=throw' }));
  if (thrown.kind === 'response') t.match(JSON.parse(thrown.response.stdout), { code: 999, msg: 'boom' });
  else t.fail('no response');
  const missing = await requestDaemon(socketPath, req({}, 'knode-loopback'));
  if (missing.kind === 'response') t.match(JSON.parse(missing.response.stdout), { code: 7, msg: /not served/ });
  else t.fail('no response');
  const badEnv = await requestDaemon(socketPath, req({ CNI_CONTAINERID: '' }));
  if (badEnv.kind === 'response') t.match(JSON.parse(badEnv.response.stdout), { code: 4 });
  else t.fail('no response');
});

t.test('malformed requests get an error JSON and the daemon keeps serving', async (t) => {
  const payloads: (string | Buffer)[] = [
    '',
    'garbage',
    'KNODE-CNI/2 knode-bridge\n',
    'KNODE-CNI/2 knode-bridge\nPATH 2\n/x\nstdin 0\n\n',
    'KNODE-CNI/2 knode-bridge\nCNI_COMMAND 30\nADD\nstdin 0\n\n',
    Buffer.from([0xff, 0xfe, 0x00, 0x01]),
    Buffer.alloc(2 << 20, 0x61),
  ];
  for (const p of payloads) {
    const o = await exchangeRaw(socketPath, p, { timeoutMs: 5000 });
    t.equal(o.kind, 'response', `answered ${String(p).slice(0, 20)}`);
    if (o.kind !== 'response') continue;
    t.ok(o.raw?.startsWith(ACK), 'acknowledged, then answered');
    t.equal(o.response.exitCode, 1);
    const body = JSON.parse(o.response.stdout) as { code: number; msg: string };
    t.ok([4, 6, 7].includes(body.code), `code ${body.code}: ${body.msg}`);
  }
  for (const other of ['KNODE-CNI/9 knode-bridge\nstdin 0\n\n', JSON.stringify({ v: 1, plugin: 'knode-bridge', env: {}, stdin: '' })]) {
    const o = await exchangeRaw(socketPath, other);
    t.match(o, { kind: 'unavailable', reason: /fallback protocol/, raw: 'KNODE-CNI/2 fallback protocol\n' }, 'another version: do it yourself');
  }
  const after = await requestDaemon(socketPath, req({ CNI_CONTAINERID: 'after' }));
  t.match(after, { kind: 'response', response: { exitCode: 0 } }, 'still serving');
});

t.test('a client that disconnects early does not hurt the daemon', async (t) => {
  const { connect } = await import('node:net');
  await new Promise<void>((resolve) => {
    const s = connect(socketPath, () => {
      s.write('KNODE-CNI/2 knode-br');
      s.destroy();
      resolve();
    });
  });
  // A request that is still running when its client goes away.
  await new Promise<void>((resolve) => {
    const s = connect({ path: socketPath, allowHalfOpen: true }, () => {
      s.end(encodeRequest(req({ CNI_CONTAINERID: 'gone', CNI_ARGS: 'WAIT=100' })));
      setTimeout(() => {
        s.destroy();
        resolve();
      }, 20);
    });
  });
  await new Promise((r) => setTimeout(r, 150));
  const after = await requestDaemon(socketPath, req({ CNI_CONTAINERID: 'after2' }));
  t.match(after, { kind: 'response', response: { exitCode: 0 } });
});

t.test('per-request timeout', async (t) => {
  const started = performance.now();
  const o = await requestDaemon(socketPath, req({ CNI_CONTAINERID: 'slow', CNI_ARGS: 'WAIT=2000' }));
  t.ok(performance.now() - started < 1500, 'answered at the timeout, not when the plugin finished');
  if (o.kind === 'response') t.match(JSON.parse(o.response.stdout), { code: 11, msg: /timed out after 500 ms; try again later/ });
  else t.fail('no response');
});

t.test('requests run concurrently', async (t) => {
  maxActive = 0;
  const outs = await Promise.all(
    Array.from({ length: 20 }, (_, i) => requestDaemon(socketPath, req({ CNI_CONTAINERID: `cc${i}`, CNI_ARGS: 'WAIT=50' }))),
  );
  t.equal(outs.filter((o) => o.kind === 'response' && o.response.exitCode === 0).length, 20);
  t.ok(maxActive > 1, `overlapping requests (max ${maxActive})`);
});

t.test('client outcomes: no daemon, not a socket', async (t) => {
  t.match(await requestDaemon(join(dir, 'nope.sock'), req()), { kind: 'unavailable', reason: 'ENOENT' });
  const file = join(dir, 'plain');
  writeFileSync(file, '');
  t.match(await requestDaemon(file, req()), { kind: 'unavailable', reason: 'ECONNREFUSED' });
  // A server that accepts and closes without answering: the request is "lost".
  const rude = createServer((s) => s.destroy());
  const rudePath = join(dir, 'rude.sock');
  await new Promise<void>((r) => rude.listen(rudePath, r));
  t.teardown(() => new Promise<void>((r) => rude.close(() => r())));
  t.match(await requestDaemon(rudePath, req()), { kind: 'lost', reason: /no answer/ });
  // One that acknowledges and then hangs: "lost" at the client's timeout (the launcher: socat -t).
  const held: Socket[] = [];
  const hung = createServer({ allowHalfOpen: true }, (s) => {
    held.push(s);
    s.on('end', () => s.write(ACK));
  });
  const hungPath = join(dir, 'hung.sock');
  await new Promise<void>((r) => hung.listen(hungPath, r));
  t.teardown(() => {
    for (const s of held) s.destroy();
    return new Promise<void>((r) => hung.close(() => r()));
  });
  t.match(await requestDaemon(hungPath, req(), { timeoutMs: 300 }), { kind: 'lost', reason: 'timeout after 300 ms' });
});

t.test('listen: a live daemon is an error, a stale socket file is replaced', async (t) => {
  const second = new CniDaemon({ socketPath, plugins: {}, requestTimeoutMs: 100, log: quiet });
  await t.rejects(second.listen(), { code: 'CNI_DAEMON_RUNNING' });
  const stalePath = join(dir, 'stale.sock');
  const s = createServer();
  await new Promise<void>((r) => s.listen(stalePath, r));
  // Leave the socket file behind without a listener, as a killed daemon does.
  const { unlinkSync, linkSync } = await import('node:fs');
  linkSync(stalePath, stalePath + '.keep');
  await new Promise<void>((r) => s.close(() => r()));
  linkSync(stalePath + '.keep', stalePath);
  unlinkSync(stalePath + '.keep');
  const third = new CniDaemon({ socketPath: stalePath, plugins: { 'knode-bridge': fake }, requestTimeoutMs: 100, log: quiet });
  await third.listen();
  t.match(await requestDaemon(stalePath, req({ CNI_CONTAINERID: 'stale' })), { kind: 'response', response: { exitCode: 0 } });
  await third.close();
  const notSock = join(dir, 'file.sock');
  writeFileSync(notSock, '');
  await t.rejects(new CniDaemon({ socketPath: notSock, plugins: {}, requestTimeoutMs: 100, log: quiet }).listen(), {
    code: 'CNI_DAEMON_SOCKET_PATH',
  });
});

/**
 * Port-forward back-pressure on the Docker backend, for real: a throw-away
 * dockerd in a `knode-t-<random>` namespace runs a pod whose busybox httpd
 * serves a 100 MiB file; the kubelet's direct port-forward
 * (serveDirectPortForward, SPDY/3.1 on an upgraded connection) runs in this process on 127.0.0.1:0 with the backend's
 * portForwardConnect (a connection made inside the pod's netns). A client
 * reads slowly (what the socket holds, then a pause): every byte arrives
 * (sha256 of the whole file), the server's send buffer towards the client
 * stays bounded (the pod connection is paused while it is full, resumed on
 * drain) and this process's RSS does not grow by anything like the file.
 * The same over the WebSocket tunnel (SPDY/3.1+portforward.k8s.io, kubectl's
 * default; the client's framing done by hand: ws refuses that subprotocol,
 * not an RFC 6455 token), and the tunnel's transport (webSocketTransport)
 * alone on a real WebSocket pair.
 *
 * Without the back-pressure the pod side is read at full speed and the
 * whole 100 MiB queues in the kubelet's socket buffer (this test fails).
 *
 * Teardown: test/helpers/dockerd.ts removes the containers, then
 * test/helpers/containerd.ts removes processes, mounts, the cgroup parent,
 * the namespace and the temp dir.
 */
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import type { PodSandboxConfig } from '../../agent/runtime/types.js';
import { serveDirectPortForward, webSocketTransport } from '../../agent/server/direct-streaming.js';
import { SpdyClient } from '../../agent/server/spdy.js';
import { imageArchive, imageRefs } from '../../lab/paths.js';
import { createTestEnv } from '../helpers/containerd.js';
import { startDockerRuntime } from '../helpers/dockerd.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}
for (const name of ['pause', 'app'] as const) {
  if (!existsSync(imageArchive(name, 'docker'))) {
    t.fail(`${imageArchive(name, 'docker')} missing: run scripts/setup (or knode-lab images build)`);
    process.exit(1);
  }
}

const fileSize = 100 * 1024 * 1024;
const line = 'knode port-forward back-pressure 0123456789\n';

/** sha256 of the file the pod serves: `line` repeated, cut at fileSize (what `yes | head -c` writes). */
function expectedSha(): string {
  const h = createHash('sha256');
  const block = Buffer.from(line.repeat(Math.ceil(65536 / line.length) * 16));
  for (let left = fileSize; left > 0; left -= block.length) h.update(left >= block.length ? block : block.subarray(0, left));
  return h.digest('hex');
}

function rssMB(): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) / 1024;
}

const env = await createTestEnv(t, 'docker-pf');
const { rand, tmp } = env;
const { rt, cgroupParent } = await startDockerRuntime(env, { subnet: '10.253.1.0/24', component: 'docker-pf-test' });
t.teardown(() => rt.close());

const uid = `uid-${rand}`;
const sandboxConfig: PodSandboxConfig = {
  metadata: { name: 'big', namespace: 'default', uid, attempt: 0 },
  hostname: 'big',
  logDirectory: join(tmp, 'pod-logs'),
  labels: { 'io.kubernetes.pod.uid': uid },
  annotations: {},
  linux: { cgroupParent },
};
const sandboxId = await rt.runPodSandbox(sandboxConfig);
t.teardown(() => rt.removePodSandbox(sandboxId));
const serve = `mkdir -p /tmp/www && yes '${line.trimEnd()}' | head -c ${fileSize} > /tmp/www/big.part && mv /tmp/www/big.part /tmp/www/big && exec httpd -f -p 8080 -h /tmp/www`;
const appId = await rt.createContainer(
  sandboxId,
  {
    metadata: { name: 'app', attempt: 0 },
    image: { image: imageRefs.app },
    command: ['sh', '-c', serve],
    logPath: 'app/0.log',
    labels: { 'io.kubernetes.pod.uid': uid, 'io.kubernetes.container.name': 'app' },
    annotations: {},
  },
  sandboxConfig,
);
await rt.startContainer(appId);
const connectInPod = (port: number): Promise<Socket> => rt.directStreams.portForwardConnect(sandboxId, port);
for (let i = 0; ; i++) {
  const up = await connectInPod(8080).then(
    (s) => {
      s.destroy();
      return true;
    },
    () => false,
  );
  if (up) break;
  if (i > 600) throw new Error('the pod\'s httpd did not come up in 60 s');
  await new Promise((r) => setTimeout(r, 100));
}

// The kubelet side: the direct port-forward on 127.0.0.1:0, its client sockets kept to watch their buffers.
const serverSockets: Socket[] = [];
const errors: Error[] = [];
const server = createServer((_req, res) => res.writeHead(404).end());
server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
  serverSockets.push(socket);
  const plan = String(req.headers.upgrade).toLowerCase() === 'websocket' ? 'tunnel' : 'spdy';
  serveDirectPortForward(req, socket, head, plan, connectInPod, (err) => errors.push(err)).catch((err: unknown) => errors.push(err instanceof Error ? err : new Error(String(err))));
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
t.teardown(() => {
  for (const s of serverSockets) s.destroy();
  server.closeAllConnections();
  server.close();
});
server.unref();
const port = (server.address() as AddressInfo).port;
const sha = expectedSha();

/** Feeds the HTTP answer through: skips the header, hashes and counts the body. */
function bodyHasher(): { push(d: Buffer): void; result(): { status: string; bytes: number; sha: string } } {
  const h = createHash('sha256');
  let header: Buffer | undefined = Buffer.alloc(0);
  let status = '';
  let bytes = 0;
  return {
    push(d) {
      if (header !== undefined) {
        header = Buffer.concat([header, d]);
        const end = header.indexOf('\r\n\r\n');
        if (end < 0) return;
        status = header.subarray(0, header.indexOf('\r\n')).toString();
        d = header.subarray(end + 4);
        header = undefined;
      }
      h.update(d);
      bytes += d.length;
    },
    result: () => ({ status, bytes, sha: h.digest('hex') }),
  };
}

/** Watches the server's socket buffers and this process's RSS while `run` goes. */
async function watched<T>(run: () => Promise<T>, sockets: () => Socket[] = () => serverSockets): Promise<{ value: T; maxBufferedMB: number; rssGrowthMB: number }> {
  global.gc?.();
  const rss0 = rssMB();
  let maxBuffered = 0;
  let maxRss = rss0;
  const timer = setInterval(() => {
    for (const s of sockets()) maxBuffered = Math.max(maxBuffered, s.writableLength);
    maxRss = Math.max(maxRss, rssMB());
  }, 20);
  try {
    const value = await run();
    return { value, maxBufferedMB: maxBuffered / 1024 / 1024, rssGrowthMB: maxRss - rss0 };
  } finally {
    clearInterval(timer);
  }
}

t.test('SPDY/3.1: 100 MiB to a slow reader arrive whole, with a bounded buffer', async (t) => {
  const sock = connect(port, '127.0.0.1');
  t.teardown(() => sock.destroy());
  await new Promise((r) => sock.once('connect', r));
  sock.write('POST /portForward/default/big HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n');
  // Read the 101 by hand; after it the socket stays paused and is read only by the slow loop.
  let pending: Buffer = Buffer.alloc(0);
  await new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      pending = Buffer.concat([pending, d]);
      const end = pending.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onData);
      sock.pause();
      const head = pending.subarray(0, end).toString();
      pending = pending.subarray(end + 4);
      if (!head.startsWith('HTTP/1.1 101')) reject(new Error(head));
      else resolve();
    };
    sock.on('data', onData);
  });
  // The SPDY client writes to the socket; frames reach it only through receive() below.
  const out = new Duplex({
    read: () => undefined,
    write: (chunk: Buffer, _enc, cb) => (sock.write(chunk) ? cb() : sock.once('drain', () => cb())),
  });
  const body = bodyHasher();
  let dataId = -1;
  let errorText = '';
  let fin = false;
  let errorId = -1;
  const spdy = new SpdyClient(out, {
    onData: (id, data, f) => {
      if (id === dataId) {
        if (data.length > 0) body.push(data);
        if (f) fin = true;
      } else if (id === errorId) errorText += data.toString();
    },
    onReset: () => undefined,
  });
  t.teardown(() => spdy.close());
  errorId = await spdy.openStream({ streamType: 'error', port: '8080', requestID: '0' });
  dataId = await spdy.openStream({ streamType: 'data', port: '8080', requestID: '0' });
  spdy.write(dataId, Buffer.from('GET /big HTTP/1.0\r\nHost: big\r\n\r\n'));
  if (pending.length > 0) spdy.receive(pending);
  const seen = await watched(async () => {
    const closed = new Promise((r) => sock.once('close', r));
    while (!fin) {
      const chunk = sock.read() as Buffer | null;
      if (chunk !== null) spdy.receive(chunk);
      else if (sock.readableEnded || sock.destroyed) break;
      else await Promise.race([new Promise((r) => sock.once('readable', r)), closed]);
      await new Promise((r) => setTimeout(r, 2)); // a slow reader
    }
  });
  const r = body.result();
  t.equal(errorText, '', 'no forwarding error');
  t.match(r.status, /^HTTP\/1\.[01] 200/, 'the pod answered');
  t.equal(r.bytes, fileSize, 'every byte arrived');
  t.equal(r.sha, sha, 'intact (sha256 of the file)');
  t.ok(seen.maxBufferedMB < 4, `the kubelet's send buffer stayed bounded (max ${seen.maxBufferedMB.toFixed(2)} MiB)`);
  t.ok(seen.rssGrowthMB < 48, `RSS grew by ${seen.rssGrowthMB.toFixed(1)} MiB while 100 MiB went through`);
  t.same(errors, [], 'no session error');
});

/** Client WebSocket framing by hand (ws refuses the tunnel's subprotocol as a client): one masked binary frame. Pure. */
function clientFrame(payload: Buffer): Buffer {
  const mask = randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x82, 0x80 | len]) : len < 65536 ? Buffer.from([0x82, 0x80 | 126, len >> 8, len & 0xff]) : Buffer.concat([Buffer.from([0x82, 0x80 | 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(len)); return b; })()]);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= mask[i % 4]!;
  return Buffer.concat([head, mask, body]);
}

/** Server frames (unmasked) → binary payloads; close/ping frames are ignored. */
class FrameParser {
  private buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    for (;;) {
      if (this.buf.length < 2) break;
      const opcode = this.buf[0]! & 0x0f;
      let len = this.buf[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (this.buf.length < 4) break;
        len = this.buf.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) break;
        len = Number(this.buf.readBigUInt64BE(2));
        at = 10;
      }
      if (this.buf.length < at + len) break;
      if (opcode === 0x2 || opcode === 0x0) out.push(this.buf.subarray(at, at + len));
      this.buf = this.buf.subarray(at + len);
    }
    return out;
  }
}

t.test('WebSocket tunnel (SPDY/3.1+portforward.k8s.io): 100 MiB to a slow reader arrive whole, with a bounded buffer', async (t) => {
  const sock = connect(port, '127.0.0.1');
  t.teardown(() => sock.destroy());
  await new Promise((r) => sock.once('connect', r));
  sock.write(
    `GET /portForward/default/big HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\r\n\r\n`,
  );
  let pending: Buffer = Buffer.alloc(0);
  const head = await new Promise<string>((resolve) => {
    const onData = (d: Buffer): void => {
      pending = Buffer.concat([pending, d]);
      const end = pending.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onData);
      sock.pause();
      const h = pending.subarray(0, end).toString();
      pending = pending.subarray(end + 4);
      resolve(h);
    };
    sock.on('data', onData);
  });
  t.match(head, /^HTTP\/1\.1 101/, 'the tunnel accepted');
  t.match(head, /Sec-WebSocket-Protocol: SPDY\/3\.1\+portforward\.k8s\.io/i);
  const out = new Duplex({
    read: () => undefined,
    write: (chunk: Buffer, _enc, cb) => (sock.write(clientFrame(chunk)) ? cb() : sock.once('drain', () => cb())),
  });
  const frames = new FrameParser();
  const body = bodyHasher();
  let dataId = -1;
  let errorId = -1;
  let errorText = '';
  let fin = false;
  const spdy = new SpdyClient(out, {
    onData: (id, data, f) => {
      if (id === dataId) {
        if (data.length > 0) body.push(data);
        if (f) fin = true;
      } else if (id === errorId) errorText += data.toString();
    },
    onReset: () => undefined,
  });
  t.teardown(() => spdy.close());
  errorId = await spdy.openStream({ streamType: 'error', port: '8080', requestID: '2' });
  dataId = await spdy.openStream({ streamType: 'data', port: '8080', requestID: '2' });
  spdy.write(dataId, Buffer.from('GET /big HTTP/1.0\r\nHost: big\r\n\r\n'));
  for (const m of frames.push(pending)) spdy.receive(m);
  const before = serverSockets.length;
  const seen = await watched(async () => {
    const closed = new Promise((r) => sock.once('close', r));
    while (!fin) {
      const chunk = sock.read() as Buffer | null;
      if (chunk !== null) for (const m of frames.push(chunk)) spdy.receive(m);
      else if (sock.readableEnded || sock.destroyed) break;
      else await Promise.race([new Promise((r) => sock.once('readable', r)), closed]);
      await new Promise((r) => setTimeout(r, 2)); // a slow reader
    }
  }, () => serverSockets.slice(before - 1));
  const r = body.result();
  t.equal(errorText, '', 'no forwarding error');
  t.match(r.status, /^HTTP\/1\.[01] 200/, 'the pod answered');
  t.equal(r.bytes, fileSize, 'every byte arrived');
  t.equal(r.sha, sha, 'intact (sha256 of the file)');
  t.ok(seen.maxBufferedMB < 4, `the kubelet's socket buffer stayed bounded (max ${seen.maxBufferedMB.toFixed(2)} MiB)`);
  t.ok(seen.rssGrowthMB < 48, `RSS grew by ${seen.rssGrowthMB.toFixed(1)} MiB while 100 MiB went through`);
  t.same(errors, [], 'no session error');
});

t.test('WebSocket transport of the tunnel: a paused client stops the source, its drain restarts it', async (t) => {
  // The tunnel's transport (webSocketTransport) on a real WebSocket pair on loopback: the kubelet side
  // sends 100 MiB from a source that honours send()'s false and onDrain, the client reads in bursts.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  t.teardown(() => new Promise<void>((r) => wss.close(() => r())));
  await new Promise((r) => wss.once('listening', r));
  const serverSide = new Promise<WebSocket>((r) => wss.once('connection', (ws: WebSocket) => r(ws)));
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, { perMessageDeflate: false });
  t.teardown(() => client.terminate());
  const h = createHash('sha256');
  let received = 0;
  const all = new Promise<void>((r) =>
    client.on('message', (d: Buffer) => {
      h.update(d);
      received += d.length;
      if (received >= fileSize) r();
    }),
  );
  const ws = await serverSide;
  const transport = webSocketTransport(ws, 1 << 20);
  const block = Buffer.from(line.repeat(Math.ceil(65536 / line.length) * 16));
  let pauses = 0;
  const seen = await watched(async () => {
    const slow = setInterval(() => {
      client.pause();
      setTimeout(() => client.resume(), 30);
    }, 50);
    try {
      for (let left = fileSize; left > 0; left -= block.length) {
        if (!transport.send(left >= block.length ? block : block.subarray(0, left))) {
          pauses++;
          await new Promise<void>((r) => transport.onDrain(r));
        }
      }
      await all;
    } finally {
      clearInterval(slow);
      client.resume();
    }
  }, () => [(ws as unknown as { _socket: Socket })._socket]);
  t.equal(received, fileSize, 'every byte arrived');
  t.equal(h.digest('hex'), sha, 'intact (sha256)');
  t.ok(pauses > 0, `the source was paused (${pauses} times)`);
  t.ok(seen.maxBufferedMB < 4, `the socket buffer stayed bounded (max ${seen.maxBufferedMB.toFixed(2)} MiB)`);
});

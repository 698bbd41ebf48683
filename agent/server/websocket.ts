/**
 * The WebSocket protocols kubectl 1.30+ speaks first, which containerd 1.6's
 * streaming server does not: the kubelet translates them to SPDY towards the
 * runtime (what upstream's apiserver does with its StreamTranslator).
 *
 * Design notes:
 * - v5.channel.k8s.io (exec, attach): each WebSocket message is one channel
 *   byte and data — 0 stdin, 1 stdout, 2 stderr, 3 error (the v4 Status
 *   JSON), 4 resize, and v5's 255 "close" with the channel to close (stdin).
 *   Towards the runtime these are SPDY streams of remotecommand v4 (streamType
 *   error, stdin, stdout, stderr, resize — only those the request asked for),
 *   and v5's close of stdin becomes the half-close (FIN) of the stdin stream,
 *   which v4 over WebSocket could not express.
 * - SPDY/3.1+portforward.k8s.io (port-forward): the client runs SPDY inside
 *   binary WebSocket messages; the kubelet upgrades to SPDY with the runtime
 *   (portforward.k8s.io) and copies the bytes both ways without parsing them.
 * - The runtime connection is made before the client's upgrade is accepted,
 *   so a refusal still reaches the client as an HTTP error. Output to a slow
 *   client pauses the runtime socket (bounded buffering). Either side closing
 *   closes the other.
 * - `webSocketPlan` is pure.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { SpdyClient } from './spdy.js';
import { upgradeToRuntime } from './runtime-upgrade.js';
import { runtimeWebSocketProtocols, type StreamRequest } from './streaming.js';

export const v5Protocol = 'v5.channel.k8s.io';
export const portForwardTunnelProtocol = 'SPDY/3.1+portforward.k8s.io';

export type WebSocketPlan = 'passthrough' | 'v5' | 'tunnel';

function offered(headers: IncomingMessage['headers']): string[] {
  return String(headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
}

/**
 * How the kubelet serves an upgrade: passed through to the runtime (SPDY, or
 * a WebSocket protocol the runtime speaks), translated (v5, port-forward
 * tunnel), or undefined when nothing fits (→ 400). Pure.
 */
export function webSocketPlan(kind: StreamRequest['kind'], headers: IncomingMessage['headers']): WebSocketPlan | undefined {
  const upgrade = String(headers.upgrade ?? '').toLowerCase();
  if (upgrade.startsWith('spdy/')) return 'passthrough';
  if (upgrade !== 'websocket') return undefined;
  const protocols = offered(headers);
  if (kind === 'portForward' && protocols.includes(portForwardTunnelProtocol)) return 'tunnel';
  if (kind !== 'portForward' && protocols.includes(v5Protocol)) return 'v5';
  if (protocols.length === 0 || protocols.some((p) => runtimeWebSocketProtocols.includes(p))) return 'passthrough';
  return undefined;
}

/**
 * Completes the client's WebSocket handshake with `protocol`. The offer is
 * taken out of the request and the answer header added by hand: `ws` checks
 * subprotocols against RFC 6455's token syntax, which
 * "SPDY/3.1+portforward.k8s.io" (with its '/') does not pass.
 */
export function accept(req: IncomingMessage, socket: Duplex, head: Buffer, protocol: string): Promise<WebSocket> {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  delete req.headers['sec-websocket-protocol'];
  wss.on('headers', (headers: string[]) => headers.push(`Sec-WebSocket-Protocol: ${protocol}`));
  return new Promise((resolve) => wss.handleUpgrade(req, socket, head, (ws) => resolve(ws)));
}

/** Sends to the client, pausing `source` while too much is queued. */
export function sender(ws: WebSocket, source: Pick<NodeJS.ReadableStream, 'pause' | 'resume' | 'isPaused'>): (data: Buffer) => void {
  let pending = 0;
  return (data) => {
    if (ws.readyState !== ws.OPEN) return;
    pending++;
    if (pending > 64) source.pause();
    ws.send(data, { binary: true }, () => {
      pending--;
      if (pending <= 16 && source.isPaused()) source.resume();
    });
  };
}

function joinClose(ws: WebSocket, runtime: Socket): Promise<void> {
  return new Promise((resolve) => {
    let left = 2;
    const done = (): void => {
      if (--left === 0) resolve();
    };
    runtime.on('error', () => runtime.destroy());
    ws.on('error', () => ws.terminate());
    runtime.once('close', () => {
      if (ws.readyState === ws.OPEN) ws.close(1000);
      else ws.terminate();
      done();
    });
    ws.once('close', () => {
      runtime.destroy();
      done();
    });
  });
}

/** Port-forward over the WebSocket tunnel: SPDY bytes copied between the client's messages and the runtime. */
export async function serveTunnel(req: IncomingMessage, socket: Duplex, head: Buffer, url: string): Promise<void> {
  const up = await upgradeToRuntime(url, 'SPDY/3.1', { 'X-Stream-Protocol-Version': 'portforward.k8s.io' });
  const ws = await accept(req, socket, head, portForwardTunnelProtocol);
  const send = sender(ws, up.socket);
  if (up.rest.length > 0) send(up.rest);
  up.socket.on('data', (d: Buffer) => send(d));
  ws.on('message', (d: Buffer) => {
    if (!up.socket.write(d)) {
      ws.pause();
      up.socket.once('drain', () => ws.resume());
    }
  });
  const closed = joinClose(ws, up.socket);
  up.socket.resume();
  await closed;
}

export const channel = { stdin: 0, stdout: 1, stderr: 2, error: 3, resize: 4, close: 255 } as const;

/** exec/attach for a v5.channel.k8s.io client, as remotecommand v4 over SPDY towards the runtime. */
export async function serveV5(req: IncomingMessage, socket: Duplex, head: Buffer, url: string, s: StreamRequest): Promise<void> {
  const up = await upgradeToRuntime(url, 'SPDY/3.1', { 'X-Stream-Protocol-Version': 'v4.channel.k8s.io' });
  const ws = await accept(req, socket, head, v5Protocol);
  const send = sender(ws, up.socket);
  const toClient = new Map<number, number>();
  const spdy = new SpdyClient(up.socket, {
    onData: (id, data) => {
      const ch = toClient.get(id);
      if (ch !== undefined && data.length > 0) send(Buffer.concat([Buffer.from([ch]), data]));
    },
    onReset: () => undefined,
  });
  const closed = joinClose(ws, up.socket);
  // Client input that arrives while the streams are being opened waits for them.
  const early: Buffer[] = [];
  let ready = false;
  let stdinId: number | undefined;
  let resizeId: number | undefined;
  const fromClient = (msg: Buffer): void => {
    if (msg.length === 0) return;
    const ch = msg[0]!;
    const data = msg.subarray(1);
    if (ch === channel.stdin && stdinId !== undefined) {
      if (!spdy.write(stdinId, data)) {
        ws.pause();
        up.socket.once('drain', () => ws.resume());
      }
    } else if (ch === channel.resize && resizeId !== undefined) spdy.write(resizeId, data);
    else if (ch === channel.close && data[0] === channel.stdin && stdinId !== undefined) spdy.end(stdinId);
  };
  ws.on('message', (msg: Buffer) => (ready ? fromClient(msg) : early.push(msg)));
  try {
    if (up.rest.length > 0) spdy.receive(up.rest);
    up.socket.resume();
    toClient.set(await spdy.openStream({ streamType: 'error' }), channel.error);
    if (s.stdin) stdinId = await spdy.openStream({ streamType: 'stdin' });
    if (s.stdout) toClient.set(await spdy.openStream({ streamType: 'stdout' }), channel.stdout);
    if (s.stderr) toClient.set(await spdy.openStream({ streamType: 'stderr' }), channel.stderr);
    if (s.tty) resizeId = await spdy.openStream({ streamType: 'resize' });
    ready = true;
    for (const m of early.splice(0)) fromClient(m);
    await closed;
  } finally {
    spdy.close();
    up.socket.destroy();
  }
}

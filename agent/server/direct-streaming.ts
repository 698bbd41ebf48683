/**
 * exec, attach and port-forward terminated in the kubelet for runtimes
 * without a streaming server (docker): the kubelet speaks kubectl's protocols
 * and drives the runtime's `DirectStreams` (cri-dockerd's in-process
 * streaming server, in TypeScript).
 *
 * Design notes:
 * - exec/attach: WebSocket v5.channel.k8s.io (and v4.channel.k8s.io, which
 *   lacks only the close-stdin signal). Messages are one channel byte plus
 *   data: 0 stdin, 1 stdout, 2 stderr, 3 error (a v1 Status: Success, or
 *   Failure with reason NonZeroExitCode and the code in details.causes, as
 *   upstream's kubelet sends), 4 resize ({"Width","Height"}), 255 close.
 *   The WebSocket is accepted first and the runtime session made after, so a
 *   runtime failure reaches kubectl as a Failure status on channel 3.
 * - exec/attach over SPDY/3.1 (kubectl's fallback): remotecommand v4, one
 *   client stream per streamType (error, stdin, stdout, stderr, resize); the
 *   session starts once all the request asked for are open; stdin's FIN
 *   closes the process's stdin; the Status goes on the error stream, then the
 *   connection is closed.
 * - port-forward: kubectl speaks portforward.k8s.io over SPDY/3.1, either on
 *   the upgraded connection or tunneled in binary WebSocket messages
 *   (SPDY/3.1+portforward.k8s.io); both run one SpdyServer. Each forwarded
 *   connection is a pair of client streams (streamType error and data, same
 *   requestID and port); the data stream is spliced to a connection made
 *   inside the pod's network namespace, a failure is written to the error
 *   stream, and both are half-closed when the connection ends.
 * - Back-pressure: exec/attach output to a slow client pauses the runtime
 *   side (WebSocket: the unsent messages; SPDY: the socket's buffer). Port-forward has no SPDY flow control (spdystream sends no
 *   WINDOW_UPDATE, see spdy.ts), so the transport is the bound: a pod
 *   connection is paused while the client's socket (or the WebSocket's unsent
 *   bytes) is over its high-water mark and resumed on drain; the other way,
 *   the client's socket is paused while a pod connection is full (or while
 *   more than `earlyLimit` bytes wait for the connection to be made). A
 *   client that goes away closes the session; nothing here throws out of the
 *   server after the upgrade. `directPlan`, `exitStatus`, `failureStatus`, `parseResize` are pure.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { errorMessage } from '../../lib/errors.js';
import type { StdioSession } from '../runtime/types.js';
import { SpdyServer } from './spdy-server.js';
import type { StreamRequest } from './streaming.js';
import { accept, channel, portForwardTunnelProtocol, sender, v5Protocol } from './websocket.js';

export const v4Protocol = 'v4.channel.k8s.io';

export type DirectPlan = 'ws-v5' | 'ws-v4' | 'spdy-v4' | 'tunnel' | 'spdy';

function offered(headers: IncomingMessage['headers']): string[] {
  return String(headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
}

/** How a direct upgrade is served, or undefined (→ 400 with `directUnsupported`). Pure. */
export function directPlan(kind: StreamRequest['kind'], headers: IncomingMessage['headers']): DirectPlan | undefined {
  const upgrade = String(headers.upgrade ?? '').toLowerCase();
  if (kind === 'portForward') {
    if (upgrade === 'spdy/3.1') return 'spdy';
    if (upgrade === 'websocket' && offered(headers).includes(portForwardTunnelProtocol)) return 'tunnel';
    return undefined;
  }
  if (upgrade === 'spdy/3.1') {
    const versions = String(headers['x-stream-protocol-version'] ?? '').split(',').map((v) => v.trim());
    return versions.includes(v4Protocol) ? 'spdy-v4' : undefined;
  }
  if (upgrade !== 'websocket') return undefined;
  const protocols = offered(headers);
  if (protocols.includes(v5Protocol)) return 'ws-v5';
  if (protocols.includes(v4Protocol)) return 'ws-v4';
  return undefined;
}

export function directUnsupported(kind: StreamRequest['kind'], headers: IncomingMessage['headers']): string {
  const want = kind === 'portForward' ? `SPDY/3.1 or WebSocket ${portForwardTunnelProtocol}` : `WebSocket ${v5Protocol} or ${v4Protocol}, or SPDY/3.1 with ${v4Protocol}`;
  const got = String(headers.upgrade ?? '') === '' ? 'no upgrade' : `${String(headers.upgrade)} [${offered(headers).join(' ')}]`;
  return `this node streams ${kind} with ${want} (request offered ${got})`;
}

/** The Status kubectl reads from the error channel at the end of an exec. Pure. */
export function exitStatus(exitCode: number | undefined, command: string[]): Record<string, unknown> {
  if (exitCode === undefined || exitCode === 0) return { metadata: {}, status: 'Success' };
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: error executing command ${JSON.stringify(command)}: exit code ${exitCode}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(exitCode) }] },
  };
}

/** A Status for a failure of the session itself. Pure. */
export function failureStatus(message: string): Record<string, unknown> {
  return { metadata: {}, status: 'Failure', message, reason: 'InternalError', code: 500 };
}

/** The resize channel's {"Width":w,"Height":h}; undefined when malformed. Pure. */
export function parseResize(data: Buffer): { width: number; height: number } | undefined {
  try {
    const v = JSON.parse(data.toString('utf8')) as { Width?: unknown; Height?: unknown };
    const width = v.Width;
    const height = v.Height;
    if (typeof width !== 'number' || typeof height !== 'number' || !Number.isInteger(width) || !Number.isInteger(height) || width < 0 || height < 0 || width > 65535 || height > 65535) {
      return undefined;
    }
    return { width, height };
  } catch {
    return undefined;
  }
}

function wsClosed(ws: WebSocket): Promise<void> {
  return new Promise((resolve) => {
    if (ws.readyState === ws.CLOSED) resolve();
    else ws.once('close', () => resolve());
  });
}

/** exec or attach over the WebSocket channel protocol, driving a runtime session. */
export async function serveDirectStdio(req: IncomingMessage, socket: Duplex, head: Buffer, plan: 'ws-v5' | 'ws-v4', s: StreamRequest, open: () => Promise<StdioSession>, onError: (err: Error) => void): Promise<void> {
  const ws = await accept(req, socket, head, plan === 'ws-v5' ? v5Protocol : v4Protocol);
  ws.on('error', () => ws.terminate());
  const closed = wsClosed(ws);
  const sendRaw = (ch: number, data: Buffer): void => {
    if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([ch]), data]), { binary: true });
  };
  const finish = (status: Record<string, unknown>): void => {
    sendRaw(channel.error, Buffer.from(JSON.stringify(status)));
    if (ws.readyState === ws.OPEN) ws.close(1000);
  };
  // Client input that arrives while the session is being made waits for it.
  const early: Buffer[] = [];
  let session: StdioSession | undefined;
  let stdinClosed = false;
  const fromClient = (msg: Buffer): void => {
    if (session === undefined || msg.length === 0) return;
    const ch = msg[0]!;
    const data = msg.subarray(1);
    const stdin = session.stdin;
    if (ch === channel.stdin && stdin !== undefined && !stdinClosed) {
      if (data.length > 0 && !stdin.write(data)) {
        ws.pause();
        stdin.once('drain', () => ws.resume());
      }
    } else if (ch === channel.resize) {
      const size = parseResize(data);
      if (size !== undefined) session.resize(size.width, size.height).catch((err: unknown) => onError(new Error(`resize: ${errorMessage(err)}`)));
    } else if (ch === channel.close && data[0] === channel.stdin && stdin !== undefined && !stdinClosed) {
      stdinClosed = true;
      stdin.end();
    }
  };
  ws.on('message', (msg: Buffer) => (session === undefined ? early.push(msg) : fromClient(msg)));
  try {
    session = await open();
  } catch (err) {
    finish(failureStatus(errorMessage(err)));
    await closed;
    return;
  }
  const sess = session;
  void closed.then(() => sess.close());
  for (const m of early.splice(0)) fromClient(m);
  const outputs: Promise<void>[] = [];
  for (const [stream, ch] of [
    [sess.stdout, channel.stdout],
    [sess.stderr, channel.stderr],
  ] as const) {
    if (stream === undefined) continue;
    const send = sender(ws, stream);
    stream.on('data', (d: Buffer) => {
      if (d.length > 0) send(Buffer.concat([Buffer.from([ch]), d]));
    });
    outputs.push(
      new Promise((resolve) => {
        stream.once('end', resolve);
        stream.once('close', resolve);
      }),
    );
  }
  try {
    const exitCode = await Promise.race([sess.wait(), closed.then(() => undefined)]);
    await Promise.all(outputs);
    finish(s.kind === 'exec' ? exitStatus(exitCode, s.command) : exitStatus(undefined, []));
  } catch (err) {
    finish(failureStatus(errorMessage(err)));
  } finally {
    await closed;
    sess.close();
  }
}

/** exec or attach for a SPDY/3.1 client: remotecommand v4. */
export async function serveDirectStdioSpdy(socket: Duplex, head: Buffer, s: StreamRequest, open: () => Promise<StdioSession>, onError: (err: Error) => void): Promise<void> {
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${v4Protocol}\r\n\r\n`);
  const expected = 1 + [s.stdin, s.stdout, s.stderr, s.tty].filter(Boolean).length;
  const ids = new Map<string, number>();
  const earlyStdin: Buffer[] = [];
  let stdinFin = false;
  let resizeBuf = '';
  let session: StdioSession | undefined;
  let started = false;
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const send = (b: Buffer): boolean => (socket.writable ? socket.write(b) : true);
  const run = async (): Promise<void> => {
    const errorId = ids.get('error')!;
    const finish = (status: Record<string, unknown>): void => {
      spdy.write(errorId, Buffer.from(JSON.stringify(status)));
      for (const id of ids.values()) spdy.end(id);
      socket.end();
    };
    try {
      session = await open();
    } catch (err) {
      finish(failureStatus(errorMessage(err)));
      return;
    }
    const sess = session;
    void closed.then(() => sess.close());
    if (sess.stdin !== undefined) {
      for (const d of earlyStdin.splice(0)) sess.stdin.write(d);
      if (stdinFin) sess.stdin.end();
    }
    const outputs: Promise<void>[] = [];
    for (const [stream, type] of [
      [sess.stdout, 'stdout'],
      [sess.stderr, 'stderr'],
    ] as const) {
      const id = ids.get(type);
      if (stream === undefined || id === undefined) continue;
      stream.on('data', (d: Buffer) => {
        // A slow client: stop reading the runtime until the socket drains.
        if (!spdy.write(id, d)) {
          stream.pause();
          socket.once('drain', () => stream.resume());
        }
      });
      outputs.push(
        new Promise((resolve) => {
          stream.once('end', resolve);
          stream.once('close', resolve);
        }),
      );
    }
    try {
      const exitCode = await Promise.race([sess.wait(), closed.then(() => undefined)]);
      await Promise.all(outputs);
      finish(s.kind === 'exec' ? exitStatus(exitCode, s.command) : exitStatus(undefined, []));
    } catch (err) {
      finish(failureStatus(errorMessage(err)));
    }
  };
  const spdy: SpdyServer = new SpdyServer(send, {
    onStream: (id, headers) => {
      const type = headers.get('streamtype') ?? '';
      if (!['error', 'stdin', 'stdout', 'stderr', 'resize'].includes(type) || ids.has(type)) {
        spdy.reset(id, 1);
        return;
      }
      ids.set(type, id);
      if (!started && ids.size >= expected && ids.has('error')) {
        started = true;
        run().catch((err: unknown) => onError(err instanceof Error ? err : new Error(String(err))));
      }
    },
    onData: (id, data, fin) => {
      if (id === ids.get('stdin')) {
        const stdin = session?.stdin;
        if (stdin === undefined) {
          if (data.length > 0) earlyStdin.push(data);
          if (fin) stdinFin = true;
        } else {
          if (data.length > 0) stdin.write(data);
          if (fin) stdin.end();
        }
      } else if (id === ids.get('resize')) {
        resizeBuf += data.toString('utf8');
        const lines = resizeBuf.split('\n');
        resizeBuf = lines.pop() ?? '';
        for (const l of lines) {
          const size = parseResize(Buffer.from(l));
          if (size !== undefined) session?.resize(size.width, size.height).catch((err: unknown) => onError(new Error(`resize: ${errorMessage(err)}`)));
        }
      }
    },
    onReset: (id) => {
      if (id === 0) socket.destroy();
    },
    onError: (err) => {
      onError(err);
      socket.destroy();
    },
  });
  socket.on('data', (d: Buffer) => spdy.receive(d));
  if (head.length > 0) spdy.receive(head);
  await closed;
  spdy.close();
  session?.close();
}

/** The client side of a port-forward session: SPDY bytes out and in, with back-pressure both ways. */
export interface ForwardTransport {
  /** Sends to the client; false once the transport's buffer is over its high-water mark. */
  send(bytes: Buffer): boolean;
  /** Calls `fn` once the transport is under its high-water mark again (at once when it is). */
  onDrain(fn: () => void): void;
  /** Stops reading the client (a pod connection is full) / reads it again. */
  pause(): void;
  resume(): void;
  /** Ends the whole session (GOAWAY, protocol error). */
  end(): void;
}

/** Bytes from the client held for a pod connection still being made before the client is paused. */
const earlyLimit = 1 << 20;

/** A ForwardTransport on an upgraded socket (SPDY/3.1): its own write buffer is the bound. */
function socketTransport(socket: Duplex): ForwardTransport {
  return {
    send: (b) => (socket.writable ? socket.write(b) : true),
    onDrain: (fn) => {
      if (!socket.writableNeedDrain || !socket.writable) fn();
      else socket.once('drain', fn);
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    end: () => socket.destroy(),
  };
}

/** A ForwardTransport in binary WebSocket messages (the tunnel): unsent bytes (until the socket took them) are the bound. */
export function webSocketTransport(ws: WebSocket, highWaterMark = 1 << 20): ForwardTransport {
  let unsent = 0;
  const waiting: (() => void)[] = [];
  const flush = (): void => {
    while (unsent < highWaterMark && waiting.length > 0) waiting.shift()!();
  };
  ws.once('close', () => {
    unsent = 0;
    flush();
  });
  return {
    send: (b) => {
      if (ws.readyState !== ws.OPEN) return true;
      unsent += b.length;
      ws.send(b, { binary: true }, () => {
        unsent -= b.length;
        flush();
      });
      return unsent < highWaterMark;
    },
    onDrain: (fn) => {
      waiting.push(fn);
      flush();
    },
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    end: () => ws.terminate(),
  };
}

interface ForwardPair {
  port: number;
  errorId: number | undefined;
  dataId: number | undefined;
  conn: Socket | undefined;
  /** Data that came from the client before the connection was made. */
  early: Buffer[];
  clientFin: boolean;
}

/** The portforward.k8s.io streams of one SPDY session, each data stream spliced to a connection in the pod. */
function portForwardSession(transport: ForwardTransport, connect: (port: number) => Promise<Socket>, onError: (err: Error) => void): SpdyServer {
  const pairs = new Map<string, ForwardPair>();
  const byStream = new Map<number, ForwardPair>();
  // Pairs whose pod connection (or early buffer) is full: the client is not read until none is.
  const blocked = new Set<ForwardPair>();
  const block = (p: ForwardPair): void => {
    if (blocked.size === 0) transport.pause();
    blocked.add(p);
  };
  const unblock = (p: ForwardPair): void => {
    if (blocked.delete(p) && blocked.size === 0) transport.resume();
  };
  const earlyBytes = (p: ForwardPair): number => p.early.reduce((n, b) => n + b.length, 0);
  const fail = (p: ForwardPair, message: string): void => {
    if (p.errorId !== undefined) {
      spdy.write(p.errorId, Buffer.from(message));
      spdy.end(p.errorId);
    }
    if (p.dataId !== undefined) spdy.reset(p.dataId);
    p.conn?.destroy();
  };
  const start = (key: string, p: ForwardPair): void => {
    const dataId = p.dataId!;
    connect(p.port).then(
      (conn) => {
        p.conn = conn;
        conn.on('error', (err) => {
          if (p.errorId !== undefined) spdy.write(p.errorId, Buffer.from(`error forwarding port ${p.port}: ${err.message}`));
        });
        conn.on('data', (d: Buffer) => {
          if (!spdy.write(dataId, d)) {
            conn.pause();
            transport.onDrain(() => conn.resume());
          }
        });
        conn.once('end', () => spdy.end(dataId));
        conn.once('close', () => {
          unblock(p);
          if (p.errorId !== undefined) spdy.end(p.errorId);
          pairs.delete(key);
          byStream.delete(dataId);
          if (p.errorId !== undefined) byStream.delete(p.errorId);
        });
        unblock(p);
        let full = false;
        for (const d of p.early.splice(0)) full = !conn.write(d);
        if (full) {
          block(p);
          conn.once('drain', () => unblock(p));
        }
        if (p.clientFin) conn.end();
      },
      (err: unknown) => {
        unblock(p);
        p.early = [];
        fail(p, `error forwarding port ${p.port} to pod: ${errorMessage(err)}`);
      },
    );
  };
  const spdy: SpdyServer = new SpdyServer((b) => transport.send(b), {
    onStream: (id, headers) => {
      const type = headers.get('streamtype');
      const port = Number(headers.get('port'));
      const key = headers.get('requestid') ?? `port-${headers.get('port') ?? ''}`;
      if ((type !== 'error' && type !== 'data') || !Number.isInteger(port) || port < 1 || port > 65535) {
        spdy.reset(id, 1 /* PROTOCOL_ERROR */);
        return;
      }
      let p = pairs.get(key);
      if (p === undefined) {
        p = { port, errorId: undefined, dataId: undefined, conn: undefined, early: [], clientFin: false };
        pairs.set(key, p);
      }
      byStream.set(id, p);
      if (type === 'error') p.errorId = id;
      else {
        p.dataId = id;
        start(key, p);
      }
    },
    onData: (id, data, fin) => {
      const p = byStream.get(id);
      if (p === undefined || id !== p.dataId) return;
      if (p.conn === undefined) {
        if (data.length > 0) p.early.push(data);
        if (fin) p.clientFin = true;
        if (earlyBytes(p) > earlyLimit) block(p);
        return;
      }
      const conn = p.conn;
      if (data.length > 0 && !conn.write(data) && !blocked.has(p)) {
        block(p);
        conn.once('drain', () => unblock(p));
      }
      if (fin) conn.end();
    },
    onReset: (id) => {
      if (id === 0) {
        transport.end();
        return;
      }
      byStream.get(id)?.conn?.destroy();
    },
    onError: (err) => {
      onError(err);
      transport.end();
    },
  });
  const close = spdy.close.bind(spdy);
  spdy.close = () => {
    for (const p of pairs.values()) p.conn?.destroy();
    pairs.clear();
    blocked.clear();
    close();
  };
  return spdy;
}

/** port-forward over SPDY/3.1 on the upgraded connection or tunneled in WebSocket. */
export async function serveDirectPortForward(req: IncomingMessage, socket: Duplex, head: Buffer, plan: 'spdy' | 'tunnel', connect: (port: number) => Promise<Socket>, onError: (err: Error) => void): Promise<void> {
  if (plan === 'spdy') {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n');
    await new Promise<void>((resolve) => {
      const spdy = portForwardSession(socketTransport(socket), connect, onError);
      socket.on('data', (d: Buffer) => spdy.receive(d));
      socket.once('close', () => {
        spdy.close();
        resolve();
      });
      if (head.length > 0) spdy.receive(head);
    });
    return;
  }
  const ws = await accept(req, socket, head, portForwardTunnelProtocol);
  ws.on('error', () => ws.terminate());
  const closed = wsClosed(ws);
  const spdy = portForwardSession(webSocketTransport(ws), connect, onError);
  ws.on('message', (d: Buffer) => spdy.receive(d));
  await closed;
  spdy.close();
}

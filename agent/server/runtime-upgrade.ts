/**
 * An HTTP/1.1 upgrade made by the kubelet itself to the runtime's streaming
 * URL (for the WebSocket translations in websocket.ts): sends the request,
 * reads the answer's head, and hands over the socket once it is 101.
 * `parseResponseHead` is pure.
 */
import { connect, type Socket } from 'node:net';
import { KnodeError } from '../../lib/errors.js';

export interface ResponseHead {
  status: number;
  headers: Map<string, string>;
}

/** Parses "HTTP/1.1 101 Switching Protocols\r\nA: b\r\n..." (without the blank line). Pure. */
export function parseResponseHead(text: string): ResponseHead | undefined {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!m) return undefined;
  const headers = new Map<string, string>();
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
  }
  return { status: Number(m[1]), headers };
}

export interface RuntimeUpgrade {
  socket: Socket;
  /** Bytes that came after the response head. */
  rest: Buffer;
  head: ResponseHead;
}

/** Upgrades a connection to `url` (http only) to `upgrade` with `headers`; rejects unless the runtime answers 101. */
export function upgradeToRuntime(url: string, upgrade: string, headers: Record<string, string>, timeoutMs = 30_000): Promise<RuntimeUpgrade> {
  const target = new URL(url);
  if (target.protocol !== 'http:') return Promise.reject(new KnodeError('STREAM_URL_INVALID', `unsupported streaming URL scheme ${target.protocol}`));
  return new Promise((resolve, reject) => {
    const socket = connect({ host: target.hostname, port: Number(target.port || 80) });
    socket.setNoDelay(true);
    let buf = Buffer.alloc(0);
    const fail = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new KnodeError('STREAM_TIMEOUT', `the runtime's streaming server did not answer within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) {
        if (buf.length > 64 * 1024) fail(new KnodeError('STREAM_UPGRADE_FAILED', 'the runtime answered with an oversized head'));
        return;
      }
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      const head = parseResponseHead(buf.subarray(0, end).toString('latin1'));
      const rest = buf.subarray(end + 4);
      if (head === undefined || head.status !== 101) {
        fail(new KnodeError('STREAM_UPGRADE_FAILED', `the runtime refused the stream: ${buf.subarray(0, Math.min(buf.length, 2000)).toString('utf8').replace(/\r\n/g, ' ')}`));
        return;
      }
      socket.pause();
      resolve({ socket, rest, head });
    };
    const onError = (err: Error): void => {
      clearTimeout(timer);
      fail(err);
    };
    socket.on('data', onData);
    socket.on('error', onError);
    const lines = [`POST ${target.pathname}${target.search} HTTP/1.1`, `Host: ${target.host}`, 'Connection: Upgrade', `Upgrade: ${upgrade}`];
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    socket.write(lines.join('\r\n') + '\r\n\r\n');
  });
}

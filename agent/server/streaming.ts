/**
 * /exec, /attach and /portForward: the kubelet asks the runtime for a
 * streaming URL (CRI Exec/Attach/PortForward → containerd's streaming server)
 * and proxies the client's upgraded connection to it, byte for byte, as
 * upstream's kubelet does (UpgradeAwareHandler); the streams themselves
 * (SPDY/3.1 or WebSocket channels) are spoken end to end by the client and the
 * runtime.
 *
 * Design notes:
 * - Protocols: containerd 1.6's streaming server (kubelet's cri/streaming)
 *   speaks SPDY/3.1 (remotecommand v1-v4, portforward.k8s.io) and WebSocket
 *   channel.k8s.io up to v4.channel.k8s.io; those are passed through here.
 *   kubectl 1.30+ asks for v5.channel.k8s.io (exec/attach: v4 plus a "close
 *   stdin" signal) and SPDY tunneled in WebSocket (port-forward): the kubelet
 *   translates both to SPDY towards the runtime (websocket.ts). A WebSocket
 *   upgrade asking only for protocols nobody here speaks gets 400 before any
 *   CRI call (kubectl then falls back to SPDY).
 * - Parameters: upstream's names (command, input/stdin, output/stdout,
 *   error/stderr, tty; "1" or "true"); at least one stream; tty implies no
 *   separate stderr. `parseStreamRequest` is pure.
 * - A connection that closes on either side closes the other; socket errors
 *   are logged, never thrown, so closed streams do not hurt the agent.
 */
import { connect, type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

export type StreamKind = 'exec' | 'attach' | 'portForward';

export interface StreamRequest {
  kind: StreamKind;
  namespace: string;
  pod: string;
  uid: string | undefined;
  /** exec/attach only. */
  container: string;
  command: string[];
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
  ports: number[];
}

function flag(q: URLSearchParams, ...names: string[]): boolean {
  return names.some((n) => {
    const v = q.get(n);
    return v === '1' || v === 'true';
  });
}

/**
 * Parses /exec|attach/{ns}/{pod}[/{uid}]/{container} and /portForward/{ns}/{pod}[/{uid}].
 * Returns undefined when the path is not a streaming path; throws an Error (→ 400) for a malformed one.
 */
export function parseStreamRequest(path: string, q: URLSearchParams): StreamRequest | undefined {
  const segs = path.split('/').slice(1);
  const kind = segs[0];
  if (kind !== 'exec' && kind !== 'attach' && kind !== 'portForward') return undefined;
  let parts: string[];
  try {
    parts = segs.slice(1).map((s) => decodeURIComponent(s));
  } catch {
    throw new Error('malformed path');
  }
  if (parts.some((p) => p === '')) throw new Error(`malformed path ${path}`);
  const withContainer = kind !== 'portForward';
  const want = withContainer ? [3, 4] : [2, 3];
  if (!want.includes(parts.length)) {
    throw new Error(withContainer ? `expected /${kind}/{namespace}/{pod}[/{uid}]/{container}` : '/portForward/{namespace}/{pod}[/{uid}]');
  }
  const [namespace, pod] = parts as [string, string];
  const uid = parts.length === want[1] ? parts[2] : undefined;
  const container = withContainer ? parts[parts.length - 1]! : '';
  const tty = flag(q, 'tty');
  const req: StreamRequest = {
    kind,
    namespace,
    pod,
    uid,
    container,
    command: q.getAll('command'),
    stdin: flag(q, 'input', 'stdin'),
    stdout: flag(q, 'output', 'stdout'),
    stderr: flag(q, 'error', 'stderr') && !tty,
    tty,
    ports: [],
  };
  if (kind === 'exec' && req.command.length === 0) throw new Error('you must specify at least 1 command');
  if (withContainer && !req.stdin && !req.stdout && !req.stderr) throw new Error('you must specify at least 1 of stdin, stdout, stderr');
  if (kind === 'portForward') {
    for (const p of q.getAll('port').flatMap((v) => v.split(','))) {
      if (!/^\d+$/.test(p) || Number(p) < 1 || Number(p) > 65535) throw new Error(`invalid port "${p}"`);
      req.ports.push(Number(p));
    }
  }
  return req;
}

/** WebSocket subprotocols containerd 1.6's streaming server accepts. */
export const runtimeWebSocketProtocols = ['v4.channel.k8s.io', 'v4.base64.channel.k8s.io', 'channel.k8s.io', 'base64.channel.k8s.io'];

/** Why an upgrade cannot be served by the runtime (undefined: pass it on). Pure. */
export function unsupportedUpgrade(headers: IncomingMessage['headers']): string | undefined {
  const upgrade = String(headers.upgrade ?? '').toLowerCase();
  if (upgrade === '') return 'Upgrade request required';
  if (upgrade.startsWith('spdy/')) return undefined;
  if (upgrade !== 'websocket') return `unsupported upgrade "${upgrade}"`;
  const offered = String(headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  if (offered.length === 0 || offered.some((p) => runtimeWebSocketProtocols.includes(p))) return undefined;
  return `none of the WebSocket protocols [${offered.join(' ')}] is supported by this node's runtime (supported: ${runtimeWebSocketProtocols.join(', ')}; SPDY/3.1)`;
}

/** The request head for `target`, from the client's request (hop-by-hop upgrade headers kept, credentials dropped). Pure. */
export function upstreamRequestHead(req: Pick<IncomingMessage, 'method' | 'rawHeaders'>, target: URL): string {
  const lines = [`${req.method ?? 'GET'} ${target.pathname}${target.search} HTTP/1.1`, `Host: ${target.host}`];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (lower === 'host' || lower === 'authorization' || lower === 'content-length' || lower === 'transfer-encoding') continue;
    lines.push(`${name}: ${req.rawHeaders[i + 1]!.replace(/[\r\n]/g, '')}`);
  }
  return lines.join('\r\n') + '\r\n\r\n';
}

/** Writes a complete HTTP error answer on a raw (not yet upgraded) socket and closes it. */
export function rejectUpgrade(socket: Duplex, code: number, reason: string, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const type = typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json';
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(`HTTP/1.1 ${code} ${reason}\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`);
}

/**
 * Joins two sockets until both are closed. The end of one side is passed on
 * as an end (pipe), so what is still buffered towards the other side is
 * delivered, not dropped; an error destroys both; a side that stays open
 * after its peer closed is destroyed after `lingerMs`.
 */
export function splice(a: Duplex, b: Duplex, onError: (err: Error) => void, lingerMs = 30_000): Promise<void> {
  return new Promise((resolve) => {
    let closed = 0;
    const done = (): void => {
      if (++closed === 2) resolve();
    };
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      from.on('error', (err: Error) => {
        if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET' && (err as NodeJS.ErrnoException).code !== 'EPIPE') onError(err);
        to.destroy();
      });
      from.once('close', () => {
        to.end();
        setTimeout(() => to.destroy(), lingerMs).unref();
        done();
      });
      from.pipe(to);
    }
  });
}

/**
 * Sends the client's upgrade request to the runtime's streaming URL and joins
 * the two connections (the runtime's answer — 101 or an error — goes to the
 * client as it is).
 */
export function proxyToRuntime(req: IncomingMessage, socket: Duplex, head: Buffer, url: string, onError: (err: Error) => void): Promise<void> {
  const target = new URL(url);
  if (target.protocol !== 'http:') {
    rejectUpgrade(socket, 500, 'Internal Server Error', `unsupported streaming URL scheme ${target.protocol}`);
    return Promise.resolve();
  }
  const upstream: Socket = connect({ host: target.hostname, port: Number(target.port || 80) });
  upstream.setNoDelay(true);
  upstream.write(upstreamRequestHead(req, target));
  if (head.length > 0) upstream.write(head);
  return splice(socket, upstream, onError);
}

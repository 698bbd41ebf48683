/**
 * knode-cni-daemon: runs CNI plugin requests (protocol.ts) in one long-running process, so a pod's
 * network setup does not pay for a Node start-up and module loading per plugin call.
 *
 * Design notes
 * - A request runs through the very code path of the plugin program: cni/skel.ts invokePlugin
 *   with the request's env and stdin, and a logger whose lines become the response's stderr.
 * - Requests run concurrently. What must not interleave is synchronous by design already:
 *   withNetnsSync (lib/netns.ts) never yields to the event loop while the main thread is in a
 *   foreign namespace. The host-local store lock is flock(2) on a fresh open file description per
 *   request, and two descriptions in one process exclude each other exactly like two processes
 *   do (verified by test/unit/cni-daemon-lock.test.ts); a contended lock waits on a pool thread,
 *   not on the event loop.
 * - The env a plugin sees is the daemon's own environment without any CNI_* variable, overlaid
 *   with the request's CNI_* variables: delegated IPAM plugins get PATH from the daemon, never
 *   from a request.
 * - Per-request timeout: the caller gets an error JSON (code 11, "try again later") after
 *   `requestTimeoutMs`; the work cannot be cancelled and goes on in the background (an ADD that
 *   finishes late is undone by the runtime's DEL, as after any failed ADD).
 * - Protocol KNODE-CNI/2 (protocol.ts): once the whole request is in, the daemon writes the
 *   acknowledgement and starts the work only when that write succeeded. A client that gave up
 *   and closed (its socat timed out while the daemon was stopped or busy) gets nothing done: the
 *   write fails with EPIPE and the request is dropped.
 * - Peers: only uid 0 in the daemon's network namespace are served (peer.ts). Other namespaces
 *   get `fallback: 'netns'` and the shim does the work itself.
 * - Bad input never throws out of a handler: everything becomes a response, and socket errors
 *   are logged and dropped.
 */
import { chmodSync, existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import type { Server, Socket } from 'node:net';
import { dirname } from 'node:path';
import { KnodeError, errorMessage } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import type { LogLevel, Logger } from '../../lib/log.js';
import { invokePlugin } from '../skel.js';
import type { CniPlugin } from '../skel.js';
import { ACK, CODE_TRY_AGAIN, MAX_REQUEST_BYTES, encodeFallback, encodeResult, errorResponse, internalError, parseRequest } from './protocol.js';
import type { DaemonPluginName, DaemonRequest, DaemonResponse } from './protocol.js';
import type { PeerVerdict } from './peer.js';

export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;

export interface HandlerContext {
  plugins: Partial<Record<DaemonPluginName, CniPlugin>>;
  requestTimeoutMs: number;
  /** Environment the plugin env is built on (CNI_* removed); the daemon's process.env. */
  baseEnv: Record<string, string | undefined>;
  log: Logger;
  /** Log every request at info (default: debug). */
  logRequests?: boolean;
}

function levelOf(v: string | undefined): LogLevel | undefined {
  return v === 'debug' || v === 'info' || v === 'warn' || v === 'error' ? v : undefined;
}

/** Answer one request (never throws). */
export async function handleRequest(req: DaemonRequest, ctx: HandlerContext): Promise<DaemonResponse> {
  const plugin = ctx.plugins[req.plugin];
  if (!plugin) return errorResponse(7, `plugin ${req.plugin} is not served by this daemon`);
  const env: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(ctx.baseEnv)) if (!k.startsWith('CNI_')) env[k] = v;
  Object.assign(env, req.env);
  const stderr: string[] = [];
  const opts: Parameters<typeof createLogger>[0] = { component: plugin.name, write: (line) => stderr.push(line) };
  const level = levelOf(req.env.KNODE_LOG_LEVEL) ?? levelOf(ctx.baseEnv.KNODE_LOG_LEVEL);
  if (level) opts.level = level;
  const log = createLogger(opts);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ctx.requestTimeoutMs);
  });
  const started = performance.now();
  const fields = { plugin: req.plugin, command: req.env.CNI_COMMAND, containerId: req.env.CNI_CONTAINERID };
  try {
    const outcome = await Promise.race([invokePlugin(plugin, env, req.stdin, log), timeout]);
    (ctx.logRequests ? ctx.log.info : ctx.log.debug)('request', { ...fields, exitCode: outcome === 'timeout' ? 'timeout' : outcome.exitCode, ms: Math.round(performance.now() - started) });
    if (outcome === 'timeout') {
      ctx.log.warn('request timed out', fields);
      const r = errorResponse(CODE_TRY_AGAIN, `knode-cni-daemon: ${req.env.CNI_COMMAND ?? ''} timed out after ${ctx.requestTimeoutMs} ms; try again later`);
      return { ...r, stderr: stderr.join('\n') };
    }
    return { exitCode: outcome.exitCode, stdout: outcome.stdout, stderr: stderr.join('\n') };
  } catch (err) {
    // invokePlugin does not throw; this is a last fence.
    return { ...internalError(`knode-cni-daemon: ${errorMessage(err)}`), stderr: stderr.join('\n') };
  } finally {
    if (timer) clearTimeout(timer);
  }
}

export interface DaemonOptions extends Omit<HandlerContext, 'baseEnv' | 'log'> {
  socketPath: string;
  baseEnv?: Record<string, string | undefined>;
  log?: Logger;
  /** Decides whether a peer is served (peer.ts checkPeer); the default serves everyone. */
  checkPeer?: (sock: Socket) => PeerVerdict;
}

function probe(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

export class CniDaemon {
  private readonly server: Server;
  private readonly ctx: HandlerContext;
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly sockets = new Set<Socket>();
  private listening = false;

  constructor(private readonly options: DaemonOptions) {
    this.ctx = {
      plugins: options.plugins,
      requestTimeoutMs: options.requestTimeoutMs,
      baseEnv: options.baseEnv ?? process.env,
      log: options.log ?? createLogger({ component: 'knode-cni-daemon' }),
      logRequests: options.logRequests ?? false,
    };
    this.server = createServer({ allowHalfOpen: true }, (sock) => this.onConnection(sock));
    this.server.on('error', (err) => this.ctx.log.error('server error', { err }));
  }

  get requestsInFlight(): number {
    return this.inFlight.size;
  }

  /** Bind the socket (mode 0600; a stale socket file is replaced, a live daemon is an error). */
  async listen(): Promise<void> {
    const path = this.options.socketPath;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    if (existsSync(path)) {
      if (!lstatSync(path).isSocket()) throw new KnodeError('CNI_DAEMON_SOCKET_PATH', `${path} exists and is not a socket`);
      if (await probe(path)) throw new KnodeError('CNI_DAEMON_RUNNING', `a daemon is already listening on ${path}`);
      unlinkSync(path);
    }
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error): void => reject(new KnodeError('CNI_DAEMON_LISTEN', `cannot listen on ${path}: ${err.message}`, { cause: err }));
        this.server.once('error', onError);
        this.server.listen(path, () => {
          this.server.off('error', onError);
          resolve();
        });
      });
    } finally {
      process.umask(oldMask);
    }
    chmodSync(path, 0o600);
    this.listening = true;
    this.ctx.log.info('listening', { socket: path });
  }

  /** Stop accepting, wait for requests in flight (bounded by their timeout), remove the socket. */
  async close(): Promise<void> {
    if (this.listening) {
      this.listening = false;
      await new Promise<void>((resolve) => this.server.close(() => resolve()));
      try {
        unlinkSync(this.options.socketPath);
      } catch {
        // gone already
      }
    }
    await Promise.allSettled([...this.inFlight]);
    for (const s of this.sockets) s.destroy();
  }

  private onConnection(sock: Socket): void {
    this.sockets.add(sock);
    const chunks: Buffer[] = [];
    let size = 0;
    let answered = false;
    /** The final write (a fallback, or the result after the ACK); the daemon closes after it. */
    const finish = (text: string): void => {
      if (answered) return;
      answered = true;
      if (!sock.destroyed) sock.end(text);
    };
    /** ACK, then `work` only once the ACK is written (a client that closed gets nothing done). */
    const acknowledged = (work: () => Promise<DaemonResponse>): void => {
      sock.write(ACK, (err) => {
        if (err) {
          answered = true;
          this.ctx.log.warn('client gone before the acknowledgement; request dropped', { err: err.message });
          sock.destroy();
          return;
        }
        const run = work().then(
          (r) => finish(encodeResult(r)),
          (e: unknown) => {
            this.ctx.log.error('request handler failed', { err: e });
            finish(encodeResult(internalError(`knode-cni-daemon: ${errorMessage(e)}`)));
          },
        );
        this.inFlight.add(run);
        void run.finally(() => this.inFlight.delete(run));
      });
    };
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', (err) => this.ctx.log.debug('connection error', { err }));
    // A client that never half-closes is dropped after the request timeout.
    sock.setTimeout(this.ctx.requestTimeoutMs, () => {
      if (!answered) sock.destroy();
    });
    sock.on('data', (b: Buffer) => {
      if (answered) return;
      size += b.length;
      if (size > MAX_REQUEST_BYTES) {
        answered = true;
        sock.write(ACK);
        sock.end(encodeResult(errorResponse(6, `knode-cni-daemon request: too large (more than ${MAX_REQUEST_BYTES} bytes)`)));
        sock.resume();
        return;
      }
      chunks.push(b);
    });
    sock.on('end', () => {
      sock.setTimeout(0); // the request is in; from here the per-request timeout applies
      if (answered) return;
      const verdict = this.options.checkPeer ? this.options.checkPeer(sock) : { ok: true as const, pid: undefined };
      if (!verdict.ok) {
        if (verdict.why === 'netns') {
          finish(encodeFallback('netns'));
        } else {
          this.ctx.log.warn('peer refused', { why: verdict.why, pid: verdict.pid });
          acknowledged(async () => internalError('knode-cni-daemon: permission denied', verdict.why));
        }
        return;
      }
      const parsed = parseRequest(Buffer.concat(chunks));
      if (parsed.ok) acknowledged(() => handleRequest(parsed.request, this.ctx));
      else if ('fallback' in parsed) finish(encodeFallback(parsed.fallback));
      else acknowledged(async () => parsed.response);
    });
  }
}

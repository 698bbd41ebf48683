/**
 * Client side of the daemon protocol (protocol.ts, KNODE-CNI/2): one request per connection.
 * The Node twin of what cni/launcher.sh does with socat.
 *
 * Design notes
 * - Only `node:net` is loaded: this runs on the Node shim's start-up path.
 * - The outcome separates "nothing was done, do it yourself" (no connection: ENOENT,
 *   ECONNREFUSED, …; or the daemon said `fallback`; or it is not KNODE-CNI/2) from "connected
 *   but no complete answer" (the daemon died or hung: the work may be partly done, the caller
 *   reports CNI error 11 instead of redoing it).
 */
import { connect } from 'node:net';
import { encodeRequest, parseAnswer } from './protocol.js';
import type { DaemonRequest, DaemonResponse } from './protocol.js';

export type DaemonOutcome =
  | { kind: 'response'; response: DaemonResponse }
  /** Nothing was done: no daemon (ENOENT, ECONNREFUSED, EACCES, ENOTSOCK, …), or it said so. */
  | { kind: 'unavailable'; reason: string }
  /** Connected, but no complete answer (daemon died, timeout): the work may be partly done. */
  | { kind: 'lost'; reason: string };

export interface RequestOptions {
  /** Whole-exchange timeout; the outcome is 'lost' when it fires after connecting. */
  timeoutMs?: number;
}

function errCode(err: unknown): string {
  const c = typeof err === 'object' && err !== null && 'code' in err ? (err as { code: unknown }).code : undefined;
  return typeof c === 'string' ? c : String(err);
}

/** Send one raw payload (tests send malformed ones) and classify the raw answer. */
export function exchangeRaw(socketPath: string, payload: string | Buffer, options: RequestOptions = {}): Promise<DaemonOutcome & { raw?: string }> {
  return new Promise((resolve) => {
    let connected = false;
    let settled = false;
    const chunks: Buffer[] = [];
    const sock = connect({ path: socketPath, allowHalfOpen: true });
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => finish({ kind: connected ? 'lost' : 'unavailable', reason: `timeout after ${options.timeoutMs} ms` }), options.timeoutMs);
    function finish(o: DaemonOutcome & { raw?: string }): void {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      sock.destroy();
      resolve(o);
    }
    const settle = (reason: string): void => {
      const raw = Buffer.concat(chunks).toString('utf8');
      if (!connected) return finish({ kind: 'unavailable', reason, raw });
      const a = parseAnswer(raw);
      if (a.kind === 'response') finish({ kind: 'response', response: a.response, raw });
      else if (a.kind === 'fallback') finish({ kind: 'unavailable', reason: `daemon: fallback ${a.why}`, raw });
      else if (a.kind === 'foreign') finish({ kind: 'unavailable', reason: 'the daemon does not speak KNODE-CNI/2', raw });
      else finish({ kind: 'lost', reason: raw === '' ? `no answer (${reason})` : `incomplete answer (${reason})`, raw });
    };
    sock.on('connect', () => {
      connected = true;
      sock.end(payload);
    });
    sock.on('data', (b: Buffer) => chunks.push(b));
    sock.on('end', () => settle('connection closed'));
    sock.on('error', (err) => settle(errCode(err)));
    sock.on('close', () => settle('connection closed'));
  });
}

export async function requestDaemon(socketPath: string, request: DaemonRequest, options: RequestOptions = {}): Promise<DaemonOutcome> {
  const { raw: _raw, ...outcome } = await exchangeRaw(socketPath, encodeRequest(request), options);
  return outcome;
}

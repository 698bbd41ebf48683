/**
 * Client side of the daemon protocol (protocol.ts): one request per connection.
 *
 * Design notes
 * - Only `node:net` is loaded: this runs on the shim's start-up path.
 * - The outcome separates "the daemon is not there" (ENOENT, ECONNREFUSED, … before anything
 *   was sent: the caller may safely do the work itself) from "the connection was lost after the
 *   request went out" (the daemon may have done part of the work: the caller must decide).
 */
import { connect } from 'node:net';
import { parseResponse } from './protocol.js';
import type { DaemonRequest, DaemonResponse } from './protocol.js';

export type DaemonOutcome =
  | { kind: 'response'; response: DaemonResponse }
  /** Nothing was sent: no daemon (ENOENT, ECONNREFUSED, EACCES, ENOTSOCK, …). */
  | { kind: 'unavailable'; reason: string }
  /** The request was sent but no valid answer came back (daemon died, timeout, garbage). */
  | { kind: 'lost'; reason: string };

export interface RequestOptions {
  /** Whole-exchange timeout; the outcome is 'lost' when it fires after connecting. */
  timeoutMs?: number;
}

function errCode(err: unknown): string {
  const c = typeof err === 'object' && err !== null && 'code' in err ? (err as { code: unknown }).code : undefined;
  return typeof c === 'string' ? c : String(err);
}

/** Send one raw payload (tests send malformed ones) and collect the raw answer. */
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
    sock.on('connect', () => {
      connected = true;
      sock.end(payload);
    });
    sock.on('data', (b: Buffer) => chunks.push(b));
    sock.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const response = parseResponse(raw);
      finish(response ? { kind: 'response', response, raw } : { kind: 'lost', reason: 'invalid answer from the daemon', raw });
    });
    sock.on('error', (err) => finish({ kind: connected ? 'lost' : 'unavailable', reason: errCode(err) }));
    sock.on('close', () => finish({ kind: connected ? 'lost' : 'unavailable', reason: 'connection closed' }));
  });
}

export async function requestDaemon(socketPath: string, request: DaemonRequest, options: RequestOptions = {}): Promise<DaemonOutcome> {
  const { raw: _raw, ...outcome } = await exchangeRaw(socketPath, JSON.stringify(request), options);
  return outcome;
}

/**
 * How network probes (httpGet, tcpSocket, grpc) open their TCP connection:
 * the `Dialer` port, like upstream's probe.ProbeDialer.
 *
 * Design notes:
 * - The agent runs in the node's network namespace, so the default dialer is
 *   a plain `net.connect` from the node to the pod IP (or the probe's host).
 * - A dialer that opens the socket elsewhere (another network namespace, as
 *   the integration tests do) hands back an ordinary connected socket; the
 *   runners never care where it came from.
 * - Failures are `KnodeError('DIAL_FAILED')` worded as Go's net.Dial does
 *   ("dial tcp 10.0.0.5:80: connect: connection refused"), because that text
 *   ends up in Unhealthy events and users compare it with upstream's.
 */
import { connect, type Socket } from 'node:net';
import { errnoCode, KnodeError } from '../../../lib/errors.js';
import { joinHostPort } from './spec.js';

/** Opens a TCP connection to host:port within timeoutMs, or rejects with DIAL_FAILED. */
export type Dialer = (host: string, port: number, timeoutMs: number) => Promise<Socket>;

const goErrno: Record<string, string> = {
  ECONNREFUSED: 'connect: connection refused',
  EHOSTUNREACH: 'connect: no route to host',
  ENETUNREACH: 'connect: network is unreachable',
  ECONNRESET: 'read: connection reset by peer',
  EADDRNOTAVAIL: 'connect: cannot assign requested address',
  ETIMEDOUT: 'i/o timeout',
};

/** The DIAL_FAILED error for an errno code ('ETIMEDOUT' for a dial timeout), worded as Go's. Pure. */
export function dialError(host: string, port: number, code: string | undefined, fallback: string): KnodeError {
  const text = code !== undefined && goErrno[code] !== undefined ? goErrno[code] : fallback;
  return new KnodeError('DIAL_FAILED', `dial tcp ${joinHostPort(host, port)}: ${text}`, { details: { errno: code } });
}

/** net.connect from this process's network namespace. */
export const directDialer: Dialer = (host, port, timeoutMs) =>
  new Promise<Socket>((resolve, reject) => {
    const socket = connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(dialError(host, port, 'ETIMEDOUT', 'i/o timeout'));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      // Later errors reach the consumer's own listeners; this one only keeps an unhandled one from crashing the agent.
      socket.on('error', () => undefined);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(dialError(host, port, errnoCode(err), err.message));
    });
  });

/**
 * tcpSocket probes (upstream pkg/probe/tcp): a connection that opens within the
 * timeout succeeds and is closed at once; a refused or timed-out one fails with
 * the dial error.
 */
import { errorMessage } from '../../../lib/errors.js';
import type { Dialer } from './dial.js';
import type { ProbeRunOutcome } from './tracker.js';

export async function runTcpProbe(dial: Dialer, host: string, port: number, timeoutMs: number): Promise<ProbeRunOutcome> {
  try {
    const socket = await dial(host, port, timeoutMs);
    socket.destroy();
    return { result: 'success', output: '' };
  } catch (err) {
    return { result: 'failure', output: errorMessage(err) };
  }
}

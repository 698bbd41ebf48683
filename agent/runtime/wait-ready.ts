/**
 * The retrying way into a runtime, shared by the backends: asks for the
 * version with back-off (100 ms doubling to 5 s) while the runtime is
 * unreachable ('UNAVAILABLE' / 'DEADLINE_EXCEEDED'), other errors end it.
 */
import { KnodeError, isKnodeError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { CallOptions, RuntimeVersion, WaitReadyOptions } from './types.js';

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new KnodeError('CANCELLED', 'aborted'));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new KnodeError('CANCELLED', 'aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export async function waitForRuntime(
  runtime: { readonly endpoint: string; version(options?: CallOptions): Promise<RuntimeVersion> },
  log: Logger,
  options: WaitReadyOptions = {},
): Promise<RuntimeVersion> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  let delay = 100;
  let attempts = 0;
  for (;;) {
    attempts++;
    const left = deadline - Date.now();
    try {
      const v = await runtime.version({ timeoutMs: Math.max(100, Math.min(5000, left)), ...(options.signal ? { signal: options.signal } : {}) });
      if (attempts > 1) log.info('runtime ready', { attempts, runtime: v.runtimeName, version: v.runtimeVersion });
      return v;
    } catch (err) {
      if (!isKnodeError(err, 'UNAVAILABLE') && !isKnodeError(err, 'DEADLINE_EXCEEDED')) throw err;
      if (Date.now() >= deadline) {
        throw new KnodeError('UNAVAILABLE', `container runtime at ${runtime.endpoint} not reachable within ${timeoutMs} ms (${attempts} attempts)`, {
          cause: err,
          details: { endpoint: runtime.endpoint, attempts },
        });
      }
      if (attempts === 1 || attempts % 10 === 0) log.warn('runtime not ready, retrying', { attempts, delayMs: delay, error: err });
    }
    await sleep(Math.min(delay, Math.max(0, deadline - Date.now())), options.signal);
    delay = Math.min(delay * 2, 5000);
  }
}

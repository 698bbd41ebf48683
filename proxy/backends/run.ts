/**
 * Shared helper of the apply ports: run a program, optionally inside a network namespace.
 */
import { execFile } from '../../lib/exec.js';
import type { ExecFn } from './types.js';

export interface Runner {
  run(file: string, args: readonly string[], options?: { input?: string; allowFailure?: boolean; timeoutMs?: number }): ReturnType<ExecFn>;
}

export function makeRunner(opts: { netnsPath?: string; exec?: ExecFn }): Runner {
  const exec: ExecFn = opts.exec ?? ((file, args, o) => execFile(file, args, o ?? {}));
  return {
    run(file, args, options) {
      const o = { timeoutMs: 60_000, ...options };
      if (opts.netnsPath === undefined) return exec(file, args, o);
      return exec('nsenter', [`--net=${opts.netnsPath}`, file, ...args], o);
    },
  };
}

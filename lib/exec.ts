/**
 * The one place that runs external programs (ip, ctr, iptables-restore, nft ...).
 * Arguments are passed as an array (no shell); failures become KnodeError
 * 'EXEC_FAILED' carrying the exit code and stderr.
 */
import { spawn } from 'node:child_process';
import { KnodeError } from './errors.js';

export interface ExecOptions {
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
  /** Resolve instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function execFile(file: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: options.timeoutMs,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) =>
      reject(new KnodeError('EXEC_FAILED', `cannot run ${file}: ${e.message}`, { cause: e, details: { file, args } })),
    );
    child.on('close', (code, signal) => {
      const result: ExecResult = {
        code: code ?? 128,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
      if (result.code !== 0 && !options.allowFailure) {
        const why = signal ? `signal ${signal}` : `exit code ${result.code}`;
        reject(
          new KnodeError('EXEC_FAILED', `${file} ${args.join(' ')} failed (${why}): ${result.stderr.trim()}`, {
            details: { file, args, ...result },
          }),
        );
        return;
      }
      resolve(result);
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

/**
 * Processes of the lab: start a daemon detached (own session and process
 * group, output to a log file, pid file), run a command with inherited stdio,
 * and read /proc to find what belongs to the lab.
 *
 * Design note: lib/exec.ts runs programs to completion and captures their
 * output; a daemon that must outlive `scripts/lab up`, or a command whose
 * stdio is the user's terminal, needs `spawn` directly, so that lives here.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, readdir, readlink, stat, writeFile } from 'node:fs/promises';
import { KnodeError, errnoCode } from '../../lib/errors.js';

export interface DaemonSpec {
  file: string;
  args: readonly string[];
  logFile: string;
  pidFile?: string;
  env?: NodeJS.ProcessEnv;
}

export interface StartedDaemon {
  pid: number;
  /** Resolves with the exit code if the daemon dies while this process still runs. */
  exited: Promise<number | null>;
}

export async function spawnDaemon(spec: DaemonSpec): Promise<StartedDaemon> {
  const fd = openSync(spec.logFile, 'a');
  try {
    const child = spawn(spec.file, spec.args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: spec.env ?? process.env,
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', (e) => reject(new KnodeError('EXEC_FAILED', `cannot start ${spec.file}: ${e.message}`, { cause: e })));
      child.once('spawn', () => resolve(child.pid ?? -1));
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.unref();
    if (spec.pidFile !== undefined) await writeFile(spec.pidFile, `${pid}\n`);
    return { pid, exited };
  } finally {
    closeSync(fd);
  }
}

/** Run a command with the caller's stdio; resolves with its exit code (128+n for a signal). */
export function runInherited(file: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: 'inherit' });
    child.once('error', (e) => reject(new KnodeError('EXEC_FAILED', `cannot run ${file}: ${e.message}`, { cause: e })));
    child.once('exit', (code, signal) => {
      if (code !== null) resolve(code);
      else resolve(128 + (signal === null ? 0 : signalNumber(signal)));
    });
  });
}

function signalNumber(signal: NodeJS.Signals): number {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 };
  return table[signal] ?? 1;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
  return true;
}

/** Alive and not a zombie. */
export async function isRunning(pid: number): Promise<boolean> {
  if (!isAlive(pid)) return false;
  const info = await readProc(pid);
  return info !== undefined && info.state !== 'Z';
}

export async function readPidFile(file: string): Promise<number | undefined> {
  try {
    const n = Number.parseInt((await readFile(file, 'utf8')).trim(), 10);
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

export interface ProcInfo {
  pid: number;
  ppid: number;
  state: string;
  argv: string[];
  /** Inode of the network namespace (from /proc/<pid>/ns/net), if readable. */
  netnsInode: number | undefined;
}

export async function readProc(pid: number): Promise<ProcInfo | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ..." where comm may hold spaces and parentheses.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    let netnsInode: number | undefined;
    try {
      const link = await readlink(`/proc/${pid}/ns/net`);
      const m = /\[([0-9]+)\]/.exec(link);
      netnsInode = m ? Number(m[1]) : undefined;
    } catch {
      netnsInode = undefined;
    }
    return {
      pid,
      ppid: Number(rest[1]),
      state: rest[0] ?? '?',
      argv: cmdline.split('\0').filter((a) => a !== ''),
      netnsInode,
    };
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ESRCH') return undefined;
    throw err;
  }
}

export async function listProcesses(): Promise<ProcInfo[]> {
  const entries = await readdir('/proc');
  const out: ProcInfo[] = [];
  for (const e of entries) {
    if (!/^[0-9]+$/.test(e)) continue;
    const info = await readProc(Number(e));
    if (info) out.push(info);
  }
  return out;
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** Poll `check` until it returns true or the time is up. */
export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if (errnoCode(err) !== 'ESRCH') throw err;
  }
}

/** SIGTERM (unless `hard`), wait up to `graceMs`, then SIGKILL what is left and wait for it to go. */
export async function terminate(pids: readonly number[], options: { graceMs: number; hard?: boolean }): Promise<number[]> {
  const stillRunning = async (): Promise<number[]> => {
    const out: number[] = [];
    for (const p of pids) if (await isRunning(p)) out.push(p);
    return out;
  };
  if (!options.hard) {
    for (const p of pids) signal(p, 'SIGTERM');
    await waitFor(async () => (await stillRunning()).length === 0, options.graceMs);
  }
  for (const p of await stillRunning()) signal(p, 'SIGKILL');
  await waitFor(async () => (await stillRunning()).length === 0, 5000);
  return stillRunning();
}

/**
 * The pid in `pidFile` if that process runs and its command line mentions
 * `marker` (a path only this daemon uses), so that a stale pid file never
 * makes us signal an unrelated process that reused the pid.
 */
export async function daemonFromPidFile(pidFile: string, marker: string): Promise<number | undefined> {
  const pid = await readPidFile(pidFile);
  if (pid === undefined || !(await isRunning(pid))) return undefined;
  const info = await readProc(pid);
  return info !== undefined && info.argv.some((a) => a.includes(marker)) ? pid : undefined;
}

/** Whether `pid` lives in the network namespace mounted at `netnsPath`. */
export async function inNetns(pid: number, netnsPath: string): Promise<boolean> {
  const info = await readProc(pid);
  if (info?.netnsInode === undefined) return false;
  try {
    return (await stat(netnsPath)).ino === info.netnsInode;
  } catch {
    return false;
  }
}

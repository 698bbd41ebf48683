/**
 * Termination messages (terminationMessagePath / terminationMessagePolicy), as
 * upstream's kuberuntime: each container gets an empty host file
 * `<podDir>/containers/<name>/<random>` mounted at its terminationMessagePath;
 * when it exits, what it wrote there (at most 4096 bytes) becomes the message
 * of its terminated state. With FallbackToLogsOnError, an empty file and a
 * failed exit (not ContainerCannotRun) take the tail of the container's log
 * instead: the last 80 lines, at most 2048 bytes.
 *
 * The pure part is `terminationMessage` (which source wins) and
 * `parseCriLogTail` (the CRI log format); the rest reads files.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, errorMessage } from '../../lib/errors.js';
import type { ContainerStatus, Mount } from '../runtime/types.js';
import { terminationMessagePathAnnotation, terminationMessagePolicyAnnotation } from './labels.js';
import { podDir } from './volumes.js';

export const maxTerminationMessageBytes = 4096;
export const maxTerminationLogBytes = 2048;
export const maxTerminationLogLines = 80;
export const defaultTerminationMessagePath = '/dev/termination-log';

/** Creates the container's (empty, world-writable) termination-log file and returns its mount. */
export async function terminationLogMount(rootDir: string, uid: string, container: { name: string; terminationMessagePath?: string }): Promise<Mount | undefined> {
  const path = container.terminationMessagePath ?? defaultTerminationMessagePath;
  if (path === '') return undefined;
  const dir = join(podDir(rootDir, uid), 'containers', container.name);
  await mkdir(dir, { recursive: true, mode: 0o750 });
  const file = join(dir, randomBytes(4).toString('hex'));
  await writeFile(file, '', { mode: 0o666 });
  await chmod(file, 0o666); // not narrowed by the umask: the container may run as any user
  return { containerPath: path, hostPath: file, readonly: false };
}

/** The content of CRI log lines (`<time> <stream> <P|F> <content>`), partial lines joined; the last `maxLines` lines, at most `maxBytes`. Pure. */
export function parseCriLogTail(text: string, maxLines = maxTerminationLogLines, maxBytes = maxTerminationLogBytes): string {
  const lines: string[] = [];
  let partial = '';
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    const m = /^\S+ (?:stdout|stderr) ([PF])(?:\S*) ?(.*)$/.exec(raw);
    if (m === null) continue;
    if (m[1] === 'P') {
      partial += m[2]!;
      continue;
    }
    lines.push(partial + m[2]! + '\n');
    partial = '';
  }
  if (partial !== '') lines.push(partial);
  const buf = Buffer.from(lines.slice(-maxLines).join(''));
  return buf.subarray(Math.max(0, buf.length - maxBytes)).toString();
}

/**
 * upstream getTerminationMessage + the fallback: the file's content when there is some;
 * the log tail when the policy says so and the file gave nothing. Pure.
 */
export function terminationMessage(o: { file: string | undefined; fallbackToLogs: boolean; logTail: () => string | undefined }): string {
  if (o.file !== undefined && o.file !== '') return o.file;
  if (!o.fallbackToLogs) return '';
  return o.logTail() ?? '';
}

async function readAtMost(path: string, max: number): Promise<string> {
  const f = await open(path, 'r');
  try {
    const { size } = await f.stat();
    const start = Math.max(0, size - max);
    const buf = Buffer.alloc(Math.min(size, max));
    await f.read(buf, 0, buf.length, start);
    return buf.toString();
  } finally {
    await f.close();
  }
}

/** The message for an exited container: the runtime's, enriched with what the container left (upstream's "<runtime message>: <termination message>"). */
export async function exitedContainerMessage(s: Pick<ContainerStatus, 'exitCode' | 'reason' | 'message' | 'annotations' | 'mounts' | 'logPath'>): Promise<string> {
  const path = s.annotations[terminationMessagePathAnnotation] ?? '';
  const fallbackToLogs = s.annotations[terminationMessagePolicyAnnotation] === 'FallbackToLogsOnError' && s.exitCode !== 0 && s.reason !== 'ContainerCannotRun';
  let file: string | undefined;
  let error: string | undefined;
  const mount = path === '' ? undefined : (s.mounts ?? []).find((m) => m.containerPath === path);
  if (mount !== undefined) {
    try {
      file = await readAtMost(mount.hostPath, maxTerminationMessageBytes);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') error = `Error on reading termination log ${mount.hostPath}: ${errorMessage(err)}`;
    }
  }
  let logText: string | undefined;
  if (fallbackToLogs && (file === undefined || file === '') && error === undefined && s.logPath !== '') {
    try {
      // The tail is at most 80 lines of at most a few KiB each: read the last 256 KiB of the file.
      logText = await readAtMost(s.logPath, 256 * 1024);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') error = `Error on reading termination message from logs: ${errorMessage(err)}`;
    }
  }
  const message = error ?? terminationMessage({ file, fallbackToLogs, logTail: () => (logText === undefined ? undefined : parseCriLogTail(logText)) });
  if (message === '') return s.message;
  return s.message === '' ? message : `${s.message}: ${message}`;
}

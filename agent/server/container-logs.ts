/**
 * /containerLogs: the log file of a pod's container, read through the CRI log
 * format (cri-log.ts) and written to the response with back-pressure.
 *
 * Design notes:
 * - The container is found through the runtime (the pod uid and container
 *   name labels the pod workers set), newest attempt first; `previous` is the
 *   attempt before it. The file is the runtime's ContainerStatus.logPath, so
 *   either runtime backend serves logs the same way.
 * - follow: after the end of the file the reader polls (250 ms) for more;
 *   a file replaced under the same path (rotation: new inode, or shorter than
 *   what was read) is reopened from its start; the stream ends once the
 *   container is not running and the file has no more data (a new attempt
 *   writes a new file: like upstream, `logs -f` ends when the container does),
 *   or when the client goes away.
 * - Reads are 64 KiB at a time and wait for 'drain', so a huge log never sits
 *   in memory (a tail keeps only the last lines).
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { KnodeError } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { containerNameLabel, podUidLabel } from '../pods/labels.js';
import type { Container, RuntimeService } from '../runtime/types.js';
import { LineSplitter, LogSelector, type ContainerLogQuery } from './cri-log.js';

export interface LogTarget {
  containerId: string;
  logPath: string;
}

/** The container (current or previous attempt) of `uid`/`name` and its log file. Throws KnodeError 'NOT_FOUND' / 'BAD_REQUEST'. */
export async function findLogTarget(runtime: RuntimeService, podKey: string, uid: string, name: string, previous: boolean): Promise<LogTarget> {
  const containers = await runtime.listContainers({ labelSelector: { [podUidLabel]: uid, [containerNameLabel]: name } });
  const byAttempt = [...containers].sort((a: Container, b: Container) => b.metadata.attempt - a.metadata.attempt || Number(b.createdAt - a.createdAt));
  const c = byAttempt[previous ? 1 : 0];
  if (c === undefined) {
    throw new KnodeError(
      'BAD_REQUEST',
      previous ? `previous terminated container "${name}" in pod "${podKey}" not found` : `container "${name}" in pod "${podKey}" is waiting to start`,
    );
  }
  const status = await runtime.containerStatus(c.id);
  if (!status.status.logPath) throw new KnodeError('BAD_REQUEST', `container "${name}" in pod "${podKey}" has no log file`);
  return { containerId: c.id, logPath: status.status.logPath };
}

function write(out: Writable, chunks: Buffer[], signal: AbortSignal): Promise<void> {
  let ok = true;
  for (const c of chunks) ok = out.write(c) && ok;
  if (ok || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      out.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    out.on('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

export interface StreamLogOptions {
  target: LogTarget;
  query: ContainerLogQuery;
  runtime: RuntimeService;
  out: Writable;
  /** Aborted when the client goes away or the agent stops. */
  signal: AbortSignal;
  pollMs?: number;
}

async function isRunning(runtime: RuntimeService, id: string): Promise<boolean> {
  try {
    return (await runtime.containerStatus(id)).status.state === 'running';
  } catch {
    return false;
  }
}

/** Writes the selected log to `out` (following when asked); resolves when done. Does not end `out`. */
export async function streamContainerLog(o: StreamLogOptions): Promise<void> {
  const selector = new LogSelector(o.query);
  const splitter = new LineSplitter();
  const buf = Buffer.alloc(64 * 1024);
  let file: FileHandle | undefined;
  let ino = 0;
  let pos = 0;
  const openFile = async (): Promise<boolean> => {
    try {
      file = await open(o.target.logPath, 'r');
      ino = (await file.stat()).ino;
      pos = 0;
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  };
  /** Reads what is there; returns whether anything was read. */
  const drain = async (): Promise<boolean> => {
    if (file === undefined) return false;
    let any = false;
    while (!o.signal.aborted && !selector.done) {
      const { bytesRead } = await file.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      any = true;
      pos += bytesRead;
      const out: Buffer[] = [];
      for (const line of splitter.push(buf.subarray(0, bytesRead))) out.push(...selector.push(line));
      if (out.length > 0) await write(o.out, out, o.signal);
    }
    return any;
  };
  try {
    if (!(await openFile()) && !o.query.follow) throw new KnodeError('NOT_FOUND', `log file ${o.target.logPath} does not exist`);
    await drain();
    await write(o.out, selector.end(), o.signal);
    if (!o.query.follow) {
      await write(o.out, selector.flushPartial(), o.signal);
      return;
    }
    const pollMs = o.pollMs ?? 250;
    while (!o.signal.aborted && !selector.done) {
      await sleep(pollMs, o.signal);
      if (await drain()) continue;
      // Nothing new: rotated (new file at the path) or finished?
      const now = await stat(o.target.logPath).catch(() => undefined);
      if (now !== undefined && (file === undefined || now.ino !== ino || now.size < pos)) {
        await file?.close();
        file = undefined;
        splitter.reset();
        if (await openFile()) continue;
      }
      if (!(await isRunning(o.runtime, o.target.containerId))) {
        await drain();
        break;
      }
    }
    await write(o.out, selector.flushPartial(), o.signal);
  } finally {
    await file?.close();
  }
}

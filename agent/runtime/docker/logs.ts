/**
 * Container logs in the CRI format, copied out of docker.
 *
 * Design notes:
 * - Docker keeps each container's output in its json-file log (the backend
 *   creates every container with that driver). The agent serves CRI log files
 *   (`<RFC3339Nano> <stdout|stderr> <F|P> <text>`) from /var/log/pods, so a
 *   follower per container streams `GET /containers/<id>/logs?follow&timestamps`
 *   and appends each message, converted, to the path the agent asked for.
 *   cri-dockerd symlinks docker's json log instead, which only works for a
 *   kubelet that reads docker's format; this agent reads CRI lines only.
 * - Docker's own timestamp of each message is kept, so the file says when the
 *   line was written, not when it was copied.
 * - Restart safe: a follower first reads the last timestamp in the file and
 *   asks docker for messages since that second, skipping those not newer; a
 *   new backend instance (agent restart) thus resumes without duplicates.
 *   The follow stream ends when the container stops; `whenCopied` lets
 *   containerStatus wait for that, so an exited container's log is complete.
 * - One frame of the multiplexed stream is one log message (docker splits
 *   lines over 16 KiB into partial messages without a trailing newline: 'P').
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { errnoCode } from '../../../lib/errors.js';
import type { Logger } from '../../../lib/log.js';
import { nanosToRfc3339, rfc3339ToNanos } from './convert.js';
import { FrameParser, type FrameStream } from './frames.js';

/** One docker log message (`<timestamp> <text>`) as a CRI log line, or undefined if not newer than `afterNs`. Pure. */
export function criLogLine(message: Buffer, stream: FrameStream, afterNs: bigint): { line: Buffer; ns: bigint } | undefined {
  const space = message.indexOf(0x20);
  if (space < 0) return undefined;
  const ns = rfc3339ToNanos(message.subarray(0, space).toString('latin1'));
  if (ns === 0n || ns <= afterNs) return undefined;
  let text = message.subarray(space + 1);
  const full = text.length > 0 && text[text.length - 1] === 0x0a;
  if (full) text = text.subarray(0, text.length - 1);
  if (text.length > 0 && text[text.length - 1] === 0x0d && full) text = text.subarray(0, text.length - 1);
  const head = Buffer.from(`${nanosToRfc3339(ns)} ${stream} ${full ? 'F' : 'P'} `);
  return { line: Buffer.concat([head, text, Buffer.from('\n')]), ns };
}

/** Timestamp (ns) of the last complete line of a CRI log file; 0n when there is none. */
export async function lastLoggedNanos(path: string): Promise<bigint> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 0n;
    throw err;
  }
  try {
    const { size } = await fh.stat();
    const len = Math.min(size, 64 * 1024);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    const lines = buf.toString('utf8').split('\n').filter((l) => l !== '');
    for (let i = lines.length - 1; i >= 0; i--) {
      const ns = rfc3339ToNanos(lines[i]!.split(' ')[0]);
      if (ns !== 0n) return ns;
    }
    return 0n;
  } finally {
    await fh.close();
  }
}

export type OpenLogStream = (sinceSeconds: number) => Promise<Readable>;

interface Follower {
  path: string;
  writer: WriteStream | undefined;
  done: Promise<void>;
  stream: Readable | undefined;
}

export class LogCopier {
  private readonly followers = new Map<string, Follower>();
  /** Containers whose log was copied to the end (their follow stream ended). */
  private readonly finished = new Set<string>();

  constructor(private readonly log: Logger) {}

  /** Starts copying a container's log unless a copier runs or its copy is complete. */
  ensure(id: string, path: string, tty: boolean, openStream: OpenLogStream): void {
    if (path === '' || this.followers.has(id) || this.finished.has(id)) return;
    const follower: Follower = { path, writer: undefined, done: Promise.resolve(), stream: undefined };
    this.followers.set(id, follower);
    follower.done = this.copy(id, follower, tty, openStream)
      .catch((err: unknown) => this.log.warn('copying the container log failed', { id, path, err }))
      .finally(() => {
        this.followers.delete(id);
        follower.writer?.end();
      });
  }

  private async copy(id: string, f: Follower, tty: boolean, openStream: OpenLogStream): Promise<void> {
    await mkdir(dirname(f.path), { recursive: true });
    let afterNs = await lastLoggedNanos(f.path);
    f.writer = this.openWriter(id, f.path);
    try {
      const stream = await openStream(afterNs === 0n ? 0 : Number(afterNs / 1_000_000_000n));
      f.stream = stream;
      const parser = new FrameParser();
      let rest = Buffer.alloc(0);
      const write = (message: Buffer, s: FrameStream): void => {
        const out = criLogLine(message, s, afterNs);
        if (out === undefined) return;
        afterNs = out.ns;
        f.writer?.write(out.line);
      };
      for await (const chunk of stream) {
        const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
        if (!tty) {
          for (const frame of parser.push(buf)) write(frame.payload, frame.stream);
          continue;
        }
        rest = Buffer.concat([rest, buf]);
        for (let nl = rest.indexOf(0x0a); nl >= 0; nl = rest.indexOf(0x0a)) {
          write(rest.subarray(0, nl + 1), 'stdout');
          rest = rest.subarray(nl + 1);
        }
      }
      if (rest.length > 0) write(rest, 'stdout');
      this.finished.add(id);
    } catch (err) {
      this.log.warn('copying the container log failed', { id, path: f.path, err });
    }
  }

  private openWriter(id: string, path: string): WriteStream {
    const w = createWriteStream(path, { flags: 'a' });
    w.on('error', (err) => this.log.warn('log file write failed', { id, path, err }));
    return w;
  }

  /** Resolves when the running copy (if any) has ended, or after `timeoutMs`. */
  async whenCopied(id: string, timeoutMs: number): Promise<void> {
    const f = this.followers.get(id);
    if (f === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([f.done, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** Reopens the log file (after the agent rotated it). */
  reopen(id: string): boolean {
    const f = this.followers.get(id);
    if (f === undefined) return false;
    const old = f.writer;
    f.writer = this.openWriter(id, f.path);
    old?.end();
    return true;
  }

  forget(id: string): void {
    this.followers.get(id)?.stream?.destroy();
    this.finished.delete(id);
  }

  close(): void {
    for (const f of this.followers.values()) f.stream?.destroy();
  }
}

/**
 * The CRI container log format and the selection of what /containerLogs
 * returns. Pure: raw file lines in, output chunks out.
 *
 * Design notes:
 * - A log file line is `<RFC3339Nano time> <stdout|stderr> <P|F> <text>`; P
 *   (partial) lines are continued by the next line of the same stream until an
 *   F (full) one, as the runtime splits long lines (16 KiB in containerd).
 *   Lines without a tag (older runtimes) count as full.
 * - A logical line (partials joined) is the unit of tailLines, sinceSeconds /
 *   sinceTime and the timestamps prefix (the first fragment's time), as
 *   upstream's kuberuntime_logs writes the prefix only at the start of a line.
 * - limitBytes counts the bytes written (timestamps included) and cuts the last
 *   line short, as upstream does.
 * - Malformed lines are skipped, never fatal: a log file is container input.
 */

export type LogStream = 'stdout' | 'stderr';

export interface CriLogLine {
  /** The timestamp as written (RFC3339Nano). */
  time: string;
  /** Milliseconds since the epoch (for since* comparisons). */
  timeMs: number;
  stream: LogStream;
  partial: boolean;
  content: Buffer;
}

const space = 0x20;

/** Parses one file line (without its trailing newline); undefined when it is not in CRI format. */
export function parseCriLogLine(line: Buffer): CriLogLine | undefined {
  const s1 = line.indexOf(space);
  if (s1 <= 0) return undefined;
  const s2 = line.indexOf(space, s1 + 1);
  if (s2 === -1) return undefined;
  const time = line.subarray(0, s1).toString('latin1');
  const timeMs = Date.parse(time);
  if (Number.isNaN(timeMs)) return undefined;
  const streamText = line.subarray(s1 + 1, s2).toString('latin1');
  if (streamText !== 'stdout' && streamText !== 'stderr') return undefined;
  let rest = line.subarray(s2 + 1);
  let partial = false;
  // The tag field: "P" or "F" (possibly with ':'-separated extras), then a space.
  const s3 = rest.indexOf(space);
  const tag = (s3 === -1 ? rest : rest.subarray(0, s3)).toString('latin1');
  const first = tag.split(':')[0];
  if (first === 'P' || first === 'F') {
    partial = first === 'P';
    rest = s3 === -1 ? Buffer.alloc(0) : rest.subarray(s3 + 1);
  }
  return { time, timeMs, stream: streamText, partial, content: rest };
}

export interface LogSelection {
  /** Only the last N logical lines (undefined = all). */
  tailLines?: number;
  /** Only lines at or after this time (ms since the epoch). */
  sinceMs?: number;
  /** Prefix each line with its timestamp and a space. */
  timestamps?: boolean;
  /** Stop after this many bytes of output. */
  limitBytes?: number;
}

interface LogicalLine {
  time: string;
  timeMs: number;
  parts: Buffer[];
  complete: boolean;
}

/**
 * Turns file lines into the response body, incrementally: `push` each file
 * line, `end` once the file is read up to its end (the tail is emitted
 * then), and keep pushing afterwards when following. `done` turns true once
 * limitBytes is reached.
 */
export class LogSelector {
  private readonly o: LogSelection;
  private readonly pending = new Map<LogStream, LogicalLine>();
  private tail: LogicalLine[] | undefined;
  private written = 0;
  private ended = false;
  done = false;

  constructor(selection: LogSelection) {
    this.o = selection;
    if (selection.tailLines !== undefined) this.tail = [];
  }

  /** Feeds one file line; returns the output it produces now. */
  push(raw: Buffer): Buffer[] {
    const line = parseCriLogLine(raw);
    if (line === undefined || this.done) return [];
    let current = this.pending.get(line.stream);
    if (current === undefined) {
      current = { time: line.time, timeMs: line.timeMs, parts: [], complete: false };
      this.pending.set(line.stream, current);
    }
    current.parts.push(line.content);
    if (line.partial) return [];
    current.complete = true;
    this.pending.delete(line.stream);
    return this.accept(current);
  }

  /** The file has been read to its end: emits the tail (and nothing when there was none asked). */
  end(): Buffer[] {
    if (this.ended) return [];
    this.ended = true;
    const tail = this.tail;
    this.tail = undefined;
    if (tail === undefined) return [];
    const n = this.o.tailLines ?? 0;
    return (n === 0 ? [] : tail.slice(-n)).flatMap((l) => this.emit(l));
  }

  /** Lines still waiting for their final fragment (emitted when the log ends without one, e.g. the container died mid-line). */
  flushPartial(): Buffer[] {
    const out: Buffer[] = [];
    for (const l of [...this.pending.values()].sort((a, b) => a.timeMs - b.timeMs)) out.push(...this.accept(l));
    this.pending.clear();
    return out;
  }

  private accept(l: LogicalLine): Buffer[] {
    if (this.o.sinceMs !== undefined && l.timeMs < this.o.sinceMs) return [];
    if (this.tail !== undefined) {
      const n = this.o.tailLines ?? 0;
      this.tail.push(l);
      // Trimmed in batches: shift() per line would be quadratic on a big file.
      if (this.tail.length > 2 * n + 64) this.tail.splice(0, this.tail.length - n);
      return [];
    }
    return this.emit(l);
  }

  private emit(l: LogicalLine): Buffer[] {
    if (this.done) return [];
    const chunks: Buffer[] = [];
    if (this.o.timestamps) chunks.push(Buffer.from(`${l.time} `));
    chunks.push(...l.parts);
    if (l.complete) chunks.push(Buffer.from('\n'));
    let out = Buffer.concat(chunks);
    const limit = this.o.limitBytes;
    if (limit !== undefined) {
      if (this.written + out.length >= limit) {
        out = out.subarray(0, limit - this.written);
        this.done = true;
      }
    }
    this.written += out.length;
    return out.length > 0 ? [out] : [];
  }
}

/** Splits a byte stream into lines; keeps the unterminated rest for the next chunk. */
export class LineSplitter {
  private rest: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    const data = this.rest.length > 0 ? Buffer.concat([this.rest, chunk]) : chunk;
    const lines: Buffer[] = [];
    let start = 0;
    for (let nl = data.indexOf(0x0a, start); nl !== -1; nl = data.indexOf(0x0a, start)) {
      lines.push(data.subarray(start, nl));
      start = nl + 1;
    }
    this.rest = Buffer.from(data.subarray(start));
    return lines;
  }

  /** Bytes of an unterminated last line (a line the runtime is still writing). */
  get pendingBytes(): number {
    return this.rest.length;
  }

  reset(): void {
    this.rest = Buffer.alloc(0);
  }
}

/** The log query parameters of /containerLogs (upstream's PodLogOptions). Throws a message for a bad value. */
export interface ContainerLogQuery extends LogSelection {
  follow: boolean;
  previous: boolean;
}

function intParam(q: URLSearchParams, name: string, min: number): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  if (!/^-?\d+$/.test(v)) throw new Error(`${name}: "${v}" is not an integer`);
  const n = Number(v);
  if (n < min) throw new Error(`${name}: must be at least ${min}`);
  return n;
}

function boolParam(q: URLSearchParams, name: string): boolean {
  const v = q.get(name);
  if (v === null || v === '' || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  throw new Error(`${name}: "${v}" is not a boolean`);
}

/** Parses the query of /containerLogs; `nowMs` turns sinceSeconds into a time. Throws an Error naming the bad parameter. */
export function parseContainerLogQuery(q: URLSearchParams, nowMs: number): ContainerLogQuery {
  const sinceSeconds = intParam(q, 'sinceSeconds', 1);
  const sinceTime = q.get('sinceTime');
  if (sinceSeconds !== undefined && sinceTime) throw new Error('at most one of sinceTime or sinceSeconds may be specified');
  let sinceMs: number | undefined;
  if (sinceSeconds !== undefined) sinceMs = nowMs - sinceSeconds * 1000;
  else if (sinceTime) {
    sinceMs = Date.parse(sinceTime);
    if (Number.isNaN(sinceMs)) throw new Error(`sinceTime: "${sinceTime}" is not an RFC3339 time`);
  }
  const tailLines = intParam(q, 'tailLines', 0);
  const limitBytes = intParam(q, 'limitBytes', 1);
  return {
    follow: boolParam(q, 'follow'),
    previous: boolParam(q, 'previous'),
    timestamps: boolParam(q, 'timestamps'),
    ...(tailLines !== undefined ? { tailLines } : {}),
    ...(sinceMs !== undefined ? { sinceMs } : {}),
    ...(limitBytes !== undefined ? { limitBytes } : {}),
  };
}

/**
 * The client side of SPDY/3.1 framing, as far as the remotecommand protocol
 * needs it to talk to the runtime's streaming server: client streams (SYN_STREAM
 * with a header block), DATA frames with FIN for half-close, PING echo;
 * everything else is read and ignored.
 *
 * Design notes:
 * - Header blocks are zlib-compressed as one stream per session (SYNC_FLUSH
 *   per block). SPDY/3 has a preset dictionary; compressing without it is
 *   valid (the zlib header then does not ask for one, and a reader given the
 *   dictionary does not need it). Received header blocks are not decoded:
 *   nothing here needs the runtime's reply headers.
 * - No WINDOW_UPDATE frames: the runtime's SPDY side (Go's spdystream in
 *   containerd) does no flow control, and sending them made containerd 1.6
 *   drop the connection mid-transfer (seen in the lab: a 5.5 MB exec output
 *   cut at 3-4 MB, no exit status). Back-pressure is TCP's.
 * - `encode*` and `FrameReader` are pure.
 */
import { constants, createDeflate, type Deflate } from 'node:zlib';

export const FLAG_FIN = 0x01;

const TYPE_SYN_STREAM = 1;
const TYPE_RST_STREAM = 3;
const TYPE_PING = 6;
const TYPE_GOAWAY = 7;

export type Frame =
  | { control: false; streamId: number; flags: number; data: Buffer }
  | { control: true; type: number; flags: number; data: Buffer };

function controlFrame(type: number, flags: number, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt16BE(0x8003, 0);
  head.writeUInt16BE(type, 2);
  head.writeUInt32BE(data.length, 4);
  head.writeUInt8(flags, 4);
  return Buffer.concat([head, data]);
}

/** An uncompressed SPDY/3 header block (names lower-cased, as the spec requires). Pure. */
export function encodeHeaderBlock(headers: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  const n = Buffer.alloc(4);
  n.writeUInt32BE(Object.keys(headers).length);
  parts.push(n);
  for (const [k, v] of Object.entries(headers)) {
    for (const s of [k.toLowerCase(), v]) {
      const b = Buffer.from(s);
      const len = Buffer.alloc(4);
      len.writeUInt32BE(b.length);
      parts.push(len, b);
    }
  }
  return Buffer.concat(parts);
}

export function encodeSynStream(streamId: number, compressedHeaders: Buffer, flags = 0): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt32BE(streamId & 0x7fffffff, 0);
  fixed.writeUInt32BE(0, 4);
  return controlFrame(TYPE_SYN_STREAM, flags, Buffer.concat([fixed, compressedHeaders]));
}

export function encodeData(streamId: number, data: Buffer, flags = 0): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(streamId & 0x7fffffff, 0);
  head.writeUInt32BE(data.length, 4);
  head.writeUInt8(flags, 4);
  return Buffer.concat([head, data]);
}

export function encodeRstStream(streamId: number, status: number): Buffer {
  const d = Buffer.alloc(8);
  d.writeUInt32BE(streamId & 0x7fffffff, 0);
  d.writeUInt32BE(status, 4);
  return controlFrame(TYPE_RST_STREAM, 0, d);
}

/** Splits a byte stream into frames. Pure. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const frames: Frame[] = [];
    while (this.buf.length >= 8) {
      const len = this.buf.readUInt32BE(4) & 0xffffff;
      if (this.buf.length < 8 + len) break;
      const flags = this.buf.readUInt8(4);
      const data = Buffer.from(this.buf.subarray(8, 8 + len));
      if (this.buf[0]! & 0x80) frames.push({ control: true, type: this.buf.readUInt16BE(2), flags, data });
      else frames.push({ control: false, streamId: this.buf.readUInt32BE(0) & 0x7fffffff, flags, data });
      this.buf = this.buf.subarray(8 + len);
    }
    return frames;
  }
}

export interface SpdyHandlers {
  /** DATA for a stream (FIN set on its last frame). */
  onData(streamId: number, data: Buffer, fin: boolean): void;
  /** The runtime reset a stream or said GOAWAY. */
  onReset(streamId: number): void;
}

/** A SPDY client session on an upgraded socket. */
export class SpdyClient {
  private nextId = 1;
  private readonly deflate: Deflate = createDeflate();
  private compressing: Promise<void> = Promise.resolve();
  private readonly reader = new FrameReader();

  constructor(
    private readonly socket: NodeJS.WritableStream & NodeJS.ReadableStream,
    private readonly handlers: SpdyHandlers,
  ) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
  }

  /** Feeds bytes that arrived with the upgrade answer. */
  receive(chunk: Buffer): void {
    for (const f of this.reader.push(chunk)) {
      if (!f.control) {
        this.handlers.onData(f.streamId, f.data, (f.flags & FLAG_FIN) !== 0);
      } else if (f.type === TYPE_PING) {
        this.socket.write(controlFrame(TYPE_PING, 0, f.data));
      } else if (f.type === TYPE_RST_STREAM && f.data.length >= 4) {
        this.handlers.onReset(f.data.readUInt32BE(0) & 0x7fffffff);
      } else if (f.type === TYPE_GOAWAY) {
        this.handlers.onReset(0);
      }
    }
  }

  private compress(block: Buffer): Promise<Buffer> {
    const run = this.compressing.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          // Paused mode: the flush's output is in the readable buffer when its callback runs.
          this.deflate.write(block);
          this.deflate.flush(constants.Z_SYNC_FLUSH, () => {
            const out = this.deflate.read() as Buffer | null;
            if (out === null) reject(new Error('zlib produced no header block'));
            else resolve(out);
          });
        }),
    );
    this.compressing = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** Opens a stream with `headers`; resolves with its id once the SYN_STREAM is written. */
  async openStream(headers: Record<string, string>): Promise<number> {
    const id = this.nextId;
    this.nextId += 2;
    const block = await this.compress(encodeHeaderBlock(headers));
    this.socket.write(encodeSynStream(id, block));
    return id;
  }

  write(streamId: number, data: Buffer): boolean {
    return this.socket.write(encodeData(streamId, data));
  }

  /** Half-closes a stream (an empty DATA frame with FIN). */
  end(streamId: number): void {
    this.socket.write(encodeData(streamId, Buffer.alloc(0), FLAG_FIN));
  }

  close(): void {
    this.deflate.close();
  }
}

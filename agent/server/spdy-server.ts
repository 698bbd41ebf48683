/**
 * The server side of SPDY/3.1 as far as kubectl's port-forward needs it when
 * the kubelet terminates the protocol itself (the Docker backend): the client
 * opens streams (SYN_STREAM with a zlib-compressed header block), the server
 * answers each with SYN_REPLY, DATA flows both ways with FIN as half-close,
 * PING is echoed; RST_STREAM and GOAWAY are reported.
 *
 * Design notes:
 * - Go's spdystream (kubectl) compresses header blocks with SPDY/3's preset
 *   dictionary, so the reader inflates with it (one zlib stream per session).
 *   Our own header blocks are compressed without one (valid; see spdy.ts).
 * - Inflating is asynchronous, so every received frame goes through one
 *   promise chain: a stream's DATA is never seen before its SYN_STREAM.
 * - Transport-agnostic: bytes come in through `receive` and go out through
 *   the `send` callback, so the same session runs on an upgraded socket
 *   (SPDY/3.1) and inside WebSocket messages (the port-forward tunnel).
 * - No WINDOW_UPDATE (spdystream does no flow control; see spdy.ts). Back-pressure
 *   is the transport's: `send` returns false once its buffer is over the
 *   high-water mark, and `write` passes that on, so the caller pauses its
 *   source until the transport drains (direct-streaming.ts).
 * - `spdyDictionary`, `decodeHeaderBlock`, `encodeSynReply` are pure.
 */
import { constants, createDeflate, createInflate, type Deflate, type Inflate } from 'node:zlib';
import { KnodeError } from '../../lib/errors.js';
import { encodeData, encodeHeaderBlock, encodeRstStream, FLAG_FIN, FrameReader, type Frame } from './spdy.js';

const TYPE_SYN_STREAM = 1;
const TYPE_SYN_REPLY = 2;
const TYPE_RST_STREAM = 3;
const TYPE_PING = 6;
const TYPE_GOAWAY = 7;

const dictionaryWords =
  'options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges age allow authorization cache-control connection content-base content-encoding content-language content-length content-location content-md5 content-range content-type date etag expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate method get status';
const dictionaryTail =
  '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';

/** SPDY/3's header compression dictionary (draft 3, section 2.6.10.1): length-prefixed words, then a tail. Pure. */
export function spdyDictionary(): Buffer {
  const words = [...dictionaryWords.split(' '), '200 OK', 'version', 'HTTP/1.1', 'url', 'public', 'set-cookie', 'keep-alive', 'origin'];
  const parts: Buffer[] = [];
  for (const w of words) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(w.length);
    parts.push(len, Buffer.from(w, 'latin1'));
  }
  parts.push(Buffer.from(dictionaryTail, 'latin1'));
  return Buffer.concat(parts);
}

/** Decodes an (inflated) SPDY/3 header block; names as sent (lower case), multiple values joined by NUL. Pure. */
export function decodeHeaderBlock(block: Buffer): Map<string, string> {
  const bad = (): never => {
    throw new KnodeError('SPDY_PROTOCOL', 'malformed SPDY header block');
  };
  if (block.length < 4) bad();
  const n = block.readUInt32BE(0);
  const headers = new Map<string, string>();
  let at = 4;
  const next = (): string => {
    if (at + 4 > block.length) bad();
    const len = block.readUInt32BE(at);
    at += 4;
    if (at + len > block.length) bad();
    const s = block.subarray(at, at + len).toString('utf8');
    at += len;
    return s;
  };
  for (let i = 0; i < n; i++) {
    const name = next();
    headers.set(name, next());
  }
  return headers;
}

function controlFrame(type: number, flags: number, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt16BE(0x8003, 0);
  head.writeUInt16BE(type, 2);
  head.writeUInt32BE(data.length, 4);
  head.writeUInt8(flags, 4);
  return Buffer.concat([head, data]);
}

/** SYN_REPLY for a stream with a compressed header block. Pure. */
export function encodeSynReply(streamId: number, compressedHeaders: Buffer, flags = 0): Buffer {
  const id = Buffer.alloc(4);
  id.writeUInt32BE(streamId & 0x7fffffff);
  return controlFrame(TYPE_SYN_REPLY, flags, Buffer.concat([id, compressedHeaders]));
}

export interface SpdyServerHandlers {
  /** A client stream was opened (already answered with SYN_REPLY). */
  onStream(streamId: number, headers: Map<string, string>, fin: boolean): void;
  onData(streamId: number, data: Buffer, fin: boolean): void;
  /** The client reset a stream (streamId) or went away (GOAWAY: 0). */
  onReset(streamId: number): void;
  /** A protocol error; the session is unusable. */
  onError(err: Error): void;
}

/** Runs a zlib stream in paused mode: one block in, its SYNC_FLUSH output out. */
function flushThrough(z: Inflate | Deflate, block: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    z.once('error', onError);
    z.write(block);
    z.flush(constants.Z_SYNC_FLUSH, () => {
      z.off('error', onError);
      const chunks: Buffer[] = [];
      for (let c = z.read() as Buffer | null; c !== null; c = z.read() as Buffer | null) chunks.push(c);
      resolve(Buffer.concat(chunks));
    });
  });
}

export class SpdyServer {
  private readonly reader = new FrameReader();
  private readonly inflate: Inflate = createInflate({ dictionary: spdyDictionary() });
  private readonly deflate: Deflate = createDeflate();
  private chain: Promise<void> = Promise.resolve();
  private broken = false;
  private readonly open = new Set<number>();

  constructor(
    /** Sends bytes to the client; returns false when its buffer is full (any other value: go on). */
    private readonly send: (bytes: Buffer) => unknown,
    private readonly handlers: SpdyServerHandlers,
  ) {
    this.inflate.on('error', () => undefined);
    this.deflate.on('error', () => undefined);
  }

  receive(chunk: Buffer): void {
    if (this.broken) return;
    let frames: Frame[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.fail(err);
      return;
    }
    for (const f of frames) this.chain = this.chain.then(() => this.handle(f)).catch((err: unknown) => this.fail(err));
  }

  private fail(err: unknown): void {
    if (this.broken) return;
    this.broken = true;
    this.handlers.onError(err instanceof Error ? err : new Error(String(err)));
  }

  private async handle(f: Frame): Promise<void> {
    if (this.broken) return;
    if (!f.control) {
      if (this.open.has(f.streamId)) this.handlers.onData(f.streamId, f.data, (f.flags & FLAG_FIN) !== 0);
      return;
    }
    if (f.type === TYPE_SYN_STREAM) {
      if (f.data.length < 10) throw new KnodeError('SPDY_PROTOCOL', 'short SYN_STREAM');
      const id = f.data.readUInt32BE(0) & 0x7fffffff;
      const headers = decodeHeaderBlock(await flushThrough(this.inflate, f.data.subarray(10)));
      this.open.add(id);
      this.send(encodeSynReply(id, await flushThrough(this.deflate, encodeHeaderBlock({}))));
      this.handlers.onStream(id, headers, (f.flags & FLAG_FIN) !== 0);
    } else if (f.type === TYPE_PING) {
      this.send(controlFrame(TYPE_PING, 0, f.data));
    } else if (f.type === TYPE_RST_STREAM && f.data.length >= 4) {
      const id = f.data.readUInt32BE(0) & 0x7fffffff;
      this.open.delete(id);
      this.handlers.onReset(id);
    } else if (f.type === TYPE_GOAWAY) {
      this.handlers.onReset(0);
    }
  }

  /** DATA on a stream, split into frames of at most 64 KiB; false when the transport asks the caller to wait for its drain. */
  write(streamId: number, data: Buffer): boolean {
    if (this.broken || !this.open.has(streamId)) return true;
    let more = true;
    for (let at = 0; at < data.length; at += 65536) if (this.send(encodeData(streamId, data.subarray(at, at + 65536))) === false) more = false;
    return more;
  }

  /** Half-closes our side of a stream. */
  end(streamId: number): void {
    if (this.broken || !this.open.has(streamId)) return;
    this.send(encodeData(streamId, Buffer.alloc(0), FLAG_FIN));
  }

  reset(streamId: number, status = 5 /* CANCEL */): void {
    if (this.broken || !this.open.delete(streamId)) return;
    this.send(encodeRstStream(streamId, status));
  }

  close(): void {
    this.broken = true;
    this.inflate.close();
    this.deflate.close();
  }
}

/**
 * Minimal netlink attribute (TLV) encoding/decoding for the parts the `netlink` package leaves
 * as raw buffers: IFLA_LINKINFO (kind, veth peer), nested IFLA_PROTINFO (bridge port), rtmsg.
 * Host byte order, like the kernel ABI (x86/arm little-endian).
 */
export const NLA_F_NESTED = 0x8000;

function align4(n: number): number {
  return (n + 3) & ~3;
}

/** One attribute, padded to 4 bytes. */
export function attr(type: number, payload: Buffer | Buffer[], nested = false): Buffer {
  const body = Array.isArray(payload) ? Buffer.concat(payload) : payload;
  const len = 4 + body.length;
  const out = Buffer.alloc(align4(len));
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type | (nested ? NLA_F_NESTED : 0), 2);
  body.copy(out, 4);
  return out;
}

export function u8(v: number): Buffer {
  return Buffer.from([v & 0xff]);
}

export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}

export function cstr(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
}

/** struct ifinfomsg: family, pad, type, index, flags, change. */
export function ifinfomsg(opts: { family?: number; index?: number; flags?: number; change?: number } = {}): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(opts.family ?? 0, 0);
  b.writeInt32LE(opts.index ?? 0, 4);
  b.writeUInt32LE((opts.flags ?? 0) >>> 0, 8);
  b.writeUInt32LE((opts.change ?? 0) >>> 0, 12);
  return b;
}

/** Parse a buffer of attributes into type → payload (last one wins, nested flag stripped). */
export function parseAttrs(buf: Uint8Array): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + 4 <= b.length) {
    const len = b.readUInt16LE(off);
    const type = b.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4 || off + len > b.length) break;
    out.set(type, b.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

export function readCstr(b: Buffer | undefined): string | undefined {
  if (!b) return undefined;
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8');
}

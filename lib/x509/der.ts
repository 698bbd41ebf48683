/**
 * A minimal ASN.1 DER encoder and reader: exactly what PKCS#10 requests and
 * X.509 certificates need (node:crypto signs and verifies, but cannot build
 * or take apart a CSR). Pure.
 *
 * Encoder: functions returning the complete TLV as a Buffer. Reader: one TLV
 * with its raw bytes (for signing/copying verbatim) and, when constructed, its
 * children.
 */
import { KnodeError } from '../errors.js';

export const Tag = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  utf8String: 0x0c,
  printableString: 0x13,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

function lengthBytes(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), lengthBytes(content.length), content]);
}

export const sequence = (...items: Buffer[]): Buffer => tlv(Tag.sequence, Buffer.concat(items));
export const set = (...items: Buffer[]): Buffer => tlv(Tag.set, Buffer.concat(items));
export const utf8String = (s: string): Buffer => tlv(Tag.utf8String, Buffer.from(s, 'utf8'));
export const octetString = (b: Buffer): Buffer => tlv(Tag.octetString, b);
export const derNull = (): Buffer => Buffer.from([Tag.null, 0]);
export const boolean = (v: boolean): Buffer => Buffer.from([Tag.boolean, 1, v ? 0xff : 0]);
/** [n] EXPLICIT (constructed, context-specific). */
export const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);

/** BIT STRING of whole bytes (unused bits 0), or with `unusedBits` in the last byte. */
export function bitString(bytes: Buffer, unusedBits = 0): Buffer {
  return tlv(Tag.bitString, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

/** A non-negative INTEGER from big-endian magnitude bytes (or a small number). */
export function integer(v: number | Buffer): Buffer {
  let b: Buffer;
  if (typeof v === 'number') {
    const bytes: number[] = [];
    for (let x = v; x > 0; x = Math.floor(x / 256)) bytes.unshift(x & 0xff);
    b = Buffer.from(bytes.length ? bytes : [0]);
  } else {
    let i = 0;
    while (i < v.length - 1 && v[i] === 0) i++;
    b = v.subarray(i);
    if (b.length === 0) b = Buffer.from([0]);
  }
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(Tag.integer, b);
}

export function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  if (parts.length < 2 || parts.some((p) => !Number.isInteger(p) || p < 0)) throw new KnodeError('DER_INVALID', `invalid OID ${dotted}`);
  const out = [parts[0]! * 40 + parts[1]!];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(Tag.oid, Buffer.from(out));
}

/** UTCTime before 2050, GeneralizedTime from then on (RFC 5280 4.1.2.5). */
export function time(d: Date): Buffer {
  const iso = d.toISOString(); // 2026-11-23T13:29:11.123Z
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '');
  if (d.getUTCFullYear() < 2050) return tlv(Tag.utcTime, Buffer.from(`${digits.slice(2)}Z`, 'ascii'));
  return tlv(Tag.generalizedTime, Buffer.from(`${digits}Z`, 'ascii'));
}

export interface DerNode {
  tag: number;
  /** The whole TLV. */
  raw: Buffer;
  content: Buffer;
}

/** Reads the TLV at `offset` of `buf`. */
export function readTlv(buf: Buffer, offset = 0): DerNode {
  if (offset + 2 > buf.length) throw new KnodeError('DER_INVALID', 'truncated DER');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new KnodeError('DER_INVALID', 'multi-byte DER tags are not supported');
  let len = buf[offset + 1]!;
  let header = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || offset + 2 + n > buf.length) throw new KnodeError('DER_INVALID', 'invalid DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[offset + 2 + i]!;
    header += n;
  }
  const end = offset + header + len;
  if (end > buf.length) throw new KnodeError('DER_INVALID', 'truncated DER');
  return { tag, raw: buf.subarray(offset, end), content: buf.subarray(offset + header, end) };
}

/** The TLVs inside a constructed node (SEQUENCE, SET, [n]). */
export function children(node: DerNode): DerNode[] {
  if (!(node.tag & 0x20)) throw new KnodeError('DER_INVALID', `DER tag 0x${node.tag.toString(16)} is not constructed`);
  const out: DerNode[] = [];
  for (let off = 0; off < node.content.length; ) {
    const child = readTlv(node.content, off);
    out.push(child);
    off += child.raw.length;
  }
  return out;
}

/** One whole DER document: exactly one TLV, nothing after it. */
export function readDer(buf: Buffer): DerNode {
  const node = readTlv(buf, 0);
  if (node.raw.length !== buf.length) throw new KnodeError('DER_INVALID', 'trailing data after DER');
  return node;
}

export function readOid(node: DerNode): string {
  if (node.tag !== Tag.oid || node.content.length === 0) throw new KnodeError('DER_INVALID', 'expected an OBJECT IDENTIFIER');
  const b = node.content;
  const parts = [Math.floor(b[0]! / 40), b[0]! % 40];
  let v = 0;
  for (let i = 1; i < b.length; i++) {
    v = v * 128 + (b[i]! & 0x7f);
    if (!(b[i]! & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

/** The text of a string type (UTF8String, PrintableString, IA5String, ...). */
export function readString(node: DerNode): string {
  return node.content.toString(node.tag === Tag.utf8String ? 'utf8' : 'latin1');
}

/** The bytes of a BIT STRING with no unused bits. */
export function readBitString(node: DerNode): Buffer {
  if (node.tag !== Tag.bitString || node.content.length < 1) throw new KnodeError('DER_INVALID', 'expected a BIT STRING');
  return node.content.subarray(1);
}

export function pemEncode(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** The DER of every PEM block labelled one of `labels`, in order. */
export function pemDecodeAll(text: string, labels: string[]): Buffer[] {
  const out: Buffer[] = [];
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (labels.includes(m[1]!)) out.push(Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64'));
  }
  return out;
}

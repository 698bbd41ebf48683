/**
 * A small tar reader (ustar + PAX 'x' records + GNU 'L'/'K' long names), for
 * checking archives: it verifies every header checksum and returns the entries
 * with their raw header fields. Not a general extractor: no sparse files.
 */
import { KnodeError } from '../errors.js';

export interface ReadTarEntry {
  path: string;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  uname: string;
  gname: string;
  linkname: string;
  data: Buffer;
  /** PAX records that applied to this entry. */
  pax: Record<string, string>;
}

const BLOCK = 512;

function str(buf: Buffer, offset: number, width: number): string {
  const field = buf.subarray(offset, offset + width);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? width : nul).toString('utf8');
}

function num(buf: Buffer, offset: number, width: number): number {
  const text = str(buf, offset, width).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new KnodeError('OCI_TAR_CORRUPT', `tar: bad octal field ${JSON.stringify(text)} at ${offset}`);
  return parseInt(text, 8);
}

function parsePax(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < body.length) {
    const space = body.indexOf(0x20, pos);
    if (space === -1) throw new KnodeError('OCI_TAR_CORRUPT', 'tar: bad PAX record');
    const len = parseInt(body.subarray(pos, space).toString('ascii'), 10);
    if (!Number.isInteger(len) || len <= 0 || pos + len > body.length) throw new KnodeError('OCI_TAR_CORRUPT', 'tar: bad PAX record length');
    const record = body.subarray(space + 1, pos + len);
    if (record[record.length - 1] !== 0x0a) throw new KnodeError('OCI_TAR_CORRUPT', 'tar: PAX record without newline');
    const text = record.subarray(0, record.length - 1).toString('utf8');
    const eq = text.indexOf('=');
    if (eq === -1) throw new KnodeError('OCI_TAR_CORRUPT', 'tar: PAX record without =');
    out[text.slice(0, eq)] = text.slice(eq + 1);
    pos += len;
  }
  return out;
}

export function parseTar(buf: Buffer): ReadTarEntry[] {
  const entries: ReadTarEntry[] = [];
  let pos = 0;
  let pax: Record<string, string> = {};
  let gnuName: string | undefined;
  let gnuLink: string | undefined;
  for (;;) {
    if (pos + BLOCK > buf.length) throw new KnodeError('OCI_TAR_CORRUPT', 'tar: truncated (no end-of-archive blocks)');
    const header = buf.subarray(pos, pos + BLOCK);
    if (header.every((b) => b === 0)) break;
    const stored = num(header, 148, 8);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
    if (sum !== stored) throw new KnodeError('OCI_TAR_CORRUPT', `tar: checksum mismatch at offset ${pos} (stored ${stored}, computed ${sum})`);
    const size = num(header, 124, 12);
    const typeflag = str(header, 156, 1) || '0';
    const data = buf.subarray(pos + BLOCK, pos + BLOCK + size);
    if (data.length !== size) throw new KnodeError('OCI_TAR_CORRUPT', 'tar: truncated entry data');
    pos += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    if (typeflag === 'x') {
      pax = { ...pax, ...parsePax(data) };
      continue;
    }
    if (typeflag === 'g') continue;
    if (typeflag === 'L') {
      gnuName = str(data, 0, data.length);
      continue;
    }
    if (typeflag === 'K') {
      gnuLink = str(data, 0, data.length);
      continue;
    }
    const magic = header.subarray(257, 263).toString('latin1');
    const prefix = magic === 'ustar\0' ? str(header, 345, 155) : '';
    const name = str(header, 0, 100);
    entries.push({
      path: pax.path ?? gnuName ?? (prefix === '' ? name : `${prefix}/${name}`),
      typeflag,
      mode: num(header, 100, 8),
      uid: num(header, 108, 8),
      gid: num(header, 116, 8),
      mtime: num(header, 136, 12),
      uname: str(header, 265, 32),
      gname: str(header, 297, 32),
      linkname: pax.linkpath ?? gnuLink ?? str(header, 157, 100),
      data: Buffer.from(data),
      pax,
    });
    pax = {};
    gnuName = undefined;
    gnuLink = undefined;
  }
  return entries;
}

/**
 * A deterministic tar writer (POSIX ustar, with PAX extended headers for what
 * ustar cannot hold).
 *
 * Design notes: image layers must be byte-identical from one build to the next,
 * so every header field that usually carries host state is fixed: mtime 0,
 * uid/gid 0, empty user/group names, no device numbers. The writer is a pure
 * function from a list of entries to bytes; it neither reads the filesystem nor
 * reorders the entries (use `normalizeEntries` for sorted order with implied
 * parent directories). Names that do not fit ustar's name/prefix split, and
 * symlink targets longer than 100 bytes, get a PAX 'x' header (`path=`,
 * `linkpath=`) ahead of the entry, as Go's archive/tar and GNU tar do.
 */
import { KnodeError } from '../errors.js';

export type TarEntry =
  | { type: 'file'; path: string; mode: number; data: Uint8Array }
  | { type: 'dir'; path: string; mode: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'hardlink'; path: string; target: string };

const BLOCK = 512;
const TYPEFLAG = { file: '0', hardlink: '1', symlink: '2', dir: '5', pax: 'x' } as const;

/** Entry paths are relative ('bin/sh'); a leading '/' or './' is dropped, '..' is refused. */
export function cleanPath(path: string): string {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0) throw new KnodeError('OCI_TAR_BAD_PATH', `tar: empty path ${JSON.stringify(path)}`);
  if (parts.includes('..')) throw new KnodeError('OCI_TAR_BAD_PATH', `tar: path ${JSON.stringify(path)} contains '..'`);
  return parts.join('/');
}

function octal(value: number, width: number): string {
  // width includes the terminating NUL.
  const digits = value.toString(8);
  if (value < 0 || !Number.isInteger(value) || digits.length > width - 1) {
    throw new KnodeError('OCI_TAR_FIELD_RANGE', `tar: value ${value} does not fit a ${width}-byte octal field`);
  }
  return digits.padStart(width - 1, '0') + '\0';
}

function writeString(buf: Buffer, offset: number, width: number, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > width) throw new KnodeError('OCI_TAR_FIELD_RANGE', `tar: ${JSON.stringify(value)} is longer than ${width} bytes`);
  bytes.copy(buf, offset);
}

/** Split a name into ustar (prefix, name), or undefined when it does not fit. */
function splitUstarName(name: string): { prefix: string; name: string } | undefined {
  const len = Buffer.byteLength(name);
  if (len <= 100) return { prefix: '', name };
  if (len > 256) return undefined;
  // The prefix ends at a '/', which is not stored: prefix <= 155 bytes, name <= 100 bytes.
  for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest !== '') return { prefix, name: rest };
  }
  return undefined;
}

interface Header {
  name: string;
  prefix: string;
  mode: number;
  size: number;
  typeflag: string;
  linkname: string;
}

function renderHeader(h: Header): Buffer {
  const buf = Buffer.alloc(BLOCK);
  writeString(buf, 0, 100, h.name);
  writeString(buf, 100, 8, octal(h.mode, 8));
  writeString(buf, 108, 8, octal(0, 8)); // uid
  writeString(buf, 116, 8, octal(0, 8)); // gid
  writeString(buf, 124, 12, octal(h.size, 12));
  writeString(buf, 136, 12, octal(0, 12)); // mtime
  buf.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  writeString(buf, 156, 1, h.typeflag);
  writeString(buf, 157, 100, h.linkname);
  writeString(buf, 257, 6, 'ustar\0');
  writeString(buf, 263, 2, '00');
  // uname/gname empty; devmajor/devminor as zero octal fields.
  writeString(buf, 329, 8, octal(0, 8));
  writeString(buf, 337, 8, octal(0, 8));
  writeString(buf, 345, 155, h.prefix);
  let sum = 0;
  for (const byte of buf) sum += byte;
  writeString(buf, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return buf;
}

/** One PAX record: "<len> <key>=<value>\n", where <len> counts the whole record. */
export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = Buffer.byteLength(body);
  let len = bodyLen + 1;
  while (String(len).length + bodyLen !== len) len = String(len).length + bodyLen;
  return `${len}${body}`;
}

function truncateUtf8(value: string, maxBytes: number): string {
  let out = '';
  for (const ch of value) {
    if (Buffer.byteLength(out + ch) > maxBytes) break;
    out += ch;
  }
  return out;
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

function entryParts(entry: TarEntry): { typeflag: string; mode: number; linkname: string; data: Uint8Array; dirSlash: boolean } {
  switch (entry.type) {
    case 'file':
      return { typeflag: TYPEFLAG.file, mode: entry.mode, linkname: '', data: entry.data, dirSlash: false };
    case 'dir':
      return { typeflag: TYPEFLAG.dir, mode: entry.mode, linkname: '', data: new Uint8Array(0), dirSlash: true };
    case 'symlink':
      return { typeflag: TYPEFLAG.symlink, mode: 0o777, linkname: entry.target, data: new Uint8Array(0), dirSlash: false };
    case 'hardlink':
      return { typeflag: TYPEFLAG.hardlink, mode: 0o644, linkname: cleanPath(entry.target), data: new Uint8Array(0), dirSlash: false };
  }
}

/** Render entries, in the given order, as a complete tar stream (ending in two zero blocks). */
export function renderTar(entries: readonly TarEntry[]): Buffer {
  const chunks: Buffer[] = [];
  for (const entry of entries) {
    const parts = entryParts(entry);
    if ((parts.mode & ~0o7777) !== 0) throw new KnodeError('OCI_TAR_FIELD_RANGE', `tar: bad mode ${parts.mode.toString(8)} for ${entry.path}`);
    const name = cleanPath(entry.path) + (parts.dirSlash ? '/' : '');
    const split = splitUstarName(name);
    const pax: string[] = [];
    if (split === undefined) pax.push(paxRecord('path', name));
    const longLink = Buffer.byteLength(parts.linkname) > 100;
    if (longLink) pax.push(paxRecord('linkpath', parts.linkname));
    if (pax.length > 0) {
      const body = Buffer.from(pax.join(''), 'utf8');
      const base = name.replace(/\/$/, '').split('/').pop() ?? 'entry';
      const paxName = truncateUtf8(`PaxHeaders.0/${base}`, 100);
      chunks.push(renderHeader({ name: paxName, prefix: '', mode: 0o644, size: body.length, typeflag: TYPEFLAG.pax, linkname: '' }));
      chunks.push(body, padding(body.length));
    }
    // With a PAX path, the ustar name holds a truncated fallback (what Go and GNU tar do).
    const ustarName = split ?? { prefix: '', name: truncateUtf8(name, 100) };
    const linkname = longLink ? truncateUtf8(parts.linkname, 100) : parts.linkname;
    chunks.push(
      renderHeader({ name: ustarName.name, prefix: ustarName.prefix, mode: parts.mode, size: parts.data.length, typeflag: parts.typeflag, linkname }),
    );
    if (parts.data.length > 0) chunks.push(Buffer.from(parts.data.buffer, parts.data.byteOffset, parts.data.length), padding(parts.data.length));
  }
  chunks.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(chunks);
}

/**
 * Sort entries by path (parents before children, since 'a' < 'a/b'), add the
 * parent directories that are implied but missing (mode 0755), and refuse
 * duplicates. The result is a canonical order for `renderTar`.
 */
export function normalizeEntries(entries: readonly TarEntry[]): TarEntry[] {
  const byPath = new Map<string, TarEntry>();
  for (const entry of entries) {
    const path = cleanPath(entry.path);
    if (byPath.has(path)) throw new KnodeError('OCI_TAR_DUPLICATE', `tar: ${path} is listed twice`);
    byPath.set(path, { ...entry, path });
  }
  for (const path of [...byPath.keys()]) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      const existing = byPath.get(parent);
      if (existing === undefined) byPath.set(parent, { type: 'dir', path: parent, mode: 0o755 });
      else if (existing.type !== 'dir') throw new KnodeError('OCI_TAR_BAD_PATH', `tar: ${parent} is a parent of ${path} but not a directory`);
    }
  }
  // Compare path components so that 'a/b' sorts right after 'a', before 'a-b'.
  const key = (p: string): string[] => p.split('/');
  return [...byPath.values()].sort((a, b) => {
    const ka = key(a.path);
    const kb = key(b.path);
    for (let i = 0; i < Math.min(ka.length, kb.length); i++) {
      const x = ka[i]!;
      const y = kb[i]!;
      if (x !== y) return x < y ? -1 : 1;
    }
    return ka.length - kb.length;
  });
}

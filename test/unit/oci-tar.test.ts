import t from 'tap';
import { mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from '../../lib/exec.js';
import { normalizeEntries, paxRecord, renderTar, type TarEntry } from '../../lib/oci/tar.js';
import { parseTar } from '../../lib/oci/tar-read.js';

const longDir = 'usr/share/' + 'a'.repeat(60) + '/' + 'b'.repeat(60); // > 100 bytes: ustar prefix split
const longName = `${longDir}/file.txt`;
const veryLong = 'x/' + 'c'.repeat(120) + '/' + 'd'.repeat(120) + '.txt'; // last component > 100: needs PAX
const longTarget = '/' + 'e'.repeat(150) + '/target';
const unicodeName = 'etc/héllo-ünïcode.txt';

const entries: TarEntry[] = [
  { type: 'dir', path: 'bin', mode: 0o755 },
  { type: 'file', path: 'bin/busybox', mode: 0o755, data: Buffer.from('#!/bin/true\n') },
  { type: 'symlink', path: 'bin/sh', target: '/bin/busybox' },
  { type: 'dir', path: 'tmp', mode: 0o1777 },
  { type: 'file', path: longName, mode: 0o644, data: Buffer.alloc(1000, 0x41) },
  { type: 'file', path: veryLong, mode: 0o600, data: Buffer.from('very long\n') },
  { type: 'symlink', path: 'long-link', target: longTarget },
  { type: 'file', path: unicodeName, mode: 0o644, data: Buffer.from('ü\n') },
  { type: 'hardlink', path: 'bin/busybox-hard', target: 'bin/busybox' },
  { type: 'file', path: 'empty', mode: 0o644, data: Buffer.alloc(0) },
];

t.test('pax records carry their own length, across digit boundaries', async (t) => {
  for (let n = 1; n < 1200; n++) {
    const rec = paxRecord('path', 'p'.repeat(n));
    const len = Number(rec.slice(0, rec.indexOf(' ')));
    if (len !== Buffer.byteLength(rec)) t.fail(`record for value length ${n} says ${len}, is ${Buffer.byteLength(rec)}`);
  }
  t.equal(paxRecord('path', 'abc'), '12 path=abc\n');
  t.pass('all lengths right');
});

t.test('render and parse back', async (t) => {
  const tar = renderTar(normalizeEntries(entries));
  t.equal(tar.length % 512, 0, 'whole blocks');
  t.ok(tar.subarray(tar.length - 1024).every((b) => b === 0), 'ends with two zero blocks');
  const parsed = parseTar(tar);
  const byPath = new Map(parsed.map((e) => [e.path, e]));
  for (const e of parsed) {
    t.equal(e.uid, 0, `${e.path} uid`);
    t.equal(e.gid, 0, `${e.path} gid`);
    t.equal(e.mtime, 0, `${e.path} mtime`);
    t.equal(e.uname, '', `${e.path} uname`);
  }
  t.equal(byPath.get('bin/')?.typeflag, '5');
  t.equal(byPath.get('bin/')?.mode, 0o755);
  t.equal(byPath.get('tmp/')?.mode, 0o1777);
  t.equal(byPath.get('bin/busybox')?.mode, 0o755);
  t.equal(byPath.get('bin/busybox')?.data.toString(), '#!/bin/true\n');
  t.equal(byPath.get('bin/sh')?.typeflag, '2');
  t.equal(byPath.get('bin/sh')?.linkname, '/bin/busybox');
  t.equal(byPath.get('bin/busybox-hard')?.typeflag, '1');
  t.equal(byPath.get('bin/busybox-hard')?.linkname, 'bin/busybox');
  const long = byPath.get(longName);
  t.ok(long, 'long name via ustar prefix');
  t.same(long?.pax, {}, 'no PAX needed for a name that splits into prefix/name');
  t.equal(long?.data.length, 1000);
  const veryLongEntry = byPath.get(veryLong);
  t.equal(veryLongEntry?.pax.path, veryLong, 'PAX path for a name ustar cannot hold');
  t.equal(veryLongEntry?.mode, 0o600);
  t.equal(byPath.get('long-link')?.linkname, longTarget, 'PAX linkpath');
  t.equal(byPath.get(unicodeName)?.data.toString(), 'ü\n');
  t.equal(byPath.get('empty')?.data.length, 0);
  // Implied parents were added, in order: each directory comes before its children.
  const paths = parsed.map((e) => e.path);
  for (const [i, p] of paths.entries()) {
    const parent = p.replace(/\/$/, '').split('/').slice(0, -1).join('/');
    if (parent !== '') t.ok(paths.indexOf(parent + '/') < i && paths.indexOf(parent + '/') !== -1, `${parent}/ before ${p}`);
  }
});

t.test('a corrupted header fails its checksum', async (t) => {
  const tar = renderTar([{ type: 'file', path: 'a', mode: 0o644, data: Buffer.from('x') }]);
  const bad = Buffer.from(tar);
  bad[0] = 'b'.charCodeAt(0);
  t.throws(() => parseTar(bad), { name: 'KnodeError', code: 'OCI_TAR_CORRUPT' });
  t.doesNotThrow(() => parseTar(tar));
});

t.test('deterministic', async (t) => {
  const a = renderTar(normalizeEntries(entries));
  const b = renderTar(normalizeEntries([...entries].reverse()));
  t.ok(a.equals(b), 'same bytes, whatever the input order');
});

t.test('normalizeEntries: order, implied parents, refusals', async (t) => {
  const out = normalizeEntries([
    { type: 'file', path: '/a-b', mode: 0o644, data: Buffer.alloc(0) },
    { type: 'file', path: './a/b/c', mode: 0o644, data: Buffer.alloc(0) },
    { type: 'file', path: 'a/a', mode: 0o644, data: Buffer.alloc(0) },
  ]);
  t.same(
    out.map((e) => `${e.type}:${e.path}`),
    ['dir:a', 'file:a/a', 'dir:a/b', 'file:a/b/c', 'file:a-b'],
  );
  t.throws(
    () => normalizeEntries([
      { type: 'dir', path: 'a', mode: 0o755 },
      { type: 'dir', path: 'a/', mode: 0o755 },
    ]),
    { name: 'KnodeError', code: 'OCI_TAR_DUPLICATE' },
  );
  t.throws(() => normalizeEntries([{ type: 'dir', path: 'a/../b', mode: 0o755 }]), { name: 'KnodeError', code: 'OCI_TAR_BAD_PATH' });
  t.throws(
    () => normalizeEntries([
      { type: 'symlink', path: 'a', target: 'x' },
      { type: 'file', path: 'a/b', mode: 0o644, data: Buffer.alloc(0) },
    ]),
    { name: 'KnodeError', code: 'OCI_TAR_BAD_PATH' },
  );
  t.throws(() => renderTar([{ type: 'file', path: 'f', mode: 0o100644, data: Buffer.alloc(0) }]), { name: 'KnodeError', code: 'OCI_TAR_FIELD_RANGE' });
});

t.test('GNU tar reads and extracts it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'knode-t-tar-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'test.tar');
  await writeFile(file, renderTar(normalizeEntries(entries)));
  const listing = await execFile('tar', ['-tf', file]);
  const listed = listing.stdout.split('\n').filter((l) => l !== '');
  for (const p of [longName, veryLong, 'long-link', unicodeName, 'bin/sh', 'tmp/']) t.ok(listed.includes(p), `tar lists ${p}`);
  const verbose = await execFile('tar', ['-tvf', file, '--numeric-owner']);
  t.match(verbose.stdout, /drwxrwxrwt 0\/0 +0 1970-01-01 00:00 tmp\//, 'sticky tmp, owner 0/0, mtime 0');
  t.match(verbose.stdout, /lrwxrwxrwx 0\/0 +0 1970-01-01 00:00 bin\/sh -> \/bin\/busybox/);
  const out = join(dir, 'x');
  await execFile('mkdir', [out]);
  await execFile('tar', ['-xf', file, '-C', out, '--no-same-owner']);
  t.equal(await readFile(join(out, veryLong), 'utf8'), 'very long\n');
  t.equal((await readFile(join(out, longName))).length, 1000);
  t.equal(await readlink(join(out, 'long-link')), longTarget);
  t.equal(await readlink(join(out, 'bin/sh')), '/bin/busybox');
  t.equal((await stat(join(out, 'bin/busybox'))).mode & 0o7777, 0o755);
  t.equal((await stat(join(out, 'bin/busybox-hard'))).ino, (await stat(join(out, 'bin/busybox'))).ino, 'hard link');
  t.equal(await readFile(join(out, unicodeName), 'utf8'), 'ü\n');
});

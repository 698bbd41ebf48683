/**
 * Writes a set of files into a volume directory the way upstream's
 * AtomicWriter does, so readers never see a half-updated set:
 *
 *   <dir>/..<timestamp>/<path>     the payload, a fresh dir per change
 *   <dir>/..data -> ..<timestamp>  swapped with a rename (atomic)
 *   <dir>/<top> -> ..data/<top>    one user-visible symlink per top-level name
 *
 * Nothing is written when the payload equals what `..data` holds.
 */
import { chmod, mkdir, readdir, readFile, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errnoCode, KnodeError } from '../../lib/errors.js';

export interface FilePayload {
  data: Buffer;
  /** File mode, e.g. 0o644. */
  mode: number;
}

const dataLink = '..data';

function checkPath(p: string): void {
  const parts = p.split('/');
  if (p.startsWith('/') || parts.some((part) => part === '..' || part === '') || parts[0]!.startsWith('..')) {
    throw new KnodeError('INVALID_VOLUME_PATH', `invalid path ${JSON.stringify(p)}: must be relative, without '..' and not start with '..'`);
  }
}

async function current(dir: string, payload: ReadonlyMap<string, FilePayload>): Promise<boolean> {
  let target: string;
  try {
    target = await readlink(join(dir, dataLink));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
  const base = join(dir, target);
  const listed: string[] = [];
  const walk = async (sub: string): Promise<void> => {
    for (const e of await readdir(join(base, sub), { withFileTypes: true })) {
      const rel = sub === '' ? e.name : `${sub}/${e.name}`;
      if (e.isDirectory()) await walk(rel);
      else listed.push(rel);
    }
  };
  try {
    await walk('');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
  if (listed.length !== payload.size) return false;
  for (const [p, f] of payload) {
    try {
      const [data, st] = await Promise.all([readFile(join(base, p)), stat(join(base, p))]);
      if (!data.equals(f.data) || (st.mode & 0o7777) !== f.mode) return false;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw err;
    }
  }
  return true;
}

function timestampDir(): string {
  const d = new Date();
  const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
  const ns = pad(d.getUTCMilliseconds(), 3) + pad(Math.floor(Math.random() * 1e6), 6);
  return `..${d.getUTCFullYear()}_${pad(d.getUTCMonth() + 1)}_${pad(d.getUTCDate())}_${pad(d.getUTCHours())}_${pad(d.getUTCMinutes())}_${pad(d.getUTCSeconds())}.${ns}`;
}

/** Returns true when it wrote a new version. */
export async function writeAtomic(dir: string, payload: ReadonlyMap<string, FilePayload>): Promise<boolean> {
  for (const p of payload.keys()) checkPath(p);
  await mkdir(dir, { recursive: true });
  if (await current(dir, payload)) return false;
  const oldTarget = await readlink(join(dir, dataLink)).catch(() => undefined);

  const tsDir = timestampDir();
  const tsPath = join(dir, tsDir);
  await mkdir(tsPath, { mode: 0o755 });
  for (const [p, f] of payload) {
    const file = join(tsPath, p);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, f.data);
    await chmod(file, f.mode);
  }
  const tmpLink = join(dir, '..data_tmp');
  await rm(tmpLink, { force: true });
  await symlink(tsDir, tmpLink);
  await rename(tmpLink, join(dir, dataLink));

  // User-visible top-level links; stale ones go.
  const tops = new Set([...payload.keys()].map((p) => p.split('/')[0]!));
  for (const top of tops) {
    const link = join(dir, top);
    const want = join(dataLink, top);
    const have = await readlink(link).catch(() => undefined);
    if (have !== want) {
      await rm(link, { force: true, recursive: true });
      await symlink(want, link);
    }
  }
  for (const name of await readdir(dir)) {
    if (name.startsWith('..') || tops.has(name)) continue;
    await rm(join(dir, name), { force: true, recursive: true });
  }
  if (oldTarget !== undefined && oldTarget !== tsDir) await rm(join(dir, oldTarget), { recursive: true, force: true });
  return true;
}

/** Atomic "write when the text changed" for the files the pod network loop owns (conflist, subnet.env). */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { errnoCode } from '../../lib/errors.js';

/** Writes `file` atomically (temp file + rename) when its content differs; returns whether it wrote. */
export async function writeFileIfChanged(file: string, content: string, mode = 0o644): Promise<boolean> {
  try {
    if ((await readFile(file, 'utf8')) === content) return false;
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  const dir = dirname(file);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(file)}.${process.pid}.tmp`);
  await writeFile(tmp, content, { mode });
  await rename(tmp, file);
  return true;
}

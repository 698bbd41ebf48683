/**
 * The sh launcher of knode's CNI plugins (cni/launcher.sh): rendering and installing it.
 *
 * Design notes
 * - One template, one rendered file per bin dir (`knode-cni-launcher`), and every plugin name a
 *   symlink to it: the launcher takes the plugin from its name ($0). scripts/install-node renders
 *   the same template with sed; the lab (lab/machines/cni-plugins.ts) and the tests use this.
 * - The values are written between single quotes in sh: a value holding a quote or a newline is
 *   refused rather than escaped (they are paths we choose).
 * - Installing is idempotent: files and links are only rewritten when they differ.
 */
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { chmod, lstat, mkdir, readFile, readlink, rename, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KnodeError } from '../lib/errors.js';
import { DAEMON_PLUGINS, DEFAULT_SOCKET } from './daemon/protocol.js';

export const LAUNCHER_NAME = 'knode-cni-launcher';

/** The names a launcher answers to: knode's plugins, and `loopback` (containerd's pod lo). */
export const LAUNCHER_LINKS: readonly string[] = [...DAEMON_PLUGINS, 'loopback'];

export interface LauncherOptions {
  /** The Node binary the fallback runs. */
  node: string;
  /** Directory of the plugin bundles (<plugin>.mjs). */
  dist: string;
  /** The socat binary (default: found in PATH, as `command -v socat`). */
  socat?: string;
  /** The daemon socket (default /run/knode/cni.sock). */
  socket?: string;
  /** Who rendered it, for the header line. */
  generator: string;
}

/** Where cni/launcher.sh is: beside this module in the sources, or given by the caller. */
export function launcherTemplatePath(repoRoot?: string): string {
  if (repoRoot !== undefined) return join(repoRoot, 'cni', 'launcher.sh');
  return join(dirname(fileURLToPath(import.meta.url)), 'launcher.sh');
}

function shValue(name: string, v: string): string {
  if (v === '' || /['\n\\]/.test(v)) throw new KnodeError('CNI_LAUNCHER_VALUE', `launcher ${name} ${JSON.stringify(v)}: empty, or holds a quote, backslash or newline`);
  return v;
}

/** socat's absolute path from PATH (the launcher does not depend on the runtime's PATH). */
export function findSocat(path = process.env.PATH ?? '/usr/bin:/bin'): string {
  for (const dir of path.split(':')) {
    if (dir === '' || !dir.startsWith('/')) continue;
    const f = join(dir, 'socat');
    try {
      accessSync(f, constants.X_OK);
      return f;
    } catch {
      // next
    }
  }
  throw new KnodeError('CNI_NO_SOCAT', 'socat is not installed (the CNI launcher needs it; apt-get install socat)');
}

/** The launcher text. Pure (given the template and a socat path). */
export function renderLauncher(template: string, o: LauncherOptions): string {
  const socket = o.socket ?? DEFAULT_SOCKET;
  if (/[^A-Za-z0-9/._-]/.test(socket)) throw new KnodeError('CNI_LAUNCHER_VALUE', `launcher socket ${JSON.stringify(socket)}: only [A-Za-z0-9/._-] (socat parses it)`);
  const values: Record<string, string> = {
    '@NODE@': shValue('node', o.node),
    '@DIST@': shValue('dist', o.dist),
    '@SOCAT@': shValue('socat', o.socat ?? findSocat()),
    '@SOCKET@': socket,
    '@GENERATOR@': o.generator.replace(/\n/g, ' '),
  };
  const out = template.replace(/@(NODE|DIST|SOCAT|SOCKET|GENERATOR)@/g, (m) => values[m]!);
  return out;
}

/**
 * Writes `dir/knode-cni-launcher` and the plugin-name symlinks to it; returns what changed.
 * `template` defaults to the launcher.sh beside this module.
 */
export async function installLauncher(dir: string, o: LauncherOptions, templateFile = launcherTemplatePath()): Promise<string[]> {
  if (!existsSync(templateFile)) throw new KnodeError('CNI_LAUNCHER_TEMPLATE', `${templateFile} is missing`);
  const text = renderLauncher(readFileSync(templateFile, 'utf8'), o);
  await mkdir(dir, { recursive: true });
  const changed: string[] = [];
  const file = join(dir, LAUNCHER_NAME);
  if ((await readFile(file, 'utf8').catch(() => '')) !== text) {
    const tmp = `${file}.tmp-${process.pid}`;
    await writeFile(tmp, text, { mode: 0o755 });
    await rename(tmp, file);
    changed.push(LAUNCHER_NAME);
  }
  await chmod(file, 0o755);
  for (const name of LAUNCHER_LINKS) {
    const link = join(dir, name);
    const st = await lstat(link).catch(() => undefined);
    if (st?.isSymbolicLink() && (await readlink(link)) === LAUNCHER_NAME) continue;
    if (st) await unlink(link);
    await symlink(LAUNCHER_NAME, link);
    changed.push(name);
  }
  return changed;
}

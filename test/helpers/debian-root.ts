/**
 * Fresh Debian 12 roots for the install tests: debootstrap once per machine (kept as a tarball
 * in /var/cache/knode), unpacked anew for every test, with /proc and /sys mounted, apt able to
 * download and package scripts kept from starting daemons. Everything is undone by `destroy()`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SUITE = 'bookworm';
const MIRROR = 'http://deb.debian.org/debian';
const INCLUDE = 'systemd,ca-certificates';
const CACHE = `/var/cache/knode/debootstrap-${SUITE}-minbase-${INCLUDE.replace(/,/g, '+')}.tar`;

/** A clean environment for what runs in the root (no NODE_OPTIONS of the test runner). */
export const cleanEnv: NodeJS.ProcessEnv = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C.UTF-8' };

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, env: opts.env ?? cleanEnv, cwd: opts.cwd, maxBuffer: 64 << 20 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function ensureDebootstrapCache(): void {
  if (existsSync(CACHE)) return;
  mkdirSync('/var/cache/knode', { recursive: true });
  const dir = mkdtempSync('/var/cache/knode/debootstrap-');
  try {
    execFileSync('debootstrap', ['--variant=minbase', `--include=${INCLUDE}`, SUITE, dir, MIRROR], { stdio: ['ignore', 'ignore', 'pipe'] });
    execFileSync('tar', ['-C', dir, '-cf', `${CACHE}.tmp`, '.']);
    execFileSync('mv', [`${CACHE}.tmp`, CACHE]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface DebianRoot {
  /** The work directory (the root is `${work}/root`); removed by destroy(). */
  work: string;
  root: string;
  /** Path inside the root. */
  at(path: string): string;
  /**
   * Runs a command chrooted into the root, optionally inside a network namespace. tap's process
   * tracking adds NODE_OPTIONS to every child's environment; `env -u` drops it so that node in the
   * root runs as it would on the machine.
   */
  chroot(args: string[], opts?: { netns?: string; env?: NodeJS.ProcessEnv }): RunResult;
  /** Unmounts /proc and /sys of the root (before imaging it); destroy() does it too. */
  unmount(): void;
  destroy(): void;
}

export function createDebianRoot(name: string): DebianRoot {
  ensureDebootstrapCache();
  const work = mkdtempSync(join(tmpdir(), `knode-t-${name}-`));
  const root = join(work, 'root');
  let mounts: string[] = [];
  const unmount = (): void => {
    for (const m of mounts.reverse()) spawnSync('umount', ['-l', m]);
    mounts = [];
  };
  mkdirSync(root);
  execFileSync('tar', ['-C', root, '-xf', CACHE]);
  for (const [src, dst, type] of [['proc', 'proc', 'proc'], ['sysfs', 'sys', 'sysfs']] as const) {
    execFileSync('mount', ['-t', type, src, join(root, dst)]);
    mounts.push(join(root, dst));
  }
  writeFileSync(join(root, 'etc/resolv.conf'), readFileSync('/etc/resolv.conf'));
  writeFileSync(join(root, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  return {
    work,
    root,
    at: (p) => join(root, p),
    chroot(args, opts = {}) {
      const chroot = ['chroot', root, '/usr/bin/env', '-u', 'NODE_OPTIONS', ...args];
      return opts.netns === undefined ? run(chroot[0]!, chroot.slice(1), { env: opts.env }) : run('ip', ['netns', 'exec', opts.netns, ...chroot], { env: opts.env });
    },
    unmount,
    destroy() {
      unmount();
      rmSync(work, { recursive: true, force: true });
    },
  };
}

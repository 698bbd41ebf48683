/**
 * Build a throw-away initramfs for the IPVS VM test from what Debian installed on this machine:
 * the linux-image-amd64 kernel's modules, busybox-static as init and shell, node and the
 * knode-proxy bundle, ipvsadm, ipset, iptables (nft backend), iproute2, conntrack.
 *
 * Design notes
 * - Nothing is downloaded: files are copied from the host (programs + the libraries `ldd`
 *   lists), so the guest runs the very binaries the host tests run.
 * - Modules: the ones named in `MODULES` plus their dependencies (modules.dep) are loaded by
 *   /init in dependency order with busybox modprobe; whole netfilter/ipset/bridge module
 *   directories are included too, so the kernel's own request_module() (nft_compat, xt_*
 *   matches iptables-nft asks for) finds them through /sbin/modprobe and modules.alias.
 * - The archive is an uncompressed newc cpio (`cpio -o -H newc`): decompressing ~100 MB
 *   under TCG costs more than reading it.
 */
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, readdir, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { KnodeError } from '../../lib/errors.js';

const run = promisify(execFile);

/** The kernel release of the linux-image-amd64 package (/usr/lib/modules/<release> with a /boot/vmlinuz-<release>). */
export function debianKernel(): { release: string; vmlinuz: string; modules: string } | undefined {
  if (!existsSync('/usr/lib/modules')) return undefined;
  for (const release of readdirSync('/usr/lib/modules').sort().reverse()) {
    const vmlinuz = `/boot/vmlinuz-${release}`;
    const modules = `/usr/lib/modules/${release}`;
    if (existsSync(vmlinuz) && existsSync(join(modules, 'modules.dep'))) return { release, vmlinuz, modules };
  }
  return undefined;
}

/** Loaded explicitly at boot (with their dependencies); everything else autoloads. */
export const MODULES = [
  // libcrc32c (nf_conntrack, nf_tables) needs the crc32c algorithm first (its softdep)
  'crc32c_generic',
  'e1000',
  'dummy',
  'veth',
  'ip_vs',
  'ip_vs_rr',
  'ip_vs_lc',
  'ip_vs_sh',
  'ip_set',
  'ip_set_hash_ip',
  'ip_set_hash_ipport',
  'ip_set_hash_ipportip',
  'ip_set_hash_ipportnet',
  'ip_set_bitmap_port',
  'nf_tables',
  'nft_compat',
  'nft_chain_nat',
  'nf_nat',
  'xt_set',
  'xt_comment',
  'xt_mark',
  'xt_addrtype',
  'xt_conntrack',
  'xt_MASQUERADE',
  'xt_nat',
  'xt_physdev',
  'nf_conntrack_netlink',
];

/** Module directories copied whole (for autoloading). */
const MODULE_DIRS = ['kernel/net/netfilter', 'kernel/net/ipv4/netfilter', 'kernel/net/ipv6/netfilter', 'kernel/net/bridge', 'kernel/net/802', 'kernel/net/llc', 'kernel/lib'];

/** Module name → path relative to the modules dir, and its dependencies (modules.dep). */
export function parseModulesDep(text: string): Map<string, { path: string; deps: string[] }> {
  const out = new Map<string, { path: string; deps: string[] }>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const path = line.slice(0, colon).trim();
    const deps = line.slice(colon + 1).trim().split(/\s+/).filter((d) => d !== '');
    out.set(moduleName(path), { path, deps });
  }
  return out;
}

function moduleName(path: string): string {
  return (path.split('/').pop() ?? '').replace(/\.ko(\.xz|\.zst|\.gz)?$/, '').replace(/-/g, '_');
}

/** The paths of `names` and all their dependencies, dependencies first. */
export function moduleClosure(dep: Map<string, { path: string; deps: string[] }>, names: readonly string[], builtin: ReadonlySet<string>): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string): void => {
    if (seen.has(name) || builtin.has(name)) return;
    seen.add(name);
    const m = dep.get(name);
    if (!m) throw new KnodeError('VM_MODULE_MISSING', `kernel module ${name} is neither in modules.dep nor built in`);
    for (const d of m.deps) visit(moduleName(d));
    order.push(m.path);
  };
  for (const n of names) visit(n);
  return order;
}

export interface InitramfsSpec {
  /** Staging directory (created); the archive is written next to it as `<dir>.cpio`. */
  dir: string;
  kernel: { release: string; modules: string };
  /** The knode worktree (dist/knode-proxy.mjs, node_modules/netlink). */
  repo: string;
  /** Extra files: guest path → content. */
  files: Record<string, string>;
  /** Shell run by /init after the base set-up, before the console shell. */
  initScript: string;
}

async function copyInto(root: string, hostPath: string, guestPath = hostPath): Promise<void> {
  const dst = join(root, guestPath);
  await mkdir(dirname(dst), { recursive: true });
  if (!existsSync(dst)) await copyFile(hostPath, dst);
}

async function copyTree(root: string, hostDir: string, guestDir = hostDir): Promise<void> {
  for (const e of await readdir(hostDir, { withFileTypes: true })) {
    const h = join(hostDir, e.name);
    const g = join(guestDir, e.name);
    if (e.isDirectory()) await copyTree(root, h, g);
    else if (e.isFile()) await copyInto(root, h, g);
    else if (e.isSymbolicLink()) await link(root, await readlink(h), g);
  }
}

/** The shared libraries a program (or library) needs, per ldd. */
async function lddLibs(file: string): Promise<string[]> {
  const r = await run('ldd', [file]).catch(() => ({ stdout: '' }));
  const libs: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1]) libs.push(m[1]);
  }
  return libs;
}

async function copyProgram(root: string, hostPath: string, guestPath = hostPath): Promise<void> {
  await copyInto(root, hostPath, guestPath);
  await chmod(join(root, guestPath), 0o755);
  for (const lib of await lddLibs(hostPath)) await copyInto(root, lib);
}

async function link(root: string, target: string, path: string): Promise<void> {
  const p = join(root, path);
  await mkdir(dirname(p), { recursive: true });
  if (!existsSync(p)) await symlink(target, p);
}

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /proc /sys /dev /tmp /run /var/run
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
echo /sbin/modprobe > /proc/sys/kernel/modprobe
for m in $(cat /etc/knode-modules); do modprobe "$m" || echo "@@MODPROBE-FAILED $m"; done
ip link set lo up
hostname knode-vm
. /etc/knode-init.sh
stty -echo 2>/dev/null
echo "@@READY"
export PS1=''
# The console shell is not PID 1: orphaned background programs are reaped here, so their exit
# (SIGCHLD) never interrupts the console shell's read of the next command.
while :; do setsid sh </dev/console >/dev/console 2>&1; echo "@@SHELL-RESTARTED"; done
`;

const HGET = `#!/bin/busybox sh
printf 'GET %s HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n' "\${3:-/}" "$1" | nc -w 5 "$1" "$2" | tr -d '\\r' | sed '1,/^$/d'
`;

export async function buildInitramfs(spec: InitramfsSpec): Promise<string> {
  const root = spec.dir;
  await mkdir(root, { recursive: true });
  for (const d of ['bin', 'sbin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'run', 'usr/bin', 'usr/sbin', 'lib64']) await mkdir(join(root, d), { recursive: true });

  await copyProgram(root, '/usr/bin/busybox', '/bin/busybox');
  await link(root, '/bin/busybox', '/sbin/modprobe');
  await link(root, '/bin/busybox', '/bin/sh');
  await writeFile(join(root, 'init'), INIT, { mode: 0o755 });

  // kernel modules
  const modDir = spec.kernel.modules;
  const guestModDir = `/lib/modules/${spec.kernel.release}`;
  const dep = parseModulesDep(await readFile(join(modDir, 'modules.dep'), 'utf8'));
  const builtin = new Set((await readFile(join(modDir, 'modules.builtin'), 'utf8')).split('\n').filter((l) => l !== '').map(moduleName));
  for (const path of moduleClosure(dep, MODULES, builtin)) await copyInto(root, join(modDir, path), join(guestModDir, path));
  for (const d of MODULE_DIRS) if (existsSync(join(modDir, d))) await copyTree(root, join(modDir, d), join(guestModDir, d));
  for (const f of ['modules.dep', 'modules.alias', 'modules.builtin', 'modules.softdep', 'modules.symbols']) {
    if (existsSync(join(modDir, f))) await copyInto(root, join(modDir, f), join(guestModDir, f));
  }
  await writeFile(join(root, 'etc/knode-modules'), MODULES.join('\n') + '\n');

  // programs
  await copyProgram(root, process.execPath, '/usr/bin/node');
  for (const p of ['/usr/sbin/ipvsadm', '/usr/sbin/ipset', '/usr/sbin/conntrack', '/usr/sbin/nft']) await copyProgram(root, p);
  await copyProgram(root, '/usr/bin/ip', '/usr/bin/ip');
  await link(root, '/usr/bin/ip', '/sbin/ip');
  await copyProgram(root, '/usr/sbin/xtables-nft-multi');
  for (const name of ['iptables', 'iptables-restore', 'iptables-save', 'ip6tables', 'ip6tables-restore', 'ip6tables-save']) {
    await link(root, 'xtables-nft-multi', `/usr/sbin/${name}`);
  }
  const xt = '/usr/lib/x86_64-linux-gnu/xtables';
  if (existsSync(xt)) {
    await copyTree(root, xt);
    for (const f of await readdir(xt)) for (const lib of await lddLibs(join(xt, f))) await copyInto(root, lib);
  }
  // Debian's busybox-static wget segfaults (on the host too): /bin/hget HOST PORT [PATH] prints an HTTP body via nc
  await writeFile(join(root, 'usr/bin/hget'), HGET, { mode: 0o755 });
  // ipset and iptables resolve protocol names ("tcp") through /etc/protocols
  if (existsSync('/etc/protocols')) await copyInto(root, '/etc/protocols');
  else await writeFile(join(root, 'etc/protocols'), 'ip 0 IP\nicmp 1 ICMP\ntcp 6 TCP\nudp 17 UDP\nsctp 132 SCTP\n');
  await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await writeFile(join(root, 'etc/group'), 'root:x:0:\n');
  await writeFile(join(root, 'etc/hosts'), '127.0.0.1 localhost knode-vm\n');

  // knode-proxy and its native addon
  await copyInto(root, join(spec.repo, 'dist/knode-proxy.mjs'), '/opt/knode/dist/knode-proxy.mjs');
  for (const pkg of ['netlink', 'node-gyp-build']) {
    const dir = join(spec.repo, 'node_modules', pkg);
    if (!existsSync(dir)) throw new KnodeError('VM_BUILD_FAILED', `node_modules/${pkg} is missing (npm ci)`);
    await copyTree(root, dir, `/opt/knode/node_modules/${pkg}`);
  }

  for (const [path, content] of Object.entries(spec.files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
  await writeFile(join(root, 'etc/knode-init.sh'), spec.initScript);

  const archive = `${root}.cpio`;
  await run('sh', ['-c', 'find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc > "$0"', archive], { cwd: root, maxBuffer: 1 << 20 });
  const s = await stat(archive);
  if (s.size < 1 << 20) throw new KnodeError('VM_BUILD_FAILED', `initramfs ${archive} is only ${s.size} bytes`);
  return archive;
}

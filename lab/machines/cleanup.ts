/**
 * Tearing the lab down, robustly: after a clean `up`, after a half-failed
 * one, after daemons were killed with SIGKILL, or with the state file gone.
 *
 * Design notes:
 * - Works from the state file AND from scans, so it finds what a crash left:
 *   node dirs under labRunDir/labDataDir, namespaces named as lab/paths.ts
 *   names them (the underlay and knode-node-<n>; never knode-t-* of tests),
 *   processes whose command line mentions a lab dir, processes inside a lab
 *   namespace or in the lab's cgroup, and their descendants; mounts under the
 *   lab dirs.
 * - Order matters: containers first (through the runtime while it answers),
 *   then with SIGKILL what is left of workloads (shims, runc, orphaned
 *   container processes), then daemons (SIGTERM, SIGKILL after a grace
 *   period), then anything still found until a scan finds nothing; then the
 *   shim sockets and runc state the runtimes keep outside the lab dirs; then
 *   cgroups, mounts (deepest first, lazily), namespaces and finally the dirs.
 * - Every step is tolerant (already gone is fine) and reports what it did;
 *   whatever is still there at the end is listed by `findLeftovers`.
 */
import { existsSync } from 'node:fs';
import { readFile, readdir, realpath, rm, rmdir, stat, statfs, unlink } from 'node:fs/promises';
import { basename, isAbsolute, join, normalize, sep } from 'node:path';
import { execFile } from '../../lib/exec.js';
import { errnoCode, errorMessage } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { labDataDir, labRunDir, nodeName } from '../paths.js';
import { isLabNetnsName, labCgroupRoot, labNode, netnsPath, type LabNode } from './layout.js';
import { listProcesses, readPidFile, terminate, type ProcInfo } from './proc.js';
import { runtimes } from './runtime.js';
import { stopAgent } from './agent.js';
import { readState } from './state.js';

export interface TeardownReport {
  runtimesStopped: string[];
  killed: number[];
  unmounted: string[];
  netnsRemoved: string[];
  removed: string[];
  warnings: string[];
}

const log = createLogger({ component: 'knode-lab', fields: { part: 'cleanup' } });

const labDirs = (): string[] => [labRunDir, labDataDir];

function mentionsLabDir(arg: string): boolean {
  return labDirs().some((d) => arg === d || arg.includes(d + '/'));
}

function underDir(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw err;
  }
}

/** Nodes the lab made, from the state file and from the dirs on disk and the namespaces. */
export async function discoverNodes(): Promise<LabNode[]> {
  const indexes = new Set<number>();
  const add = (name: string): void => {
    const m = /([0-9]+)$/.exec(name);
    if (m && nodeName(Number(m[1])) === name) indexes.add(Number(m[1]));
  };
  for (const d of labDirs()) for (const e of await readdirOrEmpty(d)) add(e);
  for (const ns of await labNetnsNames()) add(ns.replace(/^knode-/, ''));
  try {
    const state = await readState();
    for (const m of state?.machines ?? []) add(m.name);
  } catch {
    // A broken state file does not stop the scan.
  }
  return [...indexes].sort((a, b) => a - b).map(labNode);
}

/** Lab namespaces present now (only the names the lab makes). */
export async function labNetnsNames(): Promise<string[]> {
  return (await readdirOrEmpty('/run/netns')).filter(isLabNetnsName).sort();
}

const NSFS_MAGIC = 0x6e736673;

async function labNetnsInodes(): Promise<Set<number>> {
  const out = new Set<number>();
  for (const name of await labNetnsNames()) {
    const path = netnsPath(name);
    try {
      if ((await statfs(path)).type !== NSFS_MAGIC) continue; // an unmounted leftover file
      out.add((await stat(path)).ino);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** cgroup directories of the lab (one per mounted hierarchy), existing ones only. */
async function labCgroupDirs(): Promise<string[]> {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const entry of await readdirOrEmpty('/sys/fs/cgroup')) {
    const dir = join('/sys/fs/cgroup', entry, labCgroupRoot);
    if (!existsSync(dir)) continue;
    const real = await realpath(dir);
    if (seen.has(real)) continue;
    seen.add(real);
    out.push(real);
  }
  if (existsSync(join('/sys/fs/cgroup', labCgroupRoot, 'cgroup.procs'))) out.push(join('/sys/fs/cgroup', labCgroupRoot));
  return out;
}

/** All cgroup dirs below `root`, deepest first. */
async function cgroupTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) await walk(join(dir, e.name));
    out.push(dir);
  };
  await walk(root);
  return out;
}

async function labCgroupPids(): Promise<Set<number>> {
  const pids = new Set<number>();
  for (const root of await labCgroupDirs()) {
    for (const dir of await cgroupTree(root)) {
      try {
        for (const line of (await readFile(join(dir, 'cgroup.procs'), 'utf8')).split('\n')) if (line !== '') pids.add(Number(line));
      } catch {
        // removed meanwhile
      }
    }
  }
  return pids;
}

export interface LabProcess extends ProcInfo {
  reason: 'cmdline' | 'netns' | 'cgroup' | 'descendant';
}

/** Every process that belongs to the lab (never this process or its ancestors). */
export async function findLabProcesses(): Promise<LabProcess[]> {
  const procs = await listProcesses();
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const exclude = new Set<number>();
  for (let pid: number | undefined = process.pid; pid !== undefined && pid > 0 && !exclude.has(pid); pid = byPid.get(pid)?.ppid) {
    exclude.add(pid);
  }
  const inodes = await labNetnsInodes();
  const cgroupPids = await labCgroupPids();
  const found = new Map<number, LabProcess>();
  for (const p of procs) {
    if (exclude.has(p.pid) || p.pid <= 1) continue;
    if (p.argv.some(mentionsLabDir)) found.set(p.pid, { ...p, reason: 'cmdline' });
    else if (p.netnsInode !== undefined && inodes.has(p.netnsInode)) found.set(p.pid, { ...p, reason: 'netns' });
    else if (cgroupPids.has(p.pid)) found.set(p.pid, { ...p, reason: 'cgroup' });
  }
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of procs) {
      if (!found.has(p.pid) && !exclude.has(p.pid) && found.has(p.ppid)) {
        found.set(p.pid, { ...p, reason: 'descendant' });
        grew = true;
      }
    }
  }
  return [...found.values()].filter((p) => p.state !== 'Z');
}

function isDaemon(p: ProcInfo): boolean {
  const exe = basename(p.argv[0] ?? '');
  return exe === 'containerd' || exe === 'dockerd';
}

async function killLabProcesses(report: TeardownReport): Promise<void> {
  // 1. Workloads first: shims, runc, container processes (orphaned or not), exec'd commands.
  const workloads = (await findLabProcesses()).filter((p) => !isDaemon(p));
  for (const p of workloads) log.debug('killing workload', { pid: p.pid, reason: p.reason, argv: p.argv });
  if (workloads.length > 0) {
    await terminate(workloads.map((p) => p.pid), { graceMs: 0, hard: true });
    report.killed.push(...workloads.map((p) => p.pid));
  }
  // 2. Daemons gently (SIGTERM, SIGKILL after a grace period).
  const daemons = (await findLabProcesses()).filter(isDaemon);
  for (const p of daemons) log.debug('stopping daemon', { pid: p.pid, reason: p.reason, argv: p.argv });
  if (daemons.length > 0) {
    const left = await terminate(daemons.map((p) => p.pid), { graceMs: 10_000 });
    report.killed.push(...daemons.map((p) => p.pid));
    if (left.length > 0) report.warnings.push(`daemons still alive after SIGKILL: ${left.join(', ')}`);
  }
  // 3. Whatever appeared meanwhile, until a scan finds nothing.
  for (let round = 0; round < 5; round++) {
    const procs = await findLabProcesses();
    if (procs.length === 0) return;
    for (const p of procs) log.debug('killing', { pid: p.pid, reason: p.reason, argv: p.argv });
    await terminate(procs.map((p) => p.pid), { graceMs: 0, hard: true });
    report.killed.push(...procs.map((p) => p.pid));
  }
  const still = await findLabProcesses();
  if (still.length > 0) report.warnings.push(`processes still alive: ${still.map((p) => `${p.pid} ${p.argv.join(' ')}`).join('; ')}`);
}

/** Files named `address` in shim bundle dirs (containerd keeps shim sockets in /run/containerd/s). */
async function shimAddressFiles(dir: string, depth: number): Promise<string[]> {
  if (depth > 8) return [];
  const out: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await shimAddressFiles(path, depth + 1)));
    else if (e.isFile() && e.name === 'address' && path.includes('/io.containerd.runtime.v2.task/')) out.push(path);
  }
  return out;
}

async function removeRuntimeLeftoversOutsideLab(report: TeardownReport): Promise<void> {
  for (const file of await shimAddressFiles(labRunDir, 0)) {
    const addr = (await readFile(file, 'utf8').catch(() => '')).trim().replace(/^unix:\/\//, '');
    if (/^\/run\/containerd\/s\/[0-9a-f]{64}$/.test(addr) && existsSync(addr)) {
      await unlink(addr).catch(() => undefined);
      report.removed.push(addr);
    }
  }
  // runc state of containers started with the default runc root (e.g. `ctr run` without --runc-root).
  const runcRoot = '/run/containerd/runc';
  for (const ns of await readdirOrEmpty(runcRoot)) {
    for (const id of await readdirOrEmpty(join(runcRoot, ns))) {
      const dir = join(runcRoot, ns, id);
      const text = await readFile(join(dir, 'state.json'), 'utf8').catch(() => '');
      if (labDirs().some((d) => text.includes(d + '/'))) {
        await rm(dir, { recursive: true, force: true });
        report.removed.push(dir);
      }
    }
  }
  // The (empty) shared dirs /run/containerd/{s,runc} stay: another containerd on the machine may use them.
  // CNI results libcni caches for lab pods whose sandboxes were never torn down through CNI DEL.
  for (const file of await labCniResults()) {
    await rm(file, { force: true });
    report.removed.push(file);
  }
}

const cniResultsDir = '/var/lib/cni/results';

/** Files in libcni's result cache that name a lab path (a lab pod's netns). */
async function labCniResults(): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdirOrEmpty(cniResultsDir)) {
    const file = join(cniResultsDir, name);
    const text = await readFile(file, 'utf8').catch(() => '');
    if (labDirs().some((d) => text.includes(d + '/'))) out.push(file);
  }
  return out;
}

async function removeCgroups(report: TeardownReport): Promise<void> {
  for (const root of await labCgroupDirs()) {
    for (const dir of await cgroupTree(root)) {
      try {
        await rmdir(dir);
        report.removed.push(dir);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') report.warnings.push(`cannot remove cgroup ${dir}: ${errorMessage(err)}`);
      }
    }
  }
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Mount points (of this mount namespace) under the lab dirs, deepest first. */
export async function labMounts(): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const points: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const point = unescapeMountinfo(f[4]!);
    if (labDirs().some((d) => underDir(point, d))) points.push(point);
  }
  return [...new Set(points)].sort((a, b) => b.split('/').length - a.split('/').length || b.length - a.length);
}

async function unmountAll(report: TeardownReport): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const points = await labMounts();
    if (points.length === 0) return;
    for (const p of points) {
      const r = await execFile('umount', ['-l', p], { allowFailure: true });
      if (r.code === 0) report.unmounted.push(p);
      log.debug('umount -l', { mountPoint: p, ok: r.code === 0 });
    }
  }
  const left = await labMounts();
  if (left.length > 0) report.warnings.push(`still mounted: ${left.join(', ')}`);
}

async function isMountPoint(path: string): Promise<boolean> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text.split('\n').some((line) => unescapeMountinfo(line.split(' ')[4] ?? '') === path);
}

async function removeNetns(report: TeardownReport, extra: readonly string[]): Promise<void> {
  const names = new Set([...(await labNetnsNames()), ...extra.filter(isLabNetnsName)]);
  for (const name of names) {
    const path = netnsPath(name);
    if (!existsSync(path)) continue;
    await execFile('ip', ['netns', 'del', name], { allowFailure: true });
    // /var/run/netns/<x> shows as /run/netns/<x> in mountinfo.
    for (const p of [path, path.replace(/^\/var\/run\//, '/run/')]) {
      if (await isMountPoint(p)) await execFile('umount', ['-l', p], { allowFailure: true });
    }
    await unlink(path).catch(() => undefined);
    if (existsSync(path)) report.warnings.push(`cannot remove netns ${name}`);
    else report.netnsRemoved.push(name);
  }
}

/** Refuse to `rm -r` anything that is not plainly a lab directory. */
function safeToRemove(dir: string): boolean {
  return isAbsolute(dir) && normalize(dir) === dir && dir.split('/').filter(Boolean).length >= 2 && basename(dir).includes('knode');
}

async function removeDirs(report: TeardownReport): Promise<void> {
  for (const dir of labDirs()) {
    if (!existsSync(dir)) continue;
    if (!safeToRemove(dir)) {
      report.warnings.push(`not removing ${dir}: does not look like a lab directory (absolute, 2+ levels, name with "knode")`);
      continue;
    }
    if ((await labMounts()).some((m) => underDir(m, dir))) {
      report.warnings.push(`not removing ${dir}: something is still mounted below it`);
      continue;
    }
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    report.removed.push(dir);
  }
}

async function stopRuntimesGracefully(nodes: LabNode[], report: TeardownReport): Promise<void> {
  await Promise.all(
    nodes.map(async (node) => {
      for (const rt of Object.values(runtimes)) {
        const hasPid = (await readPidFile(rt.pidFile(node))) !== undefined;
        if (!hasPid && !existsSync(rt.socket(node))) continue;
        try {
          await rt.stop(node);
          report.runtimesStopped.push(`${node.name}/${rt.kind}`);
        } catch (err) {
          report.warnings.push(`${rt.kind} of ${node.name}: ${errorMessage(err)} (killing it instead)`);
        }
      }
    }),
  );
}

export type StepRunner = <T>(label: string, fn: () => Promise<T>) => Promise<T>;
const plainStep: StepRunner = (_label, fn) => fn();

/** Remove everything the lab made. */
export async function teardownLab(step: StepRunner = plainStep): Promise<TeardownReport> {
  const report: TeardownReport = { runtimesStopped: [], killed: [], unmounted: [], netnsRemoved: [], removed: [], warnings: [] };
  const nodes = await discoverNodes();
  // Agents first (SIGKILL: they must not start pods again while the runtimes stop; pods go with the runtimes).
  await step('stop node agents', () => Promise.all(nodes.map((n) => stopAgent(n, true))));
  await step('stop runtimes and their containers', () => stopRuntimesGracefully(nodes, report));
  await step('kill remaining lab processes', () => killLabProcesses(report));
  await step('remove shim sockets, runc state, cgroups', async () => {
    await removeRuntimeLeftoversOutsideLab(report);
    await removeCgroups(report);
  });
  await step('unmount lab mounts', () => unmountAll(report));
  await step('delete lab namespaces', () => removeNetns(report, nodes.map((n) => n.netns)));
  await step('remove lab dirs', () => removeDirs(report));
  return report;
}

export interface Leftovers {
  netns: string[];
  processes: string[];
  mounts: string[];
  dirs: string[];
  cgroups: string[];
  cniResults: string[];
}

/** What of the lab still exists (empty lists = nothing). */
export async function findLeftovers(): Promise<Leftovers> {
  return {
    netns: await labNetnsNames(),
    processes: (await findLabProcesses()).map((p) => `${p.pid} (${p.reason}) ${p.argv.join(' ')}`),
    mounts: await labMounts(),
    dirs: labDirs().filter((d) => existsSync(d)),
    cgroups: await labCgroupDirs(),
    cniResults: await labCniResults(),
  };
}

export function isClean(l: Leftovers): boolean {
  return Object.values(l).every((v: string[]) => v.length === 0);
}

// exported for tests
export const _internal = { mentionsLabDir, safeToRemove, unescapeMountinfo };

/**
 * /stats/summary: a real subset of upstream's Summary API
 * (k8s.io/kubelet/pkg/apis/stats/v1alpha1), field names as upstream's:
 * - node: CPU and memory from /proc; `fs` (statfs of the agent's root dir),
 *   `runtime.imageFs` / `runtime.containerFs` (the runtime's ImageFsInfo usage,
 *   capacity from statfs of its mountpoint), `network` (/proc/net/dev of the
 *   agent's netns, the node's);
 * - pods: CPU and memory summed from the runtime's ListContainerStats;
 *   `network` from /proc/<sandbox pid>/net/dev (the pod's netns; the pid from
 *   the verbose sandbox status, containerd and docker alike); `volume` for
 *   emptyDir volumes (du of <root-dir>/pods/<uid>/volumes/kubernetes.io~empty-dir/<name>);
 *   `ephemeral-storage` = containers' rootfs + logs + emptyDir usage;
 * - containers: CPU, memory, `rootfs` (the runtime's writable-layer usage),
 *   `logs` (du of the container's log directory).
 *
 * Design notes:
 * - Only what was measured is filled in (undefined fields are left out); no
 *   cAdvisor. Each source failing (a sandbox gone meanwhile, a path missing)
 *   only leaves its fields out, never fails the request.
 * - `summarize`, `parseNetDev`, `networkStats`, `fsStats` are pure (runtime
 *   answers and /proc values in, the JSON out); `readSummary` gathers.
 * - `du` counts allocated blocks (st_blocks × 512, as du and upstream's
 *   fsquota-less path do) and inodes, and stops at `duEntryLimit` entries so a
 *   huge tree cannot stall the request.
 */
import { lstat, readdir, readFile, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import type { ContainerStats, FilesystemUsage, ImageService, PodSandbox, RuntimeService } from '../runtime/types.js';
import { parseMeminfo } from '../node/machine.js';
import { volumeHostPath, volumePlugin } from '../pods/volumes.js';

export interface NodeUsage {
  nodeName: string;
  startTime: string;
  time: string;
  cpuUsageCoreNanoSeconds: number | undefined;
  memoryTotal: number | undefined;
  memoryAvailable: number | undefined;
}

interface CpuStats {
  time: string;
  usageCoreNanoSeconds?: number;
  usageNanoCores?: number;
}

interface MemoryStats {
  time: string;
  workingSetBytes?: number;
  usageBytes?: number;
  rssBytes?: number;
  availableBytes?: number;
  pageFaults?: number;
  majorPageFaults?: number;
}

const nanosToIso = (ns: bigint): string => new Date(Number(ns / 1_000_000n)).toISOString();

/** Upstream's FsStats. */
export interface FsStats {
  time: string;
  availableBytes?: number;
  capacityBytes?: number;
  usedBytes?: number;
  inodesFree?: number;
  inodes?: number;
  inodesUsed?: number;
}

/** Upstream's InterfaceStats. */
export interface InterfaceStats {
  name: string;
  rxBytes: number;
  rxErrors: number;
  txBytes: number;
  txErrors: number;
}

/** Upstream's NetworkStats: the default interface's counters inline, every interface in `interfaces`. */
export interface NetworkStats extends Partial<InterfaceStats> {
  time: string;
  interfaces: InterfaceStats[];
}

/** A filesystem's size as statfs reports it, in bytes and inodes. */
export interface FsCapacity {
  capacityBytes: number;
  availableBytes: number;
  usedBytes: number;
  inodes: number;
  inodesFree: number;
}

/** Space and inodes used under a path. */
export interface DirUsage {
  usedBytes: number;
  inodesUsed: number;
}

/** What /proc, statfs and du add to the runtime's answers (all optional). */
export interface SummaryExtras {
  nodeFs?: FsCapacity;
  imageFs?: { usage: FilesystemUsage; capacity: FsCapacity | undefined };
  containerFs?: { usage: FilesystemUsage; capacity: FsCapacity | undefined };
  nodeInterfaces?: InterfaceStats[];
  /** By pod uid. */
  podInterfaces?: Map<string, InterfaceStats[]>;
  /** By pod uid: emptyDir volumes' usage, by volume name. */
  podVolumes?: Map<string, Map<string, DirUsage>>;
  /** By container id: usage of its log directory. */
  containerLogs?: Map<string, DirUsage>;
  /** statfs of the filesystem holding the pod logs. */
  logsFs?: FsCapacity;
}

/** /proc/<pid>/net/dev → per-interface counters, loopback left out. Pure. */
export function parseNetDev(text: string): InterfaceStats[] {
  const out: InterfaceStats[] = [];
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const f = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    if (name === '' || name === 'lo' || f.length < 16 || f.some((n) => Number.isNaN(n))) continue;
    out.push({ name, rxBytes: f[0]!, rxErrors: f[2]!, txBytes: f[8]!, txErrors: f[10]! });
  }
  return out;
}

/** NetworkStats with eth0 (or the first interface) as the default, as upstream. Pure. */
export function networkStats(time: string, interfaces: InterfaceStats[]): NetworkStats | undefined {
  if (interfaces.length === 0) return undefined;
  const def = interfaces.find((i) => i.name === 'eth0') ?? interfaces[0]!;
  return { time, ...def, interfaces };
}

/** FsStats from a filesystem's capacity and, when given, a usage inside it (else the filesystem's own). Pure. */
export function fsStats(time: string, capacity: FsCapacity | undefined, used?: { usedBytes?: number | undefined; inodesUsed?: number | undefined }): FsStats {
  return defined({
    time,
    availableBytes: capacity?.availableBytes,
    capacityBytes: capacity?.capacityBytes,
    usedBytes: used === undefined ? capacity?.usedBytes : used.usedBytes,
    inodesFree: capacity?.inodesFree,
    inodes: capacity?.inodes,
    inodesUsed: used === undefined ? (capacity === undefined ? undefined : capacity.inodes - capacity.inodesFree) : used.inodesUsed,
  });
}

function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function containerCpu(s: ContainerStats): CpuStats | undefined {
  if (s.cpu === undefined) return undefined;
  return defined({ time: nanosToIso(s.cpu.timestamp), usageCoreNanoSeconds: s.cpu.usageCoreNanoSeconds === undefined ? undefined : Number(s.cpu.usageCoreNanoSeconds), usageNanoCores: s.cpu.usageNanoCores });
}

function containerMemory(s: ContainerStats): MemoryStats | undefined {
  const m = s.memory;
  if (m === undefined) return undefined;
  return defined({ time: nanosToIso(m.timestamp), workingSetBytes: m.workingSetBytes, usageBytes: m.usageBytes, rssBytes: m.rssBytes, availableBytes: m.availableBytes, pageFaults: m.pageFaults, majorPageFaults: m.majorPageFaults });
}

function sum(values: (number | undefined)[]): number | undefined {
  const present = values.filter((v): v is number => v !== undefined);
  return present.length === 0 ? undefined : present.reduce((a, b) => a + b, 0);
}

/** The Summary document. Pure. */
export function summarize(node: NodeUsage, sandboxes: PodSandbox[], stats: ContainerStats[], extra: SummaryExtras = {}): unknown {
  const bySandbox = new Map<string, ContainerStats[]>();
  for (const s of stats) {
    const sandboxId = s.labels['io.kubernetes.pod.uid'] ?? '';
    bySandbox.set(sandboxId, [...(bySandbox.get(sandboxId) ?? []), s]);
  }
  const pods = sandboxes
    .filter((sb) => sb.state === 'ready')
    .map((sb) => {
      const cs = bySandbox.get(sb.metadata.uid) ?? [];
      const time = node.time;
      const rootCapacity = extra.containerFs?.capacity ?? extra.imageFs?.capacity;
      const containers = cs.map((s) => {
        const layer = s.writableLayer;
        const logs = extra.containerLogs?.get(s.id);
        return defined({
          name: s.metadata.name,
          cpu: containerCpu(s),
          memory: containerMemory(s),
          rootfs: layer === undefined || layer.usedBytes === undefined ? undefined : fsStats(time, rootCapacity, layer),
          logs: logs === undefined ? undefined : fsStats(time, extra.logsFs, logs),
        });
      });
      const volumes = [...(extra.podVolumes?.get(sb.metadata.uid) ?? new Map<string, DirUsage>())].map(([name, u]) => ({ ...fsStats(time, extra.nodeFs, u), name }));
      const ephemeral = sum([...cs.map((s) => s.writableLayer?.usedBytes), ...cs.map((s) => extra.containerLogs?.get(s.id)?.usedBytes), ...volumes.map((v) => v.usedBytes)]);
      const ephemeralInodes = sum([...cs.map((s) => s.writableLayer?.inodesUsed), ...cs.map((s) => extra.containerLogs?.get(s.id)?.inodesUsed), ...volumes.map((v) => v.inodesUsed)]);
      const interfaces = extra.podInterfaces?.get(sb.metadata.uid);
      return defined({
        podRef: { name: sb.metadata.name, namespace: sb.metadata.namespace, uid: sb.metadata.uid },
        startTime: nanosToIso(sb.createdAt),
        containers,
        cpu: defined({ time, usageCoreNanoSeconds: sum(cs.map((s) => (s.cpu?.usageCoreNanoSeconds === undefined ? undefined : Number(s.cpu.usageCoreNanoSeconds)))), usageNanoCores: sum(cs.map((s) => s.cpu?.usageNanoCores)) }),
        memory: defined({ time, workingSetBytes: sum(cs.map((s) => s.memory?.workingSetBytes)), usageBytes: sum(cs.map((s) => s.memory?.usageBytes)), rssBytes: sum(cs.map((s) => s.memory?.rssBytes)) }),
        network: interfaces === undefined ? undefined : networkStats(time, interfaces),
        volume: volumes.length === 0 ? undefined : volumes,
        'ephemeral-storage': ephemeral === undefined ? undefined : fsStats(time, rootCapacity, { usedBytes: ephemeral, inodesUsed: ephemeralInodes }),
      });
    });
  const used = node.memoryTotal !== undefined && node.memoryAvailable !== undefined ? node.memoryTotal - node.memoryAvailable : undefined;
  return {
    node: defined({
      nodeName: node.nodeName,
      startTime: node.startTime,
      cpu: defined({ time: node.time, usageCoreNanoSeconds: node.cpuUsageCoreNanoSeconds }),
      memory: defined({ time: node.time, availableBytes: node.memoryAvailable, usageBytes: used, workingSetBytes: used }),
      network: extra.nodeInterfaces === undefined ? undefined : networkStats(node.time, extra.nodeInterfaces),
      fs: extra.nodeFs === undefined ? undefined : fsStats(node.time, extra.nodeFs),
      runtime:
        extra.imageFs === undefined
          ? undefined
          : defined({
              imageFs: fsStats(node.time, extra.imageFs.capacity, extra.imageFs.usage),
              containerFs: extra.containerFs === undefined ? undefined : fsStats(node.time, extra.containerFs.capacity, extra.containerFs.usage),
            }),
    }),
    pods,
  };
}

/** /proc/stat's first line → CPU time used (not idle/iowait) in ns, at USER_HZ 100. Pure. */
export function parseProcStatCpu(text: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (line === undefined) return undefined;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  if (f.length < 4 || f.some((n) => Number.isNaN(n))) return undefined;
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - idle) * 10_000_000;
}

/** statfs of the filesystem holding `path`; undefined when it cannot be read. */
export async function fsCapacity(path: string): Promise<FsCapacity | undefined> {
  try {
    const f = await statfs(path);
    return { capacityBytes: f.blocks * f.bsize, availableBytes: f.bavail * f.bsize, usedBytes: (f.blocks - f.bfree) * f.bsize, inodes: f.files, inodesFree: f.ffree };
  } catch {
    return undefined;
  }
}

export const duEntryLimit = 100_000;

/** Space (allocated blocks) and inodes under `path`, not following symlinks; undefined when it does not exist. */
export async function du(path: string): Promise<DirUsage | undefined> {
  let usedBytes = 0;
  let inodesUsed = 0;
  const walk = async (p: string): Promise<void> => {
    if (inodesUsed >= duEntryLimit) return;
    const st = await lstat(p).catch(() => undefined);
    if (st === undefined) return;
    usedBytes += st.blocks * 512;
    inodesUsed++;
    if (!st.isDirectory()) return;
    for (const name of await readdir(p).catch(() => [] as string[])) await walk(join(p, name));
  };
  if ((await lstat(path).catch(() => undefined)) === undefined) return undefined;
  await walk(path);
  return { usedBytes, inodesUsed };
}

/** The sandbox's pid from a verbose PodSandboxStatus's `info` (containerd and the docker backend both put {"pid": n} there). Pure. */
export function sandboxPid(info: Record<string, string>): number | undefined {
  try {
    const v = JSON.parse(info.info ?? '') as { pid?: unknown };
    return typeof v.pid === 'number' && Number.isInteger(v.pid) && v.pid > 0 ? v.pid : undefined;
  } catch {
    return undefined;
  }
}

export interface SummarySources {
  /** The agent's root dir: node `fs`, and emptyDir volumes under <root-dir>/pods. */
  rootDir?: string;
  /** The pods this node runs (their emptyDir volumes). */
  pods?: () => V1Pod[];
}

async function runtimeFs(runtime: RuntimeService & Partial<Pick<ImageService, 'imageFsInfo'>>): Promise<Pick<SummaryExtras, 'imageFs' | 'containerFs'>> {
  if (runtime.imageFsInfo === undefined) return {};
  const info = await runtime.imageFsInfo().catch(() => undefined);
  const image = info?.imageFilesystems[0];
  const container = info?.containerFilesystems[0];
  const withCapacity = async (u: FilesystemUsage | undefined): Promise<{ usage: FilesystemUsage; capacity: FsCapacity | undefined } | undefined> =>
    u === undefined ? undefined : { usage: u, capacity: u.mountpoint === '' ? undefined : await fsCapacity(u.mountpoint) };
  const [imageFs, containerFs] = await Promise.all([withCapacity(image), withCapacity(container)]);
  return { ...(imageFs !== undefined ? { imageFs } : {}), ...(containerFs !== undefined ? { containerFs } : {}) };
}

/** Network, volume and log usage of the ready sandboxes and their containers. */
async function podExtras(runtime: RuntimeService, sandboxes: PodSandbox[], stats: ContainerStats[], o: SummarySources): Promise<Pick<SummaryExtras, 'podInterfaces' | 'podVolumes' | 'containerLogs' | 'logsFs'>> {
  const podInterfaces = new Map<string, InterfaceStats[]>();
  const podVolumes = new Map<string, Map<string, DirUsage>>();
  const containerLogs = new Map<string, DirUsage>();
  const ready = sandboxes.filter((sb) => sb.state === 'ready');
  await Promise.all(
    ready.map(async (sb) => {
      const status = await runtime.podSandboxStatus(sb.id, { verbose: true }).catch(() => undefined);
      const pid = status === undefined ? undefined : sandboxPid(status.info);
      if (pid === undefined) return;
      const text = await readFile(`/proc/${pid}/net/dev`, 'utf8').catch(() => undefined);
      if (text !== undefined) podInterfaces.set(sb.metadata.uid, parseNetDev(text));
    }),
  );
  let logDir: string | undefined;
  await Promise.all(
    stats.map(async (s) => {
      const status = await runtime.containerStatus(s.id).catch(() => undefined);
      const logPath = status?.status.logPath ?? '';
      if (logPath === '') return;
      logDir ??= dirname(logPath);
      const u = await du(dirname(logPath));
      if (u !== undefined) containerLogs.set(s.id, u);
    }),
  );
  if (o.rootDir !== undefined && o.pods !== undefined) {
    const uids = new Set(ready.map((sb) => sb.metadata.uid));
    for (const pod of o.pods()) {
      const uid = pod.metadata?.uid ?? '';
      if (!uids.has(uid)) continue;
      const byName = new Map<string, DirUsage>();
      for (const v of pod.spec?.volumes ?? []) {
        if (volumePlugin(v) !== 'empty-dir' || v.emptyDir?.medium === 'Memory') continue;
        const path = volumeHostPath(o.rootDir, uid, v);
        const u = path === undefined ? undefined : await du(path);
        if (u !== undefined) byName.set(v.name, u);
      }
      if (byName.size > 0) podVolumes.set(uid, byName);
    }
  }
  const logsFs = logDir === undefined ? undefined : await fsCapacity(logDir);
  return { podInterfaces, podVolumes, containerLogs, ...(logsFs !== undefined ? { logsFs } : {}) };
}

/** Reads /proc and the runtime and returns the Summary. */
export async function readSummary(nodeName: string, runtime: RuntimeService & Partial<Pick<ImageService, 'imageFsInfo'>>, startTime: Date, sources: SummarySources = {}): Promise<unknown> {
  const [stat, meminfo, netDev, sandboxes, stats, nodeFs, rtFs] = await Promise.all([
    readFile('/proc/stat', 'utf8').catch(() => ''),
    readFile('/proc/meminfo', 'utf8').catch(() => ''),
    readFile('/proc/self/net/dev', 'utf8').catch(() => undefined),
    runtime.listPodSandbox(),
    runtime.listContainerStats(),
    fsCapacity(sources.rootDir ?? '/'),
    runtimeFs(runtime),
  ]);
  const pods = await podExtras(runtime, sandboxes, stats, sources);
  const mem = parseMeminfo(meminfo);
  return summarize(
    { nodeName, startTime: startTime.toISOString(), time: new Date().toISOString(), cpuUsageCoreNanoSeconds: parseProcStatCpu(stat), memoryTotal: mem.MemTotal, memoryAvailable: mem.MemAvailable },
    sandboxes,
    stats,
    { ...rtFs, ...pods, ...(nodeFs !== undefined ? { nodeFs } : {}), ...(netDev !== undefined ? { nodeInterfaces: parseNetDev(netDev) } : {}) },
  );
}

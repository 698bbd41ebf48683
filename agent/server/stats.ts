/**
 * /stats/summary: a small, real subset of upstream's Summary API
 * (stats.k8s.io/v1alpha1): the node's CPU and memory from /proc, and per pod
 * the containers' CPU and memory from CRI ListContainerStats, summed per pod.
 *
 * Design notes:
 * - Only what the runtime reports is filled in (undefined fields are left
 *   out); no cAdvisor, no filesystem or network stats yet.
 * - `summarize` is pure (runtime answers and /proc values in, the JSON out).
 */
import { readFile } from 'node:fs/promises';
import type { ContainerStats, PodSandbox, RuntimeService } from '../runtime/types.js';
import { parseMeminfo } from '../node/machine.js';

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
export function summarize(node: NodeUsage, sandboxes: PodSandbox[], stats: ContainerStats[]): unknown {
  const bySandbox = new Map<string, ContainerStats[]>();
  for (const s of stats) {
    const sandboxId = s.labels['io.kubernetes.pod.uid'] ?? '';
    bySandbox.set(sandboxId, [...(bySandbox.get(sandboxId) ?? []), s]);
  }
  const pods = sandboxes
    .filter((sb) => sb.state === 'ready')
    .map((sb) => {
      const cs = bySandbox.get(sb.metadata.uid) ?? [];
      const containers = cs.map((s) => defined({ name: s.metadata.name, cpu: containerCpu(s), memory: containerMemory(s) }));
      const time = node.time;
      return {
        podRef: { name: sb.metadata.name, namespace: sb.metadata.namespace, uid: sb.metadata.uid },
        startTime: nanosToIso(sb.createdAt),
        containers,
        cpu: defined({ time, usageCoreNanoSeconds: sum(cs.map((s) => (s.cpu?.usageCoreNanoSeconds === undefined ? undefined : Number(s.cpu.usageCoreNanoSeconds)))), usageNanoCores: sum(cs.map((s) => s.cpu?.usageNanoCores)) }),
        memory: defined({ time, workingSetBytes: sum(cs.map((s) => s.memory?.workingSetBytes)), usageBytes: sum(cs.map((s) => s.memory?.usageBytes)), rssBytes: sum(cs.map((s) => s.memory?.rssBytes)) }),
      };
    });
  const used = node.memoryTotal !== undefined && node.memoryAvailable !== undefined ? node.memoryTotal - node.memoryAvailable : undefined;
  return {
    node: {
      nodeName: node.nodeName,
      startTime: node.startTime,
      cpu: defined({ time: node.time, usageCoreNanoSeconds: node.cpuUsageCoreNanoSeconds }),
      memory: defined({ time: node.time, availableBytes: node.memoryAvailable, usageBytes: used, workingSetBytes: used }),
    },
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

/** Reads /proc and the runtime and returns the Summary. */
export async function readSummary(nodeName: string, runtime: RuntimeService, startTime: Date): Promise<unknown> {
  const [stat, meminfo, sandboxes, stats] = await Promise.all([
    readFile('/proc/stat', 'utf8').catch(() => ''),
    readFile('/proc/meminfo', 'utf8').catch(() => ''),
    runtime.listPodSandbox(),
    runtime.listContainerStats(),
  ]);
  const mem = parseMeminfo(meminfo);
  return summarize(
    { nodeName, startTime: startTime.toISOString(), time: new Date().toISOString(), cpuUsageCoreNanoSeconds: parseProcStatCpu(stat), memoryTotal: mem.MemTotal, memoryAvailable: mem.MemAvailable },
    sandboxes,
    stats,
  );
}

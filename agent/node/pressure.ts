/**
 * Node pressure: MemoryPressure, DiskPressure and PIDPressure from the
 * machine's numbers against upstream's default hard eviction thresholds
 * (memory.available<100Mi, nodefs.available<10%, nodefs.inodesFree<5%).
 * Upstream sets no default pid.available threshold; knode uses
 * pid.available<10% of the PID limit so the condition means something.
 *
 * Pure functions fed by `readPressureObservation`. Like the eviction manager,
 * a condition stays true for `transitionPeriodMs` (5 min) after the signal was
 * last seen over its threshold, so it does not flap.
 */
import { readFile } from 'node:fs/promises';
import { parseMeminfo, statfsNearest } from './machine.js';

export interface PressureObservation {
  memoryAvailableBytes?: number;
  nodefsAvailableBytes?: number;
  nodefsCapacityBytes?: number;
  nodefsInodesFree?: number;
  nodefsInodes?: number;
  /** min(pid_max, threads-max). */
  pidLimit?: number;
  /** Threads running on the machine (/proc/loadavg's total). */
  pidsInUse?: number;
}

export interface Thresholds {
  memoryAvailableBytes: number;
  nodefsAvailableFraction: number;
  nodefsInodesFreeFraction: number;
  pidAvailableFraction: number;
}

export const defaultThresholds: Thresholds = {
  memoryAvailableBytes: 100 * 1024 * 1024,
  nodefsAvailableFraction: 0.1,
  nodefsInodesFreeFraction: 0.05,
  pidAvailableFraction: 0.1,
};

export const pressureTransitionPeriodMs = 5 * 60_000;

export type PressureKind = 'memory' | 'disk' | 'pid';
export type PressureSignals = Record<PressureKind, boolean>;

/** Which thresholds the observation crosses. Unknown values never signal pressure. */
export function pressureSignals(o: PressureObservation, t: Thresholds = defaultThresholds): PressureSignals {
  const memory = o.memoryAvailableBytes !== undefined && o.memoryAvailableBytes < t.memoryAvailableBytes;
  const space =
    o.nodefsAvailableBytes !== undefined && o.nodefsCapacityBytes !== undefined && o.nodefsCapacityBytes > 0 && o.nodefsAvailableBytes < o.nodefsCapacityBytes * t.nodefsAvailableFraction;
  const inodes = o.nodefsInodesFree !== undefined && o.nodefsInodes !== undefined && o.nodefsInodes > 0 && o.nodefsInodesFree < o.nodefsInodes * t.nodefsInodesFreeFraction;
  const pid = o.pidLimit !== undefined && o.pidsInUse !== undefined && o.pidLimit > 0 && o.pidLimit - o.pidsInUse < o.pidLimit * t.pidAvailableFraction;
  return { memory, disk: space || inodes, pid };
}

/** When each signal was last seen; the memory of the hysteresis. */
export type PressureMemory = Partial<Record<PressureKind, number>>;

/** Applies the transition period: pressure holds until `periodMs` after it was last observed. Pure. */
export function withTransitionPeriod(memory: PressureMemory, signals: PressureSignals, nowMs: number, periodMs = pressureTransitionPeriodMs): { memory: PressureMemory; pressure: PressureSignals } {
  const next: PressureMemory = { ...memory };
  const pressure = { memory: false, disk: false, pid: false } as PressureSignals;
  for (const kind of ['memory', 'disk', 'pid'] as const) {
    if (signals[kind]) next[kind] = nowMs;
    const last = next[kind];
    pressure[kind] = last !== undefined && nowMs - last < periodMs;
  }
  return { memory: next, pressure };
}

/** /proc/loadavg "0.00 0.01 0.05 1/123 4567" → 123 (scheduling entities). */
export function parseLoadavgThreads(text: string): number | undefined {
  const m = /\s\d+\/(\d+)\s/.exec(text);
  return m ? Number(m[1]) : undefined;
}

async function readOptional(path: string): Promise<string | undefined> {
  return readFile(path, 'utf8').catch(() => undefined);
}

export async function readPressureObservation(rootDir: string, fsRoot = ''): Promise<PressureObservation> {
  const [meminfo, pidMax, threadsMax, loadavg] = await Promise.all([
    readOptional(fsRoot + '/proc/meminfo'),
    readOptional(fsRoot + '/proc/sys/kernel/pid_max'),
    readOptional(fsRoot + '/proc/sys/kernel/threads-max'),
    readOptional(fsRoot + '/proc/loadavg'),
  ]);
  const obs: PressureObservation = {};
  const mem = parseMeminfo(meminfo ?? '');
  if (mem.MemAvailable !== undefined) obs.memoryAvailableBytes = mem.MemAvailable;
  try {
    const fs = await statfsNearest(rootDir);
    obs.nodefsAvailableBytes = fs.bavail * fs.bsize;
    obs.nodefsCapacityBytes = fs.blocks * fs.bsize;
    obs.nodefsInodesFree = fs.ffree;
    obs.nodefsInodes = fs.files;
  } catch {
    // unknown: no disk pressure signal
  }
  const limits = [pidMax, threadsMax].map((s) => Number(s?.trim())).filter((n) => Number.isFinite(n) && n > 0);
  if (limits.length > 0) obs.pidLimit = Math.min(...limits);
  const threads = loadavg === undefined ? undefined : parseLoadavgThreads(loadavg);
  if (threads !== undefined) obs.pidsInUse = threads;
  return obs;
}

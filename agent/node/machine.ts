/**
 * What the Node reports about the machine. Parsers are pure (text in, values
 * out); `readMachineInfo` does the reading, tolerating missing files (a field
 * it cannot read is '' or the fallback, never an error: the node still registers).
 */
import { cpus, hostname as osHostname, release } from 'node:os';
import { readFile, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errnoCode } from '../../lib/errors.js';

export interface MachineInfo {
  hostname: string;
  cpuCores: number;
  memoryBytes: number;
  ephemeralStorageBytes: number;
  kernelVersion: string;
  osImage: string;
  machineID: string;
  systemUUID: string;
  bootID: string;
  /** GOARCH spelling: amd64, arm64, ... */
  architecture: string;
  /** GOOS spelling: linux. */
  operatingSystem: string;
}

/** /proc/meminfo → bytes per field (values given in kB). */
export function parseMeminfo(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^([\w()]+):\s+(\d+)(?:\s+kB)?\s*$/.exec(line);
    if (m) out[m[1]!] = Number(m[2]) * (line.trimEnd().endsWith('kB') ? 1024 : 1);
  }
  return out;
}

/** os-release → PRETTY_NAME (else NAME VERSION), as the kubelet's osImage. */
export function parseOsRelease(text: string): string {
  const vars: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) vars[m[1]!] = m[2]!.replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1');
  }
  return vars.PRETTY_NAME ?? [vars.NAME, vars.VERSION].filter(Boolean).join(' ');
}

/** cgroup v2 cpu.max ("max 100000" or "200000 100000") → cores (fractional), undefined when unlimited. */
export function parseCpuMax(text: string): number | undefined {
  const [quota, period] = text.trim().split(/\s+/);
  if (quota === undefined || quota === 'max' || period === undefined) return undefined;
  const q = Number(quota);
  const p = Number(period);
  return q > 0 && p > 0 ? q / p : undefined;
}

/** CPU cores for capacity: the online CPUs, lowered to a cgroup CPU limit rounded up. */
export function cpuCapacity(online: number, cgroupLimit: number | undefined): number {
  return cgroupLimit === undefined ? online : Math.max(1, Math.min(online, Math.ceil(cgroupLimit)));
}

const archMap: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export function goArch(nodeArch: string): string {
  return archMap[nodeArch] ?? nodeArch;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'EACCES' || code === 'EPERM' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/** statfs of the nearest existing ancestor of `path`. */
export async function statfsNearest(path: string): Promise<{ bsize: number; blocks: number; bavail: number; files: number; ffree: number }> {
  let p = path;
  for (;;) {
    try {
      return await statfs(p);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT' || p === '/') throw err;
      p = dirname(p);
    }
  }
}

export interface MachineReadOptions {
  rootDir: string;
  /** Prefix for /proc, /sys, /etc reads (tests). */
  fsRoot?: string;
}

export async function readMachineInfo(options: MachineReadOptions): Promise<MachineInfo> {
  const r = (p: string): string => (options.fsRoot ?? '') + p;
  const [meminfo, osRelease, osReleaseAlt, machineId, dbusMachineId, bootId, productUuid, cpuMax] = await Promise.all([
    readText(r('/proc/meminfo')),
    readText(r('/etc/os-release')),
    readText(r('/usr/lib/os-release')),
    readText(r('/etc/machine-id')),
    readText(r('/var/lib/dbus/machine-id')),
    readText(r('/proc/sys/kernel/random/boot_id')),
    readText(r('/sys/class/dmi/id/product_uuid')),
    readText(r('/sys/fs/cgroup/cpu.max')),
  ]);
  const fs = await statfsNearest(options.rootDir);
  return {
    hostname: osHostname().toLowerCase(),
    cpuCores: cpuCapacity(cpus().length || 1, cpuMax === undefined ? undefined : parseCpuMax(cpuMax)),
    memoryBytes: parseMeminfo(meminfo ?? '').MemTotal ?? 0,
    ephemeralStorageBytes: fs.blocks * fs.bsize,
    kernelVersion: release(),
    osImage: parseOsRelease(osRelease ?? osReleaseAlt ?? '') || 'Linux',
    machineID: (machineId ?? dbusMachineId ?? '').trim(),
    systemUUID: (productUuid ?? '').trim(),
    bootID: (bootId ?? '').trim(),
    architecture: goArch(process.arch),
    operatingSystem: process.platform,
  };
}

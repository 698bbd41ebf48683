/**
 * Sysctls through /proc/sys. Network sysctls (/proc/sys/net/...) are those of the network
 * namespace of the thread that opens the file, so a write for another namespace happens inside
 * lib/netns.ts withNetnsSync (open + write + close, all synchronous, on the main thread).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { KnodeError } from '../errors.js';
import { withNetnsSync } from '../netns.js';

function sysctlPath(key: string): string {
  // "net.ipv4.ip_forward" or "net/ipv4/ip_forward"; interface names may contain dots, so the
  // slash form is the unambiguous one for per-interface keys.
  const rel = key.includes('/') ? key : key.replaceAll('.', '/');
  if (rel.split('/').some((p) => p === '' || p === '..' || p === '.')) {
    throw new KnodeError('SYSCTL_INVALID_KEY', `invalid sysctl key ${key}`);
  }
  return `/proc/sys/${rel}`;
}

/** Write a sysctl in the current namespace, or in the one at `netns`. */
export function writeSysctl(key: string, value: string, netns?: string): void {
  const path = sysctlPath(key);
  const write = (): void => writeFileSync(path, value);
  if (netns) withNetnsSync(netns, write);
  else write();
}

export function readSysctl(key: string, netns?: string): string {
  const path = sysctlPath(key);
  const read = (): string => readFileSync(path, 'utf8').trim();
  return netns ? withNetnsSync(netns, read) : read();
}

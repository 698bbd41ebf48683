/**
 * The host-local IPAM store, byte-compatible with the reference plugin's disk backend so that
 * either plugin can take over the other's state:
 *   <dataDir>/<network>/<ip>                  "<containerID>\r\n<ifname>" (no trailing newline)
 *   <dataDir>/<network>/last_reserved_ip.<i>   the last IP handed out from range set i
 *   <dataDir>/<network>/lock                  flock(LOCK_EX) serialises every reader and writer
 *
 * Design notes
 * - The lock is flock(2) on the `lock` file, exactly like the reference, so knode and reference
 *   plugins running at the same time exclude each other. flock belongs to the open file
 *   description: it is released when the process dies (kill -9 in the middle of an ADD leaves no
 *   stale lock), and two opens in one process contend like two processes would.
 * - Taking the lock first tries LOCK_NB on the main thread (the common, uncontended case costs
 *   one syscall); when contended, the blocking flock runs through koffi's async call on a pool
 *   thread, so the event loop of an in-process caller (tests, a future daemon) stays free.
 * - A reservation is an O_EXCL create of the IP file: even a caller that skipped the lock could
 *   never hand out one IP twice.
 * - Names that reach the file system are the validated network name (cni/types.ts) and the IP
 *   text that this module formats itself; the container ID and ifname only go into contents.
 */
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { KnodeError, errnoCode } from '../../lib/errors.js';
import { koffiModule } from '../../lib/netlink/native.js';
import { formatIp, parseIp } from '../ip.js';
import type { Ip } from '../ip.js';

export const DEFAULT_DATA_DIR = '/var/lib/cni/networks';
const LINE_BREAK = '\r\n';
const LAST_RESERVED_PREFIX = 'last_reserved_ip.';
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = 11;
const EINTR = 4;

interface FlockFn {
  (fd: number, op: number): number;
  async(fd: number, op: number, cb: (err: unknown, res: number) => void): void;
}

let flockFn: FlockFn | undefined;
function flock(): FlockFn {
  if (!flockFn) {
    const libc = koffiModule().load('libc.so.6');
    flockFn = libc.func('int flock(int fd, int op)') as unknown as FlockFn;
  }
  return flockFn;
}

export interface Allocation {
  ip: Ip;
  containerId: string;
  ifName: string;
}

export class HostLocalStore {
  readonly dir: string;
  private lockFd: number | undefined;
  private locked = false;

  constructor(dataDir: string, network: string) {
    this.dir = join(dataDir, network);
  }

  /** Create the directory and take the exclusive lock (blocking across processes). */
  async lock(): Promise<void> {
    if (this.locked) throw new KnodeError('IPAM_STORE_LOCKED', 'store is already locked by this handle');
    mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    const fd = openSync(join(this.dir, 'lock'), 'a', 0o644);
    this.lockFd = fd;
    const fn = flock();
    for (;;) {
      if (fn(fd, LOCK_EX | LOCK_NB) === 0) break;
      const errno = koffiModule().errno();
      if (errno === EINTR) continue;
      if (errno !== EWOULDBLOCK) {
        this.close();
        throw new KnodeError('IPAM_STORE_LOCK_FAILED', `flock ${this.dir}/lock failed (errno ${errno})`, { details: { errno } });
      }
      const res = await new Promise<number>((resolve, reject) =>
        fn.async(fd, LOCK_EX, (err, r) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(r))),
      );
      if (res === 0) break;
      // EINTR (or an unknown failure): try again, non-blocking first.
    }
    this.locked = true;
  }

  unlock(): void {
    if (this.lockFd !== undefined && this.locked) flock()(this.lockFd, LOCK_UN);
    this.locked = false;
    this.close();
  }

  private close(): void {
    if (this.lockFd !== undefined) closeSync(this.lockFd);
    this.lockFd = undefined;
  }

  async withLock<T>(fn: () => T | Promise<T>): Promise<T> {
    await this.lock();
    try {
      return await fn();
    } finally {
      this.unlock();
    }
  }

  private assertLocked(): void {
    if (!this.locked) throw new KnodeError('IPAM_STORE_NOT_LOCKED', 'store accessed without its lock');
  }

  /** Reserve `ip` for (id, ifname); false when the IP is taken already. */
  reserve(ip: Ip, containerId: string, ifName: string, rangeSetIdx: number): boolean {
    this.assertLocked();
    const path = join(this.dir, formatIp(ip));
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o644);
    } catch (err) {
      if (errnoCode(err) === 'EEXIST') return false;
      throw err;
    }
    try {
      writeSync(fd, containerId + LINE_BREAK + ifName);
    } catch (err) {
      closeSync(fd);
      unlinkSync(path);
      throw err;
    }
    closeSync(fd);
    writeFileSync(join(this.dir, LAST_RESERVED_PREFIX + String(rangeSetIdx)), formatIp(ip), { mode: 0o644 });
    return true;
  }

  lastReservedIp(rangeSetIdx: number): Ip | undefined {
    this.assertLocked();
    try {
      return parseIp(readFileSync(join(this.dir, LAST_RESERVED_PREFIX + String(rangeSetIdx)), 'utf8').trim());
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Every allocation on disk (files whose name is an IP). */
  list(): Allocation[] {
    this.assertLocked();
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw err;
    }
    const out: Allocation[] = [];
    for (const name of names) {
      const ip = parseIp(name);
      if (!ip) continue;
      let content: string;
      try {
        content = readFileSync(join(this.dir, name), 'utf8');
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue;
        throw err;
      }
      const [containerId = '', ifName = ''] = content.trim().split(LINE_BREAK);
      out.push({ ip, containerId: containerId.trim(), ifName: ifName.trim() });
    }
    return out;
  }

  getById(containerId: string, ifName: string): Ip[] {
    return this.list()
      .filter((a) => a.containerId === containerId && a.ifName === ifName)
      .map((a) => a.ip);
  }

  release(ip: Ip): void {
    this.assertLocked();
    try {
      unlinkSync(join(this.dir, formatIp(ip)));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }

  /** Release everything held by (id, ifname); returns what was released. */
  releaseById(containerId: string, ifName: string): Ip[] {
    const ips = this.getById(containerId, ifName);
    for (const ip of ips) this.release(ip);
    return ips;
  }
}

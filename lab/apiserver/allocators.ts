/**
 * Service ClusterIP and NodePort allocation (IPv4). Pure bookkeeping: the REST
 * layer allocates before it writes and releases on failure or delete; at start
 * the allocators are rebuilt from the stored services.
 */
import { KnodeError } from '../../lib/errors.js';

export function parseIPv4(ip: string): number | undefined {
  const m = ip.match(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export class ClusterIPAllocator {
  readonly cidr: string;
  private readonly base: number;
  private readonly size: number;
  private readonly used = new Set<number>();
  private next = 0;

  constructor(cidr: string) {
    const [addr, lenText] = cidr.split('/');
    const len = Number(lenText);
    const ip = parseIPv4(addr ?? '');
    if (ip === undefined || !Number.isInteger(len) || len < 8 || len > 30) {
      throw new KnodeError('INVALID_CIDR', `service CIDR "${cidr}" must be an IPv4 CIDR with a prefix between /8 and /30`);
    }
    this.cidr = cidr;
    this.size = 2 ** (32 - len);
    this.base = ip - (ip % this.size);
  }

  /** The first usable address (network + 1), reserved for the `kubernetes` service. */
  first(): string {
    return formatIPv4(this.base + 1);
  }

  contains(ip: string): boolean {
    const n = parseIPv4(ip);
    return n !== undefined && n > this.base && n < this.base + this.size - 1;
  }

  /** Claims a specific address; false if taken or outside the range. */
  claim(ip: string): boolean {
    if (!this.contains(ip)) return false;
    const n = parseIPv4(ip)!;
    if (this.used.has(n)) return false;
    this.used.add(n);
    return true;
  }

  /** Allocates the next free address (skipping network, first and broadcast). */
  allocate(): string {
    const usable = this.size - 3;
    for (let i = 0; i < usable; i++) {
      const n = this.base + 2 + ((this.next + i) % usable);
      if (!this.used.has(n)) {
        this.used.add(n);
        this.next = (this.next + i + 1) % usable;
        return formatIPv4(n);
      }
    }
    throw new KnodeError('RANGE_FULL', `no free address in ${this.cidr}`);
  }

  release(ip: string): void {
    const n = parseIPv4(ip);
    if (n !== undefined) this.used.delete(n);
  }
}

export class PortAllocator {
  private readonly used = new Set<number>();
  private next: number;

  constructor(
    readonly min = 30000,
    readonly max = 32767,
  ) {
    this.next = min;
  }

  claim(port: number): boolean {
    if (port < this.min || port > this.max || this.used.has(port)) return false;
    this.used.add(port);
    return true;
  }

  allocate(): number {
    const count = this.max - this.min + 1;
    for (let i = 0; i < count; i++) {
      const p = this.min + ((this.next - this.min + i) % count);
      if (!this.used.has(p)) {
        this.used.add(p);
        this.next = p + 1 > this.max ? this.min : p + 1;
        return p;
      }
    }
    throw new KnodeError('RANGE_FULL', `no free node port in ${this.min}-${this.max}`);
  }

  release(port: number): void {
    this.used.delete(port);
  }

  isUsed(port: number): boolean {
    return this.used.has(port);
  }
}

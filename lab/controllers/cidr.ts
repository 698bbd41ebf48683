/**
 * Pod CIDR allocation for nodes (upstream's range allocator, IPv4): the
 * cluster CIDR cut into blocks of `maskSize` bits, handed out lowest first,
 * marked used from existing nodes' spec.podCIDR(s) before anything new is
 * handed out so allocations are stable across restarts, released on node delete.
 */
import { KnodeError } from '../../lib/errors.js';

export function parseIPv4(ip: string): number {
  const parts = ip.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new KnodeError('INVALID_CIDR', `"${ip}" is not an IPv4 address`);
  }
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function formatIPv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

export function parseCIDR(cidr: string): { base: number; prefix: number } {
  const [ip, bits] = cidr.split('/');
  const prefix = Number(bits);
  if (ip === undefined || bits === undefined || !/^\d+$/.test(bits) || prefix > 32) throw new KnodeError('INVALID_CIDR', `"${cidr}" is not an IPv4 CIDR`);
  const size = 2 ** (32 - prefix);
  const base = Math.floor(parseIPv4(ip) / size) * size;
  return { base, prefix };
}

export class CidrAllocator {
  readonly base: number;
  readonly prefix: number;
  readonly maskSize: number;
  private readonly used = new Set<number>();
  private readonly count: number;

  constructor(clusterCIDR: string, maskSize: number) {
    const { base, prefix } = parseCIDR(clusterCIDR);
    if (!Number.isInteger(maskSize) || maskSize < prefix || maskSize > 32) {
      throw new KnodeError('INVALID_CIDR', `node CIDR mask size /${maskSize} does not fit in cluster CIDR ${clusterCIDR}`);
    }
    this.base = base;
    this.prefix = prefix;
    this.maskSize = maskSize;
    this.count = 2 ** (maskSize - prefix);
  }

  private indexOf(cidr: string): number | undefined {
    let parsed;
    try {
      parsed = parseCIDR(cidr);
    } catch {
      return undefined;
    }
    if (parsed.prefix !== this.maskSize) return undefined;
    const index = (parsed.base - this.base) / 2 ** (32 - this.maskSize);
    return Number.isInteger(index) && index >= 0 && index < this.count ? index : undefined;
  }

  private cidrAt(index: number): string {
    return `${formatIPv4(this.base + index * 2 ** (32 - this.maskSize))}/${this.maskSize}`;
  }

  /** Marks `cidr` used; false when it is not a block of this range. */
  occupy(cidr: string): boolean {
    const i = this.indexOf(cidr);
    if (i === undefined) return false;
    this.used.add(i);
    return true;
  }

  release(cidr: string): void {
    const i = this.indexOf(cidr);
    if (i !== undefined) this.used.delete(i);
  }

  isUsed(cidr: string): boolean {
    const i = this.indexOf(cidr);
    return i !== undefined && this.used.has(i);
  }

  /** The lowest free block. */
  allocate(): string {
    for (let i = 0; i < this.count; i++) {
      if (!this.used.has(i)) {
        this.used.add(i);
        return this.cidrAt(i);
      }
    }
    throw new KnodeError('CIDR_EXHAUSTED', `no /${this.maskSize} left in ${this.cidrAt(0).split('/')[0]}/${this.prefix}`);
  }

  get usedCount(): number {
    return this.used.size;
  }
}

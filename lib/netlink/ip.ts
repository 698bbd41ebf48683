/**
 * IP address arithmetic for IPAM and result formatting, for both families at once:
 * an address is a (family, bigint) pair so that v4 and v6 share every code path.
 * Text output follows Go's net.IP.String() (RFC 5952 for v6) because the host-local store
 * names its files after that text and must stay byte-compatible with the reference plugin.
 */
import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

export interface Ip {
  family: Family;
  value: bigint;
}

export interface IpNet {
  /** The address as written (host bits kept: "10.0.0.5/24" keeps .5). */
  ip: Ip;
  prefix: number;
}

export function bits(family: Family): number {
  return family === 4 ? 32 : 128;
}

export function parseIp(text: string): Ip | undefined {
  if (isIPv4(text)) {
    const parts = text.split('.').map((p) => BigInt(Number(p)));
    return { family: 4, value: parts.reduce((acc, p) => (acc << 8n) | p, 0n) };
  }
  if (isIPv6(text)) {
    let body = text;
    // An embedded dotted quad ("::ffff:1.2.3.4") becomes two hex groups.
    const lastColon = body.lastIndexOf(':');
    const tail = body.slice(lastColon + 1);
    if (tail.includes('.')) {
      const v4 = parseIp(tail);
      if (!v4) return undefined;
      body = `${body.slice(0, lastColon + 1)}${(v4.value >> 16n).toString(16)}:${(v4.value & 0xffffn).toString(16)}`;
    }
    const [head, rest] = body.split('::') as [string, string | undefined];
    const headGroups = head === '' ? [] : head.split(':');
    const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
    const missing = 8 - headGroups.length - restGroups.length;
    const groups = rest === undefined ? headGroups : [...headGroups, ...Array<string>(missing).fill('0'), ...restGroups];
    if (groups.length !== 8) return undefined;
    return { family: 6, value: groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n) };
  }
  return undefined;
}

export function formatIp(ip: Ip): string {
  if (ip.family === 4) {
    const v = ip.value;
    return [24n, 16n, 8n, 0n].map((s) => ((v >> s) & 0xffn).toString()).join('.');
  }
  // Go prints v4-mapped v6 addresses as dotted quads: keep that for store compatibility.
  if (ip.value >> 32n === 0xffffn) return formatIp({ family: 4, value: ip.value & 0xffffffffn });
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: compress the longest run (>= 2) of zero groups, the first one on ties.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export function parseIpNet(text: string): IpNet | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > bits(ip.family)) return undefined;
  return { ip, prefix };
}

export function formatIpNet(net: IpNet): string {
  return `${formatIp(net.ip)}/${net.prefix}`;
}

function hostMask(family: Family, prefix: number): bigint {
  return (1n << BigInt(bits(family) - prefix)) - 1n;
}

/** The network address (host bits cleared). */
export function networkOf(net: IpNet): Ip {
  return { family: net.ip.family, value: net.ip.value & ~hostMask(net.ip.family, net.prefix) };
}

/** The last address of the subnet (the v4 broadcast). */
export function lastOf(net: IpNet): Ip {
  return { family: net.ip.family, value: networkOf(net).value | hostMask(net.ip.family, net.prefix) };
}

export function contains(net: IpNet, ip: Ip): boolean {
  return ip.family === net.ip.family && (ip.value & ~hostMask(ip.family, net.prefix)) === networkOf(net).value;
}

export function ipEqual(a: Ip | undefined, b: Ip | undefined): boolean {
  return a !== undefined && b !== undefined && a.family === b.family && a.value === b.value;
}

export function nextIp(ip: Ip): Ip {
  const max = (1n << BigInt(bits(ip.family))) - 1n;
  return { family: ip.family, value: ip.value === max ? 0n : ip.value + 1n };
}

export function prevIp(ip: Ip): Ip {
  const max = (1n << BigInt(bits(ip.family))) - 1n;
  return { family: ip.family, value: ip.value === 0n ? max : ip.value - 1n };
}

export function compareIp(a: Ip, b: Ip): number {
  if (a.family !== b.family) return a.family - b.family;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

/** Network-byte-order bytes (4 or 16), as netlink wants them. */
export function ipToBuffer(ip: Ip): Buffer {
  const len = ip.family === 4 ? 4 : 16;
  const buf = Buffer.alloc(len);
  let v = ip.value;
  for (let i = len - 1; i >= 0; i--) {
    buf[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return buf;
}

export function ipFromBuffer(buf: Uint8Array): Ip | undefined {
  if (buf.length !== 4 && buf.length !== 16) return undefined;
  let v = 0n;
  for (const b of buf) v = (v << 8n) | BigInt(b);
  return { family: buf.length === 4 ? 4 : 6, value: v };
}

export function isDefaultNet(net: IpNet): boolean {
  return net.prefix === 0;
}

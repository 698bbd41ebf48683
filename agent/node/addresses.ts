/**
 * The node's InternalIP: --node-ip, else the address of the interface that
 * carries the default route (IPv4 from /proc/net/route, IPv6 from
 * /proc/net/ipv6_route), else the first non-loopback address. Pure parsers +
 * one reader.
 */
import { readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import type { NetworkInterfaceInfo } from 'node:os';

/** /proc/net/route → the interface of the default route with the lowest metric. */
export function defaultRouteInterface(procNetRoute: string): string | undefined {
  let best: { iface: string; metric: number } | undefined;
  for (const line of procNetRoute.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [iface, dest, , flags, , , metric, mask] = f;
    const up = (parseInt(flags!, 16) & 1) === 1;
    if (dest === '00000000' && mask === '00000000' && up) {
      const m = Number(metric);
      if (best === undefined || m < best.metric) best = { iface: iface!, metric: m };
    }
  }
  return best?.iface;
}

/** /proc/net/ipv6_route → the interface of the ::/0 route with the lowest metric (not lo). */
export function defaultRouteInterface6(procNetIpv6Route: string): string | undefined {
  let best: { iface: string; metric: number } | undefined;
  for (const line of procNetIpv6Route.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [dest, plen, , , , metric, , , , iface] = f;
    if (dest === '0'.repeat(32) && plen === '00' && iface !== 'lo') {
      const m = parseInt(metric!, 16);
      if (best === undefined || m < best.metric) best = { iface: iface!, metric: m };
    }
  }
  return best?.iface;
}

type Interfaces = Record<string, NetworkInterfaceInfo[] | undefined>;

/** The node's InternalIPs (one per family at most). Pure. */
export function pickNodeIPs(o: { configured: readonly string[]; interfaces: Interfaces; defaultIface4?: string | undefined; defaultIface6?: string | undefined }): string[] {
  if (o.configured.length > 0) return [...o.configured];
  const global = (i: NetworkInterfaceInfo): boolean => !i.internal && !(i.family === 'IPv6' && i.address.toLowerCase().startsWith('fe80'));
  const onIface = (name: string | undefined, family: 'IPv4' | 'IPv6'): string | undefined =>
    name === undefined ? undefined : (o.interfaces[name] ?? []).find((i) => i.family === family && global(i))?.address;
  const v4 = onIface(o.defaultIface4, 'IPv4');
  const v6 = onIface(o.defaultIface6, 'IPv6');
  const picked = [v4, v6].filter((x): x is string => x !== undefined);
  if (picked.length > 0) return picked;
  for (const list of Object.values(o.interfaces)) {
    const first = (list ?? []).find((i) => i.family === 'IPv4' && global(i));
    if (first) return [first.address];
  }
  return [];
}

export async function detectNodeIPs(configured: readonly string[]): Promise<string[]> {
  if (configured.length > 0) return [...configured];
  const [r4, r6] = await Promise.all([readFile('/proc/net/route', 'utf8').catch(() => ''), readFile('/proc/net/ipv6_route', 'utf8').catch(() => '')]);
  return pickNodeIPs({ configured, interfaces: networkInterfaces(), defaultIface4: defaultRouteInterface(r4), defaultIface6: defaultRouteInterface6(r6) });
}

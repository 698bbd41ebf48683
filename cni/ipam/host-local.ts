/**
 * knode-host-local: the reference host-local IPAM plugin, same config keys, same on-disk store
 * (cni/ipam/store.ts), same allocation order.
 *
 * Design notes
 * - Config parsing and canonicalisation (`parseHostLocalConf`) and the allocation order
 *   (`rangeSetIterator`) are pure and unit-tested; only `allocate`/`release`/`gc` touch the store,
 *   and always under its flock.
 * - Allocation order is the reference's: round-robin starting after `last_reserved_ip.<i>` when
 *   that IP is still inside range set i, else from the first range's rangeStart; rangeEnd is
 *   inclusive; the gateway is skipped; the network and (v4) broadcast addresses are outside every
 *   range by canonicalisation; the scan stops after one full loop ("no IP addresses available").
 * - One deliberate difference: ADD for a (container, ifname) that already holds an IP in a range
 *   set returns that IP (idempotent, so a runtime retry after a crash or timeout does not fail),
 *   where the reference refuses with "duplicate allocation is not allowed".
 * - Several range sets give one IP each (dual stack). On failure, only the IPs reserved by this
 *   call are released.
 */
import { readFileSync } from 'node:fs';
import { CniCode, CniError, isObject, optArray, optString, parseRoute } from '../types.js';
import type { CniDns, CniIpConfig, CniResult, CniRoute, JsonObject } from '../types.js';
import type { CmdArgs, CniPlugin } from '../skel.js';
import {
  compareIp,
  contains,
  formatIp,
  formatIpNet,
  ipEqual,
  lastOf,
  networkOf,
  nextIp,
  parseIp,
  parseIpNet,
  prevIp,
} from '../ip.js';
import type { Ip, IpNet } from '../ip.js';
import { DEFAULT_DATA_DIR, HostLocalStore } from './store.js';

export interface Range {
  /** The subnet, network address form. */
  subnet: IpNet;
  rangeStart: Ip;
  rangeEnd: Ip;
  gateway: Ip | undefined;
}

export type RangeSet = Range[];

export interface HostLocalConf {
  network: string;
  dataDir: string;
  rangeSets: RangeSet[];
  routes: CniRoute[];
  resolvConf: string | undefined;
  /** IPs requested via CNI_ARGS IP=, args.cni.ips or runtimeConfig.ips. */
  requestedIps: Ip[];
}

function bad(msg: string): CniError {
  return new CniError(CniCode.InvalidConfig, msg);
}

function ipField(obj: JsonObject, key: string, ctx: string): Ip | undefined {
  const text = optString(obj, key, ctx);
  if (text === undefined || text === '') return undefined;
  const ip = parseIp(text);
  if (!ip) throw bad(`invalid config: ${ctx}${key} "${text}" is not an IP address`);
  return ip;
}

/** Canonicalise one range the way the reference does (range.go Canonicalize). */
export function canonicalizeRange(raw: JsonObject, ctx: string): Range {
  const subnetText = optString(raw, 'subnet', ctx);
  if (subnetText === undefined || subnetText === '') throw bad(`invalid config: ${ctx}subnet is required`);
  const parsed = parseIpNet(subnetText);
  if (!parsed) throw bad(`invalid config: ${ctx}subnet "${subnetText}" is not a CIDR`);
  const family = parsed.ip.family;
  const hostBits = (family === 4 ? 32 : 128) - parsed.prefix;
  if (hostBits < 2) throw bad(`Network ${subnetText} too small to allocate from`);
  const network = networkOf(parsed);
  if (network.value !== parsed.ip.value) {
    throw bad(`Network has host bits set. For a subnet mask of length ${parsed.prefix} the network address is ${formatIp(network)}`);
  }
  const subnet: IpNet = { ip: network, prefix: parsed.prefix };
  const last = lastOf(subnet);
  const gateway = ipField(raw, 'gateway', ctx) ?? nextIp(network);
  if (gateway.family !== family) throw bad(`gateway ${formatIp(gateway)} is not in the family of subnet ${subnetText}`);
  const rangeStart = ipField(raw, 'rangeStart', ctx) ?? nextIp(network);
  const rangeEnd = ipField(raw, 'rangeEnd', ctx) ?? (family === 4 ? prevIp(last) : last);
  for (const [what, ip] of [
    ['RangeStart', rangeStart],
    ['RangeEnd', rangeEnd],
  ] as const) {
    if (!contains(subnet, ip)) throw bad(`${what} ${formatIp(ip)} not in network ${formatIpNet(subnet)}`);
    if (ipEqual(ip, network) || (family === 4 && ipEqual(ip, last))) {
      throw bad(`${what} ${formatIp(ip)} is the network or broadcast address of ${formatIpNet(subnet)}`);
    }
  }
  if (compareIp(rangeStart, rangeEnd) > 0) throw bad(`RangeStart ${formatIp(rangeStart)} is after RangeEnd ${formatIp(rangeEnd)}`);
  return { subnet, rangeStart, rangeEnd, gateway };
}

function rangeContains(r: Range, ip: Ip): boolean {
  return ip.family === r.subnet.ip.family && compareIp(ip, r.rangeStart) >= 0 && compareIp(ip, r.rangeEnd) <= 0;
}

export function rangeSetContains(set: RangeSet, ip: Ip): boolean {
  return set.some((r) => rangeContains(r, ip));
}

function rangesOverlap(a: Range, b: Range): boolean {
  return a.subnet.ip.family === b.subnet.ip.family && compareIp(a.rangeStart, b.rangeEnd) <= 0 && compareIp(b.rangeStart, a.rangeEnd) <= 0;
}

function requestedIps(conf: JsonObject, cniArgs: Map<string, string>): Ip[] {
  const texts: string[] = [];
  const ipArg = cniArgs.get('IP');
  if (ipArg) texts.push(...ipArg.split(','));
  const args = conf.args;
  if (isObject(args) && isObject(args.cni)) {
    const ips = optArray(args.cni, 'ips', 'args.cni.');
    if (ips) for (const v of ips) if (typeof v === 'string') texts.push(v);
  }
  const rc = conf.runtimeConfig;
  if (isObject(rc)) {
    const ips = optArray(rc, 'ips', 'runtimeConfig.');
    if (ips) for (const v of ips) if (typeof v === 'string') texts.push(v);
  }
  return texts.map((t) => {
    const text = t.includes('/') ? t.slice(0, t.indexOf('/')) : t;
    const ip = parseIp(text.trim());
    if (!ip) throw bad(`invalid requested IP "${t}"`);
    return ip;
  });
}

/** Parse the `ipam` section of a network config (pure). */
export function parseHostLocalConf(conf: JsonObject, network: string, cniArgs = new Map<string, string>()): HostLocalConf {
  const ipam = conf.ipam;
  if (!isObject(ipam)) throw bad('IPAM config missing \'ipam\' key');
  const rangeSetsRaw: JsonObject[][] = [];
  const ranges = optArray(ipam, 'ranges', 'ipam.');
  if (ranges) {
    ranges.forEach((set, i) => {
      if (!Array.isArray(set)) throw bad(`invalid config: ipam.ranges[${i}] must be an array of ranges`);
      rangeSetsRaw.push(
        set.map((r, j) => {
          if (!isObject(r)) throw bad(`invalid config: ipam.ranges[${i}][${j}] must be an object`);
          return r;
        }),
      );
    });
  }
  // The old single-range form (subnet/rangeStart/rangeEnd/gateway at the ipam level) becomes set 0.
  if (optString(ipam, 'subnet', 'ipam.')) {
    const legacy: JsonObject = {};
    for (const k of ['subnet', 'rangeStart', 'rangeEnd', 'gateway']) {
      const v = ipam[k];
      if (v !== undefined) legacy[k] = v;
    }
    rangeSetsRaw.unshift([legacy]);
  }
  if (rangeSetsRaw.length === 0) throw bad('no IP ranges specified');
  const rangeSets = rangeSetsRaw.map((set, i) => {
    if (set.length === 0) throw bad(`empty range set ${i}`);
    const out = set.map((r, j) => canonicalizeRange(r, `ipam.ranges[${i}][${j}].`));
    const family = out[0]!.subnet.ip.family;
    for (const r of out) if (r.subnet.ip.family !== family) throw bad(`range set ${i}: mixed address families`);
    for (let a = 0; a < out.length; a++) {
      for (let b = a + 1; b < out.length; b++) {
        if (rangesOverlap(out[a]!, out[b]!)) throw bad(`range set ${i}: ranges ${a} and ${b} overlap`);
      }
    }
    return out;
  });
  for (let a = 0; a < rangeSets.length; a++) {
    for (let b = a + 1; b < rangeSets.length; b++) {
      if (rangeSets[a]!.some((x) => rangeSets[b]!.some((y) => rangesOverlap(x, y)))) throw bad(`range set ${a} overlaps with ${b}`);
    }
  }
  const routesRaw = optArray(ipam, 'routes', 'ipam.') ?? [];
  const routes = routesRaw.map((r, i) => {
    const route = parseRoute(r, `ipam.routes[${i}]`);
    if (!parseIpNet(route.dst)) throw bad(`invalid config: ipam.routes[${i}].dst "${route.dst}" is not a CIDR`);
    if (route.gw !== undefined && !parseIp(route.gw)) throw bad(`invalid config: ipam.routes[${i}].gw "${route.gw}" is not an IP`);
    return route;
  });
  const dataDir = optString(ipam, 'dataDir', 'ipam.') || DEFAULT_DATA_DIR;
  if (!dataDir.startsWith('/')) throw bad('invalid config: ipam.dataDir must be an absolute path');
  return {
    network,
    dataDir,
    rangeSets,
    routes,
    resolvConf: optString(ipam, 'resolvConf', 'ipam.') || undefined,
    requestedIps: requestedIps(conf, cniArgs),
  };
}

/**
 * The reference RangeIter: candidate IPs of one range set in allocation order, starting after
 * `lastReserved` when it lies in the set, else at the first rangeStart; one full loop at most.
 */
export function* rangeSetIterator(set: RangeSet, lastReserved: Ip | undefined): Generator<{ ip: Ip; range: Range }> {
  let rangeIdx = 0;
  let cur: Ip | undefined;
  let startIp: Ip | undefined;
  if (lastReserved && rangeSetContains(set, lastReserved)) {
    rangeIdx = set.findIndex((r) => rangeContains(r, lastReserved));
    cur = lastReserved;
  } else {
    startIp = set[0]!.rangeStart;
  }
  for (;;) {
    let r = set[rangeIdx]!;
    if (cur === undefined) {
      cur = r.rangeStart;
      startIp = cur;
    } else {
      if (ipEqual(cur, r.rangeEnd)) {
        rangeIdx = (rangeIdx + 1) % set.length;
        r = set[rangeIdx]!;
        cur = r.rangeStart;
      } else {
        cur = nextIp(cur);
      }
      if (startIp === undefined) startIp = cur;
      else if (ipEqual(cur, startIp)) return;
    }
    if (ipEqual(cur, r.gateway)) continue;
    yield { ip: cur, range: r };
  }
}

function ipConfig(ip: Ip, range: Range): CniIpConfig {
  const out: CniIpConfig = { address: `${formatIp(ip)}/${range.subnet.prefix}` };
  if (range.gateway) out.gateway = formatIp(range.gateway);
  return out;
}

function rangeFor(set: RangeSet, ip: Ip): Range | undefined {
  return set.find((r) => rangeContains(r, ip));
}

/** Allocate one IP per range set for (containerId, ifName). */
export async function allocate(conf: HostLocalConf, containerId: string, ifName: string): Promise<CniIpConfig[]> {
  const store = new HostLocalStore(conf.dataDir, conf.network);
  return store.withLock(() => {
    const fresh: Ip[] = [];
    try {
      const held = store.getById(containerId, ifName);
      const requested = [...conf.requestedIps];
      return conf.rangeSets.map((set, i) => {
        const existing = held.find((ip) => rangeSetContains(set, ip));
        if (existing) return ipConfig(existing, rangeFor(set, existing)!);
        const reqIdx = requested.findIndex((ip) => rangeSetContains(set, ip));
        if (reqIdx >= 0) {
          const ip = requested.splice(reqIdx, 1)[0]!;
          if (!store.reserve(ip, containerId, ifName, i)) {
            throw new CniError(CniCode.Internal, `requested IP address ${formatIp(ip)} is not available in range set ${i}`);
          }
          fresh.push(ip);
          return ipConfig(ip, rangeFor(set, ip)!);
        }
        for (const { ip, range } of rangeSetIterator(set, store.lastReservedIp(i))) {
          if (store.reserve(ip, containerId, ifName, i)) {
            fresh.push(ip);
            return ipConfig(ip, range);
          }
        }
        throw new CniError(CniCode.Internal, `no IP addresses available in range set: ${describeSet(set)}`, {
          details: 'IPAM_EXHAUSTED',
        });
      }).concat(unmatchedRequested(requested));
    } catch (err) {
      for (const ip of fresh) store.release(ip);
      throw err;
    }
  });
}

function unmatchedRequested(rest: Ip[]): CniIpConfig[] {
  if (rest.length) throw new CniError(CniCode.Internal, `requested IP ${formatIp(rest[0]!)} is not in any range set`);
  return [];
}

function describeSet(set: RangeSet): string {
  return set.map((r) => `${formatIp(r.rangeStart)}-${formatIp(r.rangeEnd)}`).join(',');
}

export async function release(conf: HostLocalConf, containerId: string, ifName: string): Promise<Ip[]> {
  const store = new HostLocalStore(conf.dataDir, conf.network);
  return store.withLock(() => store.releaseById(containerId, ifName));
}

export interface Attachment {
  containerId: string;
  ifName: string;
}

/** Remove every allocation whose (container, ifname) is not in `valid`. */
export async function gc(conf: HostLocalConf, valid: Attachment[]): Promise<Ip[]> {
  const keep = new Set(valid.map((a) => `${a.containerId}\n${a.ifName}`));
  const store = new HostLocalStore(conf.dataDir, conf.network);
  return store.withLock(() => {
    const removed: Ip[] = [];
    for (const a of store.list()) {
      if (!keep.has(`${a.containerId}\n${a.ifName}`)) {
        store.release(a.ip);
        removed.push(a.ip);
      }
    }
    return removed;
  });
}

export function parseValidAttachments(conf: JsonObject): Attachment[] {
  const raw = optArray(conf, 'cni.dev/valid-attachments') ?? [];
  return raw.map((a, i) => {
    if (!isObject(a)) throw bad(`invalid config: cni.dev/valid-attachments[${i}] must be an object`);
    return { containerId: optString(a, 'containerID') ?? '', ifName: optString(a, 'ifname') ?? '' };
  });
}

/** resolv.conf → CNI DNS (nameserver, domain, search, options), as the reference parses it. */
export function parseResolvConf(text: string): CniDns {
  const dns: CniDns = {};
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    const [key, ...rest] = fields;
    if (!key || key.startsWith('#') || key.startsWith(';')) continue;
    if (key === 'nameserver' && rest[0]) (dns.nameservers ??= []).push(rest[0]);
    else if (key === 'domain' && rest[0]) dns.domain = rest[0];
    else if (key === 'search') dns.search = [...(dns.search ?? []), ...rest];
    else if (key === 'options') dns.options = [...(dns.options ?? []), ...rest];
  }
  return dns;
}

export async function hostLocalAdd(args: CmdArgs): Promise<CniResult> {
  const conf = parseHostLocalConf(args.conf, args.name, args.args);
  const ips = await allocate(conf, args.containerId, args.ifName);
  const result: CniResult = { cniVersion: args.cniVersion, ips, routes: conf.routes };
  if (conf.resolvConf) {
    try {
      result.dns = parseResolvConf(readFileSync(conf.resolvConf, 'utf8'));
    } catch (err) {
      await release(conf, args.containerId, args.ifName);
      throw new CniError(CniCode.Io, `cannot read resolvConf ${conf.resolvConf}`, { cause: err });
    }
  }
  args.log.debug('allocated', { ips: ips.map((i) => i.address) });
  return result;
}

export async function hostLocalDel(args: CmdArgs): Promise<void> {
  const conf = parseHostLocalConf(args.conf, args.name, args.args);
  const released = await release(conf, args.containerId, args.ifName);
  args.log.debug('released', { ips: released.map(formatIp) });
}

export async function hostLocalCheck(args: CmdArgs): Promise<void> {
  const conf = parseHostLocalConf(args.conf, args.name, args.args);
  const store = new HostLocalStore(conf.dataDir, conf.network);
  const held = await store.withLock(() => store.getById(args.containerId, args.ifName));
  for (const [i, set] of conf.rangeSets.entries()) {
    if (!held.some((ip) => rangeSetContains(set, ip))) {
      throw new CniError(CniCode.Internal, `host-local: Failed to find address added by container ${args.containerId} in range set ${i}`);
    }
  }
  for (const ipc of args.prevResult?.ips ?? []) {
    const net = parseIpNet(ipc.address);
    if (!net) continue;
    if (conf.rangeSets.some((s) => rangeSetContains(s, net.ip)) && !held.some((h) => ipEqual(h, net.ip))) {
      throw new CniError(CniCode.Internal, `host-local: ${ipc.address} of prevResult is not allocated to ${args.containerId}`);
    }
  }
}

export async function hostLocalGc(args: CmdArgs): Promise<void> {
  const conf = parseHostLocalConf(args.conf, args.name, args.args);
  const removed = await gc(conf, parseValidAttachments(args.conf));
  args.log.debug('gc', { removed: removed.map(formatIp) });
}

export const hostLocalPlugin: CniPlugin = {
  name: 'knode-host-local',
  add: hostLocalAdd,
  del: hostLocalDel,
  check: hostLocalCheck,
  gc: hostLocalGc,
  status: async () => undefined,
};

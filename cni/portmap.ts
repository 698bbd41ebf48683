/**
 * knode-portmap: the reference portmap plugin (containernetworking/plugins plugins/meta/portmap,
 * iptables backend) — same config keys, same nat chains, same chain names and rule texts, so
 * either implementation can tear down what the other set up:
 *   PREROUTING, OUTPUT:   -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
 *   CNI-HOSTPORT-DNAT:    -m comment --comment 'dnat name: "<net>" id: "<id>"' -m multiport
 *                         -p <proto> --destination-ports <h1,h2,…> [conditionsV4/V6] -j CNI-DN-<hash>
 *   CNI-DN-<hash>:        per mapping: -p P --dport H [-d hostIP] -s <pod CIDR> -j CNI-HOSTPORT-SETMARK
 *                                      -p P --dport H [-d hostIP] -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK (v4)
 *                                      -p P --dport H [-d hostIP] -j DNAT --to-destination IP:C
 *   CNI-HOSTPORT-SETMARK: -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark M/M
 *   POSTROUTING (first):  -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
 *   CNI-HOSTPORT-MASQ:    -m mark --mark M/M -j MASQUERADE
 * with M = 1 << markMasqBit (default 13) and <hash> the first 21 hex digits of
 * sha512(network name + container ID) (utils.MustFormatChainNameWithPrefix, 28 characters).
 *
 * Design notes
 * - Rendering is pure (`renderPortmap`, unit-tested); `forwardPorts`/`unforwardPorts` apply it
 *   with iptables/ip6tables -w in the namespace the plugin runs in.
 * - ADD flushes and refills the container chain (a retried ADD never duplicates rules) and adds
 *   the shared chains and jumps only when `-C` says they are missing.
 * - DEL does not need prevResult, runtimeConfig or the netns: per family it lists
 *   CNI-HOSTPORT-DNAT only (never the whole nat table, which kube-proxy makes large), deletes
 *   every rule jumping to the container's chain (by its spec, as listed), then flushes and
 *   deletes the chain. Unlike the reference it does this even when the DEL config has no
 *   portMappings, so rules never leak when a runtime omits runtimeConfig on DEL. The pre-0.7
 *   CNI-SN-<hash> chains (CNI-HOSTPORT-SNAT) that the reference still looks for are not.
 * - CHECK fails when the chain or one of its rules is missing (the reference silently passes
 *   when the chain is missing).
 * - GC (spec 1.1, not in the reference 1.1.1) removes the chains of this network's containers
 *   that are not in cni.dev/valid-attachments, found by the jump rules' comments.
 * - A mapping with no protocol means tcp (the reference would hand iptables an empty -p).
 * - After ADD, conntrack entries of UDP traffic to a mapped hostPort are deleted (as the
 *   reference does, after the rules are in): an entry made before the mapping existed would keep
 *   steering that "connection" past the new DNAT. Through the `conntrack` tool (conntrack-tools,
 *   an install-node package; the reference uses netlink conntrack), in the plugin's namespace;
 *   failures are logged, never fatal (informative only, as in the reference).
 */
import { createHash } from 'node:crypto';
import { execFile } from '../lib/exec.js';
import { Rtnl, getLinkByIndex, listRoutes, writeSysctl } from '../lib/netlink/index.js';
import { contains, formatIp, formatIpNet, parseIp, parseIpNet } from '../lib/netlink/ip.js';
import type { Family, IpNet } from '../lib/netlink/ip.js';
import type { CmdArgs, CniPlugin } from './skel.js';
import { CniCode, CniError, isObject, optArray, optBool, optInt, optString } from './types.js';
import type { CniResult, JsonObject } from './types.js';

export const TOP_LEVEL_DNAT_CHAIN = 'CNI-HOSTPORT-DNAT';
export const SETMARK_CHAIN = 'CNI-HOSTPORT-SETMARK';
export const MASQ_CHAIN = 'CNI-HOSTPORT-MASQ';
export const DEFAULT_MARK_BIT = 13;
const MAX_CHAIN_LENGTH = 28;

/** utils.MustFormatChainNameWithPrefix: "CNI-" + prefix + hex(sha512(name + id)), 28 chars. */
export function formatChainName(network: string, containerId: string, prefix = ''): string {
  return ('CNI-' + prefix + createHash('sha512').update(network + containerId).digest('hex')).slice(0, MAX_CHAIN_LENGTH);
}

export function dnatChainName(network: string, containerId: string): string {
  return formatChainName(network, containerId, 'DN-');
}

/** The reference trimComment: iptables comments are at most 255 bytes. */
function trimComment(s: string): string {
  return s.length <= 255 ? s : s.slice(0, 253) + '...';
}

export function dnatComment(network: string, containerId: string): string {
  // Go's %s inside literal quotes (not %q): names are validated, so no escaping is needed.
  return trimComment(`dnat name: "${network}" id: "${containerId}"`);
}

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: string;
  hostIP: string;
}

export interface PortmapConf {
  snat: boolean;
  markMasqBit: number;
  externalSetMarkChain: string | undefined;
  masqAll: boolean;
  conditionsV4: string[] | undefined;
  conditionsV6: string[] | undefined;
  mappings: PortMapping[];
}

function stringList(conf: JsonObject, key: string): string[] | undefined {
  const arr = optArray(conf, key);
  if (!arr) return undefined;
  return arr.map((v) => {
    if (typeof v !== 'string') throw new CniError(CniCode.InvalidConfig, `invalid config: ${key} must be an array of strings`);
    return v;
  });
}

const chainNameRe = /^[A-Za-z0-9_.-]{1,28}$/;

/**
 * A port mapping with Go's JSON key matching: containerd 1.6 (go-cni) sends its PortMapping
 * struct without json tags ({"HostPort":…,"ContainerPort":…,"Protocol":…,"HostIP":…}) and the
 * reference plugin still reads it, because encoding/json matches keys case-insensitively (an
 * exact match first). Pure.
 */
export function goJsonKeys(raw: JsonObject, keys: readonly string[]): JsonObject {
  const out: JsonObject = {};
  for (const key of keys) {
    if (Object.prototype.hasOwnProperty.call(raw, key)) {
      out[key] = raw[key]!;
      continue;
    }
    const other = Object.keys(raw).find((k) => k.toLowerCase() === key.toLowerCase());
    if (other !== undefined) out[key] = raw[other]!;
  }
  return out;
}

/** Parse and validate the plugin's config (pure). */
export function parsePortmapConf(conf: JsonObject): PortmapConf {
  const markBitGiven = conf.markMasqBit !== undefined && conf.markMasqBit !== null;
  const externalSetMarkChain = optString(conf, 'externalSetMarkChain');
  if (markBitGiven && externalSetMarkChain !== undefined) {
    throw new CniError(CniCode.InvalidConfig, 'Cannot specify externalSetMarkChain and markMasqBit');
  }
  if (externalSetMarkChain !== undefined && !chainNameRe.test(externalSetMarkChain)) {
    throw new CniError(CniCode.InvalidConfig, `invalid externalSetMarkChain "${externalSetMarkChain}"`);
  }
  const markMasqBit = optInt(conf, 'markMasqBit', '', -(2 ** 31), 2 ** 31 - 1) ?? DEFAULT_MARK_BIT;
  if (markMasqBit < 0 || markMasqBit > 31) throw new CniError(CniCode.InvalidConfig, 'MasqMarkBit must be between 0 and 31');
  const mappings: PortMapping[] = [];
  const rc = conf.runtimeConfig;
  if (rc !== undefined && rc !== null) {
    if (!isObject(rc)) throw new CniError(CniCode.InvalidConfig, 'invalid config: runtimeConfig must be an object');
    const list = optArray(rc, 'portMappings', 'runtimeConfig.') ?? [];
    list.forEach((given, i) => {
      const ctx = `runtimeConfig.portMappings[${i}].`;
      if (!isObject(given)) throw new CniError(CniCode.InvalidConfig, `invalid config: ${ctx.slice(0, -1)} must be an object`);
      const raw = goJsonKeys(given, ['hostPort', 'containerPort', 'protocol', 'hostIP']);
      const containerPort = optInt(raw, 'containerPort', ctx, -(2 ** 31), 2 ** 31 - 1) ?? 0;
      const hostPort = optInt(raw, 'hostPort', ctx, -(2 ** 31), 2 ** 31 - 1) ?? 0;
      if (containerPort <= 0 || containerPort > 65535) throw new CniError(CniCode.InvalidConfig, `Invalid container port number: ${containerPort}`);
      if (hostPort <= 0 || hostPort > 65535) throw new CniError(CniCode.InvalidConfig, `Invalid host port number: ${hostPort}`);
      const protocol = (optString(raw, 'protocol', ctx) || 'tcp').toLowerCase();
      if (!/^(tcp|udp|sctp)$/.test(protocol)) throw new CniError(CniCode.InvalidConfig, `invalid protocol "${protocol}"`);
      const hostIP = optString(raw, 'hostIP', ctx) ?? '';
      if (hostIP !== '' && !parseIp(hostIP)) throw new CniError(CniCode.InvalidConfig, `invalid hostIP "${hostIP}"`);
      mappings.push({ hostPort, containerPort, protocol, hostIP });
    });
  }
  return {
    snat: optBool(conf, 'snat') ?? true,
    markMasqBit,
    externalSetMarkChain,
    masqAll: optBool(conf, 'masqAll') ?? false,
    conditionsV4: stringList(conf, 'conditionsV4'),
    conditionsV6: stringList(conf, 'conditionsV6'),
    mappings,
  };
}

/** The reference parseConfig's choice: the first IPv4 and IPv6 address of the container interface. */
export function containerAddresses(prev: CniResult, ifName: string): IpNet[] {
  const out: IpNet[] = [];
  const ifaces = prev.interfaces ?? [];
  for (const ip of prev.ips ?? []) {
    const idx = ip.interface;
    if (idx !== undefined && idx >= 0 && idx < ifaces.length) {
      const iface = ifaces[idx]!;
      if (iface.name !== ifName || !iface.sandbox) continue;
    }
    const net = parseIpNet(ip.address);
    if (!net) throw new CniError(CniCode.InvalidConfig, `prevResult has an invalid address "${ip.address}"`);
    if (out.some((o) => o.ip.family === net.ip.family)) continue;
    out.push(net);
  }
  return out;
}

/** A chain with its rules and the rules that jump to it, as the reference `chain` type. */
export interface ChainSpec {
  name: string;
  /** Rules of the chain, as iptables arguments after `-A <name>`. */
  rules: string[][];
  /** Chains the entry rules go into. */
  entryChains: string[];
  /** Entry rules without the trailing `-j <name>`. */
  entryRules: string[][];
  /** Entry rules are inserted first instead of appended. */
  prependEntry: boolean;
}

function markDef(bit: number): string {
  const v = (1 << bit) >>> 0;
  return `0x${v.toString(16)}/0x${v.toString(16)}`;
}

export function setMarkChain(markBit: number): ChainSpec {
  return {
    name: SETMARK_CHAIN,
    rules: [['-m', 'comment', '--comment', 'CNI portfwd masquerade mark', '-j', 'MARK', '--set-xmark', markDef(markBit)]],
    entryChains: [],
    entryRules: [],
    prependEntry: false,
  };
}

export function masqChain(markBit: number): ChainSpec {
  return {
    name: MASQ_CHAIN,
    rules: [['-m', 'mark', '--mark', markDef(markBit), '-j', 'MASQUERADE']],
    entryChains: ['POSTROUTING'],
    entryRules: [['-m', 'comment', '--comment', 'CNI portfwd requiring masquerade']],
    prependEntry: true,
  };
}

export function topLevelDnatChain(): ChainSpec {
  return {
    name: TOP_LEVEL_DNAT_CHAIN,
    rules: [],
    entryChains: ['PREROUTING', 'OUTPUT'],
    entryRules: [['-m', 'addrtype', '--dst-type', 'LOCAL']],
    prependEntry: false,
  };
}

function splitPortList(ports: number[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < ports.length; i += 15) out.push(ports.slice(i, i + 15).join(','));
  return out;
}

function fmtIpPort(addr: IpNet, port: number): string {
  const ip = formatIp(addr.ip);
  return addr.ip.family === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** The reference genDnatChain + fillDnatRules for one container address (pure). */
export function dnatChain(conf: PortmapConf, network: string, containerId: string, addr: IpNet): ChainSpec {
  const isV6 = addr.ip.family === 6;
  const comment = dnatComment(network, containerId);
  const setMark = conf.externalSetMarkChain ?? SETMARK_CHAIN;
  const byProto = new Map<string, number[]>();
  for (const m of conf.mappings) {
    const list = byProto.get(m.protocol);
    if (list) list.push(m.hostPort);
    else byProto.set(m.protocol, [m.hostPort]);
  }
  const entryRules: string[][] = [];
  const conditions = isV6 ? conf.conditionsV6 : conf.conditionsV4;
  for (const proto of [...byProto.keys()].sort()) {
    for (const spec of splitPortList(byProto.get(proto)!)) {
      const r = ['-m', 'comment', '--comment', comment, '-m', 'multiport', '-p', proto, '--destination-ports', spec];
      if (conditions && conditions.length) r.push(...conditions);
      entryRules.push(r);
    }
  }
  const rules: string[][] = [];
  for (const m of conf.mappings) {
    let withDst = false;
    if (m.hostIP !== '') {
      const hostIp = parseIp(m.hostIP)!;
      if ((hostIp.family === 6) !== isV6) continue;
      withDst = hostIp.value !== 0n;
    }
    const base = ['-p', m.protocol, '--dport', String(m.hostPort)];
    if (withDst) base.push('-d', m.hostIP);
    if (conf.snat) {
      const masqCidr = conf.masqAll ? (isV6 ? '::/0' : '0.0.0.0/0') : formatIpNet(addr);
      rules.push([...base, '-s', masqCidr, '-j', setMark]);
      if (!isV6 && !conf.masqAll) rules.push([...base, '-s', '127.0.0.1', '-j', setMark]);
    }
    rules.push([...base, '-j', 'DNAT', '--to-destination', fmtIpPort(addr, m.containerPort)]);
  }
  return { name: dnatChainName(network, containerId), rules, entryChains: [TOP_LEVEL_DNAT_CHAIN], entryRules, prependEntry: false };
}

/** Everything ADD applies for one container address, in order (pure). */
export function renderPortmap(conf: PortmapConf, network: string, containerId: string, addr: IpNet): ChainSpec[] {
  const out: ChainSpec[] = [];
  if (conf.snat && conf.externalSetMarkChain === undefined) out.push(setMarkChain(conf.markMasqBit), masqChain(conf.markMasqBit));
  out.push(topLevelDnatChain(), dnatChain(conf, network, containerId, addr));
  return out;
}

// ---- applying ---------------------------------------------------------------------------------

function binary(family: Family): string {
  return family === 4 ? 'iptables' : 'ip6tables';
}

async function ipt(family: Family, args: string[], allowFailure = false): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    return await execFile(binary(family), ['-w', '5', '-t', 'nat', ...args], { allowFailure });
  } catch (err) {
    throw new CniError(CniCode.Internal, `${binary(family)} ${args.join(' ')} failed`, { cause: err, details: err instanceof Error ? err.message : String(err) });
  }
}

/** The reference chain.setup: ensure the chain, add missing rules, add missing entry jumps. */
async function setupChain(family: Family, c: ChainSpec, flush: boolean): Promise<void> {
  const created = await ipt(family, ['-N', c.name], true);
  if (created.code !== 0 && flush) await ipt(family, ['-F', c.name]);
  for (const rule of c.rules) {
    if (!flush && created.code !== 0 && (await ipt(family, ['-C', c.name, ...rule], true)).code === 0) continue;
    await ipt(family, ['-A', c.name, ...rule]);
  }
  for (const entryChain of c.entryChains) {
    for (const entry of c.entryRules) {
      const rule = [...entry, '-j', c.name];
      if ((await ipt(family, ['-C', entryChain, ...rule], true)).code === 0) continue;
      await ipt(family, c.prependEntry ? ['-I', entryChain, '1', ...rule] : ['-A', entryChain, ...rule]);
    }
  }
}

/** The host interface that routes the container's address (reference getRoutableHostIF). */
async function routableHostIf(addr: IpNet): Promise<string | undefined> {
  const nl = Rtnl.open();
  try {
    const routes = (await listRoutes(nl, { family: 4 })).filter((r) => r.oif !== undefined && contains(r.dst, addr.ip));
    routes.sort((a, b) => b.dst.prefix - a.dst.prefix);
    const best = routes[0];
    if (!best || best.oif === undefined) return undefined;
    return (await getLinkByIndex(nl, best.oif))?.name;
  } finally {
    nl.close();
  }
}

export async function forwardPorts(conf: PortmapConf, network: string, containerId: string, addr: IpNet, log: CmdArgs['log']): Promise<void> {
  const family = addr.ip.family;
  if (conf.snat && family === 4) {
    // Let 127/8 cross a routing boundary, so localhost:hostPort reaches the pod.
    try {
      const ifName = await routableHostIf(addr);
      if (ifName) writeSysctl(`net/ipv4/conf/${ifName}/route_localnet`, '1');
    } catch (err) {
      throw new CniError(CniCode.Internal, `unable to enable route_localnet: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
  for (const c of renderPortmap(conf, network, containerId, addr)) {
    const perContainer = c.name.startsWith('CNI-DN-');
    try {
      await setupChain(family, c, perContainer);
    } catch (err) {
      log.debug('chain setup failed', { chain: c.name, err });
      throw err instanceof CniError ? err : new CniError(CniCode.Internal, `unable to set up chain ${c.name}`, { cause: err });
    }
  }
}

/** Split one `iptables -S` line into words (double quotes, backslash escapes inside them). */
export function splitRuleLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '\\' && i + 1 < line.length) {
        cur += line[++i];
      } else if (ch === '"') {
        quoted = false;
      } else {
        cur += ch;
      }
      continue;
    }
    if (ch === '"') {
      quoted = true;
      inWord = true;
    } else if (ch === ' ' || ch === '\t') {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

export interface TeardownPlan {
  /** Rules to delete, as arguments after `-D` (chain first). */
  deletes: string[][];
  /** Chains to flush and delete. */
  chains: string[];
}

/** From `iptables -t nat -S`: what removing `chains` takes (pure). */
export function planTeardown(listing: string, chains: readonly string[]): TeardownPlan {
  const deletes: string[][] = [];
  const present = new Set<string>();
  for (const line of listing.split('\n')) {
    const words = splitRuleLine(line.trim());
    if (words[0] === '-N' && words[1] && chains.includes(words[1])) present.add(words[1]);
    if (words[0] !== '-A' || words.length < 4) continue;
    const target = words[words.length - 1]!;
    if (words[words.length - 2] === '-j' && chains.includes(target) && !chains.includes(words[1]!)) deletes.push(words.slice(1));
  }
  return { deletes, chains: chains.filter((c) => present.has(c)) };
}

export async function unforwardPorts(network: string, containerId: string): Promise<void> {
  const chain = dnatChainName(network, containerId);
  let usable = 0;
  for (const family of [4, 6] as const) {
    let listed: { code: number; stdout: string };
    try {
      listed = await ipt(family, ['-S', TOP_LEVEL_DNAT_CHAIN], true);
    } catch {
      continue; // no such binary
    }
    if (listed.code === 0) {
      for (const rule of planTeardown(listed.stdout, [chain]).deletes) await ipt(family, ['-D', ...rule], true);
    } else if ((await ipt(family, ['-S', 'OUTPUT'], true)).code !== 0) {
      continue; // no nat table for this family
    }
    usable++;
    // The chain may exist without a jump (an ADD cut short): flush and delete it regardless.
    if ((await ipt(family, ['-F', chain], true)).code !== 0) continue; // no such chain
    const del = await ipt(family, ['-X', chain], true);
    if (del.code !== 0 && (await ipt(family, ['-S', chain], true)).code === 0) {
      throw new CniError(CniCode.Internal, `could not delete chain ${chain}: ${del.stderr.trim()}`);
    }
  }
  if (usable === 0) throw new CniError(CniCode.Internal, 'neither iptables nor ip6tables usable');
}

async function checkPorts(conf: PortmapConf, network: string, containerId: string, addr: IpNet): Promise<void> {
  const family = addr.ip.family;
  const c = dnatChain(conf, network, containerId, addr);
  const listed = await ipt(family, ['-S', c.name], true);
  if (listed.code !== 0) throw new CniError(CniCode.Internal, `chain ${c.name} not found in iptables table nat`);
  for (const rule of c.rules) {
    if ((await ipt(family, ['-C', c.name, ...rule], true)).code !== 0) {
      throw new CniError(CniCode.Internal, `rule ${rule.join(' ')} in chain ${c.name} not found in table nat`);
    }
  }
  for (const entry of c.entryRules) {
    if ((await ipt(family, ['-C', TOP_LEVEL_DNAT_CHAIN, ...entry, '-j', c.name], true)).code !== 0) {
      throw new CniError(CniCode.Internal, `the jump to ${c.name} is missing from ${TOP_LEVEL_DNAT_CHAIN}`);
    }
  }
}

function requirePrev(args: CmdArgs): CniResult {
  if (!args.prevResult) throw new CniError(CniCode.InvalidConfig, 'must be called as chained plugin');
  return args.prevResult;
}

/** Container IDs of `network` that have a jump in CNI-HOSTPORT-DNAT, from `iptables -t nat -S` (pure). */
export function mappedContainers(listing: string, network: string): string[] {
  const out = new Set<string>();
  for (const line of listing.split('\n')) {
    const words = splitRuleLine(line.trim());
    if (words[0] !== '-A' || words[1] !== TOP_LEVEL_DNAT_CHAIN) continue;
    const at = words.indexOf('--comment');
    const m = at >= 0 ? /^dnat name: "(.*)" id: "(.*)"$/.exec(words[at + 1] ?? '') : null;
    if (m && m[1] === network && m[2]) out.add(m[2]);
  }
  return [...out];
}

/**
 * GC (spec 1.1; the reference 1.1.1 has none): tear down the chains of every container of this
 * network that has a CNI-HOSTPORT-DNAT jump but is not in cni.dev/valid-attachments. A chain whose
 * jump was never added (ADD killed in between) carries no owner and is left alone.
 */
async function gc(args: CmdArgs): Promise<void> {
  const raw = optArray(args.conf, 'cni.dev/valid-attachments') ?? [];
  const valid = new Set<string>();
  raw.forEach((a, i) => {
    if (!isObject(a)) throw new CniError(CniCode.InvalidConfig, `invalid config: cni.dev/valid-attachments[${i}] must be an object`);
    const id = optString(a, 'containerID');
    if (id) valid.add(id);
  });
  const stale = new Set<string>();
  for (const family of [4, 6] as const) {
    let listed: { code: number; stdout: string };
    try {
      listed = await ipt(family, ['-S', TOP_LEVEL_DNAT_CHAIN], true);
    } catch {
      continue;
    }
    if (listed.code !== 0) continue;
    for (const id of mappedContainers(listed.stdout, args.name)) if (!valid.has(id)) stale.add(id);
  }
  for (const id of stale) {
    args.log.debug('gc: removing port mappings', { containerId: id });
    await unforwardPorts(args.name, id);
  }
}

/** The `conntrack` arguments that delete UDP entries to the mapped host ports (pure). */
export function staleUdpConntrackDeletes(mappings: readonly PortMapping[], family: Family): string[][] {
  const ports = [...new Set(mappings.filter((m) => m.protocol === 'udp').map((m) => m.hostPort))];
  return ports.map((port) => ['-D', '-f', family === 6 ? 'ipv6' : 'ipv4', '-p', 'udp', '--orig-port-dst', String(port)]);
}

async function deleteStaleUdpConntrack(mappings: readonly PortMapping[], family: Family, log: CmdArgs['log']): Promise<void> {
  for (const argv of staleUdpConntrackDeletes(mappings, family)) {
    try {
      const r = await execFile('conntrack', argv, { allowFailure: true, timeoutMs: 10_000 });
      // Exit 1 with "0 flow entries have been deleted" is the common case: nothing stale.
      if (r.code !== 0 && !/\b0 flow entries/.test(r.stderr)) log.warn('cannot delete stale UDP conntrack entries', { args: argv.join(' '), stderr: r.stderr.trim() });
    } catch (err) {
      log.warn('cannot delete stale UDP conntrack entries', { args: argv.join(' '), err });
    }
  }
}

async function add(args: CmdArgs): Promise<CniResult> {
  const conf = parsePortmapConf(args.conf);
  const prev = requirePrev(args);
  if (conf.mappings.length === 0) return prev;
  const addrs = containerAddresses(prev, args.ifName);
  for (const addr of addrs) {
    await forwardPorts(conf, args.name, args.containerId, addr, args.log);
  }
  for (const family of new Set(addrs.map((a) => a.ip.family))) await deleteStaleUdpConntrack(conf.mappings, family, args.log);
  return prev;
}

async function del(args: CmdArgs): Promise<void> {
  parsePortmapConf(args.conf);
  await unforwardPorts(args.name, args.containerId);
}

async function check(args: CmdArgs): Promise<void> {
  const conf = parsePortmapConf(args.conf);
  const prev = requirePrev(args);
  if (conf.mappings.length === 0) return;
  for (const addr of containerAddresses(prev, args.ifName)) await checkPorts(conf, args.name, args.containerId, addr);
}

export const portmapPlugin: CniPlugin = {
  name: 'knode-portmap',
  add,
  del,
  check,
  gc,
  status: async () => undefined,
};

/**
 * iptables renderer: ProxyState → one iptables-restore text, the same chains, rules, order and
 * comments as kube-proxy's iptables proxier (pkg/proxy/iptables/proxier.go, syncProxyRules).
 *
 * Design notes
 * - Pure: no I/O, no clock. The port (apply.ts) feeds it what it learnt from the kernel
 *   (existing chains, jump rules already present) and loads the text with
 *   `iptables-restore -w 5 --noflush --counters` in one transaction.
 * - `--noflush` leaves chains that the text does not name alone; a `:CHAIN - [0:0]` line
 *   creates or *flushes* a chain. So a full sync names every chain; a partial sync names the
 *   top-level chains (always rewritten: KUBE-SERVICES etc. are cheap and order-sensitive) plus
 *   the SVC/SVL/EXT/FW/SEP chains of changed services only — unchanged services' chains stay as
 *   the kernel has them. Stale service chains are named (flushed) and then deleted with `-X`.
 * - Jump rules from the built-in chains (PREROUTING → KUBE-SERVICES …) cannot be owned by a
 *   restore without flushing the built-in chains; upstream ensures them with separate iptables
 *   calls. Here the port passes the missing ones and they are inserted (`-I`) in the same text.
 * - A family loop: options carry the family; nothing IPv4-only except the 127.0.0.0/8 bits.
 */
import type { CategorizedEndpoints, Endpoint, IPFamily, ProxyState, ServicePort } from '../../model.js';
import { trafficPolicyPlan } from '../../model.js';
import { endpointHash, portProtoHash } from '../../names.js';

export const KUBE_SERVICES = 'KUBE-SERVICES';
export const KUBE_EXTERNAL_SERVICES = 'KUBE-EXTERNAL-SERVICES';
export const KUBE_NODEPORTS = 'KUBE-NODEPORTS';
export const KUBE_POSTROUTING = 'KUBE-POSTROUTING';
export const KUBE_MARK_MASQ = 'KUBE-MARK-MASQ';
export const KUBE_FORWARD = 'KUBE-FORWARD';
export const KUBE_PROXY_FIREWALL = 'KUBE-PROXY-FIREWALL';
export const KUBELET_FIREWALL = 'KUBE-FIREWALL';
export const KUBE_PROXY_CANARY = 'KUBE-PROXY-CANARY';

export const SERVICE_CHAIN_PREFIXES = ['KUBE-SVC-', 'KUBE-SVL-', 'KUBE-EXT-', 'KUBE-FW-', 'KUBE-SEP-'] as const;

export function isServiceChain(chain: string): boolean {
  return SERVICE_CHAIN_PREFIXES.some((p) => chain.startsWith(p));
}

export interface IptablesRenderOptions {
  family: IPFamily;
  /** Bit of the packet mark used for "needs SNAT" (kube-proxy --iptables-masquerade-bit, default 14). */
  masqueradeBit: number;
  masqueradeAll: boolean;
  /** --cluster-cidr: traffic to a ClusterIP from outside it is masqueraded (upstream LocalTrafficDetector). */
  clusterCIDR?: string;
  /** --nodeport-addresses resolved to node IPs; empty = every local address (addrtype LOCAL). */
  nodePortIPs?: readonly string[];
  /** Node IPs, for loadBalancerSourceRanges that contain the node. */
  nodeIPs?: readonly string[];
  /** NodePorts on 127.0.0.0/8 (needs route_localnet=1); knode defaults to false. */
  localhostNodePorts?: boolean;
  /** nf_conntrack_tcp_be_liberal is set: no INVALID drop rule. */
  conntrackTCPLiberal?: boolean;
  /** MASQUERADE --random-fully (iptables ≥ 1.6.2, kernel ≥ 3.13); default true. */
  randomFully?: boolean;
}

export interface JumpRule {
  table: 'filter' | 'nat';
  /** Built-in chain the jump is in. */
  from: string;
  /** Our chain. */
  to: string;
  comment: string;
  extra: readonly string[];
}

const NEW = ['-m', 'conntrack', '--ctstate', 'NEW'] as const;

/** Upstream iptablesJumpChains, in upstream order (each is inserted at position 1). */
export const JUMP_RULES: readonly JumpRule[] = [
  { table: 'filter', from: 'INPUT', to: KUBE_EXTERNAL_SERVICES, comment: 'kubernetes externally-visible service portals', extra: NEW },
  { table: 'filter', from: 'FORWARD', to: KUBE_EXTERNAL_SERVICES, comment: 'kubernetes externally-visible service portals', extra: NEW },
  { table: 'filter', from: 'INPUT', to: KUBE_NODEPORTS, comment: 'kubernetes health check service ports', extra: [] },
  { table: 'filter', from: 'FORWARD', to: KUBE_SERVICES, comment: 'kubernetes service portals', extra: NEW },
  { table: 'filter', from: 'OUTPUT', to: KUBE_SERVICES, comment: 'kubernetes service portals', extra: NEW },
  { table: 'filter', from: 'FORWARD', to: KUBE_FORWARD, comment: 'kubernetes forwarding rules', extra: [] },
  { table: 'filter', from: 'INPUT', to: KUBE_PROXY_FIREWALL, comment: 'kubernetes load balancer firewall', extra: NEW },
  { table: 'filter', from: 'OUTPUT', to: KUBE_PROXY_FIREWALL, comment: 'kubernetes load balancer firewall', extra: NEW },
  { table: 'filter', from: 'FORWARD', to: KUBE_PROXY_FIREWALL, comment: 'kubernetes load balancer firewall', extra: NEW },
  { table: 'nat', from: 'OUTPUT', to: KUBE_SERVICES, comment: 'kubernetes service portals', extra: [] },
  { table: 'nat', from: 'PREROUTING', to: KUBE_SERVICES, comment: 'kubernetes service portals', extra: [] },
  { table: 'nat', from: 'POSTROUTING', to: KUBE_POSTROUTING, comment: 'kubernetes postrouting rules', extra: [] },
];

/** The rule text of a jump as iptables-save prints it, without the leading "-A CHAIN". */
export function jumpRuleSpec(j: JumpRule): string {
  return [...j.extra, '-m', 'comment', '--comment', `"${j.comment}"`, '-j', j.to].join(' ');
}

export interface IptablesSyncInput {
  full: boolean;
  /** Services ("ns/name") whose rules must be rewritten in a partial sync. */
  changed: ReadonlySet<string>;
  /** Full sync: the nat chains that exist now (iptables-save); stale service chains are deleted. */
  existingNatChains?: ReadonlySet<string>;
  /** Partial sync: the chains each service used after the last successful sync. */
  prevChainsByService?: ReadonlyMap<string, readonly string[]>;
  /** Jump rules not present in the kernel yet (inserted at the top of their built-in chain). */
  missingJumps?: readonly JumpRule[];
}

export interface IptablesRenderResult {
  text: string;
  /** Per service ("ns/name"): the per-service nat chains the ruleset uses (written or kept). */
  chainsByService: Map<string, string[]>;
  stats: {
    services: number;
    writtenServices: number;
    endpoints: number;
    filterRules: number;
    natRules: number;
    natChains: number;
    deletedChains: number;
  };
}

/** The four per-service-port chain names, hashed once per ServicePort object. */
export interface ServiceChains {
  svc: string;
  svl: string;
  ext: string;
  fw: string;
}
const chainCache = new WeakMap<ServicePort, ServiceChains>();
const sepCache = new WeakMap<Endpoint, string>();

export function serviceChains(sp: ServicePort): ServiceChains {
  let c = chainCache.get(sp);
  if (!c) {
    const h = portProtoHash(sp.key, sp.protocol.toLowerCase());
    c = { svc: `KUBE-SVC-${h}`, svl: `KUBE-SVL-${h}`, ext: `KUBE-EXT-${h}`, fw: `KUBE-FW-${h}` };
    chainCache.set(sp, c);
  }
  return c;
}

/** KUBE-SEP- chain of an endpoint of `sp` (endpoint objects belong to one service port). */
export function endpointChain(sp: ServicePort, ep: Endpoint): string {
  let c = sepCache.get(ep);
  if (!c) {
    c = `KUBE-SEP-${endpointHash(sp.key, sp.protocol.toLowerCase(), ep.key)}`;
    sepCache.set(ep, c);
  }
  return c;
}

const probCache: string[] = [];
/** 1/n with 10 decimals, as upstream's "%0.10f". */
export function probability(n: number): string {
  let p = probCache[n];
  if (p === undefined) {
    p = (1 / n).toFixed(10);
    if (n < 10_000) probCache[n] = p;
  }
  return p;
}

function chainLine(chain: string): string {
  return `:${chain} - [0:0]`;
}

/** One `-A` line; `parts` are already-quoted words. */
function q(s: string): string {
  return `"${s}"`;
}

/**
 * What one service port contributes, computed once per (ServicePort, endpoints, options)
 * objects: the tracker keeps unchanged ones by identity, so an unchanged service costs a
 * lookup in the next sync.
 */
interface PortPlan {
  /** Rules in the (always rewritten) top-level chains. */
  filter: string[];
  nat: string[];
  /** Per-service nat chains it uses. */
  chains: string[];
  eps: CategorizedEndpoints;
  f: {
    hasInternal: boolean;
    hasExternal: boolean;
    internalChain: string;
    externalPolicyChain: string;
    usesExtChain: boolean;
    usesFW: boolean;
    usesClusterChain: boolean;
    usesLocalChain: boolean;
  };
}
const planCache = new WeakMap<ServicePort, { eps: readonly Endpoint[] | undefined; opts: IptablesRenderOptions; plan: PortPlan }>();

function planPort(sp: ServicePort, endpoints: readonly Endpoint[] | undefined, opts: IptablesRenderOptions): PortPlan {
  const cached = planCache.get(sp);
  if (cached && cached.eps === endpoints && cached.opts === opts) return cached.plan;
  const proto = sp.protocol.toLowerCase();
  const name = sp.key;
  const chains = serviceChains(sp);
  const { eps, hasEndpoints, usesClusterChain, usesLocalChain, internalChain, hasInternal, externalPolicyChain, hasExternal, usesExtChain } =
    trafficPolicyPlan(sp, endpoints ?? [], { cluster: chains.svc, local: chains.svl });
  const extChain = chains.ext;
  const usesFW = hasEndpoints && sp.loadBalancerIPs.length > 0 && sp.loadBalancerSourceRanges.length > 0;
  const lbChain = usesFW ? chains.fw : extChain;

  let internalFilterTarget = '';
  let internalFilterComment = '';
  let externalFilterTarget = '';
  let externalFilterComment = '';
  if (!hasEndpoints) {
    internalFilterTarget = externalFilterTarget = 'REJECT';
    internalFilterComment = externalFilterComment = q(`${name} has no endpoints`);
  } else {
    if (!hasInternal) {
      internalFilterTarget = 'DROP';
      internalFilterComment = q(`${name} has no local endpoints`);
    }
    if (!hasExternal) {
      externalFilterTarget = 'DROP';
      externalFilterComment = q(`${name} has no local endpoints`);
    }
  }
  const pp = `-m ${proto} -p ${proto}`;
  const port = String(sp.port);
  const filter: string[] = [];
  const nat: string[] = [];

  if (hasInternal) {
    nat.push(`-A ${KUBE_SERVICES} -m comment --comment ${q(`${name} cluster IP`)} ${pp} -d ${sp.clusterIP} --dport ${port} -j ${internalChain}`);
  } else {
    filter.push(`-A ${KUBE_SERVICES} -m comment --comment ${internalFilterComment} ${pp} -d ${sp.clusterIP} --dport ${port} -j ${internalFilterTarget}`);
  }
  for (const ip of sp.externalIPs) {
    if (hasEndpoints) nat.push(`-A ${KUBE_SERVICES} -m comment --comment ${q(`${name} external IP`)} ${pp} -d ${ip} --dport ${port} -j ${extChain}`);
    if (!hasExternal) {
      filter.push(`-A ${KUBE_EXTERNAL_SERVICES} -m comment --comment ${externalFilterComment} ${pp} -d ${ip} --dport ${port} -j ${externalFilterTarget}`);
    }
  }
  for (const ip of sp.loadBalancerIPs) {
    if (hasEndpoints) nat.push(`-A ${KUBE_SERVICES} -m comment --comment ${q(`${name} loadbalancer IP`)} ${pp} -d ${ip} --dport ${port} -j ${lbChain}`);
    if (usesFW) {
      filter.push(`-A ${KUBE_PROXY_FIREWALL} -m comment --comment ${q(`${name} traffic not accepted by ${chains.fw}`)} ${pp} -d ${ip} --dport ${port} -j DROP`);
    }
  }
  if (!hasExternal) {
    for (const ip of sp.loadBalancerIPs) {
      filter.push(`-A ${KUBE_EXTERNAL_SERVICES} -m comment --comment ${externalFilterComment} ${pp} -d ${ip} --dport ${port} -j ${externalFilterTarget}`);
    }
  }
  if (sp.nodePort !== 0) {
    if (hasEndpoints) nat.push(`-A ${KUBE_NODEPORTS} -m comment --comment ${name} ${pp} --dport ${sp.nodePort} -j ${extChain}`);
    if (!hasExternal) {
      filter.push(
        `-A ${KUBE_EXTERNAL_SERVICES} -m comment --comment ${externalFilterComment} -m addrtype --dst-type LOCAL ${pp} --dport ${sp.nodePort} -j ${externalFilterTarget}`,
      );
    }
  }
  if (sp.healthCheckNodePort !== 0) {
    filter.push(`-A ${KUBE_NODEPORTS} -m comment --comment ${q(`${name} health check node port`)} -m tcp -p tcp --dport ${sp.healthCheckNodePort} -j ACCEPT`);
  }

  const used: string[] = [];
  if (usesExtChain) used.push(extChain);
  if (usesFW) used.push(chains.fw);
  if (usesClusterChain) used.push(chains.svc);
  if (usesLocalChain) used.push(chains.svl);
  for (const ep of eps.allReachable) used.push(endpointChain(sp, ep));

  const plan: PortPlan = {
    filter,
    nat,
    chains: used,
    eps,
    f: { hasInternal, hasExternal, internalChain, externalPolicyChain, usesExtChain, usesFW, usesClusterChain, usesLocalChain },
  };
  planCache.set(sp, { eps: endpoints, opts, plan });
  return plan;
}

/** The per-service chains of one service port: chain lines and their rules. */
function writePortChains(sp: ServicePort, plan: PortPlan, opts: IptablesRenderOptions, chainsOut: string[], rulesOut: string[]): void {
  const proto = sp.protocol.toLowerCase();
  const name = sp.key;
  const chains = serviceChains(sp);
  const { eps, f } = plan;
  const pp = `-m ${proto} -p ${proto}`;
  const ifLocal = opts.clusterCIDR ? `-s ${opts.clusterCIDR}` : undefined;
  const ifNotLocal = opts.clusterCIDR ? `! -s ${opts.clusterCIDR}` : undefined;

  if (f.hasInternal) {
    const match = `-m comment --comment ${q(`${name} cluster IP`)} ${pp} -d ${sp.clusterIP} --dport ${sp.port}`;
    if (opts.masqueradeAll) rulesOut.push(`-A ${f.internalChain} ${match} -j ${KUBE_MARK_MASQ}`);
    else if (ifNotLocal) rulesOut.push(`-A ${f.internalChain} ${match} ${ifNotLocal} -j ${KUBE_MARK_MASQ}`);
  }
  const extChain = chains.ext;
  if (f.usesExtChain) {
    chainsOut.push(chainLine(extChain));
    if (!sp.externalPolicyLocal) {
      rulesOut.push(`-A ${extChain} -m comment --comment ${q(`masquerade traffic for ${name} external destinations`)} -j ${KUBE_MARK_MASQ}`);
    } else {
      if (ifLocal) rulesOut.push(`-A ${extChain} -m comment --comment ${q(`pod traffic for ${name} external destinations`)} ${ifLocal} -j ${chains.svc}`);
      rulesOut.push(
        `-A ${extChain} -m comment --comment ${q(`masquerade LOCAL traffic for ${name} external destinations`)} -m addrtype --src-type LOCAL -j ${KUBE_MARK_MASQ}`,
      );
      rulesOut.push(
        `-A ${extChain} -m comment --comment ${q(`route LOCAL traffic for ${name} external destinations`)} -m addrtype --src-type LOCAL -j ${chains.svc}`,
      );
    }
    if (f.hasExternal) rulesOut.push(`-A ${extChain} -j ${f.externalPolicyChain}`);
  }
  if (f.usesFW) {
    chainsOut.push(chainLine(chains.fw));
    const head = `-A ${chains.fw} -m comment --comment ${q(`${name} loadbalancer IP`)}`;
    let allowFromNode = false;
    for (const cidr of sp.loadBalancerSourceRanges) {
      rulesOut.push(`${head} -s ${cidr} -j ${extChain}`);
      if ((opts.nodeIPs ?? []).some((ip) => cidrContains(cidr, ip))) allowFromNode = true;
    }
    if (allowFromNode) for (const ip of sp.loadBalancerIPs) rulesOut.push(`${head} -s ${ip} -j ${extChain}`);
    rulesOut.push(`-A ${chains.fw} -m comment --comment ${q(`other traffic to ${name} will be dropped by KUBE-PROXY-FIREWALL`)}`);
  }
  if (f.usesClusterChain) {
    chainsOut.push(chainLine(chains.svc));
    writeServiceToEndpoints(rulesOut, sp, chains.svc, eps.cluster);
  }
  if (f.usesLocalChain) {
    chainsOut.push(chainLine(chains.svl));
    writeServiceToEndpoints(rulesOut, sp, chains.svl, eps.local);
  }
  for (const ep of eps.allReachable) {
    const sep = endpointChain(sp, ep);
    chainsOut.push(chainLine(sep));
    rulesOut.push(`-A ${sep} -m comment --comment ${name} -s ${ep.ip} -j ${KUBE_MARK_MASQ}`);
    const affinity = sp.affinitySeconds > 0 ? ` -m recent --name ${sep} --set` : '';
    rulesOut.push(`-A ${sep} -m comment --comment ${name}${affinity} ${pp} -j DNAT --to-destination ${ep.key}`);
  }
}

export function renderIptables(state: ProxyState, opts: IptablesRenderOptions, input: IptablesSyncInput): IptablesRenderResult {
  const isV6 = opts.family === 'IPv6';
  const mark = `0x${(1 << opts.masqueradeBit).toString(16)}`;
  const markMask = `${mark}/${mark}`;
  const localhostNodePorts = !isV6 && (opts.localhostNodePorts ?? false);

  const filterChains: string[] = [];
  const filterRules: string[] = [];
  const natChains: string[] = [];
  const natRules: string[] = [];
  const chainsByService = new Map<string, string[]>();
  let writtenServices = 0;
  let endpointCount = 0;

  for (const c of [KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL]) {
    filterChains.push(chainLine(c));
  }
  for (const c of [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ]) natChains.push(chainLine(c));

  natRules.push(`-A ${KUBE_POSTROUTING} -m mark ! --mark ${markMask} -j RETURN`);
  natRules.push(`-A ${KUBE_POSTROUTING} -j MARK --xor-mark ${mark}`);
  natRules.push(`-A ${KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE${opts.randomFully === false ? '' : ' --random-fully'}`);
  natRules.push(`-A ${KUBE_MARK_MASQ} -j MARK --or-mark ${mark}`);

  if (localhostNodePorts) {
    filterChains.push(chainLine(KUBELET_FIREWALL));
    filterRules.push(
      `-A ${KUBELET_FIREWALL} -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`,
    );
  }

  // Deterministic order (upstream iterates a Go map; its tests sort).
  const keys = [...state.services.keys()].sort();
  for (const key of keys) {
    const sp = state.services.get(key)!;
    const plan = planPort(sp, state.endpoints.get(key), opts);
    for (const l of plan.filter) filterRules.push(l);
    for (const l of plan.nat) natRules.push(l);
    let list = chainsByService.get(sp.service);
    if (!list) chainsByService.set(sp.service, (list = []));
    for (const c of plan.chains) list.push(c);
    // Per-service chains: written only in a full sync or when the service changed.
    if (input.full || input.changed.has(sp.service)) {
      writtenServices++;
      endpointCount += plan.eps.allReachable.length;
      writePortChains(sp, plan, opts, natChains, natRules);
    }
  }

  // Stale service chains: flush (chain line) and delete. Full sync: everything the kernel has
  // that no service uses; partial: what the changed services used before and no longer do.
  const stale: string[] = [];
  if (input.full) {
    const active = new Set<string>();
    for (const list of chainsByService.values()) for (const c of list) active.add(c);
    for (const chain of input.existingNatChains ?? []) if (!active.has(chain) && isServiceChain(chain)) stale.push(chain);
  } else {
    for (const svc of input.changed) {
      const now = new Set(chainsByService.get(svc) ?? []);
      for (const chain of input.prevChainsByService?.get(svc) ?? []) if (!now.has(chain)) stale.push(chain);
    }
  }
  const deletes: string[] = [];
  for (const chain of stale.sort()) {
    natChains.push(chainLine(chain));
    deletes.push(`-X ${chain}`);
  }
  const deletedChains = deletes.length;

  // The NodePort catch-all: the last rule of KUBE-SERVICES.
  const npComment = `-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain"`;
  const nodePortIPs = opts.nodePortIPs ?? [];
  if (nodePortIPs.length === 0) {
    let dst = '-m addrtype --dst-type LOCAL';
    if (isV6) dst += ' ! -d ::1/128';
    else if (!localhostNodePorts) dst += ' ! -d 127.0.0.0/8';
    natRules.push(`-A ${KUBE_SERVICES} ${npComment} ${dst} -j ${KUBE_NODEPORTS}`);
  } else {
    for (const ip of nodePortIPs) {
      if ((ip.startsWith('127.') && !localhostNodePorts) || ip === '::1') continue;
      natRules.push(`-A ${KUBE_SERVICES} ${npComment} -d ${ip} -j ${KUBE_NODEPORTS}`);
    }
  }

  if (!opts.conntrackTCPLiberal) filterRules.push(`-A ${KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP`);
  filterRules.push(`-A ${KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" -m mark --mark ${markMask} -j ACCEPT`);
  filterRules.push(
    `-A ${KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
  );

  const jumps = input.missingJumps ?? [];
  const jumpLines = (table: 'filter' | 'nat'): string[] =>
    jumps.filter((j) => j.table === table).map((j) => `-I ${j.from} 1 ${jumpRuleSpec(j)}`);

  // The canary lives in mangle (and nat, where partial syncs depend on chains surviving).
  // Sections are joined separately: spreading 100k-line arrays into one call overflows the stack.
  const sections: string[][] = [
    ['*mangle', chainLine(KUBE_PROXY_CANARY), 'COMMIT'],
    ['*filter'],
    filterChains,
    jumpLines('filter'),
    filterRules,
    ['COMMIT', '*nat', chainLine(KUBE_PROXY_CANARY)],
    natChains,
    jumpLines('nat'),
    natRules,
    deletes,
    ['COMMIT'],
  ];
  return {
    text: sections.filter((s) => s.length > 0).map((s) => s.join('\n')).join('\n') + '\n',
    chainsByService,
    stats: {
      services: keys.length,
      writtenServices,
      endpoints: endpointCount,
      filterRules: filterRules.length,
      natRules: natRules.length,
      natChains: natChains.length,
      deletedChains,
    },
  };
}

function writeServiceToEndpoints(rules: string[], sp: ServicePort, chain: string, endpoints: readonly Endpoint[]): void {
  const name = sp.key;
  if (sp.affinitySeconds > 0) {
    for (const ep of endpoints) {
      const sep = endpointChain(sp, ep);
      rules.push(
        `-A ${chain} -m comment --comment ${q(`${name} -> ${ep.key}`)} -m recent --name ${sep} --rcheck --seconds ${sp.affinitySeconds} --reap -j ${sep}`,
      );
    }
  }
  const n = endpoints.length;
  endpoints.forEach((ep, i) => {
    const stat = i < n - 1 ? ` -m statistic --mode random --probability ${probability(n - i)}` : '';
    rules.push(`-A ${chain} -m comment --comment ${q(`${name} -> ${ep.key}`)}${stat} -j ${endpointChain(sp, ep)}`);
  });
}

/** IPv4/IPv6 CIDR membership, for loadBalancerSourceRanges vs node IPs. */
export function cidrContains(cidr: string, ip: string): boolean {
  const [base, bitsText] = cidr.split('/');
  if (base === undefined) return false;
  const a = ipToBigInt(base);
  const b = ipToBigInt(ip);
  if (a === undefined || b === undefined || a.v6 !== b.v6) return false;
  const width = a.v6 ? 128 : 32;
  const bits = bitsText === undefined ? width : Number(bitsText);
  const shift = BigInt(width - bits);
  return a.n >> shift === b.n >> shift;
}

function ipToBigInt(ip: string): { n: bigint; v6: boolean } | undefined {
  if (ip.includes(':')) {
    const [head = '', tail = ''] = ip.split('::');
    const h = head === '' ? [] : head.split(':');
    const t = ip.includes('::') ? (tail === '' ? [] : tail.split(':')) : [];
    const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
    if (groups.length !== 8) return undefined;
    let n = 0n;
    for (const g of groups) n = (n << 16n) | BigInt(parseInt(g || '0', 16));
    return { n, v6: true };
  }
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return undefined;
  return { n: BigInt(((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!), v6: false };
}

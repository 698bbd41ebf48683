/**
 * nftables renderer: ProxyState → one `nft -f` script for table `ip kube-proxy` (or `ip6`), the
 * shape of kube-proxy's nftables proxier (pkg/proxy/nftables/proxier.go): base chains per
 * hook, dispatch through verdict maps (`service-ips`, `service-nodeports`), "no endpoints"
 * handling through `no-endpoint-services` / `no-endpoint-nodeports` (reject or drop), per
 * service-port chains `service-<HASH>-ns/name/proto/port`, per endpoint chains
 * `endpoint-<HASH>-ns/name/proto/port__ip/port`, balancing with `numgen random mod N vmap`,
 * ClientIP affinity with dynamic timeout sets `affinity-…`.
 *
 * Design notes
 * - Pure. The backend passes what it knows about the kernel (existing service chains and
 *   affinity sets, chains flushed in an earlier sync that may now be deleted, the map elements
 *   the last successful sync left) and gets the script plus the new element state back.
 * - Full sync: (re)creates and flushes every chain we own, flushes the six sets/maps and adds
 *   every element. Partial sync: only the chains of changed services are flushed and
 *   rewritten, and map/set elements are diffed against the previous sync (add new, delete
 *   gone, delete+add changed), so one endpoint change costs a few lines at any scale.
 * - Stale service chains are flushed first and deleted in a later sync (kernels before 6.2
 *   notice an unreferenced chain only a little after its map element went away, as upstream).
 * - One transaction: `nft -f` applies all or nothing.
 * - Partial syncs are written so that nft (1.0.6, Debian 12) never fetches its cache: `add rule`,
 *   `add element`, `delete element`, `delete chain` and `delete set` make nft dump every chain and
 *   set of the namespace first (~0.5–1 s at 10k services, 110k chains), while `add chain`,
 *   `flush chain`, `add chain C { rule ; … }` and `add map M { … ; elements = { … } }` only need
 *   the table. So a partial sync writes rules as chain blocks and added elements as map blocks;
 *   only element deletions (a service or port gone, endpoints all gone/back) and stale chain
 *   deletions still pay the fetch, and the latter are batched (`deleteStaleNow`). Endpoint
 *   chains whose name and affinity are unchanged are not rewritten (their name encodes the
 *   service port, endpoint IP and port: their rules cannot differ).
 */
import type { CategorizedEndpoints, Endpoint, IPFamily, ProxyState, ServicePort } from '../../model.js';
import { trafficPolicyPlan } from '../../model.js';
import { cidrContains } from '../iptables/render.js';
import { hashName } from '../../names.js';

export const TABLE = 'kube-proxy';

const FILTER_PREROUTING = 'filter-prerouting';
const FILTER_INPUT = 'filter-input';
const FILTER_FORWARD = 'filter-forward';
const FILTER_OUTPUT = 'filter-output';
const FILTER_OUTPUT_POST_DNAT = 'filter-output-post-dnat';
const NAT_PREROUTING = 'nat-prerouting';
const NAT_OUTPUT = 'nat-output';
const NAT_POSTROUTING = 'nat-postrouting';
const SERVICES = 'services';
const SERVICE_IPS = 'service-ips';
const SERVICE_NODEPORTS = 'service-nodeports';
const NODEPORT_IPS = 'nodeport-ips';
const CLUSTER_IPS = 'cluster-ips';
const SERVICE_ENDPOINTS_CHECK = 'service-endpoints-check';
const NODEPORT_ENDPOINTS_CHECK = 'nodeport-endpoints-check';
const NO_ENDPOINT_SERVICES = 'no-endpoint-services';
const NO_ENDPOINT_NODEPORTS = 'no-endpoint-nodeports';
const REJECT_CHAIN = 'reject-chain';
const CLUSTER_IPS_CHECK = 'cluster-ips-check';
const FIREWALL_IPS = 'firewall-ips';
const FIREWALL_CHECK = 'firewall-check';
const MARK_MASQ = 'mark-for-masquerade';
const MASQUERADING = 'masquerading';

/** Base chains: name, type, hook, priority (dstnat = -100, srcnat = 100 for ip/ip6). */
const BASE_CHAINS: readonly [string, 'filter' | 'nat', string, number][] = [
  [FILTER_PREROUTING, 'filter', 'prerouting', -110],
  [FILTER_INPUT, 'filter', 'input', -110],
  [FILTER_FORWARD, 'filter', 'forward', -110],
  [FILTER_OUTPUT, 'filter', 'output', -110],
  [FILTER_OUTPUT_POST_DNAT, 'filter', 'output', -90],
  [NAT_PREROUTING, 'nat', 'prerouting', -100],
  [NAT_OUTPUT, 'nat', 'output', -100],
  [NAT_POSTROUTING, 'nat', 'postrouting', 100],
];

/** Upstream nftablesJumpChains: [to, from, extra]. */
const JUMP_CHAINS: readonly [string, string, string][] = [
  [NODEPORT_ENDPOINTS_CHECK, FILTER_INPUT, 'ct state new'],
  [SERVICE_ENDPOINTS_CHECK, FILTER_INPUT, 'ct state new'],
  [SERVICE_ENDPOINTS_CHECK, FILTER_FORWARD, 'ct state new'],
  [SERVICE_ENDPOINTS_CHECK, FILTER_OUTPUT, 'ct state new'],
  [FIREWALL_CHECK, FILTER_PREROUTING, 'ct state new'],
  [FIREWALL_CHECK, FILTER_OUTPUT, 'ct state new'],
  [SERVICES, NAT_OUTPUT, ''],
  [SERVICES, NAT_PREROUTING, ''],
  [MASQUERADING, NAT_POSTROUTING, ''],
  [CLUSTER_IPS_CHECK, FILTER_FORWARD, 'ct state new'],
  [CLUSTER_IPS_CHECK, FILTER_OUTPUT_POST_DNAT, 'ct state new'],
];

/** The containers whose elements are tracked between syncs. */
export const CONTAINERS = [CLUSTER_IPS, SERVICE_IPS, FIREWALL_IPS, NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS, SERVICE_NODEPORTS] as const;
export type Container = (typeof CONTAINERS)[number];
const SET_CONTAINERS: ReadonlySet<string> = new Set([CLUSTER_IPS]);

/** One map/set element: key text ("10.0.0.1 . tcp . 80"), value text ("" for sets, else "goto x" or 'comment "…" : drop'). */
export interface ElementRec {
  container: Container;
  key: string;
  value: string;
}

/** What one service ("ns/name") has in the table. */
export interface ServiceView {
  chains: string[];
  affinitySets: string[];
  elements: ElementRec[];
}

/**
 * The table as the last successful sync left it, kept by the backend between syncs:
 * every element with the service that owns it, and each service's chains, sets, elements.
 */
export interface NftKernelView {
  elements: Map<Container, Map<string, { value: string; owner: string }>>;
  services: Map<string, ServiceView>;
}

export function emptyKernelView(): NftKernelView {
  return { elements: new Map(CONTAINERS.map((c) => [c, new Map()])), services: new Map() };
}

export const SERVICE_CHAIN_PREFIXES = ['service-', 'local-', 'external-', 'endpoint-', 'firewall-'] as const;
export const AFFINITY_PREFIX = 'affinity-';

export function isServiceChainName(chain: string): boolean {
  return SERVICE_CHAIN_PREFIXES.some((p) => chain.startsWith(p));
}

export interface NftRenderOptions {
  family: IPFamily;
  masqueradeBit: number;
  masqueradeAll: boolean;
  clusterCIDR?: string;
  nodePortIPs?: readonly string[];
  nodeIPs?: readonly string[];
  /** Service CIDRs: traffic to unallocated ClusterIPs is dropped (upstream cluster-ips-check). */
  serviceCIDRs?: readonly string[];
}

export interface NftSyncInput {
  full: boolean;
  changed: ReadonlySet<string>;
  /** Full sync: the chains and sets present in the table now (nft list). */
  existingChains?: ReadonlySet<string>;
  existingSets?: ReadonlySet<string>;
  /** Stale chains flushed by an earlier sync: safe to delete now. */
  deletableChains: ReadonlySet<string>;
  /** Stale chains flushed by an earlier sync and still waiting (not to be flushed again). */
  pendingStale?: ReadonlySet<string>;
  /** Partial sync: the table after the last successful sync. */
  prev?: NftKernelView;
  /** First sync of this process: recreate base chains (add+delete) so changed hook priorities apply. */
  recreateBaseChains?: boolean;
  /**
   * Partial sync: delete the deletable stale chains even if nothing else in the script makes
   * nft fetch its cache (the backend's batching policy). Full syncs always delete them.
   */
  deleteStaleNow?: boolean;
}

export interface NftRenderResult {
  text: string;
  /** Full sync: the whole new view. Partial: the changed services' views (undefined = gone) and element changes. */
  view?: NftKernelView;
  serviceUpdates: Map<string, ServiceView | undefined>;
  elementUpdates: { container: Container; key: string; value: { value: string; owner: string } | undefined }[];
  /** Stale chains flushed by this script (to delete in a later sync). */
  flushedStale: string[];
  /** Chains deleted by this script. */
  deletedChains: string[];
  /** Whether the script has commands that make nft 1.0.6 fetch every chain and set first. */
  needsCache: boolean;
  stats: { services: number; writtenServices: number; endpoints: number; lines: number; writtenChains: number };
}

/** Bring `view` up to date with a successful partial sync (the backend calls this after applying). */
export function applyNftUpdates(view: NftKernelView, r: NftRenderResult): NftKernelView {
  if (r.view) return r.view;
  for (const [svc, v] of r.serviceUpdates) {
    if (v) view.services.set(svc, v);
    else view.services.delete(svc);
  }
  for (const u of r.elementUpdates) {
    const m = view.elements.get(u.container)!;
    if (u.value) m.set(u.key, u.value);
    else m.delete(u.key);
  }
  return view;
}

const CHAIN_BASE_MAX = 256 - 16;

function hashAndTruncate(name: string): string {
  const out = `${hashName(name, 8)}-${name}`;
  return out.length > CHAIN_BASE_MAX ? `${out.slice(0, CHAIN_BASE_MAX - 3)}...` : out;
}

export interface NftServiceChains {
  base: string;
  svc: string;
  local: string;
  ext: string;
  fw: string;
}
const svcCache = new WeakMap<ServicePort, NftServiceChains>();
const epCache = new WeakMap<Endpoint, { chain: string; affinity: string }>();

export function nftServiceChains(sp: ServicePort): NftServiceChains {
  let c = svcCache.get(sp);
  if (!c) {
    const base = hashAndTruncate(`${sp.namespace}/${sp.name}/${sp.protocol.toLowerCase()}/${sp.portName}`);
    c = { base, svc: `service-${base}`, local: `local-${base}`, ext: `external-${base}`, fw: `firewall-${base}` };
    svcCache.set(sp, c);
  }
  return c;
}

export function nftEndpointChains(sp: ServicePort, ep: Endpoint): { chain: string; affinity: string } {
  let c = epCache.get(ep);
  if (!c) {
    const ip = ep.ip.includes(':') ? ep.ip.replaceAll(':', '.') : ep.ip;
    const base = hashAndTruncate(`${sp.namespace}/${sp.name}/${sp.protocol.toLowerCase()}/${sp.portName}__${ip}/${ep.port}`);
    c = { chain: `endpoint-${base}`, affinity: `affinity-${base}` };
    epCache.set(ep, c);
  }
  return c;
}

interface PortPlan {
  elements: ElementRec[];
  chains: string[];
  affinitySets: string[];
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
const planCache = new WeakMap<ServicePort, { eps: readonly Endpoint[] | undefined; plan: PortPlan }>();

/** What one service port puts in the table; memoized per (ServicePort, endpoints) objects. */
function planPort(sp: ServicePort, endpoints: readonly Endpoint[] | undefined): PortPlan {
  const cached = planCache.get(sp);
  if (cached && cached.eps === endpoints) return cached.plan;
  const proto = sp.protocol.toLowerCase();
  const chains = nftServiceChains(sp);
  const { eps, hasEndpoints, usesClusterChain, usesLocalChain, internalChain, hasInternal, externalPolicyChain, hasExternal, usesExtChain } =
    trafficPolicyPlan(sp, endpoints ?? [], { cluster: chains.svc, local: chains.local });
  const extChain = chains.ext;
  const usesFW = sp.loadBalancerIPs.length > 0 && sp.loadBalancerSourceRanges.length > 0;

  const used: string[] = [];
  const affinitySets: string[] = [];
  for (const ep of eps.allReachable) {
    const e = nftEndpointChains(sp, ep);
    used.push(e.chain);
    if (sp.affinitySeconds > 0) affinitySets.push(e.affinity);
  }
  if (usesClusterChain) used.push(chains.svc);
  if (usesLocalChain) used.push(chains.local);
  if (usesExtChain) used.push(extChain);
  if (usesFW) used.push(chains.fw);

  let internalVerdict = '';
  let externalVerdict = '';
  if (!hasEndpoints) {
    internalVerdict = externalVerdict = `goto ${REJECT_CHAIN}`;
  } else {
    if (!hasInternal) internalVerdict = 'drop';
    if (!hasExternal) externalVerdict = 'drop';
  }
  const comment = `comment "${sp.key}"`;
  const port = String(sp.port);
  const elements: ElementRec[] = [];
  const el = (container: Container, key: string, value = ''): void => {
    elements.push({ container, key, value });
  };
  el(CLUSTER_IPS, sp.clusterIP);
  if (hasInternal) el(SERVICE_IPS, `${sp.clusterIP} . ${proto} . ${port}`, `goto ${internalChain}`);
  else el(NO_ENDPOINT_SERVICES, `${sp.clusterIP} . ${proto} . ${port}`, `${comment} : ${internalVerdict}`);
  for (const ip of sp.externalIPs) {
    if (hasEndpoints) el(SERVICE_IPS, `${ip} . ${proto} . ${port}`, `goto ${extChain}`);
    if (!hasExternal) el(NO_ENDPOINT_SERVICES, `${ip} . ${proto} . ${port}`, `${comment} : ${externalVerdict}`);
  }
  for (const ip of sp.loadBalancerIPs) {
    if (hasEndpoints) el(SERVICE_IPS, `${ip} . ${proto} . ${port}`, `goto ${extChain}`);
    if (usesFW) el(FIREWALL_IPS, `${ip} . ${proto} . ${port}`, `goto ${chains.fw}`);
  }
  if (!hasExternal) for (const ip of sp.loadBalancerIPs) el(NO_ENDPOINT_SERVICES, `${ip} . ${proto} . ${port}`, `${comment} : ${externalVerdict}`);
  if (sp.nodePort !== 0) {
    if (hasEndpoints) el(SERVICE_NODEPORTS, `${proto} . ${sp.nodePort}`, `goto ${extChain}`);
    if (!hasExternal) el(NO_ENDPOINT_NODEPORTS, `${proto} . ${sp.nodePort}`, `${comment} : ${externalVerdict}`);
  }
  const plan: PortPlan = {
    elements,
    chains: used,
    affinitySets,
    eps,
    f: { hasInternal, hasExternal, internalChain, externalPolicyChain, usesExtChain, usesFW, usesClusterChain, usesLocalChain },
  };
  planCache.set(sp, { eps: endpoints, plan });
  return plan;
}

/** The type and comment of each tracked set/map, as declared (and re-declared with elements). */
function containerDecls(addrType: string): Record<Container, string> {
  const l3 = `type ${addrType} . inet_proto . inet_service : verdict`;
  const l4 = 'type inet_proto . inet_service : verdict';
  return {
    [CLUSTER_IPS]: `type ${addrType} ; comment "Active ClusterIPs"`,
    [SERVICE_IPS]: `${l3} ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"`,
    [FIREWALL_IPS]: `${l3} ; comment "destinations that are subject to LoadBalancerSourceRanges"`,
    [NO_ENDPOINT_SERVICES]: `${l3} ; comment "vmap to drop or reject packets to services with no endpoints"`,
    [NO_ENDPOINT_NODEPORTS]: `${l4} ; comment "vmap to drop or reject packets to service nodeports with no endpoints"`,
    [SERVICE_NODEPORTS]: `${l4} ; comment "NodePort traffic"`,
  };
}

/** One element as nft writes it inside `{ }`: key, optional comment, `: verdict` for maps. */
function elementText(r: ElementRec): string {
  if (SET_CONTAINERS.has(r.container)) return r.key;
  return `${r.key}${r.value.startsWith('comment ') ? ` ${r.value}` : ` : ${r.value}`}`;
}

function elementLine(T: string, r: ElementRec): string {
  return `add element ${T} ${r.container} { ${elementText(r)} }`;
}

export function renderNftables(state: ProxyState, opts: NftRenderOptions, input: NftSyncInput): NftRenderResult {
  const fam = opts.family === 'IPv6' ? 'ip6' : 'ip';
  const addrType = opts.family === 'IPv6' ? 'ipv6_addr' : 'ipv4_addr';
  const noLocalhost = opts.family === 'IPv6' ? 'ip6 daddr != ::1' : 'ip daddr != 127.0.0.0/8';
  const mark = `0x${(1 << opts.masqueradeBit).toString(16)}`;
  const T = `${fam} ${TABLE}`;
  const ifLocal = opts.clusterCIDR ? `${fam} saddr ${opts.clusterCIDR}` : undefined;
  const ifNotLocal = opts.clusterCIDR ? `${fam} saddr != ${opts.clusterCIDR}` : undefined;
  const nodePortIPs = (opts.nodePortIPs ?? []).filter((ip) => !ip.startsWith('127.') && ip !== '::1');
  const matchAll = (opts.nodePortIPs ?? []).length === 0;
  const full = input.full || input.prev === undefined;
  const decls = containerDecls(addrType);

  const out: string[] = [];
  const created = new Set<string>();
  const ensureChain = (chain: string): void => {
    if (created.has(chain)) return;
    created.add(chain);
    out.push(`add chain ${T} ${chain}`, `flush chain ${T} ${chain}`);
  };
  const rule = (chain: string, text: string): void => {
    out.push(`add rule ${T} ${chain} ${text}`);
  };
  // Partial syncs: service chain rules as `add chain C { r1 ; r2 ; }` (see the design notes).
  const blocks = new Map<string, string[]>();
  const serviceRule = full
    ? rule
    : (chain: string, text: string): void => {
        let b = blocks.get(chain);
        if (!b) blocks.set(chain, (b = []));
        b.push(text);
      };

  if (full) {
    out.push(`add table ${T} { comment "rules for kube-proxy" ; }`);
    if (input.recreateBaseChains) {
      for (const [name] of BASE_CHAINS) out.push(`add chain ${T} ${name}`, `delete chain ${T} ${name}`);
    }
    for (const [name, type, hook, prio] of BASE_CHAINS) {
      out.push(`add chain ${T} ${name} { type ${type} hook ${hook} priority ${prio} ; }`, `flush chain ${T} ${name}`);
    }
    for (const [to, from, extra] of JUMP_CHAINS) {
      ensureChain(to);
      rule(from, extra === '' ? `jump ${to}` : `${extra} jump ${to}`);
    }
    for (const c of [SERVICES, CLUSTER_IPS_CHECK, MASQUERADING, MARK_MASQ]) ensureChain(c);
    rule(MARK_MASQ, `mark set mark or ${mark}`);
    rule(MASQUERADING, `mark and ${mark} == 0 return`);
    rule(MASQUERADING, `mark set mark xor ${mark}`);
    rule(MASQUERADING, 'masquerade fully-random');
    out.push(`add set ${T} ${CLUSTER_IPS} { ${decls[CLUSTER_IPS]} ; }`);
    rule(CLUSTER_IPS_CHECK, `${fam} daddr @${CLUSTER_IPS} reject comment "Reject traffic to invalid ports of ClusterIPs"`);
    if (opts.serviceCIDRs && opts.serviceCIDRs.length > 0) {
      rule(CLUSTER_IPS_CHECK, `${fam} daddr { ${opts.serviceCIDRs.join(', ')} } drop comment "Drop traffic to unallocated ClusterIPs"`);
    }
    out.push(`add set ${T} ${NODEPORT_IPS} { type ${addrType} ; comment "IPs that accept NodePort traffic" ; }`);
    if (matchAll) out.push(`delete set ${T} ${NODEPORT_IPS}`);
    else {
      out.push(`flush set ${T} ${NODEPORT_IPS}`);
      if (nodePortIPs.length > 0) out.push(`add element ${T} ${NODEPORT_IPS} { ${nodePortIPs.join(', ')} }`);
    }
    out.push(
      `add map ${T} ${NO_ENDPOINT_SERVICES} { ${decls[NO_ENDPOINT_SERVICES]} ; }`,
      `add map ${T} ${NO_ENDPOINT_NODEPORTS} { ${decls[NO_ENDPOINT_NODEPORTS]} ; }`,
      `add chain ${T} ${REJECT_CHAIN} { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }`,
      `flush chain ${T} ${REJECT_CHAIN}`,
    );
    created.add(REJECT_CHAIN);
    rule(REJECT_CHAIN, 'reject');
    rule(SERVICE_ENDPOINTS_CHECK, `${fam} daddr . meta l4proto . th dport vmap @${NO_ENDPOINT_SERVICES}`);
    if (matchAll) rule(NODEPORT_ENDPOINTS_CHECK, `${noLocalhost} meta l4proto . th dport vmap @${NO_ENDPOINT_NODEPORTS}`);
    else rule(NODEPORT_ENDPOINTS_CHECK, `${fam} daddr @${NODEPORT_IPS} meta l4proto . th dport vmap @${NO_ENDPOINT_NODEPORTS}`);
    out.push(
      `add map ${T} ${FIREWALL_IPS} { ${decls[FIREWALL_IPS]} ; }`,
    );
    ensureChain(FIREWALL_CHECK);
    rule(FIREWALL_CHECK, `${fam} daddr . meta l4proto . th dport vmap @${FIREWALL_IPS}`);
    out.push(
      `add map ${T} ${SERVICE_IPS} { ${decls[SERVICE_IPS]} ; }`,
      `add map ${T} ${SERVICE_NODEPORTS} { ${decls[SERVICE_NODEPORTS]} ; }`,
    );
    rule(SERVICES, `${fam} daddr . meta l4proto . th dport vmap @${SERVICE_IPS}`);
    if (matchAll) rule(SERVICES, `fib daddr type local ${noLocalhost} meta l4proto . th dport vmap @${SERVICE_NODEPORTS}`);
    else rule(SERVICES, `${fam} daddr @${NODEPORT_IPS} meta l4proto . th dport vmap @${SERVICE_NODEPORTS}`);
    for (const c of CONTAINERS) out.push(`flush ${SET_CONTAINERS.has(c) ? 'set' : 'map'} ${T} ${c}`);
  }

  // Per service: a full sync writes all of them, a partial one only the changed ones (the maps
  // keep every other service's elements, so unchanged services cost nothing).
  const keys = [...state.services.keys()].sort();
  const plans = new Map<string, { sp: ServicePort; plan: PortPlan }[]>();
  for (const key of keys) {
    const sp = state.services.get(key)!;
    if (!full && !input.changed.has(sp.service)) continue;
    let list = plans.get(sp.service);
    if (!list) plans.set(sp.service, (list = []));
    list.push({ sp, plan: planPort(sp, state.endpoints.get(key)) });
  }
  const serviceUpdates = new Map<string, ServiceView | undefined>();
  let writtenServices = 0;
  let endpointCount = 0;
  for (const [svc, ports] of plans) {
    const view: ServiceView = { chains: [], affinitySets: [], elements: [] };
    const before = full ? undefined : input.prev!.services.get(svc);
    const keep = before ? unchangedEndpointChains(ports, before) : new Set<string>();
    for (const { sp, plan } of ports) {
      writtenServices++;
      endpointCount += plan.eps.allReachable.length;
      for (const c of plan.chains) if (!keep.has(c)) ensureChain(c);
      view.chains.push(...plan.chains);
      view.affinitySets.push(...plan.affinitySets);
      view.elements.push(...plan.elements);
      writePortRules(sp, plan, { fam, addrType, T, ifLocal, ifNotLocal, opts, keep }, out, serviceRule);
    }
    serviceUpdates.set(svc, view);
  }
  for (const [chain, rules] of blocks) out.push(`add chain ${T} ${chain} { ${rules.join(' ; ')} ; }`);
  const writtenChains = created.size;
  if (!full) for (const svc of input.changed) if (!serviceUpdates.has(svc)) serviceUpdates.set(svc, undefined);

  // Stale chains (flushed now, deleted in a later sync) and affinity sets (deleted now).
  const flushedStale: string[] = [];
  const deletedChains: string[] = [];
  const staleChains = new Set<string>();
  const staleSets = new Set<string>();
  if (full) {
    const active = new Set<string>();
    const activeSets = new Set<string>();
    for (const v of serviceUpdates.values()) {
      for (const c of v!.chains) active.add(c);
      for (const a of v!.affinitySets) activeSets.add(a);
    }
    for (const c of input.existingChains ?? []) if (isServiceChainName(c) && !active.has(c)) staleChains.add(c);
    for (const c of input.pendingStale ?? []) if (!active.has(c)) staleChains.add(c);
    for (const a of input.existingSets ?? []) if (a.startsWith(AFFINITY_PREFIX) && !activeSets.has(a)) staleSets.add(a);
  } else {
    for (const [svc, now] of serviceUpdates) {
      const before = input.prev!.services.get(svc);
      if (!before) continue;
      const nowChains = new Set(now?.chains ?? []);
      const nowSets = new Set(now?.affinitySets ?? []);
      for (const c of before.chains) if (!nowChains.has(c)) staleChains.add(c);
      for (const a of before.affinitySets) if (!nowSets.has(a)) staleSets.add(a);
    }
    for (const c of input.deletableChains) if (!created.has(c)) staleChains.add(c);
  }
  // Elements: what to delete and add (computed before the stale section: deletions decide
  // whether this script pays nft's cache fetch anyway).
  const elementUpdates: NftRenderResult['elementUpdates'] = [];
  const elementDeletes: string[] = [];
  const added: ElementRec[] = [];
  let view: NftKernelView | undefined;
  if (full) {
    view = emptyKernelView();
    for (const [svc, v] of serviceUpdates) {
      view.services.set(svc, v!);
      for (const r of v!.elements) {
        const m = view.elements.get(r.container)!;
        if (m.has(r.key)) continue; // first owner wins (conflicting services)
        m.set(r.key, { value: r.value, owner: svc });
        added.push(r);
      }
    }
  } else {
    const prev = input.prev!;
    // Final operation per element: delete (of what the kernel has) and/or add.
    const ops = new Map<string, { r: ElementRec; del: boolean; add?: { value: string; owner: string } }>();
    for (const [svc, now] of serviceUpdates) {
      const nowKeys = new Set((now?.elements ?? []).map((r) => `${r.container}\0${r.key}`));
      for (const r of prev.services.get(svc)?.elements ?? []) {
        const ck = `${r.container}\0${r.key}`;
        if (nowKeys.has(ck) || prev.elements.get(r.container)!.get(r.key)?.owner !== svc) continue;
        if (!ops.has(ck)) ops.set(ck, { r, del: true });
      }
      for (const r of now?.elements ?? []) {
        const ck = `${r.container}\0${r.key}`;
        const pv = prev.elements.get(r.container)!.get(r.key);
        const op = ops.get(ck);
        if (op?.add) continue; // another changed service already claimed it
        if (pv && pv.value === r.value && pv.owner === svc) {
          ops.delete(ck);
          continue;
        }
        if (pv && pv.owner !== svc && !serviceUpdates.has(pv.owner)) continue; // owned by an unchanged service
        ops.set(ck, { r, del: pv !== undefined, add: { value: r.value, owner: svc } });
      }
    }
    for (const op of ops.values()) {
      if (op.del) elementDeletes.push(`delete element ${T} ${op.r.container} { ${op.r.key} }`);
      if (!op.add) elementUpdates.push({ container: op.r.container, key: op.r.key, value: undefined });
    }
    for (const op of ops.values()) {
      if (!op.add) continue;
      added.push(op.r);
      elementUpdates.push({ container: op.r.container, key: op.r.key, value: op.add });
    }
  }

  const deleteStale = full || input.deleteStaleNow === true || elementDeletes.length > 0 || staleSets.size > 0;
  for (const chain of [...staleChains].sort()) {
    if (created.has(chain)) continue;
    if (input.deletableChains.has(chain)) {
      if (!deleteStale) continue; // stays flushed and deletable; deleted in a later batch
      out.push(`delete chain ${T} ${chain}`);
      deletedChains.push(chain);
    } else if (!input.pendingStale?.has(chain) || full) {
      out.push(`flush chain ${T} ${chain}`);
      flushedStale.push(chain);
    }
  }
  for (const set of [...staleSets].sort()) out.push(`delete set ${T} ${set}`);
  out.push(...elementDeletes);
  if (full) for (const r of added) out.push(elementLine(T, r));
  else {
    const byContainer = new Map<Container, string[]>();
    for (const r of added) {
      let l = byContainer.get(r.container);
      if (!l) byContainer.set(r.container, (l = []));
      l.push(elementText(r));
    }
    for (const c of CONTAINERS) {
      const l = byContainer.get(c);
      if (l) out.push(`add ${SET_CONTAINERS.has(c) ? 'set' : 'map'} ${T} ${c} { ${decls[c]} ; elements = { ${l.join(', ')} } ; }`);
    }
  }

  return {
    text: out.join('\n') + '\n',
    view,
    serviceUpdates,
    elementUpdates,
    flushedStale,
    deletedChains,
    needsCache: full || deletedChains.length > 0 || staleSets.size > 0 || elementDeletes.length > 0,
    stats: { services: keys.length, writtenServices, endpoints: endpointCount, lines: out.length, writtenChains },
  };
}

interface RuleCtx {
  fam: string;
  addrType: string;
  T: string;
  ifLocal: string | undefined;
  ifNotLocal: string | undefined;
  opts: NftRenderOptions;
  /** Endpoint chains already in the kernel with the same rules: not rewritten. */
  keep: ReadonlySet<string>;
}

/**
 * Partial sync: the endpoint chains of a changed service that the kernel already has with the
 * same rules. An endpoint chain's rules depend only on its name (service port, endpoint IP and
 * port) and on whether affinity is on (its affinity set), so an unchanged pair means unchanged rules.
 */
function unchangedEndpointChains(ports: readonly { sp: ServicePort; plan: PortPlan }[], before: ServiceView): Set<string> {
  const chains = new Set(before.chains);
  const sets = new Set(before.affinitySets);
  const keep = new Set<string>();
  for (const { sp, plan } of ports) {
    for (const ep of plan.eps.allReachable) {
      const e = nftEndpointChains(sp, ep);
      if (chains.has(e.chain) && sets.has(e.affinity) === sp.affinitySeconds > 0) keep.add(e.chain);
    }
  }
  return keep;
}

function writePortRules(sp: ServicePort, plan: PortPlan, c: RuleCtx, out: string[], rule: (chain: string, text: string) => void): void {
  const { T } = c;
  const fam = c.fam;
  const proto = sp.protocol.toLowerCase();
  const chains = nftServiceChains(sp);
  const { eps, f } = plan;
  if (f.hasInternal) {
    const match = `${fam} daddr ${sp.clusterIP} ${proto} dport ${sp.port}`;
    if (c.opts.masqueradeAll) rule(f.internalChain, `${match} jump ${MARK_MASQ}`);
    else if (c.ifNotLocal) rule(f.internalChain, `${match} ${c.ifNotLocal} jump ${MARK_MASQ}`);
  }
  if (f.usesExtChain) {
    const extChain = chains.ext;
    if (!sp.externalPolicyLocal) {
      rule(extChain, `jump ${MARK_MASQ}`);
    } else {
      if (c.ifLocal) rule(extChain, `${c.ifLocal} goto ${chains.svc} comment "short-circuit pod traffic"`);
      rule(extChain, `fib saddr type local jump ${MARK_MASQ} comment "masquerade local traffic"`);
      rule(extChain, `fib saddr type local goto ${chains.svc} comment "short-circuit local traffic"`);
    }
    if (f.hasExternal) rule(extChain, `goto ${f.externalPolicyChain}`);
  }
  if (f.usesFW) {
    const sources = [...sp.loadBalancerSourceRanges];
    if ((c.opts.nodeIPs ?? []).some((ip) => sp.loadBalancerSourceRanges.some((r) => cidrContains(r, ip)))) sources.push(...sp.loadBalancerIPs);
    rule(chains.fw, `${fam} saddr != { ${sources.join(', ')} } drop`);
  }
  if (sp.affinitySeconds > 0) {
    for (const ep of eps.allReachable) {
      out.push(`add set ${T} ${nftEndpointChains(sp, ep).affinity} { type ${c.addrType} ; flags dynamic,timeout ; timeout ${sp.affinitySeconds}s ; }`);
    }
  }
  if (f.usesClusterChain) writeServiceToEndpoints(sp, chains.svc, eps.cluster, fam, rule);
  if (f.usesLocalChain) writeServiceToEndpoints(sp, chains.local, eps.local, fam, rule);
  for (const ep of eps.allReachable) {
    const e = nftEndpointChains(sp, ep);
    if (c.keep.has(e.chain)) continue;
    rule(e.chain, `${fam} saddr ${ep.ip} jump ${MARK_MASQ}`);
    if (sp.affinitySeconds > 0) rule(e.chain, `update @${e.affinity} { ${fam} saddr }`);
    rule(e.chain, `meta l4proto ${proto} dnat to ${ep.key}`);
  }
}

function writeServiceToEndpoints(
  sp: ServicePort,
  chain: string,
  endpoints: readonly Endpoint[],
  fam: string,
  rule: (chain: string, text: string) => void,
): void {
  if (sp.affinitySeconds > 0) {
    for (const ep of endpoints) {
      const e = nftEndpointChains(sp, ep);
      rule(chain, `${fam} saddr @${e.affinity} goto ${e.chain}`);
    }
  }
  const elems = endpoints.map((ep, i) => `${i} : goto ${nftEndpointChains(sp, ep).chain}`).join(' , ');
  rule(chain, `numgen random mod ${endpoints.length} vmap { ${elems} }`);
}

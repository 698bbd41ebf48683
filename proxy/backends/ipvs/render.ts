/**
 * IPVS renderer: ProxyState → what IPVS mode wants in the kernel, as kube-proxy's IPVS proxier
 * (pkg/proxy/ipvs/proxier.go syncProxyRules/writeIptablesRules, ipset.go) lays it out.
 *
 * Design notes
 * - Pure: no I/O. The backend (backend.ts) passes the node's NodePort addresses and diffs the
 *   result against what the kernel has (IPVS dumps, kube-ipvs0 addresses, `ipset save`).
 * - One virtual server per (ClusterIP | externalIP | LB ingress IP | NodePort address, port,
 *   protocol); scheduler `rr` unless --ipvs-scheduler; ClientIP affinity = persistent flag with
 *   the affinity timeout. Real servers: weight 1, masquerade; the ClusterIP gets the internal
 *   policy's endpoints, the others the external policy's (trafficPolicyPlan in model.ts).
 * - Service IPs are bound to the dummy device kube-ipvs0 so that the node accepts them.
 * - ipsets carry the per-service data the few iptables rules match on (KUBE-CLUSTER-IP …); the
 *   iptables text is the same handful of rules for any number of services. Every set is always
 *   created (empty ones too), rules that match an empty set are left out, as upstream.
 */
import type { Endpoint, IPFamily, ProxyState, ServicePort } from '../../model.js';
import { externallyAccessible, trafficPolicyPlan } from '../../model.js';
import type { IpvsDestination, IpvsService } from '../../../lib/netlink/ipvs.js';
import { IP_VS_CONN_F_MASQ, IP_VS_SVC_F_PERSISTENT, serviceKey } from '../../../lib/netlink/ipvs.js';
import type { SavedTables } from '../iptables/apply.js';
import { isServiceChain, jumpRuleSpec, type JumpRule } from '../iptables/render.js';

export const KUBE_IPVS_DEVICE = 'kube-ipvs0';
export const DEFAULT_SCHEDULER = 'rr';

export const KUBE_SERVICES = 'KUBE-SERVICES';
export const KUBE_POSTROUTING = 'KUBE-POSTROUTING';
export const KUBE_MARK_MASQ = 'KUBE-MARK-MASQ';
export const KUBE_NODE_PORT = 'KUBE-NODE-PORT';
export const KUBE_LOAD_BALANCER = 'KUBE-LOAD-BALANCER';
export const KUBE_FORWARD = 'KUBE-FORWARD';
export const KUBE_PROXY_FIREWALL = 'KUBE-PROXY-FIREWALL';

/** The chains IPVS mode owns, per table (created/flushed by every sync). */
export const IPVS_CHAINS = {
  nat: [KUBE_SERVICES, KUBE_POSTROUTING, KUBE_NODE_PORT, KUBE_LOAD_BALANCER, KUBE_MARK_MASQ],
  filter: [KUBE_FORWARD, KUBE_NODE_PORT, KUBE_PROXY_FIREWALL],
} as const;

/** The chains only IPVS mode uses (the others are shared with iptables mode). */
export const IPVS_ONLY_CHAINS = {
  nat: [KUBE_NODE_PORT, KUBE_LOAD_BALANCER],
  filter: [KUBE_NODE_PORT],
} as const;

/** Upstream ipvs iptablesJumpChain (each is inserted at position 1). */
export const IPVS_JUMP_RULES: readonly JumpRule[] = [
  { table: 'nat', from: 'OUTPUT', to: KUBE_SERVICES, comment: 'kubernetes service portals', extra: [] },
  { table: 'nat', from: 'PREROUTING', to: KUBE_SERVICES, comment: 'kubernetes service portals', extra: [] },
  { table: 'nat', from: 'POSTROUTING', to: KUBE_POSTROUTING, comment: 'kubernetes postrouting rules', extra: [] },
  { table: 'filter', from: 'FORWARD', to: KUBE_FORWARD, comment: 'kubernetes forwarding rules', extra: [] },
  { table: 'filter', from: 'INPUT', to: KUBE_NODE_PORT, comment: 'kubernetes health check rules', extra: [] },
  { table: 'filter', from: 'INPUT', to: KUBE_PROXY_FIREWALL, comment: 'kube-proxy firewall rules', extra: [] },
  { table: 'filter', from: 'FORWARD', to: KUBE_PROXY_FIREWALL, comment: 'kube-proxy firewall rules', extra: [] },
];

export type IpsetType = 'hash:ip,port' | 'hash:ip,port,ip' | 'hash:ip,port,net' | 'bitmap:port';

interface IpsetInfo {
  name: string;
  type: IpsetType;
  comment: string;
}

/** Upstream ipsetInfo (pkg/proxy/ipvs/proxier.go), in upstream order. */
export const IPSETS = {
  loopBack: { name: 'KUBE-LOOP-BACK', type: 'hash:ip,port,ip', comment: 'Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose' },
  clusterIP: { name: 'KUBE-CLUSTER-IP', type: 'hash:ip,port', comment: 'Kubernetes service cluster ip + port for masquerade purpose' },
  externalIP: { name: 'KUBE-EXTERNAL-IP', type: 'hash:ip,port', comment: 'Kubernetes service external ip + port for masquerade and filter purpose' },
  externalIPLocal: { name: 'KUBE-EXTERNAL-IP-LOCAL', type: 'hash:ip,port', comment: 'Kubernetes service external ip + port with externalTrafficPolicy=local' },
  loadBalancer: { name: 'KUBE-LOAD-BALANCER', type: 'hash:ip,port', comment: 'Kubernetes service lb portal' },
  loadBalancerLocal: { name: 'KUBE-LOAD-BALANCER-LOCAL', type: 'hash:ip,port', comment: 'Kubernetes service load balancer ip + port with externalTrafficPolicy=local' },
  nodePortTCP: { name: 'KUBE-NODE-PORT-TCP', type: 'bitmap:port', comment: 'Kubernetes nodeport TCP port for masquerade purpose' },
  nodePortLocalTCP: { name: 'KUBE-NODE-PORT-LOCAL-TCP', type: 'bitmap:port', comment: 'Kubernetes nodeport TCP port with externalTrafficPolicy=local' },
  nodePortUDP: { name: 'KUBE-NODE-PORT-UDP', type: 'bitmap:port', comment: 'Kubernetes nodeport UDP port for masquerade purpose' },
  nodePortLocalUDP: { name: 'KUBE-NODE-PORT-LOCAL-UDP', type: 'bitmap:port', comment: 'Kubernetes nodeport UDP port with externalTrafficPolicy=local' },
  nodePortSCTP: { name: 'KUBE-NODE-PORT-SCTP-HASH', type: 'hash:ip,port', comment: "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'" },
  nodePortLocalSCTP: { name: 'KUBE-NODE-PORT-LOCAL-SCTP-HASH', type: 'hash:ip,port', comment: "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'" },
  healthCheckNodePort: { name: 'KUBE-HEALTH-CHECK-NODE-PORT', type: 'bitmap:port', comment: 'Kubernetes health check node port' },
} as const satisfies Record<string, IpsetInfo>;
export type IpsetId = keyof typeof IPSETS;

/**
 * The kernel name of a set for a family: IPv6 sets are "KUBE-6-…", cut to ipset's 31
 * characters, as upstream's NewIPSet does.
 */
export function ipsetName(id: IpsetId, family: IPFamily): string {
  const name = IPSETS[id].name;
  return family === 'IPv4' ? name : name.replace(/^KUBE-/, 'KUBE-6-').slice(0, 31);
}

export interface IpvsRenderOptions {
  family: IPFamily;
  scheduler: string;
  masqueradeBit: number;
  masqueradeAll: boolean;
  clusterCIDR?: string;
  /** Addresses NodePort virtual servers are created on (--nodeport-addresses, or every local address). */
  nodePortAddresses: readonly string[];
  randomFully?: boolean;
}

export interface DesiredVirtualServer {
  service: IpvsService;
  /** Sorted by address:port. */
  destinations: IpvsDestination[];
  /** "ns/name:port" of the service port it comes from. */
  owner: string;
}

export interface IpvsDesired {
  /** serviceKey → virtual server. */
  virtualServers: Map<string, DesiredVirtualServer>;
  /** Addresses bound to kube-ipvs0 (sorted). */
  addresses: string[];
  /** Set name → sorted entries; every set of the family is present. */
  ipsets: Map<string, { type: IpsetType; entries: string[] }>;
  /** The rules of IPVS mode's own chains (see iptablesRestoreText). */
  iptables: { filter: string[]; nat: string[] };
}

function proto(sp: ServicePort): string {
  return sp.protocol.toLowerCase();
}

function ipPort(ip: string, sp: ServicePort, port = sp.port): string {
  return `${ip},${proto(sp)}:${port}`;
}

function destinationsOf(eps: readonly Endpoint[]): IpvsDestination[] {
  return eps
    .map((e) => ({ address: e.ip, port: e.port, weight: 1, fwdMethod: IP_VS_CONN_F_MASQ }))
    .sort((a, b) => (a.address === b.address ? a.port - b.port : a.address < b.address ? -1 : 1));
}

export function renderIpvs(state: ProxyState, opts: IpvsRenderOptions): IpvsDesired {
  const family = opts.family;
  const sets = new Map<IpsetId, Set<string>>((Object.keys(IPSETS) as IpsetId[]).map((id) => [id, new Set<string>()]));
  const add = (id: IpsetId, entry: string): void => void sets.get(id)!.add(entry);
  const virtualServers = new Map<string, DesiredVirtualServer>();
  const addresses = new Set<string>();
  const keys = [...state.services.keys()].sort();

  for (const key of keys) {
    const sp = state.services.get(key)!;
    const plan = trafficPolicyPlan(sp, state.endpoints.get(key) ?? [], { cluster: 'cluster', local: 'local' });
    const internal = destinationsOf(plan.hasInternal ? (plan.internalChain === 'local' ? plan.eps.local : plan.eps.cluster) : []);
    const external = destinationsOf(plan.hasExternal ? (plan.externalPolicyChain === 'local' ? plan.eps.local : plan.eps.cluster) : []);
    const base = {
      protocol: sp.protocol,
      scheduler: opts.scheduler,
      flags: sp.affinitySeconds > 0 ? IP_VS_SVC_F_PERSISTENT : 0,
      timeout: sp.affinitySeconds,
    };
    const vs = (address: string, port: number, destinations: IpvsDestination[]): void => {
      const service: IpvsService = { address, port, ...base };
      virtualServers.set(serviceKey(service), { service, destinations, owner: sp.key });
    };

    for (const e of plan.eps.allReachable) if (e.isLocal) add('loopBack', `${e.ip},${proto(sp)}:${e.port},${e.ip}`);

    add('clusterIP', ipPort(sp.clusterIP, sp));
    addresses.add(sp.clusterIP);
    vs(sp.clusterIP, sp.port, internal);

    for (const ip of sp.externalIPs) {
      add(sp.externalPolicyLocal ? 'externalIPLocal' : 'externalIP', ipPort(ip, sp));
      addresses.add(ip);
      vs(ip, sp.port, external);
    }
    for (const ip of sp.loadBalancerIPs) {
      add('loadBalancer', ipPort(ip, sp));
      if (sp.externalPolicyLocal) add('loadBalancerLocal', ipPort(ip, sp));
      addresses.add(ip);
      vs(ip, sp.port, external);
    }
    if (sp.nodePort !== 0) {
      if (sp.protocol === 'SCTP') {
        for (const ip of opts.nodePortAddresses) {
          add('nodePortSCTP', ipPort(ip, sp, sp.nodePort));
          if (sp.externalPolicyLocal) add('nodePortLocalSCTP', ipPort(ip, sp, sp.nodePort));
        }
      } else {
        const p = String(sp.nodePort);
        add(sp.protocol === 'TCP' ? 'nodePortTCP' : 'nodePortUDP', p);
        if (sp.externalPolicyLocal) add(sp.protocol === 'TCP' ? 'nodePortLocalTCP' : 'nodePortLocalUDP', p);
      }
      for (const ip of opts.nodePortAddresses) vs(ip, sp.nodePort, external);
    }
    if (sp.healthCheckNodePort !== 0 && externallyAccessible(sp)) add('healthCheckNodePort', String(sp.healthCheckNodePort));
  }

  const ipsets = new Map<string, { type: IpsetType; entries: string[] }>();
  for (const [id, entries] of sets) ipsets.set(ipsetName(id, family), { type: IPSETS[id].type, entries: [...entries].sort() });
  const nonEmpty = (id: IpsetId): boolean => sets.get(id)!.size > 0;
  return {
    virtualServers,
    addresses: [...addresses].sort(),
    ipsets,
    iptables: renderIptablesRules(opts, nonEmpty),
  };
}

function q(s: string): string {
  return `"${s}"`;
}

/** Upstream writeIptablesRules, reduced to the rules knode's IPVS mode uses. */
function renderIptablesRules(opts: IpvsRenderOptions, nonEmpty: (id: IpsetId) => boolean): { filter: string[]; nat: string[] } {
  const family = opts.family;
  const set = (id: IpsetId): string => ipsetName(id, family);
  const mark = `0x${(1 << opts.masqueradeBit).toString(16)}`;
  const nat: string[] = [];
  const filter: string[] = [];
  const comment = (id: IpsetId): string => `-m comment --comment ${q(IPSETS[id].comment)}`;

  // ipsetWithIptablesChain
  const chained: { id: IpsetId; table: 'nat' | 'filter'; from: string; to: string; match: string; proto?: string }[] = [
    { id: 'loopBack', table: 'nat', from: KUBE_POSTROUTING, to: 'MASQUERADE', match: 'dst,dst,src' },
    { id: 'loadBalancer', table: 'nat', from: KUBE_SERVICES, to: KUBE_LOAD_BALANCER, match: 'dst,dst' },
    { id: 'loadBalancerLocal', table: 'nat', from: KUBE_LOAD_BALANCER, to: 'RETURN', match: 'dst,dst' },
    { id: 'nodePortLocalTCP', table: 'nat', from: KUBE_NODE_PORT, to: 'RETURN', match: 'dst', proto: 'tcp' },
    { id: 'nodePortTCP', table: 'nat', from: KUBE_NODE_PORT, to: KUBE_MARK_MASQ, match: 'dst', proto: 'tcp' },
    { id: 'nodePortLocalUDP', table: 'nat', from: KUBE_NODE_PORT, to: 'RETURN', match: 'dst', proto: 'udp' },
    { id: 'nodePortUDP', table: 'nat', from: KUBE_NODE_PORT, to: KUBE_MARK_MASQ, match: 'dst', proto: 'udp' },
    { id: 'nodePortLocalSCTP', table: 'nat', from: KUBE_NODE_PORT, to: 'RETURN', match: 'dst,dst', proto: 'sctp' },
    { id: 'nodePortSCTP', table: 'nat', from: KUBE_NODE_PORT, to: KUBE_MARK_MASQ, match: 'dst,dst', proto: 'sctp' },
  ];
  for (const c of chained) {
    if (!nonEmpty(c.id)) continue;
    const p = c.proto ? ` -p ${c.proto}` : '';
    (c.table === 'nat' ? nat : filter).push(`-A ${c.from}${p} ${comment(c.id)} -m set --match-set ${set(c.id)} ${c.match} -j ${c.to}`);
  }

  if (nonEmpty('clusterIP')) {
    const head = `-A ${KUBE_SERVICES} ${comment('clusterIP')} -m set --match-set ${set('clusterIP')}`;
    if (opts.masqueradeAll) nat.push(`${head} dst,dst -j ${KUBE_MARK_MASQ}`);
    else if (opts.clusterCIDR !== undefined) nat.push(`${head} dst,dst ! -s ${opts.clusterCIDR} -j ${KUBE_MARK_MASQ}`);
    // Node-originated traffic to a VIP gets the VIP as source (kube-ipvs0 holds it): masquerade it.
    else nat.push(`${head} src,dst -j ${KUBE_MARK_MASQ}`);
  }
  const externalRules = (head: string): void => {
    nat.push(`${head} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT`);
    nat.push(`${head} -m addrtype --dst-type LOCAL -j ACCEPT`);
  };
  if (nonEmpty('externalIP')) {
    const head = `-A ${KUBE_SERVICES} ${comment('externalIP')} -m set --match-set ${set('externalIP')} dst,dst`;
    nat.push(`${head} -j ${KUBE_MARK_MASQ}`);
    externalRules(head);
  }
  if (nonEmpty('externalIPLocal')) externalRules(`-A ${KUBE_SERVICES} ${comment('externalIPLocal')} -m set --match-set ${set('externalIPLocal')} dst,dst`);
  nat.push(`-A ${KUBE_SERVICES} -m addrtype --dst-type LOCAL -j ${KUBE_NODE_PORT}`);
  nat.push(`-A ${KUBE_LOAD_BALANCER} -j ${KUBE_MARK_MASQ}`);
  // acceptIPVSTraffic: last in KUBE-SERVICES
  if (nonEmpty('clusterIP')) nat.push(`-A ${KUBE_SERVICES} -m set --match-set ${set('clusterIP')} dst,dst -j ACCEPT`);
  if (nonEmpty('loadBalancer')) nat.push(`-A ${KUBE_SERVICES} -m set --match-set ${set('loadBalancer')} dst,dst -j ACCEPT`);

  filter.push(`-A ${KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" -m mark --mark ${mark}/${mark} -j ACCEPT`);
  filter.push(`-A ${KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
  filter.push(`-A ${KUBE_NODE_PORT} ${comment('healthCheckNodePort')} -m set --match-set ${set('healthCheckNodePort')} dst -j ACCEPT`);

  nat.push(`-A ${KUBE_POSTROUTING} -m mark ! --mark ${mark}/${mark} -j RETURN`);
  nat.push(`-A ${KUBE_POSTROUTING} -j MARK --xor-mark ${mark}`);
  nat.push(`-A ${KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE${opts.randomFully === false ? '' : ' --random-fully'}`);
  nat.push(`-A ${KUBE_MARK_MASQ} -j MARK --or-mark ${mark}`);

  return { filter, nat };
}

/** Chains only iptables mode uses, per table (the per-service KUBE-SVC-… chains too). */
const IPTABLES_MODE_ONLY: Record<'filter' | 'nat' | 'mangle', ReadonlySet<string>> = {
  filter: new Set(['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-NODEPORTS', 'KUBE-PROXY-CANARY']),
  nat: new Set(['KUBE-NODEPORTS', 'KUBE-EXT-SERVICES', 'KUBE-PROXY-CANARY']),
  mangle: new Set(['KUBE-PROXY-CANARY']),
};

export interface Leftovers {
  /** table → chains to flush and delete. */
  chains: Map<string, string[]>;
  /** table → "-D …" lines for rules of other chains that jump to them. */
  unjumps: Map<string, string[]>;
}

/**
 * What iptables mode left behind that IPVS mode does not use (a mode switch; upstream cleans the
 * other mode's rules): its per-service chains, KUBE-NODEPORTS, the canary, filter KUBE-SERVICES,
 * and the rules elsewhere that jump to them. Chains IPVS mode owns are flushed by its own
 * restore anyway, so their rules need no -D. Pure.
 */
export function iptablesModeLeftovers(saved: SavedTables): Leftovers {
  const chains = new Map<string, string[]>();
  const unjumps = new Map<string, string[]>();
  for (const table of ['filter', 'nat', 'mangle'] as const) {
    const have = saved.chains.get(table);
    if (!have) continue;
    const stale = [...have].filter((c) => IPTABLES_MODE_ONLY[table].has(c) || (table === 'nat' && isServiceChain(c))).sort();
    if (stale.length === 0) continue;
    const staleSet = new Set(stale);
    const ours = new Set<string>(table === 'mangle' ? [] : IPVS_CHAINS[table]);
    const del: string[] = [];
    for (const rule of saved.rules.get(table) ?? []) {
      const m = /^-A (\S+) .*-j (\S+)/.exec(rule);
      if (m && staleSet.has(m[2]!) && !staleSet.has(m[1]!) && !ours.has(m[1]!)) del.push(rule.replace(/^-A /, '-D '));
    }
    chains.set(table, stale);
    unjumps.set(table, del);
  }
  return { chains, unjumps };
}

/**
 * One `iptables-restore --noflush` text: IPVS mode's chains named (so created or flushed) and
 * rewritten, plus inserts of the jump rules from built-in chains that the kernel lacks, plus the
 * removal of iptables-mode leftovers.
 */
export function iptablesRestoreText(desired: IpvsDesired, missingJumps: readonly JumpRule[] = [], leftovers?: Leftovers): string {
  const out: string[] = [];
  for (const table of ['filter', 'nat', 'mangle'] as const) {
    const stale = leftovers?.chains.get(table) ?? [];
    if (table === 'mangle' && stale.length === 0) continue;
    const own: readonly string[] = table === 'mangle' ? [] : IPVS_CHAINS[table];
    out.push(`*${table}`, ...own.map((c) => `:${c} - [0:0]`), ...stale.map((c) => `:${c} - [0:0]`));
    for (const j of missingJumps) if (j.table === table) out.push(`-I ${j.from} 1 ${jumpRuleSpec(j)}`);
    out.push(...(leftovers?.unjumps.get(table) ?? []));
    if (table !== 'mangle') out.push(...desired.iptables[table]);
    out.push(...stale.map((c) => `-X ${c}`), 'COMMIT');
  }
  return out.join('\n') + '\n';
}

/** A readable dump of the desired IPVS state (ipvsadm -Ln-like; goldens and logs). */
export function formatVirtualServers(desired: IpvsDesired): string {
  const lines: string[] = [];
  for (const key of [...desired.virtualServers.keys()].sort()) {
    const { service: s, destinations } = desired.virtualServers.get(key)!;
    const persist = s.flags & IP_VS_SVC_F_PERSISTENT ? ` persistent ${s.timeout}` : '';
    lines.push(`${key} ${s.scheduler}${persist}`);
    for (const d of destinations) lines.push(`  -> ${d.address}:${d.port} Masq ${d.weight}`);
  }
  return lines.join('\n') + '\n';
}

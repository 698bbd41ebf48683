/**
 * knode-proxy's internal model: what a Service and its EndpointSlices mean to one node, for one
 * IP family. Mirrors upstream's ServicePortMap / EndpointsMap (pkg/proxy/serviceport.go,
 * endpoint.go, endpointslicecache.go, topology.go) closely enough that the rules rendered from it
 * are the same as kube-proxy's.
 *
 * Design notes
 * - Everything here is pure: API objects in, frozen plain objects out. The change tracker
 *   (changes.ts) keeps the current maps and tells backends what changed.
 * - One ServicePort per (service, port) and per family; the key is upstream's
 *   ServicePortName.String(): "ns/name:port" (":port" only when the port has a name).
 * - Invalid fields (bad IPs, ports out of range, unknown protocols) never reach a renderer: the
 *   port or address is dropped and a warning returned, so one bad object cannot break the
 *   one-transaction ruleset of every other service.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type IPFamily = 'IPv4' | 'IPv6';

/** Default ClientIP affinity timeout (v1.DefaultClientIPServiceAffinitySeconds). */
export const DEFAULT_AFFINITY_SECONDS = 10800;
/** Upper bound for ClientIP timeout (v1.MaxClientIPServiceAffinitySeconds: one day). */
export const MAX_AFFINITY_SECONDS = 86400;

export interface ServicePort {
  /** "ns/name:port" — upstream ServicePortName.String(). Unique per service port. */
  readonly key: string;
  /** "ns/name" — upstream NamespacedName; partial syncs are per service, not per port. */
  readonly service: string;
  readonly namespace: string;
  readonly name: string;
  readonly portName: string;
  readonly protocol: Protocol;
  readonly port: number;
  /** ClusterIP of this family. */
  readonly clusterIP: string;
  readonly nodePort: number;
  readonly externalIPs: readonly string[];
  /** status.loadBalancer.ingress[].ip of this family (ipMode Proxy excluded, as upstream). */
  readonly loadBalancerIPs: readonly string[];
  readonly loadBalancerSourceRanges: readonly string[];
  /** ClientIP affinity timeout in seconds; 0 = no affinity. */
  readonly affinitySeconds: number;
  readonly internalPolicyLocal: boolean;
  readonly externalPolicyLocal: boolean;
  /** Only set when externalTrafficPolicy is Local (as upstream). */
  readonly healthCheckNodePort: number;
}

export interface Endpoint {
  readonly ip: string;
  readonly port: number;
  /** "ip:port" ("[ip]:port" for IPv6) — upstream BaseEndpointInfo.String(), hashed into chain names. */
  readonly key: string;
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
  readonly nodeName: string;
  readonly zone: string;
  readonly isLocal: boolean;
}

/** What a backend renders from: every service port and the endpoints of each port key. */
export interface ProxyState {
  readonly family: IPFamily;
  readonly services: ReadonlyMap<string, ServicePort>;
  readonly endpoints: ReadonlyMap<string, readonly Endpoint[]>;
}

export interface ModelWarning {
  readonly object: string;
  readonly message: string;
}

export function isFamily(ip: string, family: IPFamily): boolean {
  return family === 'IPv4' ? isIPv4(ip) : isIPv6(ip);
}

function parseProtocol(value: string | undefined): Protocol | undefined {
  const p = value ?? 'TCP';
  return p === 'TCP' || p === 'UDP' || p === 'SCTP' ? p : undefined;
}

function validPort(n: number | undefined): n is number {
  return n !== undefined && Number.isInteger(n) && n > 0 && n <= 65535;
}

function validCidr(cidr: string, family: IPFamily): boolean {
  const [ip, bits, extra] = cidr.trim().split('/');
  if (ip === undefined || extra !== undefined || !isFamily(ip, family)) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n <= (family === 'IPv4' ? 32 : 128);
}

/** DNS-1123 label (namespaces, service names): what the apiserver admits. */
const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** Port names: IANA_SVC_NAME is stricter (≤ 15); this is the shape that keeps rule text safe. */
const PORT_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Names end up unquoted in iptables/nft text: anything else could break the whole transaction. */
export function validName(name: string): boolean {
  return name.length <= 63 && LABEL.test(name);
}

export function servicePortKey(namespace: string, name: string, portName: string): string {
  return `${namespace}/${name}${portName === '' ? '' : `:${portName}`}`;
}

export function endpointKey(ip: string, port: number): string {
  return isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function clusterIPOf(svc: V1Service, family: IPFamily): string | undefined {
  const spec = svc.spec;
  if (!spec) return undefined;
  const ips = spec.clusterIPs && spec.clusterIPs.length > 0 ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [];
  return ips.find((ip) => isFamily(ip, family));
}

/**
 * The service ports of one Service for one family (upstream ServiceChangeTracker.serviceToServiceMap).
 * Headless ("None"), ExternalName and services without a ClusterIP of this family yield none.
 */
export function servicePortsOf(svc: V1Service, family: IPFamily, warnings: ModelWarning[] = []): ServicePort[] {
  const namespace = svc.metadata?.namespace ?? 'default';
  const name = svc.metadata?.name ?? '';
  const spec = svc.spec;
  const object = `service ${namespace}/${name}`;
  if (!spec || spec.type === 'ExternalName') return [];
  if (!validName(namespace) || !validName(name)) {
    warnings.push({ object, message: 'invalid namespace or name' });
    return [];
  }
  if (spec.clusterIP === 'None') return [];
  const clusterIP = clusterIPOf(svc, family);
  if (clusterIP === undefined) return [];

  const externalIPs = (spec.externalIPs ?? []).filter((ip) => isFamily(ip, family));
  const loadBalancerIPs = (svc.status?.loadBalancer?.ingress ?? [])
    .filter((ing) => ing.ip !== undefined && ing.ipMode !== 'Proxy')
    .map((ing) => ing.ip!)
    .filter((ip) => isFamily(ip, family));
  const loadBalancerSourceRanges = (spec.loadBalancerSourceRanges ?? [])
    .map((c) => c.trim())
    .filter((c) => {
      const ok = validCidr(c, family);
      if (!ok && !validCidr(c, family === 'IPv4' ? 'IPv6' : 'IPv4')) warnings.push({ object, message: `invalid loadBalancerSourceRange ${c}` });
      return ok;
    });
  let affinitySeconds = 0;
  if (spec.sessionAffinity === 'ClientIP') {
    const t = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_SECONDS;
    if (Number.isInteger(t) && t > 0 && t <= MAX_AFFINITY_SECONDS) affinitySeconds = t;
    else {
      warnings.push({ object, message: `invalid sessionAffinity timeout ${String(t)}, using default` });
      affinitySeconds = DEFAULT_AFFINITY_SECONDS;
    }
  }
  const internalPolicyLocal = spec.internalTrafficPolicy === 'Local';

  const out: ServicePort[] = [];
  const seen = new Set<string>();
  for (const p of spec.ports ?? []) {
    const portName = p.name ?? '';
    const protocol = parseProtocol(p.protocol);
    const key = servicePortKey(namespace, name, portName);
    if (portName !== '' && (portName.length > 63 || !PORT_NAME.test(portName))) {
      warnings.push({ object, message: `invalid port name ${JSON.stringify(portName)}` });
      continue;
    }
    if (protocol === undefined) {
      warnings.push({ object, message: `port ${portName}: unsupported protocol ${String(p.protocol)}` });
      continue;
    }
    if (!validPort(p.port)) {
      warnings.push({ object, message: `port ${portName}: invalid port ${String(p.port)}` });
      continue;
    }
    if (seen.has(key)) {
      warnings.push({ object, message: `duplicate port name ${JSON.stringify(portName)}` });
      continue;
    }
    seen.add(key);
    const nodePort = validPort(p.nodePort) ? p.nodePort : 0;
    const externallyAccessible = nodePort !== 0 || externalIPs.length > 0 || loadBalancerIPs.length > 0;
    const externalPolicyLocal = externallyAccessible && spec.externalTrafficPolicy === 'Local';
    out.push(
      Object.freeze({
        key,
        service: `${namespace}/${name}`,
        namespace,
        name,
        portName,
        protocol,
        port: p.port,
        clusterIP,
        nodePort,
        externalIPs: Object.freeze([...externalIPs]),
        loadBalancerIPs: Object.freeze([...loadBalancerIPs]),
        loadBalancerSourceRanges: Object.freeze([...loadBalancerSourceRanges]),
        affinitySeconds,
        internalPolicyLocal,
        externalPolicyLocal,
        healthCheckNodePort: externalPolicyLocal && validPort(spec.healthCheckNodePort) ? spec.healthCheckNodePort : 0,
      }),
    );
  }
  return out;
}

export function externallyAccessible(sp: ServicePort): boolean {
  return sp.nodePort !== 0 || sp.externalIPs.length > 0 || sp.loadBalancerIPs.length > 0;
}

export function usesClusterEndpoints(sp: ServicePort): boolean {
  return !sp.internalPolicyLocal || (externallyAccessible(sp) && !sp.externalPolicyLocal);
}

export function usesLocalEndpoints(sp: ServicePort): boolean {
  return sp.internalPolicyLocal || (externallyAccessible(sp) && sp.externalPolicyLocal);
}

/** The name of the Service an EndpointSlice belongs to (label kubernetes.io/service-name). */
export function sliceServiceName(slice: V1EndpointSlice): string | undefined {
  const svc = slice.metadata?.labels?.['kubernetes.io/service-name'];
  return svc === undefined || svc === '' ? undefined : `${slice.metadata?.namespace ?? 'default'}/${svc}`;
}

function addressTypeFamily(t: string): IPFamily | undefined {
  return t === 'IPv4' ? 'IPv4' : t === 'IPv6' ? 'IPv6' : undefined;
}

/**
 * Merge the EndpointSlices of one service into endpoints per service-port key (upstream
 * EndpointSliceCache.getEndpointsMap): first address of each endpoint; slices in name order;
 * an ip:port seen in several slices keeps the ready copy; result sorted by "ip:port".
 */
export function endpointsOfSlices(
  slices: readonly V1EndpointSlice[],
  opts: { family: IPFamily; nodeName: string },
  warnings: ModelWarning[] = [],
): Map<string, Endpoint[]> {
  const byPort = new Map<string, Map<string, Endpoint>>();
  const sorted = [...slices].sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
  for (const slice of sorted) {
    const family = addressTypeFamily(slice.addressType);
    if (family !== opts.family) continue;
    const namespace = slice.metadata?.namespace ?? 'default';
    const svc = slice.metadata?.labels?.['kubernetes.io/service-name'];
    if (svc === undefined || svc === '') continue;
    for (const port of slice.ports ?? []) {
      if (!validPort(port.port) || port.name === undefined) continue;
      const key = servicePortKey(namespace, svc, port.name);
      let set = byPort.get(key);
      if (!set) byPort.set(key, (set = new Map()));
      for (const ep of slice.endpoints ?? []) {
        const ip = ep.addresses?.[0];
        if (ip === undefined) continue;
        if (!isFamily(ip, family)) {
          warnings.push({ object: `endpointslice ${namespace}/${slice.metadata?.name ?? ''}`, message: `invalid address ${ip}` });
          continue;
        }
        const ready = ep.conditions?.ready ?? true;
        const serving = ep.conditions?.serving ?? ready;
        const terminating = ep.conditions?.terminating ?? false;
        const nodeName = ep.nodeName ?? '';
        const info: Endpoint = Object.freeze({
          ip,
          port: port.port,
          key: endpointKey(ip, port.port),
          ready,
          serving,
          terminating,
          nodeName,
          zone: ep.zone ?? '',
          isLocal: nodeName !== '' && nodeName === opts.nodeName,
        });
        const prev = set.get(info.key);
        if (prev === undefined || (!prev.ready && info.ready)) set.set(info.key, info);
      }
    }
  }
  const out = new Map<string, Endpoint[]>();
  for (const [key, set] of byPort) {
    if (set.size === 0) continue;
    out.set(
      key,
      [...set.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
    );
  }
  return out;
}

export interface CategorizedEndpoints {
  /** Endpoints for "Cluster" traffic policy. */
  readonly cluster: readonly Endpoint[];
  /** Endpoints for "Local" traffic policy. */
  readonly local: readonly Endpoint[];
  /** Union: every endpoint this node may send to (one KUBE-SEP-/endpoint- chain each). */
  readonly allReachable: readonly Endpoint[];
  /** True when the service has usable endpoints anywhere (not only on this node). */
  readonly hasAny: boolean;
}

/**
 * Upstream CategorizeEndpoints (topology hints not implemented): ready endpoints; when none are
 * ready anywhere, serving+terminating ones; Local policy filters to this node's endpoints (ready
 * ones, else serving+terminating local ones).
 */
export function categorizeEndpoints(sp: ServicePort, endpoints: readonly Endpoint[]): CategorizedEndpoints {
  let cluster: Endpoint[] = [];
  let local: Endpoint[] = [];
  let hasAny = false;
  const useCluster = usesClusterEndpoints(sp);
  if (useCluster) {
    cluster = endpoints.filter((e) => e.ready);
    if (cluster.length === 0) cluster = endpoints.filter((e) => e.serving && e.terminating);
    if (cluster.length > 0) hasAny = true;
  }
  if (!usesLocalEndpoints(sp)) return { cluster, local, allReachable: cluster, hasAny };

  let localReady = false;
  let localServingTerminating = false;
  for (const e of endpoints) {
    if (e.ready) {
      hasAny = true;
      if (e.isLocal) localReady = true;
    } else if (e.serving && e.terminating) {
      hasAny = true;
      if (e.isLocal) localServingTerminating = true;
    }
  }
  if (localReady) local = endpoints.filter((e) => e.isLocal && e.ready);
  else if (localServingTerminating) local = endpoints.filter((e) => e.isLocal && e.serving && e.terminating);

  if (!useCluster) return { cluster, local, allReachable: local, hasAny };
  if (local.length === 0) return { cluster, local, allReachable: cluster, hasAny };
  if (cluster.length === 0) return { cluster, local, allReachable: local, hasAny };
  const seen = new Set(cluster.map((e) => e.key));
  return { cluster, local, allReachable: [...cluster, ...local.filter((e) => !seen.has(e.key))], hasAny };
}

/** Which of a service port's chains serve internal and external traffic, given its policies and endpoints. */
export interface TrafficPolicyPlan<C extends string> {
  eps: CategorizedEndpoints;
  hasEndpoints: boolean;
  usesClusterChain: boolean;
  usesLocalChain: boolean;
  /** Chain that internal (ClusterIP) traffic goes to: the cluster chain, or the local one for internalTrafficPolicy Local. */
  internalChain: C;
  hasInternal: boolean;
  /** Chain that external traffic goes to after the EXT chain: cluster, or local for externalTrafficPolicy Local. */
  externalPolicyChain: C;
  hasExternal: boolean;
  usesExtChain: boolean;
}

/**
 * Upstream's per-service-port policy decisions, shared by the iptables and nftables renderers;
 * `chains` names the backend's cluster-wide and node-local service chains.
 */
export function trafficPolicyPlan<C extends string>(sp: ServicePort, endpoints: readonly Endpoint[], chains: { cluster: C; local: C }): TrafficPolicyPlan<C> {
  const eps = categorizeEndpoints(sp, endpoints);
  const hasEndpoints = eps.hasAny;
  const noLocal = eps.local.length === 0;
  return {
    eps,
    hasEndpoints,
    usesClusterChain: eps.cluster.length > 0 && usesClusterEndpoints(sp),
    usesLocalChain: eps.local.length > 0 && usesLocalEndpoints(sp),
    internalChain: sp.internalPolicyLocal ? chains.local : chains.cluster,
    hasInternal: hasEndpoints && !(sp.internalPolicyLocal && noLocal),
    externalPolicyChain: sp.externalPolicyLocal ? chains.local : chains.cluster,
    hasExternal: hasEndpoints && !(sp.externalPolicyLocal && noLocal),
    usesExtChain: hasEndpoints && externallyAccessible(sp),
  };
}

/**
 * Service / EndpointSlice change tracker (upstream ServiceChangeTracker + EndpointsChangeTracker +
 * EndpointSliceCache, for one IP family).
 *
 * Design notes
 * - Watch handlers call the update and delete methods with whole objects; nothing is computed there, the
 *   touched service names are only marked dirty. `take()` (called by the sync loop) rebuilds the
 *   dirty services' ports and merged endpoints, compares them with what the last sync saw and
 *   reports only the services whose model really changed — a resourceVersion bump or a status
 *   change that does not affect the proxy leaves `changed` empty, as upstream drops no-op changes.
 * - Partial syncs work per service ("ns/name", upstream UpdatedServices), not per port: all the
 *   ports' chains of a changed service are rewritten.
 * - The maps in the returned state are the tracker's own (read-only view); a sync must finish
 *   using them before the next `take()`.
 */
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import {
  endpointsOfSlices,
  servicePortsOf,
  sliceServiceName,
  type Endpoint,
  type IPFamily,
  type ModelWarning,
  type ProxyState,
  type ServicePort,
} from './model.js';

export interface TrackerOptions {
  family: IPFamily;
  nodeName: string;
}

/** A UDP endpoint that stopped being used: conntrack entries towards it must be deleted. */
export interface StaleUdpEndpoint {
  readonly servicePort: ServicePort;
  readonly endpoint: Endpoint;
}

export interface TakeResult {
  readonly state: ProxyState;
  /** Services ("ns/name") whose ports or endpoints changed since the previous take(). */
  readonly changed: ReadonlySet<string>;
  readonly serviceChanges: number;
  readonly endpointChanges: number;
  readonly staleUdpEndpoints: readonly StaleUdpEndpoint[];
  /** UDP service ports that went from no endpoints to some: conntrack entries to their IPs are stale. */
  readonly newlyServedUdp: readonly ServicePort[];
  readonly warnings: readonly ModelWarning[];
}

function nsName(namespace: string | undefined, name: string | undefined): string {
  return `${namespace ?? 'default'}/${name ?? ''}`;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class ChangeTracker {
  readonly family: IPFamily;
  readonly nodeName: string;
  private readonly serviceObjs = new Map<string, V1Service>();
  private readonly sliceObjs = new Map<string, V1EndpointSlice>();
  private readonly slicesByService = new Map<string, Set<string>>();
  private readonly dirtyServices = new Set<string>();
  private readonly dirtyEndpoints = new Set<string>();

  private readonly services = new Map<string, ServicePort>();
  private readonly endpoints = new Map<string, readonly Endpoint[]>();
  /** ns/name → service-port keys currently in `services` / `endpoints`. */
  private readonly portsOfService = new Map<string, string[]>();
  private readonly epPortsOfService = new Map<string, string[]>();

  constructor(opts: TrackerOptions) {
    this.family = opts.family;
    this.nodeName = opts.nodeName;
  }

  updateService(svc: V1Service): void {
    const key = nsName(svc.metadata?.namespace, svc.metadata?.name);
    this.serviceObjs.set(key, svc);
    this.dirtyServices.add(key);
  }

  deleteService(namespace: string, name: string): void {
    const key = nsName(namespace, name);
    this.serviceObjs.delete(key);
    this.dirtyServices.add(key);
  }

  updateEndpointSlice(slice: V1EndpointSlice): void {
    const sliceKey = nsName(slice.metadata?.namespace, slice.metadata?.name);
    const prev = this.sliceObjs.get(sliceKey);
    const prevSvc = prev ? sliceServiceName(prev) : undefined;
    const svc = sliceServiceName(slice);
    if (prevSvc !== undefined && prevSvc !== svc) this.unindexSlice(prevSvc, sliceKey);
    this.sliceObjs.set(sliceKey, slice);
    if (svc === undefined) return;
    let set = this.slicesByService.get(svc);
    if (!set) this.slicesByService.set(svc, (set = new Set()));
    set.add(sliceKey);
    this.dirtyEndpoints.add(svc);
  }

  deleteEndpointSlice(namespace: string, name: string): void {
    const sliceKey = nsName(namespace, name);
    const prev = this.sliceObjs.get(sliceKey);
    if (!prev) return;
    this.sliceObjs.delete(sliceKey);
    const svc = sliceServiceName(prev);
    if (svc !== undefined) this.unindexSlice(svc, sliceKey);
  }

  private unindexSlice(svc: string, sliceKey: string): void {
    const set = this.slicesByService.get(svc);
    set?.delete(sliceKey);
    if (set && set.size === 0) this.slicesByService.delete(svc);
    this.dirtyEndpoints.add(svc);
  }

  /** True when some object changed since the last take() (it may still be a no-op for the model). */
  pending(): boolean {
    return this.dirtyServices.size > 0 || this.dirtyEndpoints.size > 0;
  }

  /** The current state without consuming changes. */
  state(): ProxyState {
    return { family: this.family, services: this.services, endpoints: this.endpoints };
  }

  take(): TakeResult {
    const changed = new Set<string>();
    const warnings: ModelWarning[] = [];
    let serviceChanges = 0;
    let endpointChanges = 0;
    const staleUdpEndpoints: StaleUdpEndpoint[] = [];
    const newlyServedUdp: ServicePort[] = [];
    // Endpoint counts before the change, for UDP conntrack bookkeeping.
    const touched = new Set([...this.dirtyServices, ...this.dirtyEndpoints]);
    const before = new Map<string, { sp: ServicePort | undefined; eps: readonly Endpoint[] }>();
    for (const svc of touched) {
      for (const key of new Set([...(this.portsOfService.get(svc) ?? []), ...(this.epPortsOfService.get(svc) ?? [])])) {
        before.set(key, { sp: this.services.get(key), eps: this.endpoints.get(key) ?? [] });
      }
    }

    for (const svc of this.dirtyServices) {
      const obj = this.serviceObjs.get(svc);
      const ports = obj ? servicePortsOf(obj, this.family, warnings) : [];
      const oldKeys = this.portsOfService.get(svc) ?? [];
      const old = oldKeys.map((k) => this.services.get(k));
      if (sameJson(old, ports)) continue;
      for (const k of oldKeys) this.services.delete(k);
      for (const p of ports) this.services.set(p.key, p);
      if (ports.length > 0) this.portsOfService.set(svc, ports.map((p) => p.key));
      else this.portsOfService.delete(svc);
      changed.add(svc);
      serviceChanges++;
    }
    for (const svc of this.dirtyEndpoints) {
      const sliceKeys = this.slicesByService.get(svc);
      const slices = sliceKeys ? [...sliceKeys].map((k) => this.sliceObjs.get(k)!) : [];
      const merged = endpointsOfSlices(slices, { family: this.family, nodeName: this.nodeName }, warnings);
      const oldKeys = this.epPortsOfService.get(svc) ?? [];
      const newKeys = [...merged.keys()].sort();
      const same =
        sameJson([...oldKeys].sort(), newKeys) && newKeys.every((k) => sameJson(this.endpoints.get(k), merged.get(k)));
      if (same) continue;
      for (const k of oldKeys) this.endpoints.delete(k);
      for (const [k, eps] of merged) this.endpoints.set(k, Object.freeze(eps));
      if (newKeys.length > 0) this.epPortsOfService.set(svc, newKeys);
      else this.epPortsOfService.delete(svc);
      changed.add(svc);
      endpointChanges++;
    }
    this.dirtyServices.clear();
    this.dirtyEndpoints.clear();

    for (const svc of touched) {
      for (const key of [...(this.portsOfService.get(svc) ?? []), ...(this.epPortsOfService.get(svc) ?? [])]) {
        if (!before.has(key)) before.set(key, { sp: undefined, eps: [] });
      }
    }
    for (const [key, prev] of before) {
      const sp = this.services.get(key) ?? prev.sp;
      if (!sp || sp.protocol !== 'UDP') continue;
      const now = new Set((this.endpoints.get(key) ?? []).filter((e) => e.ready || e.serving).map((e) => e.key));
      const prevUsable = prev.eps.filter((e) => e.ready || e.serving);
      for (const e of prevUsable) if (!now.has(e.key)) staleUdpEndpoints.push({ servicePort: sp, endpoint: e });
      if (prevUsable.length === 0 && now.size > 0 && this.services.has(key)) newlyServedUdp.push(sp);
    }
    return { state: this.state(), changed, serviceChanges, endpointChanges, staleUdpEndpoints, newlyServedUdp, warnings };
  }
}

/**
 * The endpointslice controller (and, in the same loop, the endpoints
 * controller): for each Service with a selector, renders the desired
 * EndpointSlices and v1 Endpoints from the cached pods (endpoints-render.ts)
 * and writes only what differs: slices are matched to desired groups by port
 * set, updated in place, created with generateName `<service>-`, extra ones
 * deleted. Services without a selector are left alone. A deleted Service's
 * Endpoints are deleted here; its slices go through the garbage collector
 * (ownerReference).
 */
import { apiReason } from './client.js';
import { canonicalJson, sameJson } from './canonical.js';
import type { Controller, ControllerContext } from './context.js';
import { waitForSync } from './context.js';
import { managedBy, managedByLabel, portsKey, renderEndpointGroups, renderEndpointSubsets, serviceNameLabel } from './endpoints-render.js';
import type { EndpointGroup } from './endpoints-render.js';
import { WorkQueue } from './queue.js';
import { mapMatches } from './selectors.js';
import { keyOf, splitKey } from './types.js';
import type { EndpointSlice, EndpointSubset, Endpoints, Node, OwnerReference, Pod, Service } from './types.js';

function hasSelector(svc: Service): boolean {
  return Object.keys(svc.spec?.selector ?? {}).length > 0;
}

function serviceLabels(svc: Service): Record<string, string> {
  const labels: Record<string, string> = { ...(svc.metadata.labels ?? {}) };
  if (svc.spec?.clusterIP === 'None') labels['service.kubernetes.io/headless'] = '';
  return labels;
}

export function sliceLabels(svc: Service): Record<string, string> {
  return { ...serviceLabels(svc), [serviceNameLabel]: svc.metadata.name ?? '', [managedByLabel]: managedBy };
}

export function serviceOwnerRef(svc: Service): OwnerReference {
  return { apiVersion: 'v1', kind: 'Service', name: svc.metadata.name ?? '', uid: svc.metadata.uid ?? '', controller: true, blockOwnerDeletion: true };
}

export function renderSlice(svc: Service, group: EndpointGroup): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { generateName: `${svc.metadata.name ?? ''}-`, namespace: svc.metadata.namespace, labels: sliceLabels(svc), ownerReferences: [serviceOwnerRef(svc)] },
    addressType: 'IPv4',
    endpoints: group.endpoints,
    ports: group.ports,
  };
}

export class EndpointSliceController implements Controller {
  readonly name = 'endpointslice';
  private readonly queue: WorkQueue;

  constructor(private readonly ctx: ControllerContext) {
    this.queue = new WorkQueue({ name: this.name, logger: ctx.logger });
    const { services, pods, endpointSlices, endpoints } = ctx.informers;
    services.on({
      add: (s) => this.queue.add(keyOf(s)),
      update: (_o, s) => this.queue.add(keyOf(s)),
      delete: (s) => this.queue.add(keyOf(s)),
    });
    pods.on({
      add: (p) => this.onPod(p),
      update: (o, p) => this.onPod(p, o),
      delete: (p) => this.onPod(p),
    });
    const bySlice = (s: EndpointSlice): void => {
      const svc = s.metadata.labels?.[serviceNameLabel];
      if (svc && s.metadata.labels?.[managedByLabel] === managedBy) this.queue.add(`${s.metadata.namespace ?? ''}/${svc}`);
    };
    endpointSlices.on({ add: bySlice, update: (_o, s) => bySlice(s), delete: bySlice });
    endpoints.on({ update: (_o, e) => this.queue.add(keyOf(e)), delete: (e) => this.queue.add(keyOf(e)) });
  }

  /** service key → names of slices we created that the cache has not shown yet. */
  private readonly expected = new Map<string, { names: Set<string>; at: number }>();

  private expectSlice(svcKey: string, name: string): void {
    const e = this.expected.get(svcKey) ?? { names: new Set<string>(), at: Date.now() };
    e.names.add(name);
    e.at = Date.now();
    this.expected.set(svcKey, e);
  }

  /** True when the slice cache has caught up with our creates (or they are older than 10 s). */
  private cacheCaughtUp(svcKey: string, namespace: string): boolean {
    const e = this.expected.get(svcKey);
    if (!e) return true;
    for (const n of e.names) if (this.ctx.informers.endpointSlices.get(`${namespace}/${n}`)) e.names.delete(n);
    if (e.names.size === 0 || Date.now() - e.at > 10_000) {
      this.expected.delete(svcKey);
      return true;
    }
    return false;
  }

  private onPod(p: Pod, old?: Pod): void {
    for (const svc of this.ctx.informers.services.list(p.metadata.namespace)) {
      if (!hasSelector(svc)) continue;
      const sel = svc.spec!.selector!;
      if (mapMatches(sel, p.metadata.labels) || (old && mapMatches(sel, old.metadata.labels))) this.queue.add(keyOf(svc));
    }
  }

  private async sync(key: string): Promise<void> {
    const { namespace, name } = splitKey(key);
    const svc = this.ctx.informers.services.get(key);
    if (!svc) {
      const ep = this.ctx.informers.endpoints.get(key);
      if (ep && !ep.metadata.labels?.['endpointslice.kubernetes.io/skip-mirror']) {
        try {
          await this.ctx.client.delete(`/api/v1/namespaces/${namespace}/endpoints/${name}`);
        } catch (err) {
          if (apiReason(err) !== 'NotFound') throw err;
        }
      }
      return;
    }
    if (!hasSelector(svc) || svc.metadata.deletionTimestamp) return;
    if (!this.cacheCaughtUp(key, namespace)) {
      this.queue.addAfter(key, 100);
      return;
    }
    const sel = svc.spec!.selector!;
    const pods = this.ctx.informers.pods.list(namespace).filter((p) => mapMatches(sel, p.metadata.labels));
    const nodes = new Map<string, Node>(this.ctx.informers.nodes.list().map((n) => [n.metadata.name ?? '', n]));
    await this.syncSlices(svc, renderEndpointGroups(svc, pods, nodes));
    await this.syncEndpoints(svc, renderEndpointSubsets(svc, pods));
  }

  private async syncSlices(svc: Service, groups: EndpointGroup[]): Promise<void> {
    const namespace = svc.metadata.namespace ?? '';
    const name = svc.metadata.name ?? '';
    const base = `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices`;
    const existing = this.ctx.informers.endpointSlices
      .list(namespace)
      .filter((s) => s.metadata.labels?.[serviceNameLabel] === name && s.metadata.labels?.[managedByLabel] === managedBy && !s.metadata.deletionTimestamp)
      .sort((a, b) => (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''));
    // No endpoints: one placeholder slice, as upstream keeps.
    const desired: EndpointGroup[] = groups.length > 0 ? groups : [{ ports: [], endpoints: [] }];
    const unused = [...existing];
    // Exact port-set matches first, then reuse what is left, then create.
    const assigned = desired.map((group) => {
      const i = unused.findIndex((s) => portsKey(s.ports) === portsKey(group.ports));
      return i >= 0 ? unused.splice(i, 1)[0] : undefined;
    });
    for (const [i, group] of desired.entries()) {
      const want = renderSlice(svc, group);
      const cur = assigned[i] ?? unused.shift();
      if (!cur) {
        const created = await this.ctx.client.create<EndpointSlice>(base, want);
        this.expectSlice(keyOf(svc), created.metadata.name ?? '');
        this.ctx.logger.debug('created endpointslice', { service: keyOf(svc), endpoints: group.endpoints.length });
        continue;
      }
      if (
        sameJson(cur.metadata.ownerReferences ?? [], want.metadata.ownerReferences) &&
        sameJson(cur.metadata.labels ?? {}, want.metadata.labels) &&
        canonicalJson(cur.endpoints ?? []) === canonicalJson(want.endpoints) &&
        canonicalJson(cur.ports ?? []) === canonicalJson(want.ports)
      ) {
        continue;
      }
      const next: EndpointSlice = {
        ...cur,
        metadata: { ...cur.metadata, labels: want.metadata.labels, ownerReferences: want.metadata.ownerReferences },
        endpoints: want.endpoints,
        ports: want.ports,
      };
      await this.ctx.client.update(`${base}/${cur.metadata.name ?? ''}`, next);
    }
    for (const s of unused) {
      try {
        await this.ctx.client.delete(`${base}/${s.metadata.name ?? ''}`);
      } catch (err) {
        if (apiReason(err) !== 'NotFound') throw err;
      }
    }
  }

  private async syncEndpoints(svc: Service, subsets: EndpointSubset[]): Promise<void> {
    const namespace = svc.metadata.namespace ?? '';
    const name = svc.metadata.name ?? '';
    const path = `/api/v1/namespaces/${namespace}/endpoints`;
    const labels = serviceLabels(svc);
    const cur: Endpoints | undefined = this.ctx.informers.endpoints.get(keyOf(svc));
    if (!cur) {
      try {
        await this.ctx.client.create(path, { apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace, labels }, subsets });
      } catch (err) {
        // The cache is behind; the watch event brings us back.
        if (apiReason(err) !== 'AlreadyExists') throw err;
      }
      return;
    }
    if (sameJson(cur.subsets ?? [], subsets) && sameJson(cur.metadata.labels ?? {}, labels)) return;
    await this.ctx.client.update(`${path}/${name}`, { ...cur, metadata: { ...cur.metadata, labels }, subsets });
  }

  async run(signal: AbortSignal): Promise<void> {
    const { services, pods, endpointSlices, endpoints, nodes } = this.ctx.informers;
    if (!(await waitForSync([services, pods, endpointSlices, endpoints, nodes], signal))) return;
    for (const s of services.list()) this.queue.add(keyOf(s));
    await this.queue.run((key) => this.sync(key), signal);
  }
}

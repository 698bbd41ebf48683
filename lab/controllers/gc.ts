/**
 * Garbage collection (background propagation): a dependent whose
 * ownerReferences all point at owners that are gone (no object with that
 * uid) is deleted. Dependents watched: Pods, ReplicaSets, EndpointSlices;
 * owners known: Deployment, ReplicaSet, Service (others are never judged
 * gone). The cache says "maybe gone"; a live GET of the owner confirms it
 * before anything is deleted, as upstream's garbage collector does.
 */
import { apiReason } from './client.js';
import type { ApiClient } from './client.js';
import type { Controller, ControllerContext } from './context.js';
import { waitForSync } from './context.js';
import type { Informer } from './informer.js';
import { WorkQueue } from './queue.js';
import { keyOf, splitKey } from './types.js';
import type { KubeObject, OwnerReference } from './types.js';

interface Kind {
  path: (namespace: string, name?: string) => string;
  informer: Informer<KubeObject>;
}

function nsPath(prefix: string, resource: string): (namespace: string, name?: string) => string {
  return (namespace, name) => `${prefix}/namespaces/${namespace}/${resource}${name ? `/${name}` : ''}`;
}

/** Which dependents may be deleted: those with owners, none of which exists. */
export function ownersGone(refs: OwnerReference[] | undefined, exists: (ref: OwnerReference) => boolean | undefined): boolean {
  if (!refs || refs.length === 0) return false;
  // undefined: an owner kind we cannot judge; keep the dependent.
  return refs.every((r) => exists(r) === false);
}

export class GarbageCollector implements Controller {
  readonly name = 'garbage-collector';
  private readonly queue: WorkQueue;
  private readonly kinds: Record<string, Kind>;
  private readonly client: ApiClient;

  constructor(private readonly ctx: ControllerContext) {
    this.client = ctx.client;
    this.queue = new WorkQueue({ name: this.name, logger: ctx.logger });
    const i = ctx.informers;
    this.kinds = {
      'v1/Pod': { path: nsPath('/api/v1', 'pods'), informer: i.pods },
      'v1/Service': { path: nsPath('/api/v1', 'services'), informer: i.services },
      'apps/v1/ReplicaSet': { path: nsPath('/apis/apps/v1', 'replicasets'), informer: i.replicaSets },
      'apps/v1/Deployment': { path: nsPath('/apis/apps/v1', 'deployments'), informer: i.deployments },
      'discovery.k8s.io/v1/EndpointSlice': {
        path: nsPath('/apis/discovery.k8s.io/v1', 'endpointslices'),
        informer: i.endpointSlices,
      },
    };
    const dependents = ['v1/Pod', 'apps/v1/ReplicaSet', 'discovery.k8s.io/v1/EndpointSlice'];
    for (const kind of dependents) {
      const inf = this.kinds[kind]!.informer;
      const enqueue = (o: KubeObject): void => {
        if ((o.metadata.ownerReferences ?? []).length > 0) this.queue.add(`${kind}|${keyOf(o)}`);
      };
      inf.on({ add: enqueue, update: (_o, o) => enqueue(o) });
    }
    // An owner going away: visit its dependents.
    for (const kind of ['v1/Service', 'apps/v1/ReplicaSet', 'apps/v1/Deployment']) {
      this.kinds[kind]!.informer.on({ delete: (owner) => this.ownerGone(owner) });
    }
  }

  private ownerGone(owner: KubeObject): void {
    const uid = owner.metadata.uid;
    for (const kind of ['v1/Pod', 'apps/v1/ReplicaSet', 'discovery.k8s.io/v1/EndpointSlice']) {
      for (const o of this.kinds[kind]!.informer.list(owner.metadata.namespace)) {
        if ((o.metadata.ownerReferences ?? []).some((r) => r.uid === uid)) this.queue.add(`${kind}|${keyOf(o)}`);
      }
    }
  }

  private kindOf(ref: OwnerReference): Kind | undefined {
    return this.kinds[`${ref.apiVersion}/${ref.kind}`];
  }

  /** Cache view: true/false, or undefined when the owner kind is unknown. */
  private cachedExists(namespace: string, ref: OwnerReference): boolean | undefined {
    const k = this.kindOf(ref);
    if (!k) return undefined;
    return k.informer.get(`${namespace}/${ref.name}`)?.metadata.uid === ref.uid;
  }

  private async liveExists(namespace: string, ref: OwnerReference): Promise<boolean> {
    const k = this.kindOf(ref)!;
    try {
      const owner = await this.client.get<KubeObject>(k.path(namespace, ref.name));
      return owner.metadata.uid === ref.uid;
    } catch (err) {
      if (apiReason(err) === 'NotFound') return false;
      throw err;
    }
  }

  private async sync(item: string): Promise<void> {
    const [kind, key] = item.split('|') as [string, string];
    const k = this.kinds[kind]!;
    const obj = k.informer.get(key);
    if (!obj || obj.metadata.deletionTimestamp) return;
    const { namespace, name } = splitKey(key);
    const refs = obj.metadata.ownerReferences;
    if (!ownersGone(refs, (r) => this.cachedExists(namespace, r))) return;
    for (const r of refs ?? []) if (await this.liveExists(namespace, r)) return;
    this.ctx.logger.info('deleting dependent of a deleted owner', { kind, object: key, owners: (refs ?? []).map((r) => `${r.kind}/${r.name}`) });
    try {
      await this.client.delete(k.path(namespace, name), { propagationPolicy: 'Background', preconditions: { uid: obj.metadata.uid } });
    } catch (err) {
      if (apiReason(err) !== 'NotFound' && apiReason(err) !== 'Conflict') throw err;
    }
  }

  async run(signal: AbortSignal): Promise<void> {
    if (!(await waitForSync(Object.values(this.kinds).map((k) => k.informer), signal))) return;
    const resyncAll = (): void => {
      for (const kind of ['v1/Pod', 'apps/v1/ReplicaSet', 'discovery.k8s.io/v1/EndpointSlice']) {
        for (const o of this.kinds[kind]!.informer.list()) if ((o.metadata.ownerReferences ?? []).length > 0) this.queue.add(`${kind}|${keyOf(o)}`);
      }
    };
    resyncAll();
    const timer = setInterval(resyncAll, 60_000);
    signal.addEventListener('abort', () => clearInterval(timer));
    await this.queue.run((item) => this.sync(item), signal);
  }
}

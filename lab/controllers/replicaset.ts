/**
 * The ReplicaSet controller: keeps spec.replicas active pods that match the
 * selector, creating them from the template (generateName `<rs>-`,
 * controller ownerReference) and deleting the surplus in upstream's order;
 * adopts matching orphans and releases pods that stopped matching (patches of
 * metadata.ownerReferences); writes status (replicas, fullyLabeledReplicas,
 * readyReplicas, availableReplicas with minReadySeconds, observedGeneration).
 * Expectations keep a lagging pod cache from causing double creates.
 */
import { apiReason } from './client.js';
import type { Controller, ControllerContext } from './context.js';
import { waitForSync } from './context.js';
import { Expectations } from './expectations.js';
import { WorkQueue } from './queue.js';
import { claim, isActive, ownerRefFor, podFromTemplate, podsToDelete, replicaDiff, replicaSetStatus, statusDiffers } from './replicaset-logic.js';
import { selectorMatches } from './selectors.js';
import { controllerOf, keyOf, splitKey } from './types.js';
import type { Pod } from './types.js';

export class ReplicaSetController implements Controller {
  readonly name = 'replicaset';
  private readonly queue: WorkQueue;
  private readonly expectations = new Expectations();

  constructor(private readonly ctx: ControllerContext) {
    this.queue = new WorkQueue({ name: this.name, logger: ctx.logger });
    const { replicaSets, pods } = ctx.informers;
    replicaSets.on({
      add: (rs) => this.queue.add(keyOf(rs)),
      update: (_o, rs) => this.queue.add(keyOf(rs)),
      delete: (rs) => {
        this.expectations.forget(keyOf(rs));
        this.queue.add(keyOf(rs));
      },
    });
    pods.on({
      add: (p) => {
        const owner = this.ownerKey(p);
        if (owner) this.expectations.observeAdd(owner);
        if (p.metadata.deletionTimestamp && owner) this.expectations.observeDelete(owner, keyOf(p));
        this.enqueueFor(p);
      },
      update: (old, p) => {
        const owner = this.ownerKey(p);
        if (owner && p.metadata.deletionTimestamp && !old.metadata.deletionTimestamp) this.expectations.observeDelete(owner, keyOf(p));
        this.enqueueFor(p, old);
      },
      delete: (p) => {
        const owner = this.ownerKey(p);
        if (owner) this.expectations.observeDelete(owner, keyOf(p));
        this.enqueueFor(p);
      },
    });
  }

  private ownerKey(p: Pod): string | undefined {
    const ref = controllerOf(p);
    return ref?.kind === 'ReplicaSet' ? `${p.metadata.namespace ?? ''}/${ref.name}` : undefined;
  }

  /** The owning ReplicaSet, or for orphans every ReplicaSet whose selector matches (adoption). */
  private enqueueFor(p: Pod, old?: Pod): void {
    const owner = this.ownerKey(p);
    if (owner) this.queue.add(owner);
    if (old) {
      const oldOwner = this.ownerKey(old);
      if (oldOwner && oldOwner !== owner) this.queue.add(oldOwner);
    }
    if (!controllerOf(p)) {
      for (const rs of this.ctx.informers.replicaSets.list(p.metadata.namespace)) {
        if (selectorMatches(rs.spec.selector, p.metadata.labels)) this.queue.add(keyOf(rs));
      }
    }
  }

  private async sync(key: string): Promise<void> {
    const rs = this.ctx.informers.replicaSets.get(key);
    if (!rs) {
      this.expectations.forget(key);
      return;
    }
    const { namespace, name } = splitKey(key);
    const podsPath = `/api/v1/namespaces/${namespace}/pods`;
    const deleting = rs.metadata.deletionTimestamp !== undefined;
    const c = claim(rs.metadata.uid ?? '', rs.spec.selector, this.ctx.informers.pods.list(namespace), deleting);
    for (const p of c.adopt) {
      await this.patchOwners(podsPath, p, [...(p.metadata.ownerReferences ?? []), ownerRefFor('apps/v1', 'ReplicaSet', rs)]);
    }
    for (const p of c.release) {
      await this.patchOwners(podsPath, p, (p.metadata.ownerReferences ?? []).filter((r) => r.uid !== rs.metadata.uid));
    }
    const active = c.owned.filter(isActive);
    if (!deleting && this.expectations.satisfied(key)) {
      const diff = replicaDiff(rs, active.length);
      if (diff > 0) {
        this.expectations.expect(key, diff);
        this.ctx.logger.info('creating pods', { replicaSet: key, count: diff });
        const template = podFromTemplate(rs);
        const results = await Promise.allSettled(Array.from({ length: diff }, () => this.ctx.client.create(podsPath, template)));
        let failure: unknown;
        for (const r of results) {
          if (r.status === 'rejected') {
            this.expectations.observeAdd(key);
            failure = r.reason;
          }
        }
        if (failure !== undefined) throw failure;
      } else if (diff < 0) {
        const victims = podsToDelete(active, -diff);
        this.expectations.expect(key, 0, victims.map(keyOf));
        this.ctx.logger.info('deleting pods', { replicaSet: key, pods: victims.map((p) => p.metadata.name) });
        for (const p of victims) {
          try {
            await this.ctx.client.delete(`${podsPath}/${p.metadata.name ?? ''}`, { preconditions: { uid: p.metadata.uid } });
          } catch (err) {
            this.expectations.observeDelete(key, keyOf(p));
            if (apiReason(err) !== 'NotFound' && apiReason(err) !== 'Conflict') throw err;
          }
        }
      }
    }
    const { status, recheckAfterMs } = replicaSetStatus(rs, c.owned, Date.now());
    if (recheckAfterMs !== undefined) this.queue.addAfter(key, recheckAfterMs);
    if (statusDiffers(rs.status, status)) {
      try {
        await this.ctx.client.patch(`/apis/apps/v1/namespaces/${namespace}/replicasets/${name}/status`, { status });
      } catch (err) {
        if (apiReason(err) !== 'NotFound') throw err;
      }
    }
  }

  private async patchOwners(podsPath: string, p: Pod, ownerReferences: NonNullable<Pod['metadata']['ownerReferences']>): Promise<void> {
    try {
      await this.ctx.client.patch(`${podsPath}/${p.metadata.name ?? ''}`, {
        metadata: { uid: p.metadata.uid, resourceVersion: p.metadata.resourceVersion, ownerReferences },
      });
    } catch (err) {
      if (apiReason(err) !== 'NotFound') throw err;
    }
  }

  async run(signal: AbortSignal): Promise<void> {
    const { replicaSets, pods } = this.ctx.informers;
    if (!(await waitForSync([replicaSets, pods], signal))) return;
    for (const rs of replicaSets.list()) this.queue.add(keyOf(rs));
    await this.queue.run((key) => this.sync(key), signal);
  }
}

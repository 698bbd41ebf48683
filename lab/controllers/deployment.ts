/**
 * The Deployment controller: owns ReplicaSets named `<deployment>-<template
 * hash>` (label pod-template-hash in selector, template and labels), rolls
 * from old to new with RollingUpdate (rollout.ts: maxSurge/maxUnavailable) or
 * Recreate (old scaled to 0 and their pods gone before the new one scales up),
 * scales (a replica count change while several ReplicaSets are active is
 * shared out proportionally, as upstream), keeps the revision annotation on ReplicaSets and the Deployment,
 * prunes old ReplicaSets beyond revisionHistoryLimit once complete, and writes
 * status with the Available and Progressing conditions that `kubectl rollout
 * status` reads. Paused deployments are scaled but not rolled.
 */
import { KnodeError } from '../../lib/errors.js';
import { apiReason } from './client.js';
import { canonicalJson } from './canonical.js';
import type { Controller, ControllerContext } from './context.js';
import { waitForSync } from './context.js';
import { WorkQueue } from './queue.js';
import { claim, ownerRefFor } from './replicaset-logic.js';
import {
  computeTemplateHash,
  deploymentComplete,
  deploymentStatus,
  desiredReplicasAnnotation,
  fenceposts,
  isScalingEvent,
  maxReplicasAnnotation,
  maxRevision,
  proportionalScale,
  revisionAnnotation,
  rollingStep,
  sameTemplate,
  templateHashLabel,
} from './rollout.js';
import { selectorMatches } from './selectors.js';
import { controllerOf, keyOf, now, splitKey } from './types.js';
import type { Deployment, ReplicaSet } from './types.js';

function byAge(a: ReplicaSet, b: ReplicaSet): number {
  const ca = Date.parse(a.metadata.creationTimestamp ?? '') || 0;
  const cb = Date.parse(b.metadata.creationTimestamp ?? '') || 0;
  return ca - cb || (a.metadata.name ?? '').localeCompare(b.metadata.name ?? '');
}

export function newReplicaSetFor(d: Deployment, hash: string, replicas: number, revision: number): ReplicaSet {
  const name = `${d.metadata.name ?? ''}-${hash}`;
  const labels = { ...(d.spec.template.metadata?.labels ?? {}), [templateHashLabel]: hash };
  const maxSurge = d.spec.strategy?.type === 'Recreate' ? 0 : fenceposts(d).maxSurge;
  return {
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: {
      name,
      namespace: d.metadata.namespace,
      labels,
      annotations: {
        [desiredReplicasAnnotation]: String(d.spec.replicas ?? 1),
        [maxReplicasAnnotation]: String((d.spec.replicas ?? 1) + maxSurge),
        [revisionAnnotation]: String(revision),
      },
      ownerReferences: [ownerRefFor('apps/v1', 'Deployment', d)],
    },
    spec: {
      replicas,
      minReadySeconds: d.spec.minReadySeconds ?? 0,
      selector: { ...d.spec.selector, matchLabels: { ...(d.spec.selector.matchLabels ?? {}), [templateHashLabel]: hash } },
      template: { ...structuredClone(d.spec.template), metadata: { ...(d.spec.template.metadata ?? {}), labels } },
    },
  };
}

export class DeploymentController implements Controller {
  readonly name = 'deployment';
  private readonly queue: WorkQueue;

  constructor(private readonly ctx: ControllerContext) {
    this.queue = new WorkQueue({ name: this.name, logger: ctx.logger });
    const { deployments, replicaSets } = ctx.informers;
    deployments.on({
      add: (d) => this.queue.add(keyOf(d)),
      update: (_o, d) => this.queue.add(keyOf(d)),
      delete: (d) => this.queue.add(keyOf(d)),
    });
    const onRS = (rs: ReplicaSet): void => {
      const ref = controllerOf(rs);
      if (ref) {
        if (ref.kind === 'Deployment') this.queue.add(`${rs.metadata.namespace ?? ''}/${ref.name}`);
        return;
      }
      for (const d of deployments.list(rs.metadata.namespace)) if (selectorMatches(d.spec.selector, rs.metadata.labels)) this.queue.add(keyOf(d));
    };
    replicaSets.on({ add: onRS, update: (_o, rs) => onRS(rs), delete: onRS });
  }

  private rsPath(namespace: string, name?: string): string {
    return `/apis/apps/v1/namespaces/${namespace}/replicasets${name ? `/${name}` : ''}`;
  }

  /** Sets spec.replicas (and the replica annotations) of `rs`; returns the updated object. */
  private async scale(d: Deployment, rs: ReplicaSet, replicas: number, annotations: Record<string, string> = {}): Promise<ReplicaSet> {
    const maxSurge = d.spec.strategy?.type === 'Recreate' ? 0 : fenceposts(d).maxSurge;
    const want = {
      [desiredReplicasAnnotation]: String(d.spec.replicas ?? 1),
      [maxReplicasAnnotation]: String((d.spec.replicas ?? 1) + maxSurge),
      ...annotations,
    };
    const cur = rs.metadata.annotations ?? {};
    const minReadySeconds = d.spec.minReadySeconds ?? 0;
    if ((rs.spec.replicas ?? 1) === replicas && (rs.spec.minReadySeconds ?? 0) === minReadySeconds && Object.entries(want).every(([k, v]) => cur[k] === v)) {
      return rs;
    }
    const from = rs.spec.replicas ?? 1;
    const updated = await this.ctx.client.patch<ReplicaSet>(this.rsPath(rs.metadata.namespace ?? '', rs.metadata.name), {
      metadata: { resourceVersion: rs.metadata.resourceVersion, annotations: want },
      spec: { replicas, minReadySeconds },
    });
    if (from !== replicas) {
      this.ctx.logger.info('scaled replicaset', { deployment: keyOf(d), replicaSet: rs.metadata.name, from, to: replicas });
      const verb = replicas > from ? 'up' : 'down';
      this.ctx.recorder('deployment-controller').record(d, 'Normal', 'ScalingReplicaSet', `Scaled ${verb} replica set ${rs.metadata.name ?? ''} from ${from} to ${replicas}`);
    }
    return updated;
  }

  private async sync(key: string): Promise<void> {
    const d = this.ctx.informers.deployments.get(key);
    if (!d || d.metadata.deletionTimestamp) return;
    const { namespace, name } = splitKey(key);
    const c = claim(d.metadata.uid ?? '', d.spec.selector, this.ctx.informers.replicaSets.list(namespace), false);
    for (const rs of c.adopt) {
      await this.ctx.client.patch(this.rsPath(namespace, rs.metadata.name), {
        metadata: { resourceVersion: rs.metadata.resourceVersion, ownerReferences: [...(rs.metadata.ownerReferences ?? []), ownerRefFor('apps/v1', 'Deployment', d)] },
      });
    }
    for (const rs of c.release) {
      await this.ctx.client.patch(this.rsPath(namespace, rs.metadata.name), {
        metadata: { resourceVersion: rs.metadata.resourceVersion, ownerReferences: (rs.metadata.ownerReferences ?? []).filter((r) => r.uid !== d.metadata.uid) },
      });
    }
    const owned = [...c.owned].sort(byAge);
    let newRS = owned.find((rs) => sameTemplate(rs.spec.template, d.spec.template));
    let olds = owned.filter((rs) => rs !== newRS);
    const replicas = d.spec.replicas ?? 1;
    const recreate = d.spec.strategy?.type === 'Recreate';
    const revision = maxRevision(olds) + 1;
    let created = false;

    if (d.spec.paused || isScalingEvent(d, newRS ? [newRS, ...olds] : olds)) {
      // Only sizes change (upstream's sync/scale path): proportional scaling, no rollout step.
      const plan = proportionalScale(d, newRS, olds);
      const apply = async (rs: ReplicaSet): Promise<ReplicaSet> => {
        const to = plan.get(rs.metadata.name ?? '');
        return to === undefined ? rs : this.scale(d, rs, to);
      };
      if (newRS) newRS = await apply(newRS);
      const next: ReplicaSet[] = [];
      for (const rs of olds) next.push(await apply(rs));
      olds = next;
    } else {
      if (recreate) {
        const scaledDown: ReplicaSet[] = [];
        for (const rs of olds) scaledDown.push((rs.spec.replicas ?? 0) > 0 ? await this.scale(d, rs, 0) : rs);
        olds = scaledDown;
        const oldPodsRunning = olds.some((rs) => (rs.status?.replicas ?? 0) > 0 || (rs.spec.replicas ?? 0) > 0);
        if (!oldPodsRunning) {
          if (!newRS) ({ rs: newRS, created } = await this.createNewRS(d, replicas, revision));
          else newRS = await this.scale(d, newRS, replicas, this.revisionBump(newRS, revision));
        }
      } else {
        const fence = fenceposts(d);
        if (!newRS) {
          const plan = rollingStep(replicas, fence, { name: '', replicas: 0, available: 0 }, olds.map((rs) => ({ name: rs.metadata.name ?? '', replicas: rs.spec.replicas ?? 0, available: rs.status?.availableReplicas ?? 0 })));
          ({ rs: newRS, created } = await this.createNewRS(d, plan.get('') ?? 0, revision));
        } else {
          const plan = rollingStep(
            replicas,
            fence,
            { name: newRS.metadata.name ?? '', replicas: newRS.spec.replicas ?? 0, available: newRS.status?.availableReplicas ?? 0 },
            olds.map((rs) => ({ name: rs.metadata.name ?? '', replicas: rs.spec.replicas ?? 0, available: rs.status?.availableReplicas ?? 0 })),
          );
          newRS = await this.scale(d, newRS, plan.get(newRS.metadata.name ?? '') ?? newRS.spec.replicas ?? 0, this.revisionBump(newRS, revision));
          const next: ReplicaSet[] = [];
          for (const rs of olds) {
            const to = plan.get(rs.metadata.name ?? '');
            next.push(to === undefined ? rs : await this.scale(d, rs, to));
          }
          olds = next;
        }
      }
    }

    // The Deployment carries its new ReplicaSet's revision.
    const rev = newRS?.metadata.annotations?.[revisionAnnotation];
    if (rev && d.metadata.annotations?.[revisionAnnotation] !== rev) {
      await this.ctx.client.patch(`/apis/apps/v1/namespaces/${namespace}/deployments/${name}`, {
        metadata: { annotations: { [revisionAnnotation]: rev } },
      });
    }
    const all = newRS ? [...olds, newRS] : olds;
    const status = deploymentStatus(d, newRS, all, now(), Date.now(), created);
    if (canonicalJson(status) !== canonicalJson(d.status ?? {})) {
      try {
        await this.ctx.client.patch(`/apis/apps/v1/namespaces/${namespace}/deployments/${name}/status`, { status });
      } catch (err) {
        if (apiReason(err) !== 'NotFound') throw err;
      }
    }
    if (deploymentComplete(d, status)) await this.cleanup(d, olds);
    else this.queue.addAfter(key, 5_000);
  }

  private revisionBump(rs: ReplicaSet, revision: number): Record<string, string> {
    const cur = Number(rs.metadata.annotations?.[revisionAnnotation] ?? 0) || 0;
    return cur < revision ? { [revisionAnnotation]: String(revision) } : {};
  }

  private async createNewRS(d: Deployment, replicas: number, revision: number): Promise<{ rs: ReplicaSet; created: boolean }> {
    const namespace = d.metadata.namespace ?? '';
    let collisions = d.status?.collisionCount ?? 0;
    for (let attempt = 0; attempt < 5; attempt++) {
      const hash = computeTemplateHash(d.spec.template, collisions);
      const want = newReplicaSetFor(d, hash, replicas, revision);
      try {
        const rs = await this.ctx.client.create<ReplicaSet>(this.rsPath(namespace), want);
        this.ctx.logger.info('created replicaset', { deployment: keyOf(d), replicaSet: rs.metadata.name, replicas });
        this.ctx.recorder('deployment-controller').record(d, 'Normal', 'ScalingReplicaSet', `Scaled up replica set ${rs.metadata.name ?? ''} from 0 to ${replicas}`);
        return { rs, created: true };
      } catch (err) {
        if (apiReason(err) !== 'AlreadyExists') throw err;
        const existing = await this.ctx.client.get<ReplicaSet>(this.rsPath(namespace, want.metadata.name));
        // Ours (the cache is behind): use it.
        if (controllerOf(existing)?.uid === d.metadata.uid && sameTemplate(existing.spec.template, d.spec.template)) return { rs: existing, created: false };
        collisions++;
        await this.ctx.client.patch(`/apis/apps/v1/namespaces/${namespace}/deployments/${d.metadata.name ?? ''}/status`, { status: { collisionCount: collisions } });
        d = { ...d, status: { ...d.status, collisionCount: collisions } };
      }
    }
    throw new KnodeError('DEPLOYMENT_HASH_COLLISION', `could not find a free ReplicaSet name for deployment ${keyOf(d)}`);
  }

  /** Deletes old, empty ReplicaSets beyond revisionHistoryLimit, oldest first. */
  private async cleanup(d: Deployment, olds: ReplicaSet[]): Promise<void> {
    const limit = d.spec.revisionHistoryLimit ?? 10;
    const empty = olds.filter((rs) => (rs.spec.replicas ?? 0) === 0 && (rs.status?.replicas ?? 0) === 0 && !rs.metadata.deletionTimestamp);
    const extra = empty.length - limit;
    for (const rs of empty.slice(0, Math.max(0, extra))) {
      try {
        await this.ctx.client.delete(this.rsPath(rs.metadata.namespace ?? '', rs.metadata.name), { propagationPolicy: 'Background' });
      } catch (err) {
        if (apiReason(err) !== 'NotFound') throw err;
      }
    }
  }

  async run(signal: AbortSignal): Promise<void> {
    const { deployments, replicaSets } = this.ctx.informers;
    if (!(await waitForSync([deployments, replicaSets], signal))) return;
    for (const d of deployments.list()) this.queue.add(keyOf(d));
    await this.queue.run((key) => this.sync(key), signal);
  }
}

/**
 * The ReplicaSet controller's decisions as pure functions: which pods it owns,
 * adopts or releases (controllerRef and selector), how many to create or
 * delete, which surplus pods go first (upstream's ActivePods ordering) and the
 * status it reports.
 */
import { podReady } from './endpoints-render.js';
import { selectorMatches } from './selectors.js';
import { controllerOf } from './types.js';
import type { KubeObject, LabelSelector, OwnerReference, Pod, ReplicaSet, ReplicaSetStatus } from './types.js';

/** Not terminal and not being deleted (upstream's IsPodActive). */
export function isActive(pod: Pod): boolean {
  const phase = pod.status?.phase;
  return phase !== 'Succeeded' && phase !== 'Failed' && !pod.metadata.deletionTimestamp;
}

export interface Claim<T> {
  /** Objects with our controllerRef whose labels still match (adopted ones included). */
  owned: T[];
  /** Orphans that match the selector: to adopt. */
  adopt: T[];
  /** Ours but no longer matching: to release. */
  release: T[];
}

/** Upstream's ClaimPods / ClaimReplicaSets for an owner with `uid` and `selector`. */
export function claim<T extends KubeObject>(uid: string, selector: LabelSelector, pods: T[], ownerDeleting: boolean): Claim<T> {
  const out: Claim<T> = { owned: [], adopt: [], release: [] };
  for (const pod of pods) {
    const ref = controllerOf(pod);
    const matches = selectorMatches(selector, pod.metadata.labels);
    if (ref) {
      if (ref.uid !== uid) continue;
      if (matches || ownerDeleting) out.owned.push(pod);
      else out.release.push(pod);
      continue;
    }
    if (matches && !ownerDeleting && !pod.metadata.deletionTimestamp) {
      out.adopt.push(pod);
      out.owned.push(pod);
    }
  }
  return out;
}

function readySince(pod: Pod): number | undefined {
  const c = (pod.status?.conditions ?? []).find((x) => x.type === 'Ready' && x.status === 'True');
  if (!c) return undefined;
  return c.lastTransitionTime ? Date.parse(c.lastTransitionTime) : 0;
}

function phaseRank(pod: Pod): number {
  const p = pod.status?.phase;
  return p === 'Pending' || p === undefined ? 0 : p === 'Unknown' ? 1 : p === 'Running' ? 2 : 3;
}

function restarts(pod: Pod): number {
  return (pod.status?.containerStatuses ?? []).reduce((m, c) => Math.max(m, c.restartCount ?? 0), 0);
}

/** Negative when `a` should be deleted before `b` (upstream's ActivePods.Less). */
export function deletionOrder(a: Pod, b: Pod): number {
  const na = a.spec.nodeName ? 1 : 0;
  const nb = b.spec.nodeName ? 1 : 0;
  if (na !== nb) return na - nb;
  if (phaseRank(a) !== phaseRank(b)) return phaseRank(a) - phaseRank(b);
  const ra = podReady(a) ? 1 : 0;
  const rb = podReady(b) ? 1 : 0;
  if (ra !== rb) return ra - rb;
  const sa = readySince(a);
  const sb = readySince(b);
  if (sa !== undefined && sb !== undefined && sa !== sb) return sb - sa;
  if (restarts(a) !== restarts(b)) return restarts(b) - restarts(a);
  const ca = Date.parse(a.metadata.creationTimestamp ?? '') || 0;
  const cb = Date.parse(b.metadata.creationTimestamp ?? '') || 0;
  if (ca !== cb) return cb - ca;
  return (b.metadata.name ?? '').localeCompare(a.metadata.name ?? '');
}

export function podsToDelete(pods: Pod[], count: number): Pod[] {
  return [...pods].sort(deletionOrder).slice(0, Math.max(0, count));
}

/** Ready for at least minReadySeconds at `nowMs` (upstream's IsPodAvailable). */
export function isAvailable(pod: Pod, minReadySeconds: number, nowMs: number): boolean {
  const since = readySince(pod);
  if (since === undefined) return false;
  return minReadySeconds <= 0 || since + minReadySeconds * 1000 <= nowMs;
}

export function ownerRefFor(apiVersion: string, kind: string, owner: { metadata: { name?: string; uid?: string } }): OwnerReference {
  return { apiVersion, kind, name: owner.metadata.name ?? '', uid: owner.metadata.uid ?? '', controller: true, blockOwnerDeletion: true };
}

/** The pod to create for `rs` (upstream's GetPodFromTemplate). */
export function podFromTemplate(rs: ReplicaSet): Pod {
  const t = rs.spec.template;
  const metadata: Pod['metadata'] = {
    generateName: `${rs.metadata.name ?? ''}-`,
    namespace: rs.metadata.namespace,
    labels: { ...(t.metadata?.labels ?? {}) },
    ownerReferences: [ownerRefFor('apps/v1', 'ReplicaSet', rs)],
  };
  if (t.metadata?.annotations) metadata.annotations = { ...t.metadata.annotations };
  return { apiVersion: 'v1', kind: 'Pod', metadata, spec: structuredClone(t.spec) };
}

export interface StatusResult {
  status: ReplicaSetStatus;
  /** When some ready pods become available later: check again after this long. */
  recheckAfterMs?: number;
}

export function replicaSetStatus(rs: ReplicaSet, owned: Pod[], nowMs: number): StatusResult {
  const active = owned.filter(isActive);
  const templateLabels = rs.spec.template.metadata?.labels ?? {};
  const minReady = rs.spec.minReadySeconds ?? 0;
  let ready = 0;
  let available = 0;
  let fully = 0;
  let recheck: number | undefined;
  for (const p of active) {
    if (Object.entries(templateLabels).every(([k, v]) => p.metadata.labels?.[k] === v)) fully++;
    if (!podReady(p)) continue;
    ready++;
    if (isAvailable(p, minReady, nowMs)) available++;
    else {
      const left = (readySince(p) ?? nowMs) + minReady * 1000 - nowMs;
      recheck = Math.min(recheck ?? Infinity, Math.max(left, 100));
    }
  }
  const status: ReplicaSetStatus = {
    replicas: active.length,
    fullyLabeledReplicas: fully,
    readyReplicas: ready,
    availableReplicas: available,
    observedGeneration: rs.metadata.generation ?? 0,
  };
  return recheck === undefined ? { status } : { status, recheckAfterMs: recheck };
}

/** True when `status` would change something in `cur` (absent counts as 0). */
export function statusDiffers(cur: object | undefined, status: object): boolean {
  const c = (cur ?? {}) as Record<string, unknown>;
  return Object.entries(status).some(([k, v]) => JSON.stringify(c[k] ?? 0) !== JSON.stringify(v ?? 0));
}

/** Pods to create (positive) or delete (negative); creations in one sync are capped like upstream's burst. */
export function replicaDiff(rs: ReplicaSet, activeOwned: number, burst = 500): number {
  const diff = (rs.spec.replicas ?? 1) - activeOwned;
  return Math.max(-burst, Math.min(burst, diff));
}

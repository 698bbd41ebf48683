/**
 * The Deployment controller's arithmetic and naming as pure functions:
 *
 * - pod-template-hash: upstream hashes the Go struct with fnv32a through a
 *   spew printer, which cannot be reproduced outside Go; here it is fnv32a of
 *   the template's canonical JSON (sorted keys; nulls and empty maps/lists
 *   dropped, as Go's semantic equality ignores them), plus the collision count
 *   (as 4 little-endian bytes, as upstream adds it), encoded with upstream's
 *   rand.SafeEncodeString. Stable for equal templates, different from what a
 *   real kube-controller-manager would name the same template.
 * - maxSurge rounds up, maxUnavailable rounds down, both 0 → maxUnavailable 1
 *   (upstream's ResolveFenceposts).
 * - one rolling-update step as upstream's rolloutRolling: scale the new
 *   ReplicaSet up within the surge budget (and stop there for this sync), or
 *   else scale old ReplicaSets down: unhealthy replicas first
 *   (cleanupUnhealthyReplicas), then within the availability budget
 *   (scaleDownOldReplicaSetsForRollingUpdate), oldest first.
 * - status and the Available / Progressing conditions with upstream's reasons
 *   and messages.
 */
import { canonicalJson, pruneEmpty } from './canonical.js';
import type { Condition, Deployment, DeploymentStatus, PodTemplateSpec, ReplicaSet } from './types.js';

export const templateHashLabel = 'pod-template-hash';
export const revisionAnnotation = 'deployment.kubernetes.io/revision';
export const desiredReplicasAnnotation = 'deployment.kubernetes.io/desired-replicas';
export const maxReplicasAnnotation = 'deployment.kubernetes.io/max-replicas';

const alphanums = 'bcdfghjklmnpqrstvwxz2456789';

export function fnv32a(data: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of data) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Upstream's rand.SafeEncodeString: each byte mapped onto consonants and digits with no vowels. */
export function safeEncode(s: string): string {
  let out = '';
  for (const ch of Buffer.from(s, 'utf8')) out += alphanums[ch % alphanums.length];
  return out;
}

/** The template without the pod-template-hash label (what "same template" compares). */
export function templateWithoutHash(t: PodTemplateSpec): PodTemplateSpec {
  const labels = Object.fromEntries(Object.entries(t.metadata?.labels ?? {}).filter(([k]) => k !== templateHashLabel));
  const metadata = { ...(t.metadata ?? {}), labels };
  return { ...t, metadata };
}

export function computeTemplateHash(template: PodTemplateSpec, collisionCount?: number): string {
  const bytes = [...Buffer.from(canonicalJson(pruneEmpty(templateWithoutHash(template))), 'utf8')];
  if (collisionCount !== undefined && collisionCount > 0) {
    const c = Buffer.alloc(4);
    c.writeUInt32LE(collisionCount >>> 0);
    bytes.push(...c);
  }
  return safeEncode(String(fnv32a(Uint8Array.from(bytes))));
}

export function sameTemplate(a: PodTemplateSpec, b: PodTemplateSpec): boolean {
  return canonicalJson(pruneEmpty(templateWithoutHash(a))) === canonicalJson(pruneEmpty(templateWithoutHash(b)));
}

/** Upstream's GetScaledValueFromIntOrPercent. */
export function scaledValue(v: number | string | undefined, total: number, roundUp: boolean): number {
  if (v === undefined) return 0;
  if (typeof v === 'number') return v;
  const m = v.match(/^(\d+)%$/);
  if (!m) {
    if (/^\d+$/.test(v)) return Number(v);
    return 0;
  }
  const x = (Number(m[1]) * total) / 100;
  return roundUp ? Math.ceil(x) : Math.floor(x);
}

export function fenceposts(d: Deployment): { maxSurge: number; maxUnavailable: number } {
  const replicas = d.spec.replicas ?? 1;
  const ru = d.spec.strategy?.rollingUpdate;
  const maxSurge = scaledValue(ru?.maxSurge ?? '25%', replicas, true);
  let maxUnavailable = scaledValue(ru?.maxUnavailable ?? '25%', replicas, false);
  if (maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
  return { maxSurge, maxUnavailable };
}

/** What a rolling step needs to know of a ReplicaSet. */
export interface RsState {
  name: string;
  /** spec.replicas */
  replicas: number;
  /** status.availableReplicas */
  available: number;
}

/** New spec.replicas per ReplicaSet name for one rolling-update step (only changed ones). */
export function rollingStep(
  replicas: number,
  fence: { maxSurge: number; maxUnavailable: number },
  newRS: RsState,
  /** oldest first */
  olds: RsState[],
): Map<string, number> {
  const plan = new Map<string, number>();
  // reconcileNewReplicaSet
  if (newRS.replicas > replicas) {
    plan.set(newRS.name, replicas);
    return plan;
  }
  if (newRS.replicas < replicas) {
    const total = newRS.replicas + olds.reduce((s, r) => s + r.replicas, 0);
    const maxTotal = replicas + fence.maxSurge;
    if (total < maxTotal) {
      const up = Math.min(maxTotal - total, replicas - newRS.replicas);
      plan.set(newRS.name, newRS.replicas + up);
      return plan;
    }
  }
  // reconcileOldReplicaSets
  const oldCount = olds.reduce((s, r) => s + r.replicas, 0);
  if (oldCount === 0) return plan;
  const allCount = oldCount + newRS.replicas;
  const minAvailable = replicas - fence.maxUnavailable;
  const newUnavailable = newRS.replicas - newRS.available;
  const maxScaledDown = allCount - minAvailable - newUnavailable;
  if (maxScaledDown <= 0) return plan;
  const current = new Map(olds.map((r) => [r.name, r.replicas]));
  // cleanupUnhealthyReplicas
  let cleaned = 0;
  for (const r of olds) {
    if (cleaned >= maxScaledDown) break;
    const spec = current.get(r.name)!;
    if (spec === 0 || spec === r.available) continue;
    const down = Math.min(maxScaledDown - cleaned, spec - r.available);
    current.set(r.name, spec - down);
    cleaned += down;
  }
  // scaleDownOldReplicaSetsForRollingUpdate
  const availableCount = newRS.available + olds.reduce((s, r) => s + r.available, 0);
  if (availableCount > minAvailable) {
    const totalDown = availableCount - minAvailable;
    let done = 0;
    for (const r of olds) {
      if (done >= totalDown) break;
      const spec = current.get(r.name)!;
      if (spec === 0) continue;
      const down = Math.min(spec, totalDown - done);
      current.set(r.name, spec - down);
      done += down;
    }
  }
  for (const r of olds) if (current.get(r.name) !== r.replicas) plan.set(r.name, current.get(r.name)!);
  return plan;
}

export function maxRevision(sets: ReplicaSet[]): number {
  return sets.reduce((m, rs) => Math.max(m, Number(rs.metadata.annotations?.[revisionAnnotation] ?? 0) || 0), 0);
}

/** Upstream's calculateStatus (without conditions). */
export function rolloutCounts(d: Deployment, newRS: ReplicaSet | undefined, all: ReplicaSet[]): DeploymentStatus {
  const sum = (f: (rs: ReplicaSet) => number): number => all.reduce((s, rs) => s + f(rs), 0);
  const available = sum((rs) => rs.status?.availableReplicas ?? 0);
  const total = sum((rs) => rs.spec.replicas ?? 0);
  return {
    observedGeneration: d.metadata.generation ?? 0,
    replicas: sum((rs) => rs.status?.replicas ?? 0),
    updatedReplicas: newRS?.status?.replicas ?? 0,
    readyReplicas: sum((rs) => rs.status?.readyReplicas ?? 0),
    availableReplicas: available,
    unavailableReplicas: Math.max(total - available, 0),
  };
}

/** Upstream's SetDeploymentCondition: same status and reason → unchanged; same status → keep lastTransitionTime. */
export function setCondition(conditions: Condition[], c: Condition, force = false): Condition[] {
  const cur = conditions.find((x) => x.type === c.type);
  if (cur && cur.status === c.status && cur.reason === c.reason && !force) return conditions;
  const next = { ...c };
  if (cur && cur.status === c.status) next.lastTransitionTime = cur.lastTransitionTime ?? c.lastTransitionTime;
  return [...conditions.filter((x) => x.type !== c.type), next];
}

export function deploymentComplete(d: Deployment, s: DeploymentStatus): boolean {
  const r = d.spec.replicas ?? 1;
  return s.updatedReplicas === r && s.replicas === r && s.availableReplicas === r && (s.observedGeneration ?? 0) >= (d.metadata.generation ?? 0);
}

/** Upstream's DeploymentProgressing: any count moved the right way since the last status. */
export function deploymentProgressing(old: DeploymentStatus | undefined, s: DeploymentStatus): boolean {
  const o = old ?? {};
  return (
    (s.updatedReplicas ?? 0) > (o.updatedReplicas ?? 0) ||
    (s.replicas ?? 0) < (o.replicas ?? 0) ||
    (s.readyReplicas ?? 0) > (o.readyReplicas ?? 0) ||
    (s.availableReplicas ?? 0) > (o.availableReplicas ?? 0)
  );
}

function cond(type: string, status: string, reason: string, message: string, ts: string): Condition {
  return { type, status, reason, message, lastUpdateTime: ts, lastTransitionTime: ts };
}

/**
 * The full status to write: counts plus Available and Progressing.
 * `created`: the new ReplicaSet was created in this sync.
 */
export function deploymentStatus(d: Deployment, newRS: ReplicaSet | undefined, all: ReplicaSet[], ts: string, nowMs: number, created: boolean): DeploymentStatus {
  const s = rolloutCounts(d, newRS, all);
  if (d.status?.collisionCount !== undefined) s.collisionCount = d.status.collisionCount;
  let conditions = [...(d.status?.conditions ?? [])];
  const replicas = d.spec.replicas ?? 1;
  const { maxUnavailable } = d.spec.strategy?.type === 'Recreate' ? { maxUnavailable: 0 } : fenceposts(d);
  conditions =
    (s.availableReplicas ?? 0) >= replicas - maxUnavailable
      ? setCondition(conditions, cond('Available', 'True', 'MinimumReplicasAvailable', 'Deployment has minimum availability.', ts))
      : setCondition(conditions, cond('Available', 'False', 'MinimumReplicasUnavailable', 'Deployment does not have minimum availability.', ts));
  const rsName = newRS?.metadata.name ?? '';
  const progressing = conditions.find((c) => c.type === 'Progressing');
  if (created) {
    conditions = setCondition(conditions, cond('Progressing', 'True', 'NewReplicaSetCreated', `Created new replica set "${rsName}"`, ts), true);
  } else if (newRS && !progressing) {
    conditions = setCondition(conditions, cond('Progressing', 'True', 'FoundNewReplicaSet', `Found new replica set "${rsName}"`, ts));
  }
  if (newRS) {
    const cur = conditions.find((c) => c.type === 'Progressing');
    if (deploymentComplete(d, s)) {
      conditions = setCondition(conditions, cond('Progressing', 'True', 'NewReplicaSetAvailable', `ReplicaSet "${rsName}" has successfully progressed.`, ts));
    } else if (deploymentProgressing(d.status, s)) {
      conditions = setCondition(conditions, cond('Progressing', 'True', 'ReplicaSetUpdated', `ReplicaSet "${rsName}" is progressing.`, ts), true);
    } else if (cur && cur.reason !== 'NewReplicaSetAvailable' && cur.status === 'True' && d.spec.progressDeadlineSeconds !== undefined) {
      const since = Date.parse(cur.lastUpdateTime ?? cur.lastTransitionTime ?? '') || nowMs;
      if (since + d.spec.progressDeadlineSeconds * 1000 < nowMs) {
        conditions = setCondition(conditions, cond('Progressing', 'False', 'ProgressDeadlineExceeded', `ReplicaSet "${rsName}" has timed out progressing.`, ts));
      }
    }
  }
  const order = ['Available', 'Progressing'];
  s.conditions = conditions.sort((a, b) => order.indexOf(a.type) - order.indexOf(b.type));
  return s;
}

function desiredAnnotation(rs: ReplicaSet): number | undefined {
  const v = rs.metadata.annotations?.[desiredReplicasAnnotation];
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

/** Upstream's isScalingEvent: an active ReplicaSet was sized for another replica count. */
export function isScalingEvent(d: Deployment, all: ReplicaSet[]): boolean {
  const replicas = d.spec.replicas ?? 1;
  return all.some((rs) => (rs.spec.replicas ?? 0) > 0 && desiredAnnotation(rs) !== undefined && desiredAnnotation(rs) !== replicas);
}

function createdAt(rs: ReplicaSet): number {
  return Date.parse(rs.metadata.creationTimestamp ?? '') || 0;
}

/**
 * Upstream's scale(): the size of every active ReplicaSet after the
 * Deployment's replica count changed. One active (or none: the newest) takes
 * everything; a saturated new one means old ones go to 0; otherwise
 * (RollingUpdate) the difference to replicas + maxSurge is shared in
 * proportion to the sizes the ReplicaSets were given (max-replicas
 * annotation), leftovers to the largest.
 */
export function proportionalScale(d: Deployment, newRS: ReplicaSet | undefined, olds: ReplicaSet[]): Map<string, number> {
  const plan = new Map<string, number>();
  const replicas = d.spec.replicas ?? 1;
  const all = newRS ? [newRS, ...olds] : [...olds];
  const active = all.filter((rs) => (rs.spec.replicas ?? 0) > 0);
  const name = (rs: ReplicaSet): string => rs.metadata.name ?? '';
  if (active.length <= 1) {
    const target = active[0] ?? [...all].sort((a, b) => createdAt(b) - createdAt(a))[0];
    if (target) plan.set(name(target), replicas);
    return plan;
  }
  const saturated =
    newRS !== undefined && (newRS.spec.replicas ?? 0) === replicas && desiredAnnotation(newRS) === replicas && (newRS.status?.availableReplicas ?? 0) === replicas;
  if (saturated) {
    for (const rs of olds) if ((rs.spec.replicas ?? 0) > 0) plan.set(name(rs), 0);
    return plan;
  }
  if (d.spec.strategy?.type === 'Recreate') return plan;
  const maxSurge = fenceposts(d).maxSurge;
  const total = active.reduce((s, rs) => s + (rs.spec.replicas ?? 0), 0);
  const allowed = replicas > 0 ? replicas + maxSurge : 0;
  const toAdd = allowed - total;
  if (toAdd === 0) return plan;
  // Up: largest (then newest) first; down: largest (then oldest) first.
  const sorted = [...active].sort((a, b) => {
    const size = (b.spec.replicas ?? 0) - (a.spec.replicas ?? 0);
    if (size !== 0) return size;
    return toAdd > 0 ? createdAt(b) - createdAt(a) : createdAt(a) - createdAt(b);
  });
  let added = 0;
  const sizes = new Map<string, number>();
  for (const rs of sorted) {
    const spec = rs.spec.replicas ?? 0;
    let proportion = 0;
    if (spec > 0 && toAdd !== added) {
      let fraction: number;
      if (replicas === 0) fraction = -spec;
      else {
        const annotated = Number(rs.metadata.annotations?.[maxReplicasAnnotation] ?? NaN);
        const base = Number.isFinite(annotated) && annotated > 0 ? annotated : (d.status?.replicas ?? total);
        fraction = Math.round((spec * (replicas + maxSurge)) / (base || 1)) - spec;
      }
      const left = toAdd - added;
      proportion = toAdd > 0 ? Math.min(fraction, left) : Math.max(fraction, left);
    }
    sizes.set(name(rs), spec + proportion);
    added += proportion;
  }
  const first = name(sorted[0]!);
  sizes.set(first, Math.max(0, sizes.get(first)! + (toAdd - added)));
  for (const rs of sorted) plan.set(name(rs), sizes.get(name(rs))!);
  return plan;
}

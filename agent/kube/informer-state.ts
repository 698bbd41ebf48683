/**
 * The informer's pure state transitions: a cache keyed `namespace/name`, what a
 * watch event or a relist does to it, and which handler calls follow. No IO,
 * no timers: informer.ts drives these and the unit tests call them directly.
 */

export interface ObjectMetaLike {
  name?: string;
  namespace?: string;
  resourceVersion?: string;
}

export interface KubeObjectLike {
  metadata?: ObjectMetaLike;
}

export type Change<T> = { type: 'add'; obj: T } | { type: 'update'; old: T; obj: T } | { type: 'delete'; obj: T };

/** `namespace/name`, or `name` for cluster-scoped objects. */
export function keyOf(obj: KubeObjectLike): string {
  const m = obj.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name ?? ''}` : (m.name ?? '');
}

export interface WatchStatus {
  code?: number;
  reason?: string;
  message?: string;
}

/** What one watch event means for the informer. */
export type EventOutcome<T> =
  | { kind: 'changes'; changes: Change<T>[]; resourceVersion: string | undefined }
  | { kind: 'bookmark'; resourceVersion: string | undefined }
  /** 410 Gone / Expired: the resourceVersion is too old; relist. */
  | { kind: 'expired'; status: WatchStatus }
  /** Any other ERROR event: end this watch and resume after a back-off. */
  | { kind: 'error'; status: WatchStatus }
  | { kind: 'ignored' };

export function isExpiredStatus(s: WatchStatus): boolean {
  return s.code === 410 || s.reason === 'Expired' || s.reason === 'Gone';
}

/** Applies one watch event to the cache (mutating it) and says what happened. */
export function applyWatchEvent<T extends KubeObjectLike>(cache: Map<string, T>, type: string, object: unknown): EventOutcome<T> {
  if (type === 'ERROR') {
    const status = (typeof object === 'object' && object !== null ? object : {}) as WatchStatus;
    return isExpiredStatus(status) ? { kind: 'expired', status } : { kind: 'error', status };
  }
  const obj = object as T;
  const rv = (obj as KubeObjectLike | undefined)?.metadata?.resourceVersion;
  if (type === 'BOOKMARK') return { kind: 'bookmark', resourceVersion: rv };
  if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED') return { kind: 'ignored' };
  const key = keyOf(obj);
  const old = cache.get(key);
  if (type === 'DELETED') {
    cache.delete(key);
    // The event carries the object's final state; an unknown key is still reported.
    return { kind: 'changes', changes: [{ type: 'delete', obj }], resourceVersion: rv };
  }
  cache.set(key, obj);
  return { kind: 'changes', changes: [old === undefined ? { type: 'add', obj } : { type: 'update', old, obj }], resourceVersion: rv };
}

/**
 * Replaces the cache with a fresh list and returns the changes against what it
 * held: adds, updates (only objects whose resourceVersion moved), deletes.
 */
export function replaceAll<T extends KubeObjectLike>(cache: Map<string, T>, items: readonly T[]): Change<T>[] {
  const changes: Change<T>[] = [];
  const seen = new Set<string>();
  for (const obj of items) {
    const key = keyOf(obj);
    seen.add(key);
    const old = cache.get(key);
    if (old === undefined) changes.push({ type: 'add', obj });
    else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) changes.push({ type: 'update', old, obj });
    cache.set(key, obj);
  }
  for (const [key, obj] of [...cache]) {
    if (!seen.has(key)) {
      cache.delete(key);
      changes.push({ type: 'delete', obj });
    }
  }
  return changes;
}

/** Exponential back-off: initial, doubling, capped; `attempt` counts from 0. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
}

/**
 * An event recorder for v1 Events, shaped like client-go's (record package).
 *
 * Design notes:
 * - `event()` is synchronous and never throws: writes go through one promise
 *   chain in the background; failures are logged and dropped (events are best
 *   effort, a recorder must never take a caller down). `flush()` awaits them.
 * - De-duplication like upstream's correlator: an event with the same source,
 *   involved object, type, reason and message as one written in the last
 *   10 minutes is not created again: the existing Event gets count+1 and a new
 *   lastTimestamp through a strategic merge PATCH (a 404 creates it anew).
 * - Rate limit like upstream's spam filter: a token bucket per source +
 *   involved object, burst 25, refilled one token per 5 minutes; events beyond
 *   it are dropped (logged at debug). The write queue is bounded too.
 * - Names as upstream: `<object name>.<unix nanos in hex>`, in the object's
 *   namespace ('default' for cluster-scoped objects like the Node).
 */
import type { CoreV1Event, V1ObjectReference } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.js';
import { apiErrorSummary, isNotFound, strategicMergePatch, type CoreV1 } from './client.js';

export type EventType = 'Normal' | 'Warning';

export interface InvolvedObject {
  kind: string;
  name: string;
  namespace?: string;
  uid?: string;
  apiVersion?: string;
  resourceVersion?: string;
  fieldPath?: string;
}

export interface EventRecorder {
  event(obj: InvolvedObject, type: EventType, reason: string, message: string): void;
  /** Resolves when every queued write has been attempted. */
  flush(): Promise<void>;
}

export interface EventRecorderOptions {
  core: Pick<CoreV1, 'createNamespacedEvent' | 'patchNamespacedEvent'>;
  /** source.component: 'kubelet'. */
  component: string;
  /** source.host: the node name. */
  host: string;
  logger: Logger;
  now?: () => Date;
  /** De-duplication window; default 10 min. */
  dedupeWindowMs?: number;
  burst?: number;
  refillMs?: number;
  maxQueue?: number;
}

interface Seen {
  name: string;
  namespace: string;
  count: number;
  firstTimestamp: Date;
  lastTimestamp: Date;
}

/** The de-duplication key (pure). */
export function eventKey(source: { component: string; host: string }, obj: InvolvedObject, type: EventType, reason: string, message: string): string {
  return JSON.stringify([source.component, source.host, obj.kind, obj.namespace ?? '', obj.name, obj.uid ?? '', obj.apiVersion ?? '', obj.fieldPath ?? '', type, reason, message]);
}

/** Token bucket (pure state): returns the new state and whether a token was taken. */
export function takeToken(state: { tokens: number; at: number } | undefined, now: number, burst: number, refillMs: number): { state: { tokens: number; at: number }; ok: boolean } {
  const s = state ?? { tokens: burst, at: now };
  const gained = Math.max(0, Math.floor((now - s.at) / refillMs));
  const tokens = Math.min(burst, s.tokens + gained);
  // A full bucket restarts the refill clock; otherwise keep the remainder of the period.
  const at = tokens >= burst ? now : s.at + gained * refillMs;
  if (tokens < 1) return { state: { tokens, at }, ok: false };
  return { state: { tokens: tokens - 1, at }, ok: true };
}

/** Whether a bucket has refilled completely, i.e. is the same as no bucket (it can be forgotten). Pure. */
export function bucketRefilled(state: { tokens: number; at: number }, now: number, burst: number, refillMs: number): boolean {
  return state.tokens + Math.floor((now - state.at) / refillMs) >= burst;
}

/** The v1 Event object to create (pure). */
export function renderEvent(o: {
  name: string;
  namespace: string;
  obj: InvolvedObject;
  type: EventType;
  reason: string;
  message: string;
  component: string;
  host: string;
  at: Date;
}): CoreV1Event {
  const involvedObject: V1ObjectReference = { kind: o.obj.kind, name: o.obj.name };
  if (o.obj.namespace) involvedObject.namespace = o.obj.namespace;
  if (o.obj.uid) involvedObject.uid = o.obj.uid;
  if (o.obj.apiVersion) involvedObject.apiVersion = o.obj.apiVersion;
  if (o.obj.resourceVersion) involvedObject.resourceVersion = o.obj.resourceVersion;
  if (o.obj.fieldPath) involvedObject.fieldPath = o.obj.fieldPath;
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: o.name, namespace: o.namespace },
    involvedObject,
    reason: o.reason,
    message: o.message,
    type: o.type,
    source: { component: o.component, host: o.host },
    firstTimestamp: o.at,
    lastTimestamp: o.at,
    count: 1,
    reportingComponent: o.component,
    reportingInstance: o.host,
  };
}

export function createEventRecorder(options: EventRecorderOptions): EventRecorder {
  const now = options.now ?? (() => new Date());
  const window = options.dedupeWindowMs ?? 10 * 60_000;
  const burst = options.burst ?? 25;
  const refillMs = options.refillMs ?? 5 * 60_000;
  const maxQueue = options.maxQueue ?? 1000;
  const seen = new Map<string, Seen>();
  const buckets = new Map<string, { tokens: number; at: number }>();
  const log = options.logger;
  let queued = 0;
  let chain: Promise<void> = Promise.resolve();
  let lastNanos = 0n;

  const uniqueName = (base: string, at: Date): string => {
    let nanos = BigInt(at.getTime()) * 1_000_000n;
    if (nanos <= lastNanos) nanos = lastNanos + 1n;
    lastNanos = nanos;
    return `${base}.${nanos.toString(16)}`;
  };

  const create = async (key: string, obj: InvolvedObject, type: EventType, reason: string, message: string, at: Date): Promise<void> => {
    const namespace = obj.namespace || 'default';
    const name = uniqueName(obj.name, at);
    const body = renderEvent({ name, namespace, obj, type, reason, message, component: options.component, host: options.host, at });
    await options.core.createNamespacedEvent({ namespace, body });
    seen.set(key, { name, namespace, count: 1, firstTimestamp: at, lastTimestamp: at });
  };

  const write = async (key: string, obj: InvolvedObject, type: EventType, reason: string, message: string, at: Date): Promise<void> => {
    const prior = seen.get(key);
    if (prior !== undefined && at.getTime() - prior.lastTimestamp.getTime() <= window) {
      const count = prior.count + 1;
      try {
        await options.core.patchNamespacedEvent(
          { name: prior.name, namespace: prior.namespace, body: { count, lastTimestamp: at.toISOString() } },
          strategicMergePatch,
        );
        seen.set(key, { ...prior, count, lastTimestamp: at });
        return;
      } catch (err) {
        if (!isNotFound(err)) throw err;
        seen.delete(key);
      }
    }
    await create(key, obj, type, reason, message, at);
  };

  const prune = (nowMs: number): void => {
    // One bucket per object the agent ever reported on (every pod): drop the refilled ones, or they pile up.
    if (buckets.size >= 256) for (const [k, b] of buckets) if (bucketRefilled(b, nowMs, burst, refillMs)) buckets.delete(k);
    if (seen.size < 4096) return;
    for (const [k, s] of seen) if (nowMs - s.lastTimestamp.getTime() > window) seen.delete(k);
  };

  return {
    event(obj, type, reason, message) {
      try {
        const at = now();
        const bucketKey = JSON.stringify([options.component, options.host, obj.kind, obj.namespace ?? '', obj.name, obj.uid ?? '']);
        const taken = takeToken(buckets.get(bucketKey), at.getTime(), burst, refillMs);
        buckets.set(bucketKey, taken.state);
        if (!taken.ok) {
          log.debug('event dropped by the rate limit', { reason, object: `${obj.kind}/${obj.name}` });
          return;
        }
        if (queued >= maxQueue) {
          log.warn('event dropped: queue full', { reason, object: `${obj.kind}/${obj.name}` });
          return;
        }
        prune(at.getTime());
        const key = eventKey(options, obj, type, reason, message);
        queued++;
        chain = chain
          .then(() => write(key, obj, type, reason, message, at))
          .catch((err: unknown) => log.warn('cannot write event', { reason, object: `${obj.kind}/${obj.name}`, err: apiErrorSummary(err) }))
          .finally(() => void queued--);
      } catch (err) {
        log.warn('cannot record event', { reason, err });
      }
    },
    flush: () => chain,
  };
}

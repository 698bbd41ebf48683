/**
 * A typed informer: a Map keyed `namespace/name` kept in step with the
 * apiserver.
 *
 * Design notes:
 * - list, then watch from the list's resourceVersion with allowWatchBookmarks;
 *   every event and bookmark moves the resume point, so a dropped connection or
 *   a server-side timeout resumes from the last resourceVersion seen (no relist,
 *   no replayed adds); errors back off exponentially (0.5 s → 30 s).
 * - 410 Gone (an ERROR event with code 410 / reason Expired, or an HTTP 410)
 *   means the resume point left the server's window: relist and diff the new
 *   list against the cache (informer-state.ts), so handlers see exactly the
 *   adds, updates and deletes they missed — never a spurious delete of objects
 *   that still exist (a pod worker must not kill a pod because a watch broke).
 * - The apiserver is reached through a `ListWatch` port; `restListWatch`
 *   implements it over the agent's lean transport (rest.ts: a JSON list, then a
 *   streaming watch whose objects get the same date revival). Tests can plug a
 *   fake.
 * - Handlers are called synchronously in event order; a throwing handler is
 *   logged and does not stop the informer. Stop with the AbortSignal.
 */
import { errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { httpStatus } from './client.js';
import { applyWatchEvent, backoffDelay, keyOf, replaceAll } from './informer-state.js';
import type { Change, KubeObjectLike } from './informer-state.js';
import { sleep } from '../../lib/sleep.js';
import type { KubeRest } from './rest.js';

export { keyOf } from './informer-state.js';
export type { Change, KubeObjectLike } from './informer-state.js';

export interface ListOptions {
  fieldSelector?: string;
  labelSelector?: string;
  signal: AbortSignal;
}

export interface WatchOptions extends ListOptions {
  resourceVersion: string;
  timeoutSeconds: number;
}

export interface ListWatch<T> {
  list(options: ListOptions): Promise<{ items: T[]; resourceVersion: string }>;
  /**
   * Streams events to `onEvent` until the server ends the stream (resolves),
   * the connection fails (rejects; HTTP errors carry `statusCode`) or the
   * signal aborts (resolves).
   */
  watch(options: WatchOptions, onEvent: (type: string, object: unknown) => void): Promise<void>;
}

export interface InformerHandlers<T> {
  onAdd?(obj: T): void;
  onUpdate?(old: T, obj: T): void;
  onDelete?(obj: T): void;
}

export interface InformerOptions<T> extends InformerHandlers<T> {
  listWatch: ListWatch<T>;
  logger: Logger;
  /** e.g. `spec.nodeName=node-1` */
  fieldSelector?: string;
  labelSelector?: string;
  signal: AbortSignal;
  /** Server-side timeout of each watch request; default 5-10 min, randomised as client-go does. */
  watchTimeoutSeconds?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

export interface InformerStats {
  lists: number;
  watches: number;
  relistsAfterExpired: number;
  watchErrors: number;
}

export interface Informer<T> {
  /** Resolves after the first successful list (or when stopped first). */
  readonly synced: Promise<void>;
  hasSynced(): boolean;
  get(key: string): T | undefined;
  list(): T[];
  /** The resourceVersion the next watch resumes from. */
  resourceVersion(): string;
  stats(): InformerStats;
  /** Resolves when the loop has ended (after the signal aborts). */
  readonly done: Promise<void>;
}


export function startInformer<T extends KubeObjectLike>(options: InformerOptions<T>): Informer<T> {
  const cache = new Map<string, T>();
  const { signal, logger } = options;
  const initialMs = options.backoffInitialMs ?? 500;
  const maxMs = options.backoffMaxMs ?? 30_000;
  const stats: InformerStats = { lists: 0, watches: 0, relistsAfterExpired: 0, watchErrors: 0 };
  let rv = '';
  let synced = false;
  let resolveSynced: () => void = () => undefined;
  const syncedPromise = new Promise<void>((r) => (resolveSynced = r));
  const selectors = {
    ...(options.fieldSelector ? { fieldSelector: options.fieldSelector } : {}),
    ...(options.labelSelector ? { labelSelector: options.labelSelector } : {}),
  };

  const dispatch = (changes: Change<T>[]): void => {
    for (const c of changes) {
      try {
        if (c.type === 'add') options.onAdd?.(c.obj);
        else if (c.type === 'update') options.onUpdate?.(c.old, c.obj);
        else options.onDelete?.(c.obj);
      } catch (err) {
        logger.error('informer handler failed', { change: c.type, key: keyOf(c.obj), err });
      }
    }
  };

  const run = async (): Promise<void> => {
    let needList = true;
    let failures = 0;
    while (!signal.aborted) {
      if (needList) {
        try {
          const list = await options.listWatch.list({ ...selectors, signal });
          if (signal.aborted) break;
          stats.lists++;
          rv = list.resourceVersion;
          dispatch(replaceAll(cache, list.items));
          needList = false;
          failures = 0;
          if (!synced) {
            synced = true;
            resolveSynced();
          }
          logger.debug('informer listed', { items: list.items.length, resourceVersion: rv });
        } catch (err) {
          if (signal.aborted) break;
          const delay = backoffDelay(failures++, initialMs, maxMs);
          logger.warn('informer list failed; retrying', { err: errorMessage(err), status: httpStatus(err), retryInMs: delay });
          await sleep(delay, signal);
          continue;
        }
      }
      const watchAbort = new AbortController();
      const onAbort = (): void => watchAbort.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      let expired = false;
      let failedStatus: unknown;
      let events = 0;
      const timeoutSeconds = options.watchTimeoutSeconds ?? Math.floor(300 + Math.random() * 300);
      // The server ends the watch after timeoutSeconds; a connection that died silently does not:
      // give up on it a little later and resume.
      const watchdog = setTimeout(() => watchAbort.abort(), (timeoutSeconds + 30) * 1000);
      try {
        stats.watches++;
        await options.listWatch.watch({ ...selectors, resourceVersion: rv, timeoutSeconds, signal: watchAbort.signal }, (type, object) => {
          if (watchAbort.signal.aborted) return;
          const outcome = applyWatchEvent(cache, type, object);
          events++;
          switch (outcome.kind) {
            case 'changes':
              if (outcome.resourceVersion) rv = outcome.resourceVersion;
              dispatch(outcome.changes);
              break;
            case 'bookmark':
              if (outcome.resourceVersion) rv = outcome.resourceVersion;
              break;
            case 'expired':
              expired = true;
              watchAbort.abort();
              break;
            case 'error':
              failedStatus = outcome.status;
              watchAbort.abort();
              break;
            case 'ignored':
              break;
          }
        });
        if (failedStatus === undefined) failures = events > 0 ? 0 : failures;
      } catch (err) {
        if (httpStatus(err) === 410) expired = true;
        else if (!signal.aborted) failedStatus = err;
      } finally {
        clearTimeout(watchdog);
        signal.removeEventListener('abort', onAbort);
      }
      if (signal.aborted) break;
      if (expired) {
        stats.relistsAfterExpired++;
        logger.info('watch expired (410); relisting', { resourceVersion: rv });
        needList = true;
        continue;
      }
      if (failedStatus !== undefined) {
        stats.watchErrors++;
        const delay = backoffDelay(failures++, initialMs, maxMs);
        logger.warn('watch failed; resuming', { err: failedStatus instanceof Error ? errorMessage(failedStatus) : failedStatus, resourceVersion: rv, retryInMs: delay });
        await sleep(delay, signal);
      } else if (events === 0) {
        // Closed at once without a word (a proxy or a restarting server): do not spin.
        await sleep(backoffDelay(failures++, initialMs, maxMs), signal);
      }
    }
    resolveSynced();
  };

  const done = run().catch((err: unknown) => logger.error('informer stopped unexpectedly', { err }));
  return {
    synced: syncedPromise,
    hasSynced: () => synced,
    get: (key) => cache.get(key),
    list: () => [...cache.values()],
    resourceVersion: () => rv,
    stats: () => ({ ...stats }),
    done,
  };
}

export interface RestListWatchOptions {
  rest: KubeRest;
  /** Collection path for the list and the watch, e.g. /api/v1/pods. */
  path: string;
}

/** A ListWatch over the agent's transport: GET <path> (a List), then GET <path>?watch=true. */
export function restListWatch<T>(o: RestListWatchOptions): ListWatch<T> {
  return {
    async list(options) {
      const res = await o.rest.request<{ items?: T[]; metadata?: { resourceVersion?: string } }>({
        method: 'GET',
        path: o.path,
        query: { fieldSelector: options.fieldSelector, labelSelector: options.labelSelector },
        signal: options.signal,
      });
      return { items: res.items ?? [], resourceVersion: res.metadata?.resourceVersion ?? '' };
    },
    watch(options, onEvent) {
      return o.rest.watch(
        {
          path: o.path,
          query: {
            resourceVersion: options.resourceVersion,
            allowWatchBookmarks: true,
            timeoutSeconds: options.timeoutSeconds,
            fieldSelector: options.fieldSelector,
            labelSelector: options.labelSelector,
          },
          signal: options.signal,
        },
        (e) => onEvent(e.type, e.object),
      );
    },
  };
}

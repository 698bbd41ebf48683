/**
 * A typed informer: a Map keyed `namespace/name` kept in step with the
 * apiserver by list, then watch from the list's resourceVersion with
 * allowWatchBookmarks; resumes from the last seen resourceVersion (bookmarks
 * included) when a watch ends normally; relists on 410 Gone/Expired, on an
 * ERROR event and after any failure, diffing the new list against the cache so
 * handlers still see adds, updates and deletes; backs off on repeated
 * failures; stops with an AbortSignal.
 */
import type { Logger } from '../../lib/log.js';
import { errorMessage } from '../../lib/errors.js';
import type { ApiClient, WatchEvent } from './client.js';
import { keyOf } from './types.js';
import type { KubeObject } from './types.js';

export interface InformerHandlers<T> {
  add?(obj: T): void;
  update?(old: T, cur: T): void;
  delete?(obj: T): void;
}

/** The part of ApiClient an informer uses (a fake in unit tests). */
export type ListWatchClient = Pick<ApiClient, 'list' | 'watch'>;

export interface InformerOptions {
  client: ListWatchClient;
  /** Collection path, e.g. `/api/v1/pods` or `/apis/apps/v1/replicasets`. */
  path: string;
  /** Set on every cached object (list items come without them). */
  apiVersion: string;
  kind: string;
  logger: Logger;
  watchTimeoutSeconds?: number;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

export class Informer<T extends KubeObject> {
  private readonly items = new Map<string, T>();
  private readonly handlers: InformerHandlers<T>[] = [];
  private resourceVersion = '';
  private syncedResolve!: () => void;
  private hasSynced = false;
  readonly synced: Promise<void>;

  constructor(private readonly options: InformerOptions) {
    this.synced = new Promise((r) => (this.syncedResolve = r));
  }

  on(h: InformerHandlers<T>): void {
    this.handlers.push(h);
  }

  get(key: string): T | undefined {
    return this.items.get(key);
  }

  list(namespace?: string): T[] {
    const all = [...this.items.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata.namespace === namespace);
  }

  get isSynced(): boolean {
    return this.hasSynced;
  }

  private typeMeta(obj: T): void {
    obj.apiVersion = this.options.apiVersion;
    obj.kind = this.options.kind;
  }

  private emit(kind: 'add' | 'update' | 'delete', a: T, b?: T): void {
    for (const h of this.handlers) {
      try {
        if (kind === 'add') h.add?.(a);
        else if (kind === 'update') h.update?.(a, b!);
        else h.delete?.(a);
      } catch (err) {
        this.options.logger.error('informer handler failed', { path: this.options.path, err });
      }
    }
  }

  private async relist(): Promise<void> {
    const items: T[] = [];
    let cont: string | undefined;
    let rv = '';
    do {
      const page = await this.options.client.list<T>(this.options.path, { limit: 500, continue: cont });
      items.push(...page.items);
      cont = page.metadata.continue;
      rv = page.metadata.resourceVersion ?? rv;
    } while (cont);
    const seen = new Set<string>();
    for (const item of items) {
      this.typeMeta(item);
      const key = keyOf(item);
      seen.add(key);
      const old = this.items.get(key);
      this.items.set(key, item);
      if (!old) this.emit('add', item);
      else if (old.metadata.resourceVersion !== item.metadata.resourceVersion) this.emit('update', old, item);
    }
    for (const [key, old] of [...this.items]) {
      if (!seen.has(key)) {
        this.items.delete(key);
        this.emit('delete', old);
      }
    }
    this.resourceVersion = rv;
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.syncedResolve();
    }
  }

  private apply(e: WatchEvent<T>): 'relist' | undefined {
    // An ERROR event (410 Expired, or anything else) ends this watch: relist.
    if (e.type === 'ERROR') return 'relist';
    const rv = e.object.metadata.resourceVersion;
    if (rv) this.resourceVersion = rv;
    if (e.type === 'BOOKMARK') return undefined;
    this.typeMeta(e.object);
    const key = keyOf(e.object);
    const old = this.items.get(key);
    if (e.type === 'DELETED') {
      this.items.delete(key);
      this.emit('delete', old ?? e.object);
    } else {
      this.items.set(key, e.object);
      if (old) this.emit('update', old, e.object);
      else this.emit('add', e.object);
    }
    return undefined;
  }

  /** Runs until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const log = this.options.logger;
    let needList = true;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.relist();
          needList = false;
        }
        let relist = false;
        const started = Date.now();
        await this.options.client.watch<T>(
          this.options.path,
          { resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: this.options.watchTimeoutSeconds ?? 300 },
          (e) => {
            if (relist) return;
            if (this.apply(e) === 'relist') relist = true;
          },
          signal,
        );
        failures = 0;
        if (relist) needList = true;
        // A server that ends watches at once must not make this a hot loop.
        else if (Date.now() - started < 100) await sleep(200, signal);
      } catch (err) {
        if (signal.aborted) break;
        // As client-go's reflector: after a failure, list again (the server may
        // have restarted or compacted); the diff keeps handlers consistent.
        needList = true;
        failures++;
        const delay = Math.min(100 * 2 ** Math.min(failures, 8), 10_000);
        log.warn('list/watch failed; retrying', { path: this.options.path, err: errorMessage(err), delayMs: delay });
        await sleep(delay, signal);
      }
    }
  }
}

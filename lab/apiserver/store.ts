/**
 * Object storage for the lab apiserver.
 *
 * Design: `Store` is the seam (an etcd backend would implement the same
 * interface); `MemoryStore` keeps objects in maps keyed by storage resource,
 * namespace and name, with ONE global resourceVersion counter bumped by every
 * write. Each write is also appended to a bounded event window (last N events,
 * with the previous object) so that
 *   - watches resume from any resourceVersion still inside the window, and a
 *     watch from an older one fails with STORE_EXPIRED (→ 410 Expired);
 *   - a list can be served "as of" an older resourceVersion (for `continue`
 *     tokens) by rolling the current state back through the window.
 * Writes are synchronous inside the (async) methods, so `update(fn)` is an
 * atomic read-modify-write. Optional persistence writes a JSON snapshot
 * (objects + counter), debounced, and loads it at open; after a restart the
 * window is empty, so old resourceVersions get 410 and clients relist, as with
 * an etcd compaction.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { KnodeError, errnoCode } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { clone, jsonEqual } from './object.js';
import type { KubeObject } from './object.js';

const log = createLogger({ component: 'apiserver-store' });

export interface StoreKey {
  /** Storage resource: `pods`, `deployments.apps`. */
  storage: string;
  /** '' for cluster-scoped objects. */
  namespace: string;
  name: string;
}

export type StoreEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  type: StoreEventType;
  storage: string;
  namespace: string;
  name: string;
  resourceVersion: number;
  /** The object after the write; for DELETED, the last state (with the deletion's resourceVersion). */
  object: KubeObject;
  /** The object before the write (MODIFIED, DELETED). */
  prev?: KubeObject;
}

export interface WatchRequest {
  storage: string;
  /** Only this namespace; undefined for all. */
  namespace?: string;
  /** Deliver every event with a resourceVersion greater than this. */
  fromResourceVersion: number;
  onEvent: (event: StoreEvent) => void;
}

export interface StoreWatch {
  stop(): void;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: number;
}

/** Returning `null` from an update function deletes the object (finalizers done). */
export type UpdateFn = (current: KubeObject) => KubeObject | null;

export interface UpdateResult {
  object: KubeObject;
  deleted: boolean;
  changed: boolean;
}

export interface Store {
  get(key: StoreKey): Promise<KubeObject | undefined>;
  /** Sorted by namespace/name. `atResourceVersion` serves an older snapshot (STORE_EXPIRED if gone). */
  list(storage: string, namespace: string | undefined, atResourceVersion?: number): Promise<ListResult>;
  /** STORE_EXISTS if present. Sets metadata.resourceVersion. */
  create(key: StoreKey, obj: KubeObject): Promise<KubeObject>;
  /** Atomic read-modify-write; STORE_NOT_FOUND if absent. An unchanged object is not written. */
  update(key: StoreKey, fn: UpdateFn): Promise<UpdateResult>;
  /** `check` may throw (preconditions). STORE_NOT_FOUND if absent. */
  delete(key: StoreKey, check?: (current: KubeObject) => void): Promise<KubeObject>;
  /** Synchronous registration: no event between the call and the first delivery is lost. */
  watch(req: WatchRequest): StoreWatch;
  resourceVersion(): number;
  /** Oldest resourceVersion a watch can start from. */
  oldestResourceVersion(): number;
  close(): Promise<void>;
}

export interface MemoryStoreOptions {
  /** Events retained for watches. */
  windowSize?: number;
  /** JSON file to load at open and write (debounced) on change. */
  persistPath?: string;
  persistDebounceMs?: number;
}

interface Snapshot {
  resourceVersion: number;
  objects: { storage: string; object: KubeObject }[];
}

function objKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

interface Watcher {
  req: WatchRequest;
  stopped: boolean;
}

export class MemoryStore implements Store {
  private readonly data = new Map<string, Map<string, KubeObject>>();
  private rv = 0;
  private readonly window: StoreEvent[] = [];
  /** Events with resourceVersion <= this are no longer in the window. */
  private evictedUpTo = 0;
  private readonly windowSize: number;
  private readonly watchers = new Set<Watcher>();
  private readonly persistPath: string | undefined;
  private readonly debounceMs: number;
  private persistTimer: NodeJS.Timeout | undefined;
  private persisting: Promise<void> = Promise.resolve();

  private constructor(options: MemoryStoreOptions) {
    this.windowSize = options.windowSize ?? 10_000;
    this.persistPath = options.persistPath;
    this.debounceMs = options.persistDebounceMs ?? 200;
  }

  static async open(options: MemoryStoreOptions = {}): Promise<MemoryStore> {
    const store = new MemoryStore(options);
    if (options.persistPath) await store.load(options.persistPath);
    return store;
  }

  private async load(path: string): Promise<void> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw new KnodeError('STORE_LOAD_FAILED', `cannot read ${path}`, { cause: err });
    }
    let snap: Snapshot;
    try {
      snap = JSON.parse(text) as Snapshot;
    } catch (err) {
      throw new KnodeError('STORE_LOAD_FAILED', `${path} is not valid JSON`, { cause: err });
    }
    if (typeof snap.resourceVersion !== 'number' || !Array.isArray(snap.objects)) {
      throw new KnodeError('STORE_LOAD_FAILED', `${path} is not a store snapshot`);
    }
    for (const { storage, object } of snap.objects) {
      this.bucket(storage).set(objKey(object.metadata.namespace ?? '', object.metadata.name ?? ''), object);
    }
    this.rv = snap.resourceVersion;
    this.evictedUpTo = this.rv;
    log.info('loaded store snapshot', { path, objects: snap.objects.length, resourceVersion: this.rv });
  }

  private bucket(storage: string): Map<string, KubeObject> {
    let b = this.data.get(storage);
    if (!b) this.data.set(storage, (b = new Map()));
    return b;
  }

  resourceVersion(): number {
    return this.rv;
  }

  oldestResourceVersion(): number {
    return this.evictedUpTo;
  }

  async get(key: StoreKey): Promise<KubeObject | undefined> {
    const o = this.data.get(key.storage)?.get(objKey(key.namespace, key.name));
    return o ? clone(o) : undefined;
  }

  async list(storage: string, namespace: string | undefined, atResourceVersion?: number): Promise<ListResult> {
    const state = new Map<string, KubeObject>();
    for (const [k, o] of this.data.get(storage) ?? []) {
      if (namespace === undefined || (o.metadata.namespace ?? '') === namespace) state.set(k, o);
    }
    let resourceVersion = this.rv;
    if (atResourceVersion !== undefined && atResourceVersion < this.rv) {
      if (atResourceVersion < this.evictedUpTo) {
        throw new KnodeError('STORE_EXPIRED', `resourceVersion ${atResourceVersion} is older than the retained window (${this.evictedUpTo})`);
      }
      for (let i = this.window.length - 1; i >= 0; i--) {
        const e = this.window[i]!;
        if (e.resourceVersion <= atResourceVersion) break;
        if (e.storage !== storage || (namespace !== undefined && e.namespace !== namespace)) continue;
        const k = objKey(e.namespace, e.name);
        if (e.type === 'ADDED') state.delete(k);
        else if (e.prev) state.set(k, e.prev);
      }
      resourceVersion = atResourceVersion;
    }
    const keys = [...state.keys()].sort();
    return { items: keys.map((k) => clone(state.get(k)!)), resourceVersion };
  }

  async create(key: StoreKey, obj: KubeObject): Promise<KubeObject> {
    const b = this.bucket(key.storage);
    const k = objKey(key.namespace, key.name);
    if (b.has(k)) throw new KnodeError('STORE_EXISTS', `${key.storage} ${k} exists`);
    const stored = clone(obj);
    stored.metadata.resourceVersion = String(++this.rv);
    b.set(k, stored);
    this.commit({ type: 'ADDED', ...key, resourceVersion: this.rv, object: stored });
    return clone(stored);
  }

  async update(key: StoreKey, fn: UpdateFn): Promise<UpdateResult> {
    const b = this.bucket(key.storage);
    const k = objKey(key.namespace, key.name);
    const cur = b.get(k);
    if (!cur) throw new KnodeError('STORE_NOT_FOUND', `${key.storage} ${k} not found`);
    const next = fn(clone(cur));
    if (next === null) return { object: this.remove(key, cur), deleted: true, changed: true };
    const candidate = clone(next);
    candidate.metadata.resourceVersion = cur.metadata.resourceVersion;
    if (jsonEqual(candidate, cur)) return { object: clone(cur), deleted: false, changed: false };
    candidate.metadata.resourceVersion = String(++this.rv);
    b.set(k, candidate);
    this.commit({ type: 'MODIFIED', ...key, resourceVersion: this.rv, object: candidate, prev: cur });
    return { object: clone(candidate), deleted: false, changed: true };
  }

  async delete(key: StoreKey, check?: (current: KubeObject) => void): Promise<KubeObject> {
    const cur = this.data.get(key.storage)?.get(objKey(key.namespace, key.name));
    if (!cur) throw new KnodeError('STORE_NOT_FOUND', `${key.storage} ${key.namespace}/${key.name} not found`);
    check?.(clone(cur));
    return this.remove(key, cur);
  }

  private remove(key: StoreKey, cur: KubeObject): KubeObject {
    this.bucket(key.storage).delete(objKey(key.namespace, key.name));
    const last = clone(cur);
    last.metadata.resourceVersion = String(++this.rv);
    this.commit({ type: 'DELETED', ...key, resourceVersion: this.rv, object: last, prev: cur });
    return clone(last);
  }

  private commit(event: StoreEvent): void {
    this.window.push(event);
    if (this.window.length > this.windowSize) {
      const drop = this.window.length - this.windowSize;
      this.evictedUpTo = this.window[drop - 1]!.resourceVersion;
      this.window.splice(0, drop);
    }
    for (const w of this.watchers) this.deliver(w, event);
    this.schedulePersist();
  }

  private deliver(w: Watcher, event: StoreEvent): void {
    if (w.stopped || event.storage !== w.req.storage) return;
    if (w.req.namespace !== undefined && event.namespace !== w.req.namespace) return;
    try {
      w.req.onEvent(event);
    } catch (err) {
      log.warn('watch handler failed', { err });
    }
  }

  watch(req: WatchRequest): StoreWatch {
    if (req.fromResourceVersion < this.evictedUpTo) {
      throw new KnodeError(
        'STORE_EXPIRED',
        `too old resource version: ${req.fromResourceVersion} (${this.evictedUpTo + 1})`,
      );
    }
    const w: Watcher = { req, stopped: false };
    for (const e of this.window) if (e.resourceVersion > req.fromResourceVersion) this.deliver(w, e);
    this.watchers.add(w);
    return {
      stop: () => {
        w.stopped = true;
        this.watchers.delete(w);
      },
    };
  }

  private schedulePersist(): void {
    if (!this.persistPath || this.persistTimer) return;
    this.persistTimer = setTimeout(() => {
      this.persistTimer = undefined;
      this.persisting = this.persisting.then(() => this.persistNow()).catch((err: unknown) => log.error('cannot persist store', { err }));
    }, this.debounceMs);
  }

  private async persistNow(): Promise<void> {
    if (!this.persistPath) return;
    const snap: Snapshot = { resourceVersion: this.rv, objects: [] };
    for (const [storage, b] of this.data) for (const object of b.values()) snap.objects.push({ storage, object });
    const tmp = `${this.persistPath}.tmp`;
    await writeFile(tmp, JSON.stringify(snap), { mode: 0o600 });
    await rename(tmp, this.persistPath);
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.stopped = true;
    this.watchers.clear();
    if (this.persistTimer) {
      clearTimeout(this.persistTimer);
      this.persistTimer = undefined;
      this.persisting = this.persisting.then(() => this.persistNow());
    }
    await this.persisting;
  }
}

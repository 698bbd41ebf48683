/**
 * The file source of static pods: the manifests in --pod-manifest-path as a
 * `PodSource` (adds/updates and deletes, keyed by the pods' UIDs).
 *
 * Design notes:
 * - Level-triggered: every scan reads the whole directory (regular files, no
 *   dot files, no recursion, as upstream) and `diffStaticPods` turns the new
 *   set into adds and deletes. Scans run every `rescanMs` (20 s, upstream's
 *   fileCheckFrequency) and ~100 ms after fs.watch reports a change.
 * - A missing directory is an empty set (upstream does the same).
 * - A malformed file is logged and reported as a Warning event on the Node
 *   (once per distinct error), never thrown. A file that was valid before and
 *   turns malformed keeps its last valid pod — a deliberate difference from
 *   upstream, which kills that pod: a half-written manifest (an editor saving in
 *   place, caught by fs.watch) must not stop a running static pod.
 * - Two files naming the same pod: the first in file-name order wins; the
 *   other is reported like a malformed file.
 * - config.seen is kept for a UID from its first sighting.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { errnoCode, errorMessage } from '../../../lib/errors.js';
import type { Logger } from '../../../lib/log.js';
import type { PodSource } from '../types.js';
import { podKey } from '../types.js';
import { configSeenAnnotation, parseManifest, seenTimestamp } from './manifest.js';

/** What one scan found: pods by file, and the files that could not be used. */
export interface ScanResult {
  pods: Map<string, V1Pod>;
  errors: Map<string, string>;
}

/** Adds and deletes from one set of static pods to the next, by UID. Pure. */
export function diffStaticPods(prev: ReadonlyMap<string, V1Pod>, next: ReadonlyMap<string, V1Pod>): { added: V1Pod[]; removed: V1Pod[] } {
  const added = [...next.entries()].filter(([uid]) => !prev.has(uid)).map(([, p]) => p);
  const removed = [...prev.entries()].filter(([uid]) => !next.has(uid)).map(([, p]) => p);
  return { added, removed };
}

export interface FileSourceOptions {
  dir: string;
  nodeName: string;
  logger: Logger;
  /** Called for each new distinct problem with a file (an event on the Node). */
  onInvalid?: (path: string, message: string) => void;
  /** Rescan period, ms (default 20 000). */
  rescanMs?: number;
  /** Rescan on fs.watch events too (default true; tests that want exact scans turn it off). */
  watch?: boolean;
  now?: () => number;
}

export class StaticPodFileSource implements PodSource {
  private readonly o: FileSourceOptions;
  /** Current pods by UID. */
  private current = new Map<string, V1Pod>();
  /** Last valid pod of each file (kept when the file turns malformed). */
  private readonly lastGood = new Map<string, V1Pod>();
  private readonly reported = new Map<string, string>();
  private handlers: Parameters<PodSource['subscribe']>[0] | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private scanning: Promise<void> = Promise.resolve();
  private rescanQueued = false;
  private stopped = false;
  private resolveReady: () => void = () => undefined;
  /** Resolves after the first complete scan. */
  readonly ready = new Promise<void>((r) => (this.resolveReady = r));

  constructor(o: FileSourceOptions) {
    this.o = o;
  }

  /** The static pods as of the last scan. */
  pods(): V1Pod[] {
    return [...this.current.values()];
  }

  has(uid: string): boolean {
    return this.current.has(uid);
  }

  subscribe(handlers: Parameters<PodSource['subscribe']>[0]): () => void {
    this.handlers = handlers;
    this.scan();
    this.timer = setInterval(() => this.scan(), this.o.rescanMs ?? 20_000);
    this.startWatch();
    return () => this.stop();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    this.watcher?.close();
    this.resolveReady();
  }

  /** Scans now (serialised: a scan asked for during one runs after it). */
  scan(): Promise<void> {
    if (this.rescanQueued) return this.scanning;
    this.rescanQueued = true;
    this.scanning = this.scanning.then(async () => {
      this.rescanQueued = false;
      if (this.stopped) return;
      try {
        this.apply(await this.read());
      } catch (err) {
        this.o.logger.error('static pod scan failed', { dir: this.o.dir, err: errorMessage(err) });
      }
      this.resolveReady();
    });
    return this.scanning;
  }

  private startWatch(): void {
    if (this.watcher !== undefined || this.stopped || this.o.watch === false) return;
    try {
      this.watcher = watch(this.o.dir, { persistent: false }, () => {
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => void this.scan(), 100);
      });
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = undefined; // the periodic scan goes on; watch again once the dir is back
      });
    } catch {
      this.watcher = undefined; // no dir yet: the periodic scan retries the watch
    }
  }

  private async read(): Promise<ScanResult> {
    const pods = new Map<string, V1Pod>();
    const errors = new Map<string, string>();
    let names: string[];
    try {
      names = (await readdir(this.o.dir)).filter((n) => !n.startsWith('.')).sort();
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return { pods, errors };
      throw err;
    }
    this.startWatch();
    for (const name of names) {
      const path = join(this.o.dir, name);
      try {
        if (!(await stat(path)).isFile()) continue;
        const text = await readFile(path, 'utf8');
        pods.set(path, parseManifest(text, { path, nodeName: this.o.nodeName, seen: seenTimestamp((this.o.now ?? Date.now)()) }));
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue; // removed while scanning
        errors.set(path, errorMessage(err));
      }
    }
    return { pods, errors };
  }

  private apply(scan: ScanResult): void {
    const next = new Map<string, V1Pod>();
    const byName = new Map<string, string>();
    const use = (path: string, pod: V1Pod): void => {
      const key = podKey(pod);
      const other = byName.get(key);
      if (other !== undefined) {
        scan.errors.set(path, `static pod manifest ${path}: pod ${key} is already defined by ${other}`);
        return;
      }
      byName.set(key, path);
      const uid = pod.metadata?.uid ?? '';
      const known = this.current.get(uid);
      next.set(uid, known ?? pod); // keep config.seen (and the object) of a pod already known
    };
    const paths = [...new Set([...scan.pods.keys(), ...scan.errors.keys()])].sort();
    for (const path of paths) {
      const pod = scan.pods.get(path);
      if (pod !== undefined) {
        this.lastGood.set(path, pod);
        use(path, pod);
        continue;
      }
      const kept = this.lastGood.get(path);
      if (kept !== undefined) use(path, kept);
    }
    for (const path of [...this.lastGood.keys()]) if (!scan.pods.has(path) && !scan.errors.has(path)) this.lastGood.delete(path);

    for (const [path, message] of scan.errors) {
      if (this.reported.get(path) === message) continue;
      this.reported.set(path, message);
      this.o.logger.error('invalid static pod manifest', { path, err: message, kept: this.lastGood.has(path) });
      this.o.onInvalid?.(path, message);
    }
    for (const path of [...this.reported.keys()]) if (!scan.errors.has(path)) this.reported.delete(path);

    const { added, removed } = diffStaticPods(this.current, next);
    this.current = next;
    for (const pod of removed) {
      this.o.logger.info('static pod removed', { pod: podKey(pod), uid: pod.metadata?.uid });
      this.handlers?.onDelete(pod);
    }
    for (const pod of added) {
      this.o.logger.info('static pod added', { pod: podKey(pod), uid: pod.metadata?.uid, seen: pod.metadata?.annotations?.[configSeenAnnotation] });
      this.handlers?.onUpdate(pod);
    }
  }
}

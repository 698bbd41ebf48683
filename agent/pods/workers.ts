/**
 * The set of pod workers of an agent, keyed by pod uid: starts a worker per
 * pod, terminates pods, feeds itself from a `PodSource`, and removes the
 * sandboxes of pods it does not know (deleted while the agent was down).
 */
import type { V1Pod } from '@kubernetes/client-node';
import { podUidLabel } from './labels.js';
import type { PodSource } from './types.js';
import { PodWorker, resolveWorkerOptions, type PodWorkerOptions, type ResolvedWorkerOptions } from './worker.js';

/** The set of pod workers of an agent, keyed by pod uid. */
export class PodWorkers {
  private readonly workers = new Map<string, PodWorker>();
  private readonly terminating = new Set<string>();
  private readonly o: ResolvedWorkerOptions;

  constructor(options: PodWorkerOptions) {
    this.o = resolveWorkerOptions(options);
  }

  /** Adds or updates a pod; its worker starts syncing. */
  updatePod(pod: V1Pod): PodWorker {
    const uid = pod.metadata?.uid ?? '';
    let w = this.workers.get(uid);
    if (w === undefined) {
      w = new PodWorker(pod, this.o);
      this.workers.set(uid, w);
      w.start();
    } else {
      w.update(pod);
    }
    return w;
  }

  get(uid: string): PodWorker | undefined {
    return this.workers.get(uid);
  }

  /**
   * Terminates a pod (preStop, grace period, sandbox removal, volumes) and
   * forgets it. Resolves false when something could not be removed (call again).
   */
  async terminatePod(pod: V1Pod, graceSeconds?: number): Promise<boolean> {
    const uid = pod.metadata?.uid ?? '';
    const w = this.workers.get(uid) ?? new PodWorker(pod, this.o);
    w.update(pod);
    try {
      return await w.terminate(graceSeconds);
    } finally {
      this.workers.delete(uid);
    }
  }

  /**
   * Stops and removes sandboxes (and their containers) of pods not in `keep`:
   * pods deleted while the agent was down.
   */
  async removeOrphans(keep: ReadonlySet<string>): Promise<string[]> {
    const removed: string[] = [];
    for (const sb of await this.o.runtime.listPodSandbox()) {
      const uid = sb.labels[podUidLabel];
      if (uid === undefined || keep.has(uid) || this.workers.has(uid)) continue;
      try {
        await this.o.runtime.stopPodSandbox(sb.id);
        await this.o.runtime.removePodSandbox(sb.id);
        removed.push(sb.id);
      } catch (err) {
        this.o.logger.warn('orphan sandbox removal failed', { err, sandbox: sb.id });
      }
    }
    return removed;
  }

  /**
   * Feeds the workers from a pod source: updates start or update workers; a pod
   * with a deletionTimestamp or removed from the source is terminated (with its
   * deletionGracePeriodSeconds, else its spec's grace period). Returns the unsubscribe.
   */
  attach(source: PodSource): () => void {
    const terminate = (pod: V1Pod): void => {
      const uid = pod.metadata?.uid ?? '';
      if (this.terminating.has(uid)) return;
      this.terminating.add(uid);
      void this.terminatePod(pod, pod.metadata?.deletionGracePeriodSeconds ?? undefined).finally(() => this.terminating.delete(uid));
    };
    return source.subscribe({
      onUpdate: (pod) => (pod.metadata?.deletionTimestamp !== undefined ? terminate(pod) : void this.updatePod(pod)),
      onDelete: terminate,
    });
  }

  /** Stops every loop; pods keep running (agent shutdown). */
  async stop(): Promise<void> {
    await Promise.all([...this.workers.values()].map((w) => w.stop()));
    this.workers.clear();
  }
}

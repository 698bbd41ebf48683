/**
 * The lab's scheduler: binds pods that have no node (schedulerName
 * default-scheduler or unset) through pods/binding, one pod at a time from a
 * work queue, with the decision made by scheduling.ts on the informer caches.
 *
 * A binding is "assumed" until the pod informer shows the pod bound, so the
 * next decision already counts it (upstream's scheduler cache does the same).
 * Unschedulable pods get PodScheduled=False/Unschedulable and a
 * FailedScheduling event (once per distinct message), and are retried when a
 * node changes in a way that matters, when a bound pod goes away, and every
 * 30 s.
 */
import { errorMessage } from '../../lib/errors.js';
import { apiReason } from './client.js';
import type { Controller, ControllerContext } from './context.js';
import { waitForSync } from './context.js';
import { WorkQueue } from './queue.js';
import { isTerminated, needsScheduling, schedule } from './scheduling.js';
import type { NodeInfo } from './scheduling.js';
import { keyOf, now, splitKey } from './types.js';
import type { Condition, Node, Pod } from './types.js';

export const schedulerName = 'default-scheduler';

/** The parts of a node the scheduler's decisions read. */
function nodeFingerprint(n: Node): string {
  return JSON.stringify([
    n.metadata.labels,
    n.spec?.unschedulable,
    n.spec?.taints,
    n.status?.allocatable,
    (n.status?.conditions ?? []).find((c) => c.type === 'Ready')?.status,
  ]);
}

export class Scheduler implements Controller {
  readonly name = 'scheduler';
  private readonly queue: WorkQueue;
  /** pod key → node, bound by us but not yet seen bound in the cache. */
  private readonly assumed = new Map<string, string>();
  /** pod key → the last unschedulable message reported. */
  private readonly reported = new Map<string, string>();

  constructor(private readonly ctx: ControllerContext) {
    this.queue = new WorkQueue({ name: this.name, logger: ctx.logger });
    const { pods, nodes } = ctx.informers;
    pods.on({
      add: (p) => this.onPod(p),
      update: (old, p) => {
        this.onPod(p);
        if (old.spec.nodeName && (isTerminated(p) && !isTerminated(old))) this.retryPending();
      },
      delete: (p) => {
        const key = keyOf(p);
        const wasAssumed = this.assumed.delete(key);
        this.reported.delete(key);
        if (p.spec.nodeName || wasAssumed) this.retryPending();
      },
    });
    nodes.on({
      add: () => this.retryPending(),
      update: (old, cur) => {
        if (nodeFingerprint(old) !== nodeFingerprint(cur)) this.retryPending();
      },
      delete: () => this.retryPending(),
    });
  }

  private onPod(p: Pod): void {
    const key = keyOf(p);
    if (p.spec.nodeName) this.assumed.delete(key);
    if (needsScheduling(p)) this.queue.add(key);
  }

  private retryPending(): void {
    for (const p of this.ctx.informers.pods.list()) if (needsScheduling(p)) this.queue.add(keyOf(p));
  }

  /** Nodes with the pods bound to them (cache plus assumed bindings). */
  nodeInfos(): NodeInfo[] {
    const infos = new Map<string, NodeInfo>();
    for (const node of this.ctx.informers.nodes.list()) infos.set(node.metadata.name ?? '', { node, pods: [] });
    for (const pod of this.ctx.informers.pods.list()) {
      const nodeName = pod.spec.nodeName ?? this.assumed.get(keyOf(pod));
      if (!nodeName || isTerminated(pod)) continue;
      infos.get(nodeName)?.pods.push(pod);
    }
    return [...infos.values()];
  }

  private async sync(key: string): Promise<void> {
    const pod = this.ctx.informers.pods.get(key);
    if (!pod || !needsScheduling(pod) || this.assumed.has(key)) return;
    const { namespace, name } = splitKey(key);
    const result = schedule(pod, this.nodeInfos());
    const recorder = this.ctx.recorder(schedulerName);
    if ('node' in result) {
      try {
        await this.ctx.client.create(`/api/v1/namespaces/${namespace}/pods/${name}/binding`, {
          apiVersion: 'v1',
          kind: 'Binding',
          metadata: { name, namespace, uid: pod.metadata.uid },
          target: { apiVersion: 'v1', kind: 'Node', name: result.node },
        });
      } catch (err) {
        const reason = apiReason(err);
        // Already bound (by someone else) or gone: nothing left to do.
        if (reason === 'Conflict' || reason === 'NotFound') return;
        throw err;
      }
      this.assumed.set(key, result.node);
      this.reported.delete(key);
      this.ctx.logger.info('pod bound', { pod: key, node: result.node });
      recorder.record(pod, 'Normal', 'Scheduled', `Successfully assigned ${namespace}/${name} to ${result.node}`);
      return;
    }
    const message = result.unschedulable;
    const cur = (pod.status?.conditions ?? []).find((c) => c.type === 'PodScheduled');
    if (!cur || cur.status !== 'False' || cur.reason !== 'Unschedulable' || cur.message !== message) {
      const condition: Condition = { type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message, lastProbeTime: null, lastTransitionTime: cur?.status === 'False' ? (cur.lastTransitionTime ?? now()) : now() };
      const conditions = [...(pod.status?.conditions ?? []).filter((c) => c.type !== 'PodScheduled'), condition];
      try {
        await this.ctx.client.patch(`/api/v1/namespaces/${namespace}/pods/${name}/status`, { status: { conditions } });
      } catch (err) {
        if (apiReason(err) === 'NotFound') return;
        throw err;
      }
    }
    if (this.reported.get(key) !== message) {
      this.reported.set(key, message);
      this.ctx.logger.info('pod unschedulable', { pod: key, message });
      recorder.record(pod, 'Warning', 'FailedScheduling', message);
    }
  }

  async run(signal: AbortSignal): Promise<void> {
    const { pods, nodes } = this.ctx.informers;
    if (!(await waitForSync([pods, nodes], signal))) return;
    const resync = setInterval(() => this.retryPending(), 30_000);
    signal.addEventListener('abort', () => clearInterval(resync));
    this.retryPending();
    await this.queue.run(async (key) => {
      try {
        await this.sync(key);
      } catch (err) {
        this.ctx.logger.debug('schedule failed', { pod: key, err: errorMessage(err) });
        throw err;
      }
    }, signal);
  }
}

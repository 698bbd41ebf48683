/**
 * Static pods: pods from --pod-manifest-path run next to the apiserver's pods,
 * each with a mirror pod on the apiserver.
 *
 * Design notes:
 * - `source` (a PodSource, for PodWorkers.attach) feeds the workers; the
 *   apiserver pod informer stays the other source. Mirror pods the informer
 *   delivers are never run: `observeApiPod` takes them (returns true) and the
 *   caller skips them.
 * - The mirror loop (mirror.ts decides) runs once both the manifest dir was
 *   scanned and the informer listed (before that an absent mirror may only be
 *   unseen), on every change of either, and every `resyncMs` to retry failed
 *   writes. It needs the Node's UID (the mirror's ownerReference); until the
 *   Node is registered it waits, as upstream.
 * - `statusSink` wraps the apiserver's: a static pod's status goes to its
 *   current mirror pod (the mirror's UID replaces the static UID); with no
 *   mirror yet it is kept and written when the mirror is created.
 * - Nothing here throws to the caller; API failures are logged and retried.
 */
import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';
import type { CoreV1 } from '../../kube/client.js';
import type { Logger } from '../../../lib/log.js';
import { sleep } from '../../../lib/sleep.js';
import { apiErrorSummary, isConflict, isNotFound } from '../../kube/client.js';
import { nodeReference } from '../../node/index.js';
import type { EventRecorder, PodSource, PodStatusSink } from '../types.js';
import { podKey } from '../types.js';
import { isMirrorPod, isStaticPod } from './manifest.js';
import { isMirrorOf, mirrorActions, renderMirrorPod } from './mirror.js';
import { StaticPodFileSource } from './source.js';

export * from './manifest.js';
export * from './mirror.js';
export { StaticPodFileSource, diffStaticPods } from './source.js';

export interface StaticPodsOptions {
  /** --pod-manifest-path; undefined: no static pods (orphaned mirror pods are still removed). */
  manifestDir: string | undefined;
  nodeName: string;
  core: Pick<CoreV1, 'createNamespacedPod' | 'deleteNamespacedPod'>;
  /** Where pod statuses go (the apiserver's status subresource). */
  statusSink: PodStatusSink;
  recorder: EventRecorder;
  /** The Node's UID once registered. */
  nodeUid: () => string | undefined;
  signal: AbortSignal;
  logger: Logger;
  /** Manifest rescan period (default 20 s). */
  rescanMs?: number;
  /** Mirror loop period (default 10 s). */
  resyncMs?: number;
}

export interface StaticPods {
  /** The static pods, for PodWorkers.attach. */
  source: PodSource;
  /** Resolves after the first scan of the manifest dir. */
  ready: Promise<void>;
  /** UIDs of the current static pods (to keep their sandboxes in the orphan clean-up). */
  uids(): string[];
  /** Routes static pods' statuses to their mirror pods, others to the wrapped sink. */
  statusSink: PodStatusSink;
  /** Feed every pod event of the apiserver informer; true when it was a mirror pod (not to be run). */
  observeApiPod(pod: V1Pod, deleted: boolean): boolean;
  /** The apiserver informer has listed: mirror pods are known. */
  apiSynced(): void;
  /** Resolves when the loops stopped (signal aborted). */
  done: Promise<void>;
}

export function startStaticPods(o: StaticPodsOptions): StaticPods {
  const log = o.logger;
  const nodeRef = nodeReference(o.nodeName);
  const files =
    o.manifestDir === undefined
      ? undefined
      : new StaticPodFileSource({
          dir: o.manifestDir,
          nodeName: o.nodeName,
          logger: log,
          ...(o.rescanMs !== undefined ? { rescanMs: o.rescanMs } : {}),
          onInvalid: (path, message) => o.recorder.event(nodeRef, 'Warning', 'FailedStaticPodManifest', message.startsWith('static pod manifest') ? message : `static pod manifest ${path}: ${message}`),
        });
  const mirrors = new Map<string, V1Pod>();
  const lastStatus = new Map<string, V1PodStatus>();
  let synced = false;
  let sourceReady = files === undefined;
  let waitingForNode = false;

  /** The static pod as the apiserver knows it: the mirror pod's uid and status (what a status patch is computed against). */
  const asMirror = (pod: V1Pod, mirror: V1Pod): V1Pod => ({ ...pod, metadata: { ...pod.metadata, uid: mirror.metadata?.uid ?? '' }, status: mirror.status ?? {} });

  const writeStatus = async (staticPod: V1Pod, mirror: V1Pod): Promise<void> => {
    const status = lastStatus.get(staticPod.metadata?.uid ?? '');
    if (status === undefined || mirror.metadata?.uid === undefined) return;
    await o.statusSink.setStatus(asMirror(staticPod, mirror), status);
  };

  // The mirror loop: serialised, level-triggered.
  let pending = false;
  let running: Promise<void> = Promise.resolve();
  const reconcile = async (): Promise<void> => {
    if (!synced || !sourceReady || o.signal.aborted) return;
    const actions = mirrorActions(files?.pods() ?? [], [...mirrors.values()]);
    for (const { mirror, reason } of actions.delete) {
      const uid = mirror.metadata?.uid ?? '';
      try {
        await o.core.deleteNamespacedPod({ name: mirror.metadata?.name ?? '', namespace: mirror.metadata?.namespace ?? 'default', gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid } } });
        log.info('deleted a mirror pod', { pod: podKey(mirror), uid, reason });
      } catch (err) {
        if (isNotFound(err) || isConflict(err)) continue; // gone already, or replaced: the informer tells
        log.warn('mirror pod deletion failed; will retry', { pod: podKey(mirror), err: apiErrorSummary(err) });
      }
    }
    if (actions.create.length === 0) return;
    const nodeUid = o.nodeUid();
    if (nodeUid === undefined) {
      if (!waitingForNode) log.info('mirror pods wait for the Node to be registered');
      waitingForNode = true;
      return;
    }
    waitingForNode = false;
    for (const staticPod of actions.create) {
      try {
        const created = await o.core.createNamespacedPod({ namespace: staticPod.metadata?.namespace ?? 'default', body: renderMirrorPod(staticPod, { name: o.nodeName, uid: nodeUid }) });
        log.info('created a mirror pod', { pod: podKey(staticPod), staticUid: staticPod.metadata?.uid, uid: created.metadata?.uid });
        if (!mirrors.has(podKey(created))) mirrors.set(podKey(created), created);
        await writeStatus(staticPod, created);
      } catch (err) {
        if (isConflict(err)) continue; // it exists (the informer has not told yet)
        log.warn('mirror pod creation failed; will retry', { pod: podKey(staticPod), err: apiErrorSummary(err) });
      }
    }
  };
  const kick = (): void => {
    if (pending || o.signal.aborted) return;
    pending = true;
    running = running.then(async () => {
      pending = false;
      try {
        await reconcile();
      } catch (err) {
        log.warn('mirror pod sync failed', { err: apiErrorSummary(err) });
      }
    });
  };
  const done = (async () => {
    while (!o.signal.aborted) {
      await sleep(o.resyncMs ?? 10_000, o.signal);
      kick();
    }
    files?.stop();
    await running;
  })();

  void files?.ready.then(() => {
    sourceReady = true;
    kick();
  });

  const source: PodSource = {
    subscribe(handlers) {
      if (files === undefined) return () => undefined;
      return files.subscribe({
        onUpdate: (pod) => {
          handlers.onUpdate(pod);
          kick();
        },
        onDelete: (pod) => {
          lastStatus.delete(pod.metadata?.uid ?? '');
          handlers.onDelete(pod);
          kick();
        },
      });
    },
  };

  const statusSink: PodStatusSink = {
    async setStatus(pod, status) {
      if (!isStaticPod(pod)) return o.statusSink.setStatus(pod, status);
      const uid = pod.metadata?.uid ?? '';
      if (files?.has(uid) === true) lastStatus.set(uid, status);
      const mirror = mirrors.get(podKey(pod));
      if (mirror?.metadata?.uid === undefined || mirror.metadata.deletionTimestamp != null || !isMirrorOf(mirror, pod)) return;
      await o.statusSink.setStatus(asMirror(pod, mirror), status);
    },
  };

  return {
    source,
    ready: files?.ready ?? Promise.resolve(),
    uids: () => (files?.pods() ?? []).map((p) => p.metadata?.uid ?? ''),
    statusSink,
    observeApiPod(pod, deleted) {
      if (!isMirrorPod(pod)) return false;
      const key = podKey(pod);
      if (deleted) {
        if (mirrors.get(key)?.metadata?.uid === pod.metadata?.uid) mirrors.delete(key);
      } else {
        const known = mirrors.get(key);
        mirrors.set(key, pod);
        // A new mirror (recreated, or seen first): give it the static pod's last status.
        const staticPod = files?.pods().find((p) => podKey(p) === key);
        if (staticPod !== undefined && known?.metadata?.uid !== pod.metadata?.uid && isMirrorOf(pod, staticPod) && pod.metadata?.deletionTimestamp == null) {
          void writeStatus(staticPod, pod).catch((err: unknown) => log.warn('mirror pod status write failed', { pod: key, err: apiErrorSummary(err) }));
        }
      }
      kick();
      return true;
    },
    apiSynced() {
      synced = true;
      kick();
    },
    done,
  };
}


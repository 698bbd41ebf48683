/**
 * The node Lease (coordination.k8s.io/v1, namespace kube-node-lease, named
 * after the node): holderIdentity = node, leaseDurationSeconds 40, renewTime
 * renewed every quarter of the duration (10 s), owned by the Node so it goes
 * with it.
 *
 * Like upstream's lease controller: keep the last Lease written and update it
 * (PUT with its resourceVersion); on a conflict or a missing Lease, read it
 * again or create it. Errors retry with back-off (200 ms doubling, at most the
 * renew interval); the loop never ends before the signal aborts.
 */
import { MicroTime } from '../kube/wire.js';
import type { V1Lease, V1OwnerReference } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.js';
import { apiErrorSummary, isConflict, isNotFound, type CoordinationV1 } from '../kube/client.js';
import { backoffDelay } from '../kube/informer-state.js';
import { sleep } from '../../lib/sleep.js';

export const leaseNamespace = 'kube-node-lease';

export function nodeOwnerReference(nodeName: string, nodeUid: string): V1OwnerReference {
  return { apiVersion: 'v1', kind: 'Node', name: nodeName, uid: nodeUid };
}

/** The Lease to write at `now` (pure); keeps the metadata of `base` (resourceVersion) when given. */
export function renderLease(o: { nodeName: string; nodeUid: string | undefined; durationSeconds: number; now: Date; base?: V1Lease }): V1Lease {
  const owners = o.nodeUid === undefined ? (o.base?.metadata?.ownerReferences ?? []) : [nodeOwnerReference(o.nodeName, o.nodeUid)];
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { ...(o.base?.metadata ?? {}), name: o.nodeName, namespace: leaseNamespace, ...(owners.length > 0 ? { ownerReferences: owners } : {}) },
    spec: { ...(o.base?.spec ?? {}), holderIdentity: o.nodeName, leaseDurationSeconds: o.durationSeconds, renewTime: new MicroTime(o.now.getTime()) },
  };
}

export interface LeaseLoopOptions {
  coordination: Pick<CoordinationV1, 'readNamespacedLease' | 'createNamespacedLease' | 'replaceNamespacedLease'>;
  nodeName: string;
  /** The Node's uid for the ownerReference (changes when the Node is re-registered). */
  nodeUid: () => string | undefined;
  durationSeconds: number;
  renewIntervalMs: number;
  signal: AbortSignal;
  logger: Logger;
  now?: () => Date;
}

export interface LeaseLoop {
  done: Promise<void>;
  renewals(): number;
}

export function startLeaseLoop(o: LeaseLoopOptions): LeaseLoop {
  const now = o.now ?? (() => new Date());
  let cached: V1Lease | undefined;
  let renewals = 0;

  const renewOnce = async (): Promise<V1Lease> => {
    const nodeUid = o.nodeUid();
    if (cached !== undefined) {
      try {
        return await o.coordination.replaceNamespacedLease({
          name: o.nodeName,
          namespace: leaseNamespace,
          body: renderLease({ nodeName: o.nodeName, nodeUid, durationSeconds: o.durationSeconds, now: now(), base: cached }),
        });
      } catch (err) {
        if (!isConflict(err) && !isNotFound(err)) throw err;
        cached = undefined;
      }
    }
    let existing: V1Lease | undefined;
    try {
      existing = await o.coordination.readNamespacedLease({ name: o.nodeName, namespace: leaseNamespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const body = renderLease({ nodeName: o.nodeName, nodeUid, durationSeconds: o.durationSeconds, now: now(), ...(existing ? { base: existing } : {}) });
    if (existing === undefined) return o.coordination.createNamespacedLease({ namespace: leaseNamespace, body });
    return o.coordination.replaceNamespacedLease({ name: o.nodeName, namespace: leaseNamespace, body });
  };

  const run = async (): Promise<void> => {
    let failures = 0;
    while (!o.signal.aborted) {
      try {
        cached = await renewOnce();
        renewals++;
        failures = 0;
        await sleep(o.renewIntervalMs, o.signal);
      } catch (err) {
        cached = undefined;
        const delay = backoffDelay(failures++, 200, o.renewIntervalMs);
        o.logger.warn('cannot renew the node lease; retrying', { err: apiErrorSummary(err), retryInMs: delay });
        await sleep(delay, o.signal);
      }
    }
  };
  return { done: run(), renewals: () => renewals };
}

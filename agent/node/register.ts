/**
 * Registers the Node. Create it; when it already exists (a restart, another
 * agent run), reconcile the labels the agent owns on it (as the kubelet
 * reconciles its default labels) and take it as it is: the status loop brings
 * its status up to date. Taints and other labels on an existing Node belong to
 * the cluster's operators and are left alone.
 */
import type { V1Node } from '@kubernetes/client-node';
import type { CoreV1 } from '../kube/client.js';
import type { Logger } from '../../lib/log.js';
import { httpStatus, strategicMergePatch } from '../kube/client.js';
import { reconcileLabelsPatch } from './render.js';

export async function registerNode(o: { core: Pick<CoreV1, 'createNode' | 'readNode' | 'patchNode'>; node: V1Node; logger: Logger }): Promise<{ node: V1Node; created: boolean }> {
  const name = o.node.metadata!.name!;
  try {
    const node = await o.core.createNode({ body: o.node });
    o.logger.info('node registered', { node: name, uid: node.metadata?.uid });
    return { node, created: true };
  } catch (err) {
    if (httpStatus(err) !== 409) throw err;
  }
  const existing = await o.core.readNode({ name });
  const patch = reconcileLabelsPatch(existing, o.node);
  if (patch === undefined) {
    o.logger.info('node already registered', { node: name, uid: existing.metadata?.uid });
    return { node: existing, created: false };
  }
  const node = await o.core.patchNode({ name, body: patch }, strategicMergePatch);
  o.logger.info('node already registered; labels reconciled', { node: name, labels: Object.keys(patch.metadata.labels) });
  return { node, created: false };
}

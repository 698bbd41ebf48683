/** ListWatches of the resources the agent follows. */
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import type { KubeClient } from './client.js';
import { restListWatch } from './informer.js';
import type { ListWatch } from './informer.js';

/** All pods (use a fieldSelector `spec.nodeName=<node>` on the informer). */
export function podListWatch(client: Pick<KubeClient, 'rest'>): ListWatch<V1Pod> {
  return restListWatch<V1Pod>({ rest: client.rest, path: '/api/v1/pods' });
}

export function nodeListWatch(client: Pick<KubeClient, 'rest'>): ListWatch<V1Node> {
  return restListWatch<V1Node>({ rest: client.rest, path: '/api/v1/nodes' });
}

/** ListWatches of the resources the agent follows, over the typed client. */
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import type { KubeClient } from './client.js';
import { clientListWatch } from './informer.js';
import type { ListWatch } from './informer.js';

/** All pods (use a fieldSelector `spec.nodeName=<node>` on the informer). */
export function podListWatch(client: KubeClient): ListWatch<V1Pod> {
  return clientListWatch<V1Pod>({ kc: client.kc, path: '/api/v1/pods', model: 'V1Pod', list: (o) => client.core.listPodForAllNamespaces(o) });
}

export function nodeListWatch(client: KubeClient): ListWatch<V1Node> {
  return clientListWatch<V1Node>({ kc: client.kc, path: '/api/v1/nodes', model: 'V1Node', list: (o) => client.core.listNode(o) });
}

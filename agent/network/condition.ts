/**
 * The Node's NetworkUnavailable condition, owned by the network plugin (flannel's kube subnet
 * manager sets it False with reason FlannelIsUp once its backend is up). The node status loop
 * leaves it alone (agent/node/conditions.ts). Pure render; the caller PATCHes nodes/<n>/status
 * (strategic merge: conditions merge by type).
 */
import type { V1Node } from '@kubernetes/client-node';

export interface NetworkCondition {
  status: 'True' | 'False';
  reason: string;
  message: string;
}

export const networkUp: NetworkCondition = { status: 'False', reason: 'FlannelIsUp', message: 'Flannel is running on this node' };

export function networkDown(why: string): NetworkCondition {
  return { status: 'True', reason: 'NetworkPluginNotReady', message: `knode overlay is not set up: ${why}` };
}

/** The status patch when the Node's condition differs from `want` (status, reason or message), else undefined. */
export function networkConditionPatch(node: V1Node | undefined, want: NetworkCondition, now: Date): { status: { conditions: Record<string, unknown>[] } } | undefined {
  const have = node?.status?.conditions?.find((c) => c.type === 'NetworkUnavailable');
  if (have !== undefined && have.status === want.status && have.reason === want.reason && have.message === want.message) return undefined;
  const transition = have !== undefined && have.status === want.status && have.lastTransitionTime !== undefined ? new Date(have.lastTransitionTime) : now;
  return {
    status: {
      conditions: [{ type: 'NetworkUnavailable', status: want.status, reason: want.reason, message: want.message, lastHeartbeatTime: now.toISOString(), lastTransitionTime: transition.toISOString() }],
    },
  };
}

/**
 * What the agent sends to pods/<name>/status, from the status the apiserver
 * holds and the one the agent computed (upstream: status manager's
 * mergePodStatus + PatchPodStatus).
 *
 * - Conditions the kubelet does not own (readiness-gate conditions,
 *   DisruptionTarget, anything a controller adds) are kept from the
 *   apiserver's status, after the kubelet's own ones.
 * - Fields the kubelet does not own (nominatedNodeName, resourceClaimStatuses)
 *   are left alone.
 * - The patch is a JSON merge patch: top-level fields the apiserver has and the
 *   agent's status no longer has are set to null, so they are removed (a merge
 *   patch of the bare status would leave them, e.g. an old `reason`/`message`
 *   or pod IPs). Lists (conditions, container statuses) are replaced whole.
 *
 * Pure.
 */
import type { V1PodCondition, V1PodStatus } from '@kubernetes/client-node';

/** Condition types the kubelet writes (upstream kubetypes.PodConditionsByKubelet). */
export const KUBELET_CONDITIONS: ReadonlySet<string> = new Set(['PodScheduled', 'Ready', 'Initialized', 'ContainersReady', 'PodReadyToStartContainers']);

/** Status fields other components own: never written or cleared by the agent. */
const FOREIGN_FIELDS: ReadonlySet<string> = new Set(['nominatedNodeName', 'resourceClaimStatuses']);

/** The agent's status with the conditions others own carried over from the apiserver's status. */
export function mergePodStatus(api: V1PodStatus | undefined, ours: V1PodStatus): V1PodStatus {
  const foreign: V1PodCondition[] = (api?.conditions ?? []).filter((c) => !KUBELET_CONDITIONS.has(c.type));
  if (foreign.length === 0) return ours;
  return { ...ours, conditions: [...(ours.conditions ?? []), ...foreign] };
}

export type StatusPatch = Record<string, unknown>;

/** JSON merge patch body for the status subresource: `{ metadata: { uid }, status }`. */
export function podStatusPatch(uid: string, api: V1PodStatus | undefined, merged: V1PodStatus): { metadata: { uid: string }; status: StatusPatch } {
  const status: StatusPatch = {};
  for (const [k, v] of Object.entries(merged)) {
    if (v !== undefined && !FOREIGN_FIELDS.has(k)) status[k] = v;
  }
  for (const [k, v] of Object.entries(api ?? {})) {
    if (v === undefined || v === null || FOREIGN_FIELDS.has(k)) continue;
    if (!(k in status)) status[k] = null;
  }
  return { metadata: { uid }, status };
}

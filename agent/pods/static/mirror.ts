/**
 * Mirror pods: the apiserver's read-only copies of the static pods, so that
 * `kubectl get pods` shows them (upstream's pkg/kubelet/pod/mirror_client.go and
 * the mirror-pod part of syncPod / HandlePodCleanups). Pure decisions.
 *
 * Design notes:
 * - A mirror pod is the static pod's object (same name and namespace, spec,
 *   labels, annotations) plus kubernetes.io/config.mirror = the static pod's
 *   config hash, and — as upstream since 1.17 — a controller ownerReference to
 *   the Node (so deleting the Node garbage-collects it). The apiserver gives it
 *   its own UID.
 * - `mirrorActions` compares the static pods with the mirror pods the pod
 *   informer sees on this node: a static pod without a live mirror pod of its
 *   hash gets one; a mirror pod that is being deleted, is stale (other hash) or
 *   has no static pod any more (orphan) is deleted (grace 0, uid precondition).
 *   A deleted mirror pod is created again once it is gone.
 */
import type { V1OwnerReference, V1Pod } from '@kubernetes/client-node';
import { podKey } from '../types.js';
import { configHash, configMirrorAnnotation } from './manifest.js';

/** The mirror pod to create for a static pod (no UID: the apiserver assigns one). */
export function renderMirrorPod(staticPod: V1Pod, node: { name: string; uid: string }): V1Pod {
  const m = staticPod.metadata ?? {};
  const owner: V1OwnerReference = { apiVersion: 'v1', kind: 'Node', name: node.name, uid: node.uid, controller: true };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: m.name ?? '',
      namespace: m.namespace ?? 'default',
      ...(m.labels !== undefined ? { labels: { ...m.labels } } : {}),
      annotations: { ...(m.annotations ?? {}), [configMirrorAnnotation]: configHash(staticPod) },
      ownerReferences: [owner],
    },
    ...(staticPod.spec !== undefined ? { spec: staticPod.spec } : {}),
  };
}

/** True when `mirror` is the current mirror of `staticPod` (same name and hash). */
export function isMirrorOf(mirror: V1Pod, staticPod: V1Pod): boolean {
  return podKey(mirror) === podKey(staticPod) && mirror.metadata?.annotations?.[configMirrorAnnotation] === configHash(staticPod);
}

export interface MirrorActions {
  /** Static pods whose mirror pod must be created. */
  create: V1Pod[];
  /** Mirror pods to delete, with why. */
  delete: { mirror: V1Pod; reason: 'orphaned' | 'stale' | 'deleting' }[];
}

/** What to do about mirror pods, given the static pods and the mirror pods on the apiserver. Pure. */
export function mirrorActions(staticPods: readonly V1Pod[], mirrors: readonly V1Pod[]): MirrorActions {
  const byKey = new Map(staticPods.map((p) => [podKey(p), p]));
  const out: MirrorActions = { create: [], delete: [] };
  const present = new Set<string>();
  for (const mirror of mirrors) {
    const key = podKey(mirror);
    present.add(key);
    const staticPod = byKey.get(key);
    if (staticPod === undefined) out.delete.push({ mirror, reason: 'orphaned' });
    else if (mirror.metadata?.deletionTimestamp !== undefined && mirror.metadata.deletionTimestamp !== null) out.delete.push({ mirror, reason: 'deleting' });
    else if (!isMirrorOf(mirror, staticPod)) out.delete.push({ mirror, reason: 'stale' });
  }
  for (const [key, staticPod] of byKey) if (!present.has(key)) out.create.push(staticPod);
  return out;
}

/**
 * The pod lifecycle core's ports and shared shapes.
 *
 * Design notes:
 * - The apiserver side is somebody else's: pods come in as V1Pod objects (from a
 *   watch, a manifest dir or a test), statuses go out through `PodStatusSink`,
 *   events through `EventRecorder`, and configMaps/secrets/services are read
 *   through `ObjectLookup`. Each is a small interface so tests feed them directly.
 * - `PodRuntimeState` is what the pure decisions (plan.ts, status.ts) see of the
 *   runtime: the pod's sandboxes and containers, newest first, already read and
 *   decoded from the labels/annotations the agent put on them.
 */
import type { V1ConfigMap, V1Pod, V1PodStatus, V1Secret, V1Service } from '@kubernetes/client-node';
import type { AuthConfig, ContainerState, NamespaceMode, PodSandboxState } from '../runtime/types.js';

import type { EventRecorder as KubeEventRecorder, EventType, InvolvedObject } from '../kube/events.js';
export type { EventType, InvolvedObject };

/** Where lifecycle events go (the apiserver's events, a log, a test's array): the `event` part of agent/kube/events.ts's recorder. */
export type EventRecorder = Pick<KubeEventRecorder, 'event'>;

/** Receives a pod's computed status when it changed. */
export interface PodStatusSink {
  setStatus(pod: V1Pod, status: V1PodStatus): void | Promise<void>;
}

/** Feeds pods in: `onUpdate` for adds/changes, `onDelete` when the pod must go. */
export interface PodSource {
  subscribe(handlers: { onUpdate(pod: V1Pod): void; onDelete(pod: V1Pod): void }): () => void;
}

/**
 * ConfigMaps, Secrets and Services as the agent may read them. `undefined` means
 * "not found"; throwing means "could not look" (both surface as errors unless optional).
 */
export interface ObjectLookup {
  getConfigMap(namespace: string, name: string): Promise<V1ConfigMap | undefined>;
  getSecret(namespace: string, name: string): Promise<V1Secret | undefined>;
  /** Services of every namespace the agent knows (for the service env vars). */
  listServices(): Promise<V1Service[]>;
}

/** Credentials for an image from the pod's imagePullSecrets (and the node's own, if any). */
export interface CredentialsLookup {
  credentialsFor(pod: V1Pod, image: string): Promise<AuthConfig[]>;
}

export interface SandboxInfo {
  id: string;
  attempt: number;
  state: PodSandboxState;
  createdAt: bigint;
  /** Primary IP ('' if none or not read). */
  ip: string;
  additionalIps: string[];
  /** Network namespace mode the sandbox runs with, when known. */
  network: NamespaceMode | undefined;
}

export interface ContainerInfo {
  id: string;
  name: string;
  sandboxId: string;
  attempt: number;
  state: ContainerState;
  createdAt: bigint;
  startedAt: bigint;
  finishedAt: bigint;
  exitCode: number;
  /** Runtime's reason ('Completed', 'Error', 'OOMKilled') and message. */
  reason: string;
  message: string;
  /** Image as the runtime reports it, and its resolved reference/id. */
  image: string;
  imageRef: string;
  /** Hash of the container spec it was created from (annotation). */
  hash: string;
  /** Restart count it was created with (annotation). */
  restartCount: number;
}

export interface PodRuntimeState {
  /** Newest first. */
  sandboxes: SandboxInfo[];
  /** Newest first (by createdAt). */
  containers: ContainerInfo[];
}

/** The newest runtime container of that name, if any. */
export function latestContainer(state: PodRuntimeState, name: string): ContainerInfo | undefined {
  return state.containers.find((c) => c.name === name);
}

/** A pod's `namespace/name` for messages and logs. */
export function podKey(pod: V1Pod): string {
  return `${pod.metadata?.namespace ?? 'default'}/${pod.metadata?.name ?? ''}`;
}

/** `name_namespace(uid)` as upstream's format.Pod prints a pod. */
export function podDescription(pod: V1Pod): string {
  return `${pod.metadata?.name ?? ''}_${pod.metadata?.namespace ?? 'default'}(${pod.metadata?.uid ?? ''})`;
}

export function podReference(pod: V1Pod, fieldPath?: string): InvolvedObject {
  const ref: InvolvedObject = {
    apiVersion: 'v1',
    kind: 'Pod',
    name: pod.metadata?.name ?? '',
    namespace: pod.metadata?.namespace ?? 'default',
    uid: pod.metadata?.uid ?? '',
  };
  if (pod.metadata?.resourceVersion !== undefined) ref.resourceVersion = pod.metadata.resourceVersion;
  if (fieldPath !== undefined) ref.fieldPath = fieldPath;
  return ref;
}

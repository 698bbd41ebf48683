/** The agent's apiserver glue: client, informer, event recorder. */
export { createKubeClient, httpStatus, isNotFound, isConflict, apiErrorSummary, strategicMergePatch, mergePatch, jsonPatch } from './client.js';
export type { KubeClient, CoreV1, CoordinationV1, PatchOptions } from './client.js';
export { loadKubeconfig, parseKubeconfig } from './kubeconfig.js';
export type { Kubeconfig, KubeconfigCluster, KubeconfigUser } from './kubeconfig.js';
export { MicroTime, KubeApiError } from './wire.js';
export { startInformer, restListWatch, keyOf } from './informer.js';
export type { Informer, InformerOptions, InformerHandlers, ListWatch, Change } from './informer.js';
export { createEventRecorder } from './events.js';
export type { EventRecorder, EventType, InvolvedObject } from './events.js';
export { podListWatch, nodeListWatch } from './resources.js';

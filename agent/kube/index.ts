/** The agent's apiserver glue: client, informer, event recorder. */
export { createKubeClient, httpStatus, isNotFound, isConflict, apiErrorSummary, strategicMergePatch, mergePatch } from './client.js';
export type { KubeClient } from './client.js';
export { startInformer, clientListWatch, keyOf } from './informer.js';
export type { Informer, InformerOptions, InformerHandlers, ListWatch, Change } from './informer.js';
export { createEventRecorder } from './events.js';
export type { EventRecorder, EventType, InvolvedObject } from './events.js';
export { podListWatch, nodeListWatch } from './resources.js';

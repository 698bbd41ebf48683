/**
 * What every lab controller shares: one API client, one informer per
 * resource (list+watch once, many handlers), a logger and an event recorder
 * factory.
 */
import type { Logger } from '../../lib/log.js';
import type { ApiClient } from './client.js';
import { eventRecorder } from './events.js';
import type { EventRecorder } from './events.js';
import { Informer } from './informer.js';
import type { CertificateSigningRequest, ConfigMap, Deployment, EndpointSlice, Endpoints, Namespace, Node, Pod, ReplicaSet, Service, ServiceAccount } from './types.js';

export interface Informers {
  pods: Informer<Pod>;
  nodes: Informer<Node>;
  services: Informer<Service>;
  endpoints: Informer<Endpoints>;
  endpointSlices: Informer<EndpointSlice>;
  replicaSets: Informer<ReplicaSet>;
  deployments: Informer<Deployment>;
  csrs: Informer<CertificateSigningRequest>;
  namespaces: Informer<Namespace>;
  serviceAccounts: Informer<ServiceAccount>;
  configMaps: Informer<ConfigMap>;
}

export interface ControllerContext {
  client: ApiClient;
  informers: Informers;
  logger: Logger;
  recorder(component: string): EventRecorder;
}

export interface Controller {
  readonly name: string;
  /** Waits for its informers' first list, then works its queue until `signal` aborts. (Handlers are registered in the constructor, before the informers start.) */
  run(signal: AbortSignal): Promise<void>;
}

export function createInformers(client: ApiClient, logger: Logger): Informers {
  const mk = <T extends Pod | Node | Service | Endpoints | EndpointSlice | ReplicaSet | Deployment | CertificateSigningRequest | Namespace | ServiceAccount | ConfigMap>(path: string, apiVersion: string, kind: string): Informer<T> =>
    new Informer<T>({ client, path, apiVersion, kind, logger: logger.child({ informer: kind }) });
  return {
    pods: mk<Pod>('/api/v1/pods', 'v1', 'Pod'),
    nodes: mk<Node>('/api/v1/nodes', 'v1', 'Node'),
    services: mk<Service>('/api/v1/services', 'v1', 'Service'),
    endpoints: mk<Endpoints>('/api/v1/endpoints', 'v1', 'Endpoints'),
    endpointSlices: mk<EndpointSlice>('/apis/discovery.k8s.io/v1/endpointslices', 'discovery.k8s.io/v1', 'EndpointSlice'),
    replicaSets: mk<ReplicaSet>('/apis/apps/v1/replicasets', 'apps/v1', 'ReplicaSet'),
    deployments: mk<Deployment>('/apis/apps/v1/deployments', 'apps/v1', 'Deployment'),
    csrs: mk<CertificateSigningRequest>('/apis/certificates.k8s.io/v1/certificatesigningrequests', 'certificates.k8s.io/v1', 'CertificateSigningRequest'),
    namespaces: mk<Namespace>('/api/v1/namespaces', 'v1', 'Namespace'),
    serviceAccounts: mk<ServiceAccount>('/api/v1/serviceaccounts', 'v1', 'ServiceAccount'),
    configMaps: mk<ConfigMap>('/api/v1/configmaps', 'v1', 'ConfigMap'),
  };
}

export function makeContext(client: ApiClient, logger: Logger): ControllerContext {
  return { client, informers: createInformers(client, logger), logger, recorder: (component) => eventRecorder(client, component, logger) };
}

/** Waits for the informers' first list; false when `signal` aborted first. */
export async function waitForSync(informers: { synced: Promise<void> }[], signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  let onAbort: () => void = () => undefined;
  const aborted = new Promise<false>((resolve) => {
    onAbort = () => resolve(false);
    signal.addEventListener('abort', onAbort);
  });
  try {
    return await Promise.race([Promise.all(informers.map((i) => i.synced)).then(() => true), aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

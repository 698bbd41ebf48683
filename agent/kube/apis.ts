/**
 * The API calls the agent makes, with client-node's method names, request
 * shapes and result types (type-only imports: none of client-node's runtime
 * is loaded), over the lean transport of rest.ts.
 *
 * Design notes:
 * - Each method is one verb on one path; `name`, `namespace` and `body` of the
 *   request object go into the path and the body, every other field into the
 *   query (gracePeriodSeconds, fieldSelector, …), as client-node sends them.
 * - Patches take a second argument naming the patch type (`mergePatch`,
 *   `strategicMergePatch`, `jsonPatch`); without one a patch is a JSON patch,
 *   client-node's default.
 * - Only what the agent (and its tests and bench) calls is here; add a line
 *   per new call.
 */
import type {
  AuthenticationV1ApiCreateTokenReviewRequest,
  AuthenticationV1TokenRequest,
  AuthorizationV1ApiCreateSubjectAccessReviewRequest,
  CertificatesV1ApiCreateCertificateSigningRequestRequest,
  CertificatesV1ApiListCertificateSigningRequestRequest,
  CertificatesV1ApiReadCertificateSigningRequestRequest,
  CoordinationV1ApiCreateNamespacedLeaseRequest,
  CoordinationV1ApiReadNamespacedLeaseRequest,
  CoordinationV1ApiReplaceNamespacedLeaseRequest,
  CoreV1ApiCreateNamespaceRequest,
  CoreV1ApiCreateNamespacedConfigMapRequest,
  CoreV1ApiCreateNamespacedEventRequest,
  CoreV1ApiCreateNamespacedPodRequest,
  CoreV1ApiCreateNamespacedServiceAccountTokenRequest,
  CoreV1ApiCreateNodeRequest,
  CoreV1ApiDeleteNamespaceRequest,
  CoreV1ApiDeleteNamespacedPodRequest,
  CoreV1ApiDeleteNodeRequest,
  CoreV1ApiListNamespacedEventRequest,
  CoreV1ApiListNamespacedPodRequest,
  CoreV1ApiListNodeRequest,
  CoreV1ApiListPodForAllNamespacesRequest,
  CoreV1ApiListServiceForAllNamespacesRequest,
  CoreV1ApiPatchNamespacedEventRequest,
  CoreV1ApiPatchNamespacedPodStatusRequest,
  CoreV1ApiPatchNodeRequest,
  CoreV1ApiPatchNodeStatusRequest,
  CoreV1ApiReadNamespacedConfigMapRequest,
  CoreV1ApiReadNamespacedPodRequest,
  CoreV1ApiReadNamespacedSecretRequest,
  CoreV1ApiReadNodeRequest,
  CoreV1Event,
  CoreV1EventList,
  V1CertificateSigningRequest,
  V1CertificateSigningRequestList,
  V1ConfigMap,
  V1Lease,
  V1Namespace,
  V1Node,
  V1NodeList,
  V1Pod,
  V1PodList,
  V1Secret,
  V1ServiceList,
  V1Status,
  V1SubjectAccessReview,
  V1TokenReview,
} from '@kubernetes/client-node';
import type { HttpMethod, KubeRest } from './rest.js';
import { requestQuery, seg } from './wire.js';

/** The Content-Type of a PATCH. */
export interface PatchOptions {
  contentType: string;
}
export const mergePatch: PatchOptions = { contentType: 'application/merge-patch+json' };
export const strategicMergePatch: PatchOptions = { contentType: 'application/strategic-merge-patch+json' };
export const jsonPatch: PatchOptions = { contentType: 'application/json-patch+json' };

export interface CoreV1 {
  readNode(p: CoreV1ApiReadNodeRequest): Promise<V1Node>;
  createNode(p: CoreV1ApiCreateNodeRequest): Promise<V1Node>;
  patchNode(p: CoreV1ApiPatchNodeRequest, o?: PatchOptions): Promise<V1Node>;
  patchNodeStatus(p: CoreV1ApiPatchNodeStatusRequest, o?: PatchOptions): Promise<V1Node>;
  deleteNode(p: CoreV1ApiDeleteNodeRequest): Promise<V1Status>;
  listNode(p?: CoreV1ApiListNodeRequest): Promise<V1NodeList>;
  listPodForAllNamespaces(p?: CoreV1ApiListPodForAllNamespacesRequest): Promise<V1PodList>;
  listNamespacedPod(p: CoreV1ApiListNamespacedPodRequest): Promise<V1PodList>;
  readNamespacedPod(p: CoreV1ApiReadNamespacedPodRequest): Promise<V1Pod>;
  createNamespacedPod(p: CoreV1ApiCreateNamespacedPodRequest): Promise<V1Pod>;
  deleteNamespacedPod(p: CoreV1ApiDeleteNamespacedPodRequest): Promise<V1Pod>;
  patchNamespacedPodStatus(p: CoreV1ApiPatchNamespacedPodStatusRequest, o?: PatchOptions): Promise<V1Pod>;
  readNamespacedConfigMap(p: CoreV1ApiReadNamespacedConfigMapRequest): Promise<V1ConfigMap>;
  createNamespacedConfigMap(p: CoreV1ApiCreateNamespacedConfigMapRequest): Promise<V1ConfigMap>;
  readNamespacedSecret(p: CoreV1ApiReadNamespacedSecretRequest): Promise<V1Secret>;
  listServiceForAllNamespaces(p?: CoreV1ApiListServiceForAllNamespacesRequest): Promise<V1ServiceList>;
  createNamespacedEvent(p: CoreV1ApiCreateNamespacedEventRequest): Promise<CoreV1Event>;
  patchNamespacedEvent(p: CoreV1ApiPatchNamespacedEventRequest, o?: PatchOptions): Promise<CoreV1Event>;
  listNamespacedEvent(p: CoreV1ApiListNamespacedEventRequest): Promise<CoreV1EventList>;
  createNamespace(p: CoreV1ApiCreateNamespaceRequest): Promise<V1Namespace>;
  deleteNamespace(p: CoreV1ApiDeleteNamespaceRequest): Promise<V1Status>;
  /** TokenRequest (serviceaccounts/<name>/token), for projected service-account tokens. */
  createNamespacedServiceAccountToken(p: CoreV1ApiCreateNamespacedServiceAccountTokenRequest): Promise<AuthenticationV1TokenRequest>;
}

export interface CoordinationV1 {
  readNamespacedLease(p: CoordinationV1ApiReadNamespacedLeaseRequest): Promise<V1Lease>;
  createNamespacedLease(p: CoordinationV1ApiCreateNamespacedLeaseRequest): Promise<V1Lease>;
  replaceNamespacedLease(p: CoordinationV1ApiReplaceNamespacedLeaseRequest): Promise<V1Lease>;
}

export interface AuthenticationV1 {
  createTokenReview(p: AuthenticationV1ApiCreateTokenReviewRequest): Promise<V1TokenReview>;
}

export interface AuthorizationV1 {
  createSubjectAccessReview(p: AuthorizationV1ApiCreateSubjectAccessReviewRequest): Promise<V1SubjectAccessReview>;
}

export interface CertificatesV1 {
  createCertificateSigningRequest(p: CertificatesV1ApiCreateCertificateSigningRequestRequest): Promise<V1CertificateSigningRequest>;
  readCertificateSigningRequest(p: CertificatesV1ApiReadCertificateSigningRequestRequest): Promise<V1CertificateSigningRequest>;
  listCertificateSigningRequest(p?: CertificatesV1ApiListCertificateSigningRequestRequest): Promise<V1CertificateSigningRequestList>;
}

type Caller = <T>(method: HttpMethod, path: string, p: object | undefined, patch?: PatchOptions) => Promise<T>;

function caller(rest: KubeRest): Caller {
  return <T>(method: HttpMethod, path: string, p: object | undefined, patch?: PatchOptions): Promise<T> => {
    const body = p !== undefined && 'body' in p ? (p as { body: unknown }).body : undefined;
    return rest.request<T>({
      method,
      path,
      query: requestQuery(p ?? {}),
      ...(body !== undefined ? { body } : {}),
      ...(method === 'PATCH' ? { contentType: (patch ?? jsonPatch).contentType } : {}),
    });
  };
}

const ns = (namespace: string, rest: string): string => `/api/v1/namespaces/${seg(namespace)}/${rest}`;

export function coreV1(rest: KubeRest): CoreV1 {
  const call = caller(rest);
  return {
    readNode: async (p) => call('GET', `/api/v1/nodes/${seg(p.name)}`, p),
    createNode: async (p) => call('POST', '/api/v1/nodes', p),
    patchNode: async (p, o) => call('PATCH', `/api/v1/nodes/${seg(p.name)}`, p, o),
    patchNodeStatus: async (p, o) => call('PATCH', `/api/v1/nodes/${seg(p.name)}/status`, p, o),
    deleteNode: async (p) => call('DELETE', `/api/v1/nodes/${seg(p.name)}`, p),
    listNode: async (p) => call('GET', '/api/v1/nodes', p),
    listPodForAllNamespaces: async (p) => call('GET', '/api/v1/pods', p),
    listNamespacedPod: async (p) => call('GET', ns(p.namespace, 'pods'), p),
    readNamespacedPod: async (p) => call('GET', ns(p.namespace, `pods/${seg(p.name)}`), p),
    createNamespacedPod: async (p) => call('POST', ns(p.namespace, 'pods'), p),
    deleteNamespacedPod: async (p) => call('DELETE', ns(p.namespace, `pods/${seg(p.name)}`), p),
    patchNamespacedPodStatus: async (p, o) => call('PATCH', ns(p.namespace, `pods/${seg(p.name)}/status`), p, o),
    readNamespacedConfigMap: async (p) => call('GET', ns(p.namespace, `configmaps/${seg(p.name)}`), p),
    createNamespacedConfigMap: async (p) => call('POST', ns(p.namespace, 'configmaps'), p),
    readNamespacedSecret: async (p) => call('GET', ns(p.namespace, `secrets/${seg(p.name)}`), p),
    listServiceForAllNamespaces: async (p) => call('GET', '/api/v1/services', p),
    createNamespacedEvent: async (p) => call('POST', ns(p.namespace, 'events'), p),
    patchNamespacedEvent: async (p, o) => call('PATCH', ns(p.namespace, `events/${seg(p.name)}`), p, o),
    listNamespacedEvent: async (p) => call('GET', ns(p.namespace, 'events'), p),
    createNamespace: async (p) => call('POST', '/api/v1/namespaces', p),
    deleteNamespace: async (p) => call('DELETE', `/api/v1/namespaces/${seg(p.name)}`, p),
    createNamespacedServiceAccountToken: async (p) => call('POST', ns(p.namespace, `serviceaccounts/${seg(p.name)}/token`), p),
  };
}

export function coordinationV1(rest: KubeRest): CoordinationV1 {
  const call = caller(rest);
  const lease = (namespace: string, name?: string): string => `/apis/coordination.k8s.io/v1/namespaces/${seg(namespace)}/leases${name === undefined ? '' : `/${seg(name)}`}`;
  return {
    readNamespacedLease: async (p) => call('GET', lease(p.namespace, p.name), p),
    createNamespacedLease: async (p) => call('POST', lease(p.namespace), p),
    replaceNamespacedLease: async (p) => call('PUT', lease(p.namespace, p.name), p),
  };
}

export function authenticationV1(rest: KubeRest): AuthenticationV1 {
  const call = caller(rest);
  return { createTokenReview: async (p) => call('POST', '/apis/authentication.k8s.io/v1/tokenreviews', p) };
}

export function authorizationV1(rest: KubeRest): AuthorizationV1 {
  const call = caller(rest);
  return { createSubjectAccessReview: async (p) => call('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', p) };
}

export function certificatesV1(rest: KubeRest): CertificatesV1 {
  const call = caller(rest);
  const base = '/apis/certificates.k8s.io/v1/certificatesigningrequests';
  return {
    createCertificateSigningRequest: async (p) => call('POST', base, p),
    readCertificateSigningRequest: async (p) => call('GET', `${base}/${seg(p.name)}`, p),
    listCertificateSigningRequest: async (p) => call('GET', base, p),
  };
}

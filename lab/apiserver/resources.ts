/**
 * The one registry table of served resources: group/version as upstream, kind,
 * scope, short names, verbs, subresources, name rules and field labels.
 * Discovery, routing, validation and the REST layer all read this table.
 */
import { getPath } from './object.js';
import type { KubeObject } from './object.js';

export type NameRule = 'dns1123-subdomain' | 'dns1123-label' | 'dns1035-label' | 'path-segment';
export type Subresource = 'status' | 'binding' | 'scale' | 'finalize' | 'log' | 'approval' | 'token';

export interface ResourceInfo {
  group: string;
  version: string;
  /** Plural, lowercase: `pods`. */
  resource: string;
  kind: string;
  singular: string;
  namespaced: boolean;
  shortNames: string[];
  verbs: string[];
  subresources: Subresource[];
  categories: string[];
  nameRule: NameRule;
  /** Storage key shared by resources served in several groups (events). */
  storage: string;
  /** metadata.generation bumps on spec changes. */
  generation: boolean;
  /** Field selector labels beyond metadata.name and metadata.namespace. */
  fieldLabels: string[];
  /** Not stored: create answers a review (tokenreviews, subjectaccessreviews). */
  virtual: boolean;
}

const crud = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

function def(
  partial: Pick<ResourceInfo, 'group' | 'version' | 'resource' | 'kind' | 'namespaced'> & Partial<ResourceInfo>,
): ResourceInfo {
  const singular = partial.singular ?? partial.kind.toLowerCase();
  return {
    shortNames: [],
    verbs: crud,
    subresources: [],
    categories: [],
    nameRule: 'dns1123-subdomain',
    storage: partial.group ? `${partial.resource}.${partial.group}` : partial.resource,
    generation: false,
    fieldLabels: [],
    virtual: false,
    ...partial,
    singular,
  };
}

export const resources: readonly ResourceInfo[] = [
  def({
    group: '',
    version: 'v1',
    resource: 'namespaces',
    kind: 'Namespace',
    namespaced: false,
    shortNames: ['ns'],
    verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
    subresources: ['status', 'finalize'],
    nameRule: 'dns1123-label',
    fieldLabels: ['status.phase'],
  }),
  def({
    group: '',
    version: 'v1',
    resource: 'nodes',
    kind: 'Node',
    namespaced: false,
    shortNames: ['no'],
    subresources: ['status'],
    fieldLabels: ['spec.unschedulable'],
  }),
  def({
    group: '',
    version: 'v1',
    resource: 'pods',
    kind: 'Pod',
    namespaced: true,
    shortNames: ['po'],
    subresources: ['status', 'binding', 'log'],
    categories: ['all'],
    generation: true,
    fieldLabels: [
      'spec.nodeName',
      'spec.restartPolicy',
      'spec.schedulerName',
      'spec.serviceAccountName',
      'spec.hostNetwork',
      'status.phase',
      'status.podIP',
      'status.nominatedNodeName',
    ],
  }),
  def({
    group: '',
    version: 'v1',
    resource: 'services',
    kind: 'Service',
    namespaced: true,
    shortNames: ['svc'],
    verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
    subresources: ['status'],
    categories: ['all'],
    nameRule: 'dns1035-label',
    fieldLabels: ['spec.clusterIP', 'spec.type'],
  }),
  def({ group: '', version: 'v1', resource: 'endpoints', kind: 'Endpoints', singular: 'endpoints', namespaced: true, shortNames: ['ep'] }),
  def({ group: '', version: 'v1', resource: 'configmaps', kind: 'ConfigMap', namespaced: true, shortNames: ['cm'] }),
  def({ group: '', version: 'v1', resource: 'secrets', kind: 'Secret', namespaced: true, fieldLabels: ['type'] }),
  def({ group: '', version: 'v1', resource: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true, shortNames: ['sa'], subresources: ['token'] }),
  def({
    group: '',
    version: 'v1',
    resource: 'events',
    kind: 'Event',
    namespaced: true,
    shortNames: ['ev'],
    fieldLabels: [
      'involvedObject.kind',
      'involvedObject.namespace',
      'involvedObject.name',
      'involvedObject.uid',
      'involvedObject.apiVersion',
      'involvedObject.resourceVersion',
      'involvedObject.fieldPath',
      'reason',
      'reportingComponent',
      'source',
      'type',
    ],
  }),
  def({
    group: 'events.k8s.io',
    version: 'v1',
    resource: 'events',
    kind: 'Event',
    namespaced: true,
    shortNames: ['ev'],
    storage: 'events',
    fieldLabels: [
      'regarding.kind',
      'regarding.namespace',
      'regarding.name',
      'regarding.uid',
      'regarding.apiVersion',
      'regarding.resourceVersion',
      'regarding.fieldPath',
      'reason',
      'reportingController',
      'type',
    ],
  }),
  def({
    group: 'discovery.k8s.io',
    version: 'v1',
    resource: 'endpointslices',
    kind: 'EndpointSlice',
    namespaced: true,
    fieldLabels: ['addressType'],
  }),
  def({ group: 'coordination.k8s.io', version: 'v1', resource: 'leases', kind: 'Lease', namespaced: true }),
  def({
    group: 'apps',
    version: 'v1',
    resource: 'deployments',
    kind: 'Deployment',
    namespaced: true,
    shortNames: ['deploy'],
    subresources: ['status', 'scale'],
    categories: ['all'],
    generation: true,
  }),
  def({
    group: 'apps',
    version: 'v1',
    resource: 'replicasets',
    kind: 'ReplicaSet',
    namespaced: true,
    shortNames: ['rs'],
    subresources: ['status', 'scale'],
    categories: ['all'],
    generation: true,
    fieldLabels: ['status.replicas'],
  }),
  def({
    group: 'certificates.k8s.io',
    version: 'v1',
    resource: 'certificatesigningrequests',
    kind: 'CertificateSigningRequest',
    namespaced: false,
    shortNames: ['csr'],
    subresources: ['status', 'approval'],
    // Upstream validates CSR names only as path segments (kubelet names carry upper case).
    nameRule: 'path-segment',
    fieldLabels: ['spec.signerName'],
  }),
  def({
    group: 'authentication.k8s.io',
    version: 'v1',
    resource: 'tokenreviews',
    kind: 'TokenReview',
    namespaced: false,
    verbs: ['create'],
    virtual: true,
  }),
  def({
    group: 'authentication.k8s.io',
    version: 'v1',
    resource: 'selfsubjectreviews',
    kind: 'SelfSubjectReview',
    namespaced: false,
    verbs: ['create'],
    virtual: true,
  }),
  def({
    group: 'authorization.k8s.io',
    version: 'v1',
    resource: 'selfsubjectaccessreviews',
    kind: 'SelfSubjectAccessReview',
    namespaced: false,
    verbs: ['create'],
    virtual: true,
  }),
  def({
    group: 'authorization.k8s.io',
    version: 'v1',
    resource: 'subjectaccessreviews',
    kind: 'SubjectAccessReview',
    namespaced: false,
    verbs: ['create'],
    virtual: true,
  }),
];

export function groupVersion(r: Pick<ResourceInfo, 'group' | 'version'>): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

export function findResource(group: string, version: string, resource: string): ResourceInfo | undefined {
  return resources.find((r) => r.group === group && r.version === version && r.resource === resource);
}

export function findByKind(apiVersion: string, kind: string): ResourceInfo | undefined {
  return resources.find((r) => groupVersion(r) === apiVersion && r.kind === kind);
}

export interface GroupVersions {
  group: string;
  versions: string[];
}

export function servedGroups(): GroupVersions[] {
  const out: GroupVersions[] = [];
  for (const r of resources) {
    if (r.group === '') continue;
    let g = out.find((x) => x.group === r.group);
    if (!g) out.push((g = { group: r.group, versions: [] }));
    if (!g.versions.includes(r.version)) g.versions.push(r.version);
  }
  return out;
}

function fieldString(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/** The field set that field selectors match against (upstream's GetAttrs). */
export function fieldsOf(info: ResourceInfo, obj: KubeObject): Record<string, string> {
  const out: Record<string, string> = { 'metadata.name': obj.metadata.name ?? '' };
  if (info.namespaced) out['metadata.namespace'] = obj.metadata.namespace ?? '';
  for (const f of info.fieldLabels) {
    if (f === 'source') out[f] = fieldString(getPath(obj, 'source.component'));
    else if (f === 'spec.hostNetwork' || f === 'spec.unschedulable') out[f] = getPath(obj, f) === true ? 'true' : 'false';
    else out[f] = fieldString(getPath(obj, f));
  }
  return out;
}

export function supportedFieldLabels(info: ResourceInfo): string[] {
  return ['metadata.name', ...(info.namespaced ? ['metadata.namespace'] : []), ...info.fieldLabels];
}

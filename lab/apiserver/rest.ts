/**
 * The REST semantics of the apiserver, independent of HTTP: create (generateName,
 * uid, creationTimestamp, generation, defaults, validation, namespace checks),
 * get, list (selectors, limit/continue, resourceVersion), watch (initial
 * state, resume, selector transitions, bookmarks), update and patch with
 * optimistic concurrency and status/spec separation, delete with preconditions,
 * graceful pod deletion and finalizers, pods/binding, /scale, service IP and
 * node-port allocation, namespace termination.
 *
 * Controllers are ordinary clients: list, then watch from the list's
 * resourceVersion (allowWatchBookmarks=true), relist on a 410 Expired.
 */
import { randomUUID, randomInt } from 'node:crypto';
import { isKnodeError } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { ClusterIPAllocator, PortAllocator } from './allocators.js';
import { fromExternal, toExternal } from './convert.js';
import { defaultDeploymentSpec, defaultPodForCreate, defaultReplicaSetSpec, defaultServiceSpec, foldStringData } from './defaults.js';
import { ApiError, alreadyExists, badRequest, conflict, expired, invalid, notFound, successStatus } from './errors.js';
import type { StatusCause } from './errors.js';
import { clone, getArray, getMap, getNumber, getString, isObject, jsonEqual, toKubeObject } from './object.js';
import type { Json, JsonObject, KubeObject } from './object.js';
import { applyPatch } from './patch.js';
import type { PatchType } from './patch.js';
import { fieldsOf, findResource, groupVersion, resources, supportedFieldLabels } from './resources.js';
import type { ResourceInfo, Subresource } from './resources.js';
import { matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector } from './selectors.js';
import type { Store, StoreEvent, StoreKey } from './store.js';
import { metadataErrors, podSpecErrors, serviceSpecErrors } from './validation.js';
import { approvalRemovedCause, csrErrors, csrStorage, csrUpdate } from './certificates.js';
import { admitPod, projectedTokenErrors } from './serviceaccount-admission.js';

const log = createLogger({ component: 'apiserver-rest' });

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continue?: string;
  resourceVersion?: string;
  resourceVersionMatch?: string;
}

export interface WatchOptions {
  labelSelector?: string;
  fieldSelector?: string;
  resourceVersion?: string;
  allowWatchBookmarks?: boolean;
  sendInitialEvents?: boolean;
}

export interface WatchSink {
  send(type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR', object: unknown): void;
}

export interface WatchHandle {
  /** Sends a BOOKMARK with the current resourceVersion (when bookmarks were asked for). */
  bookmark(): void;
  stop(): void;
}

export interface DeleteOptions {
  gracePeriodSeconds?: number;
  preconditions?: { uid?: string; resourceVersion?: string };
  propagationPolicy?: string;
}

export interface RestOptions {
  store: Store;
  serviceCIDR?: string;
  nodePortRange?: { min: number; max: number };
  /** Endpoints of the `kubernetes` service in `default`. */
  kubernetesEndpoint?: { ip: string; port: number };
  /** Run the ServiceAccount admission plugin on pod create (serviceaccount-admission.ts). */
  serviceAccountAdmission?: boolean;
  /** Lower bound of serviceAccountToken expirationSeconds in pod specs (default 600; tests only). */
  minTokenExpirationSeconds?: number;
}

export interface WriteResult {
  object: unknown;
  /** 201 for creates, 200 otherwise. */
  code: number;
}

const systemNamespaces = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];
const nameChars = 'bcdfghjklmnpqrstvwxz2456789';

export function now(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function randomSuffix(): string {
  let s = '';
  for (let i = 0; i < 5; i++) s += nameChars[randomInt(nameChars.length)];
  return s;
}

function hasStatus(info: ResourceInfo): boolean {
  return info.subresources.includes('status');
}

/** Everything except metadata and status: what bumps metadata.generation. */
function specPart(obj: KubeObject): Record<string, unknown> {
  const { metadata: _m, status: _s, apiVersion: _a, kind: _k, ...rest } = obj;
  return rest;
}

interface ContinueToken {
  rv: number;
  start: string;
}

function encodeContinue(t: ContinueToken): string {
  return Buffer.from(JSON.stringify(t)).toString('base64url');
}

function decodeContinue(s: string): ContinueToken {
  try {
    const t = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as unknown;
    if (isObject(t) && typeof t.rv === 'number' && typeof t.start === 'string') return { rv: t.rv, start: t.start };
  } catch {
    // fall through
  }
  throw badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)');
}

function parseRV(s: string): number {
  if (!/^\d+$/.test(s)) throw badRequest(`invalid resource version "${s}"`);
  return Number(s);
}

function objKey(o: KubeObject): string {
  return `${o.metadata.namespace ?? ''}/${o.metadata.name ?? ''}`;
}

export class Rest {
  readonly store: Store;
  readonly clusterIPs: ClusterIPAllocator;
  readonly nodePorts: PortAllocator;
  private readonly kubernetesEndpoint: { ip: string; port: number } | undefined;
  private readonly serviceAccountAdmission: boolean;
  private readonly minTokenExpirationSeconds: number;
  private nsTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: RestOptions) {
    this.store = options.store;
    this.clusterIPs = new ClusterIPAllocator(options.serviceCIDR ?? '10.96.0.0/16');
    const range = options.nodePortRange ?? { min: 30000, max: 32767 };
    this.nodePorts = new PortAllocator(range.min, range.max);
    this.kubernetesEndpoint = options.kubernetesEndpoint;
    this.serviceAccountAdmission = options.serviceAccountAdmission === true;
    this.minTokenExpirationSeconds = options.minTokenExpirationSeconds ?? 600;
  }

  /** A core/v1 resource of the registry table. */
  private info(resource: string): ResourceInfo {
    return findResource('', 'v1', resource)!;
  }

  /** Rebuilds allocators from stored services; creates system namespaces and the `kubernetes` service. */
  async init(): Promise<void> {
    const services = await this.store.list('services', undefined);
    for (const svc of services.items) this.claimServiceAllocations(svc);
    for (const ns of systemNamespaces) {
      if (!(await this.store.get({ storage: 'namespaces', namespace: '', name: ns }))) {
        await this.create(this.info('namespaces'), '', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
      }
    }
    const key = { storage: 'services', namespace: 'default', name: 'kubernetes' };
    if (!(await this.store.get(key))) {
      await this.create(this.info('services'), 'default', {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'kubernetes', labels: { component: 'apiserver', provider: 'kubernetes' } },
        spec: {
          clusterIP: this.clusterIPs.first(),
          ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: this.kubernetesEndpoint?.port ?? 6443 }],
        },
      });
    }
    if (this.kubernetesEndpoint) {
      const ep: KubeObject = {
        apiVersion: 'v1',
        kind: 'Endpoints',
        metadata: { name: 'kubernetes', namespace: 'default', labels: { 'endpointslice.kubernetes.io/skip-mirror': 'true' } },
        subsets: [
          {
            addresses: [{ ip: this.kubernetesEndpoint.ip }],
            ports: [{ name: 'https', port: this.kubernetesEndpoint.port, protocol: 'TCP' }],
          },
        ],
      };
      const existing = await this.store.get({ storage: 'endpoints', namespace: 'default', name: 'kubernetes' });
      if (!existing) await this.create(this.info('endpoints'), 'default', ep);
      else await this.store.update({ storage: 'endpoints', namespace: 'default', name: 'kubernetes' }, (cur) => ({ ...cur, subsets: ep.subsets }));
    }
    this.nsTimer = setInterval(() => void this.finalizeNamespaces(), 1000);
    this.nsTimer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.nsTimer) clearInterval(this.nsTimer);
  }

  private key(info: ResourceInfo, namespace: string, name: string): StoreKey {
    return { storage: info.storage, namespace: info.namespaced ? namespace : '', name };
  }

  private mapStoreError(err: unknown, info: ResourceInfo, name: string): unknown {
    if (isKnodeError(err, 'STORE_NOT_FOUND')) return notFound(info, name);
    if (isKnodeError(err, 'STORE_EXISTS')) return alreadyExists(info, name);
    if (isKnodeError(err, 'STORE_EXPIRED')) return expired(err.message);
    return err;
  }

  async get(info: ResourceInfo, namespace: string, name: string, sub?: Subresource): Promise<unknown> {
    const obj = await this.store.get(this.key(info, namespace, name));
    if (!obj) throw notFound(info, name);
    if (sub === 'scale') return this.scaleOf(info, obj);
    return toExternal(info, obj);
  }

  private filter(info: ResourceInfo, opts: { labelSelector?: string; fieldSelector?: string }): (o: KubeObject) => boolean {
    const labels = parseLabelSelector(opts.labelSelector ?? '');
    const fields = parseFieldSelector(opts.fieldSelector ?? '');
    const supported = supportedFieldLabels(info);
    for (const f of fields) {
      if (!supported.includes(f.field)) throw badRequest(`field label not supported: ${f.field}`);
    }
    return (o) => matchesLabels(labels, o.metadata.labels) && matchesFields(fields, fieldsOf(info, o));
  }

  async list(info: ResourceInfo, namespace: string | undefined, opts: ListOptions): Promise<unknown> {
    const match = this.filter(info, opts);
    let atRV: number | undefined;
    let start = '';
    if (opts.continue) {
      const t = decodeContinue(opts.continue);
      atRV = t.rv;
      start = t.start;
    } else if (opts.resourceVersion && opts.resourceVersionMatch === 'Exact') atRV = parseRV(opts.resourceVersion);
    else if (opts.resourceVersion) parseRV(opts.resourceVersion);
    let snap;
    try {
      snap = await this.store.list(info.storage, info.namespaced ? namespace : undefined, atRV);
    } catch (err) {
      if (isKnodeError(err, 'STORE_EXPIRED') && opts.continue) {
        throw expired(
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
        );
      }
      throw this.mapStoreError(err, info, '');
    }
    const all = snap.items.map((o) => toExternal(info, o)).filter(match);
    const rest = start ? all.filter((o) => objKey(o) > start) : all;
    const limit = opts.limit && opts.limit > 0 ? opts.limit : undefined;
    const page = limit ? rest.slice(0, limit) : rest;
    const more = limit !== undefined && rest.length > limit;
    const metadata: JsonObject = { resourceVersion: String(snap.resourceVersion) };
    if (more) {
      metadata.continue = encodeContinue({ rv: snap.resourceVersion, start: objKey(page[page.length - 1]!) });
      if (!opts.labelSelector && !opts.fieldSelector) metadata.remainingItemCount = rest.length - page.length;
    }
    return {
      apiVersion: groupVersion(info),
      kind: `${info.kind}List`,
      metadata,
      items: page.map((o) => {
        const { apiVersion: _a, kind: _k, ...item } = o;
        return item;
      }),
    };
  }

  async watch(info: ResourceInfo, namespace: string | undefined, opts: WatchOptions, sink: WatchSink): Promise<WatchHandle> {
    const match = this.filter(info, opts);
    const ns = info.namespaced ? namespace : undefined;
    let from: number;
    const initial = opts.resourceVersion === undefined || opts.resourceVersion === '' || opts.resourceVersion === '0' || opts.sendInitialEvents === true;
    let lastRV = this.store.resourceVersion();
    if (initial) {
      const snap = await this.store.list(info.storage, ns);
      for (const o of snap.items) {
        const ext = toExternal(info, o);
        if (match(ext)) sink.send('ADDED', ext);
      }
      from = snap.resourceVersion;
      lastRV = from;
      if (opts.sendInitialEvents && opts.allowWatchBookmarks) {
        sink.send('BOOKMARK', this.bookmarkObject(info, from, true));
      }
    } else from = parseRV(opts.resourceVersion!);
    const onEvent = (e: StoreEvent): void => {
      lastRV = e.resourceVersion;
      const cur = toExternal(info, e.object);
      const prev = e.prev ? toExternal(info, e.prev) : undefined;
      const curOk = match(cur);
      if (e.type === 'ADDED') {
        if (curOk) sink.send('ADDED', cur);
      } else if (e.type === 'DELETED') {
        if (curOk) sink.send('DELETED', cur);
      } else {
        const prevOk = prev ? match(prev) : false;
        if (curOk && prevOk) sink.send('MODIFIED', cur);
        else if (curOk) sink.send('ADDED', cur);
        else if (prevOk && prev) {
          prev.metadata.resourceVersion = String(e.resourceVersion);
          sink.send('DELETED', prev);
        }
      }
    };
    let handle;
    try {
      handle = this.store.watch({ storage: info.storage, namespace: ns, fromResourceVersion: from, onEvent });
    } catch (err) {
      if (isKnodeError(err, 'STORE_EXPIRED')) {
        sink.send('ERROR', expired(err.message).toStatus());
        return { bookmark: () => undefined, stop: () => undefined };
      }
      throw err;
    }
    return {
      bookmark: () => {
        if (opts.allowWatchBookmarks) sink.send('BOOKMARK', this.bookmarkObject(info, Math.max(lastRV, this.store.resourceVersion()), false));
      },
      stop: () => handle.stop(),
    };
  }

  private bookmarkObject(info: ResourceInfo, rv: number, initialEnd: boolean): unknown {
    const metadata: JsonObject = { resourceVersion: String(rv) };
    if (initialEnd) metadata.annotations = { 'k8s.io/initial-events-end': 'true' };
    return { apiVersion: groupVersion(info), kind: info.kind, metadata };
  }

  private checkBodyType(info: ResourceInfo, body: unknown): KubeObject {
    const obj = toKubeObject(body);
    if (!obj) throw badRequest(`the body of the request must be a ${info.kind} object`);
    const gv = groupVersion(info);
    if (obj.apiVersion !== undefined && obj.apiVersion !== gv) {
      throw badRequest(`the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${gv})`);
    }
    if (obj.kind !== undefined && obj.kind !== info.kind) {
      throw badRequest(`the kind in the data (${String(obj.kind)}) does not match the expected kind (${info.kind})`);
    }
    return obj;
  }

  private async checkNamespace(info: ResourceInfo, namespace: string, name: string): Promise<void> {
    if (!info.namespaced) return;
    const ns = await this.store.get({ storage: 'namespaces', namespace: '', name: namespace });
    if (!ns) throw notFound(this.info('namespaces'), namespace);
    if (ns.metadata.deletionTimestamp) {
      throw new ApiError(
        'Forbidden',
        `${info.resource} "${name}" is forbidden: unable to create new content in namespace ${namespace} because it is being terminated`,
        { name: namespace, kind: 'namespaces' },
      );
    }
  }

  private validate(info: ResourceInfo, obj: KubeObject): StatusCause[] {
    const causes = metadataErrors(obj, info.nameRule);
    if (info.storage === 'pods') causes.push(...podSpecErrors(obj.spec), ...projectedTokenErrors(obj.spec, this.minTokenExpirationSeconds));
    if (info.storage === 'services') causes.push(...serviceSpecErrors(obj.spec, this.nodePorts));
    if (info.storage === csrStorage) causes.push(...csrErrors(obj));
    if (info.storage === 'deployments.apps' || info.storage === 'replicasets.apps') {
      const spec = getMap(obj, 'spec');
      const selector = getMap(spec, 'selector');
      if (!selector) causes.push({ reason: 'FieldValueRequired', field: 'spec.selector', message: 'Required value' });
      const template = getMap(spec, 'template');
      causes.push(...podSpecErrors(getMap(template, 'spec'), 'spec.template.spec'));
      const replicas = getNumber(spec, 'replicas');
      if (replicas !== undefined && (!Number.isInteger(replicas) || replicas < 0)) {
        causes.push({ field: 'spec.replicas', message: `Invalid value: ${replicas}: must be greater than or equal to 0` });
      }
    }
    return causes;
  }

  private applyDefaults(info: ResourceInfo, obj: KubeObject, creating: boolean): void {
    const spec = getMap(obj, 'spec');
    switch (info.storage) {
      case 'pods':
        if (creating) defaultPodForCreate(obj);
        break;
      case 'services':
        obj.spec = defaultServiceSpec(spec ?? {});
        if (creating) obj.status = { loadBalancer: {} };
        break;
      case 'namespaces':
        obj.spec = { finalizers: ['kubernetes'], ...(spec ?? {}) };
        obj.metadata.labels = { ...obj.metadata.labels, 'kubernetes.io/metadata.name': obj.metadata.name ?? '' };
        if (creating) obj.status = { phase: 'Active' };
        break;
      case 'deployments.apps':
        obj.spec = defaultDeploymentSpec(spec ?? {});
        if (creating) obj.status = {};
        break;
      case 'replicasets.apps':
        obj.spec = defaultReplicaSetSpec(spec ?? {});
        if (creating) obj.status = { replicas: 0 };
        break;
      case 'secrets':
        foldStringData(obj);
        break;
      case csrStorage:
        if (creating) obj.status = {};
        break;
    }
  }

  // ---- services: ClusterIP and NodePort allocation --------------------------------

  private claimServiceAllocations(svc: KubeObject): void {
    const spec = getMap(svc, 'spec');
    const ip = getString(spec, 'clusterIP');
    if (ip && ip !== 'None') this.clusterIPs.claim(ip);
    for (const p of getArray(spec, 'ports') ?? []) {
      const np = getNumber(p, 'nodePort');
      if (np) this.nodePorts.claim(np);
    }
  }

  private releaseServiceAllocations(svc: KubeObject): void {
    const spec = getMap(svc, 'spec');
    const ip = getString(spec, 'clusterIP');
    if (ip && ip !== 'None') this.clusterIPs.release(ip);
    for (const p of getArray(spec, 'ports') ?? []) {
      const np = getNumber(p, 'nodePort');
      if (np) this.nodePorts.release(np);
    }
  }

  /**
   * Allocates what `svc` needs and `old` does not hold. `undo` gives the new
   * allocations back (the write failed); `commit` releases what `old` held and
   * `svc` no longer does (the write succeeded). Throws Invalid when a requested
   * address or port is taken.
   */
  private allocateService(svc: KubeObject, old: KubeObject | undefined): { undo: () => void; commit: () => void } {
    const spec = getMap(svc, 'spec')!;
    const oldSpec = getMap(old, 'spec');
    const undo: (() => void)[] = [];
    const name = svc.metadata.name ?? '';
    const svcInfo = this.info('services');
    try {
      const type = getString(spec, 'type') ?? 'ClusterIP';
      const oldIP = getString(oldSpec, 'clusterIP');
      let ip = getString(spec, 'clusterIP');
      if (type === 'ExternalName') {
        delete spec.clusterIP;
        delete spec.clusterIPs;
        ip = undefined;
      } else if (old && oldIP && (ip === undefined || ip === '')) ip = spec.clusterIP = oldIP;
      if (old && oldIP && ip !== oldIP && getString(oldSpec, 'type') !== 'ExternalName' && type !== 'ExternalName') {
        throw invalid(svcInfo, name, [{ field: 'spec.clusterIP', message: `Invalid value: "${ip ?? ''}": field is immutable` }]);
      }
      if (type !== 'ExternalName' && (ip !== oldIP || ip === undefined || ip === '')) {
        if (ip === undefined || ip === '') {
          const got = this.clusterIPs.allocate();
          undo.push(() => this.clusterIPs.release(got));
          spec.clusterIP = got;
        } else if (ip !== 'None') {
          if (!this.clusterIPs.claim(ip)) {
            const why = this.clusterIPs.contains(ip) ? 'provided IP is already allocated' : `provided IP is not in the valid range. The range of valid IPs is ${this.clusterIPs.cidr}`;
            throw invalid(svcInfo, name, [{ field: 'spec.clusterIPs', message: `Invalid value: []string{"${ip}"}: failed to allocate IP ${ip}: ${why}` }]);
          }
          undo.push(() => this.clusterIPs.release(ip!));
        }
      }
      if (spec.clusterIP !== undefined) spec.clusterIPs = [spec.clusterIP];
      const wantsNodePorts = type === 'NodePort' || type === 'LoadBalancer';
      const oldPorts = (getArray(oldSpec, 'ports') ?? []).filter(isObject);
      const oldNodePorts = new Set(oldPorts.map((p) => getNumber(p, 'nodePort')).filter((n): n is number => !!n));
      const keep = new Set<number>();
      for (const p of getArray(spec, 'ports') ?? []) {
        if (!isObject(p)) continue;
        if (!wantsNodePorts) {
          delete p.nodePort;
          continue;
        }
        let np = getNumber(p, 'nodePort');
        if (!np) {
          const prev = oldPorts.find((o) => o.port === p.port && (o.protocol ?? 'TCP') === (p.protocol ?? 'TCP'));
          const prevNp = getNumber(prev, 'nodePort');
          if (prevNp && !keep.has(prevNp)) np = p.nodePort = prevNp;
        }
        if (np && oldNodePorts.has(np)) {
          keep.add(np);
          continue;
        }
        if (!np) {
          const got = this.nodePorts.allocate();
          undo.push(() => this.nodePorts.release(got));
          p.nodePort = got;
          keep.add(got);
        } else {
          if (!this.nodePorts.claim(np)) {
            throw invalid(svcInfo, name, [{ field: 'spec.ports.nodePort', message: `Invalid value: ${np}: provided port is already allocated` }]);
          }
          undo.push(() => this.nodePorts.release(np!));
          keep.add(np);
        }
      }
      return {
        undo: () => {
          for (const u of undo.reverse()) u();
        },
        commit: () => {
          if (oldIP && oldIP !== 'None' && oldIP !== getString(spec, 'clusterIP')) this.clusterIPs.release(oldIP);
          for (const np of oldNodePorts) if (!keep.has(np)) this.nodePorts.release(np);
        },
      };
    } catch (err) {
      for (const u of undo.reverse()) u();
      throw err;
    }
  }

  // ---- create ------------------------------------------------------------------

  async create(info: ResourceInfo, namespace: string, body: unknown): Promise<WriteResult> {
    const ext = this.checkBodyType(info, body);
    const obj = fromExternal(info, clone(ext));
    const m = obj.metadata;
    if (info.namespaced) {
      if (m.namespace && m.namespace !== namespace) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      m.namespace = namespace;
    } else delete m.namespace;
    if (!m.name && m.generateName) m.name = `${m.generateName}${randomSuffix()}`;
    const name = m.name ?? '';
    m.uid = randomUUID();
    m.creationTimestamp = now();
    delete m.resourceVersion;
    delete m.deletionTimestamp;
    delete m.deletionGracePeriodSeconds;
    delete m.selfLink;
    if (info.generation) m.generation = 1;
    else delete m.generation;
    this.applyDefaults(info, obj, true);
    const causes = this.validate(info, obj);
    if (causes.length > 0) throw invalid(info, name, causes);
    await this.checkNamespace(info, namespace, name);
    if (info.storage === 'pods' && this.serviceAccountAdmission) {
      await admitPod(obj, { serviceAccount: (ns, n) => this.store.get({ storage: 'serviceaccounts', namespace: ns, name: n }) });
    }
    let undo: (() => void) | undefined;
    if (info.storage === 'services') undo = this.allocateService(obj, undefined).undo;
    try {
      const stored = await this.store.create(this.key(info, namespace, name), obj);
      return { object: toExternal(info, stored), code: 201 };
    } catch (err) {
      undo?.();
      throw this.mapStoreError(err, info, name);
    }
  }

  // ---- update / patch ----------------------------------------------------------

  /** Computes the object to store from the current one and the new desired one. */
  private prepareUpdate(info: ResourceInfo, cur: KubeObject, desired: KubeObject, sub: Subresource | undefined): KubeObject {
    const name = cur.metadata.name ?? '';
    if (desired.metadata.name !== undefined && desired.metadata.name !== name) {
      throw badRequest(`the name of the object (${String(desired.metadata.name)}) does not match the name on the URL (${name})`);
    }
    if (info.namespaced && desired.metadata.namespace && desired.metadata.namespace !== cur.metadata.namespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    const uid = desired.metadata.uid;
    if (uid && uid !== cur.metadata.uid) {
      throw conflict(info, name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${cur.metadata.uid ?? ''}`);
    }
    const rv = desired.metadata.resourceVersion;
    if (rv !== undefined && rv !== '' && rv !== cur.metadata.resourceVersion) {
      throw conflict(info, name, 'the object has been modified; please apply your changes to the latest version and try again');
    }
    let next: KubeObject;
    if (sub === 'finalize') {
      next = clone(cur);
      next.spec = { ...(getMap(cur, 'spec') ?? {}), finalizers: getArray(getMap(desired, 'spec'), 'finalizers') ?? [] };
    } else if (sub === 'status' || sub === 'approval') {
      // Status writes change status only (upstream ResetObjectMetaForStatus).
      next = clone(cur);
      if (desired.status === undefined) delete next.status;
      else next.status = desired.status;
    } else {
      next = clone(desired);
      const m = next.metadata;
      const cm = cur.metadata;
      m.name = cm.name;
      if (cm.namespace !== undefined) m.namespace = cm.namespace;
      m.uid = cm.uid;
      m.creationTimestamp = cm.creationTimestamp;
      if (cm.deletionTimestamp) m.deletionTimestamp = cm.deletionTimestamp;
      else delete m.deletionTimestamp;
      if (cm.deletionGracePeriodSeconds !== undefined) m.deletionGracePeriodSeconds = cm.deletionGracePeriodSeconds;
      else delete m.deletionGracePeriodSeconds;
      if (cm.generation !== undefined) m.generation = cm.generation;
      else delete m.generation;
      if (cm.deletionTimestamp && Array.isArray(m.finalizers)) {
        // While deleting, finalizers may only be removed.
        const added = m.finalizers.filter((f) => !(cm.finalizers ?? []).includes(f));
        if (added.length > 0) {
          throw invalid(info, name, [{ reason: 'FieldValueForbidden', field: 'metadata.finalizers', message: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}` }]);
        }
      }
      if (hasStatus(info)) {
        if (cur.status === undefined) delete next.status;
        else next.status = cur.status;
      }
      this.applyDefaults(info, next, false);
      if (info.storage === 'services') dropTypeDependentFields(cur, next);
      if (info.storage === 'pods') this.checkPodUpdate(cur, next);
      if (info.generation && !jsonEqual(specPart(cur), specPart(next))) m.generation = (cm.generation ?? 0) + 1;
    }
    if (info.storage === csrStorage) {
      csrUpdate(cur, desired, next, sub === 'status' || sub === 'approval' ? sub : undefined);
      const removed = approvalRemovedCause(cur, next);
      if (removed) throw invalid(info, name, [removed]);
    }
    next.metadata.resourceVersion = cur.metadata.resourceVersion;
    const causes = this.validate(info, next);
    if (causes.length > 0) throw invalid(info, name, causes);
    return next;
  }

  /** Pod specs are mostly immutable once created: images, activeDeadlineSeconds, tolerations additions. */
  private checkPodUpdate(cur: KubeObject, next: KubeObject): void {
    const a = clone(getMap(cur, 'spec') ?? {});
    const b = clone(getMap(next, 'spec') ?? {});
    for (const s of [a, b]) {
      for (const field of ['containers', 'initContainers']) {
        for (const c of getArray(s, field) ?? []) if (isObject(c)) delete c.image;
      }
      delete s.activeDeadlineSeconds;
      delete s.tolerations;
      if (getString(a, 'nodeName') === undefined) delete s.nodeName;
    }
    if (!jsonEqual(a, b)) {
      throw invalid(this.info('pods'), cur.metadata.name ?? '', [
        {
          reason: 'FieldValueForbidden',
          field: 'spec',
          message: 'Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations)',
        },
      ]);
    }
  }

  /** Runs `desiredOf(current)` through prepareUpdate atomically; deletes when finalizers are done. */
  private async writeUpdate(
    info: ResourceInfo,
    namespace: string,
    name: string,
    sub: Subresource | undefined,
    desiredOf: (cur: KubeObject) => KubeObject,
  ): Promise<WriteResult> {
    let undo: (() => void) | undefined;
    let release: (() => void) | undefined;
    let old: KubeObject | undefined;
    try {
      const result = await this.store.update(this.key(info, namespace, name), (cur) => {
        old = cur;
        const next = this.prepareUpdate(info, cur, desiredOf(cur), sub);
        if (info.storage === 'services' && sub !== 'status') {
          undo?.();
          const alloc = this.allocateService(next, cur);
          undo = alloc.undo;
          release = alloc.commit;
        }
        if (next.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0 && this.readyToGo(info, next)) return null;
        return next;
      });
      release?.();
      if (result.deleted) this.afterDelete(info, old ?? result.object);
      return { object: toExternal(info, result.object), code: 200 };
    } catch (err) {
      undo?.();
      throw this.mapStoreError(err, info, name);
    }
  }

  /** A terminating object with no finalizers left goes away, except a pod still in its grace period. */
  private readyToGo(info: ResourceInfo, obj: KubeObject): boolean {
    if (info.storage !== 'pods') return info.storage !== 'namespaces';
    return (obj.metadata.deletionGracePeriodSeconds ?? 0) === 0;
  }

  async update(info: ResourceInfo, namespace: string, name: string, body: unknown, sub?: Subresource): Promise<WriteResult> {
    if (sub === 'scale') return this.updateScale(info, namespace, name, body);
    const ext = this.checkBodyType(info, body);
    const desired = fromExternal(info, ext);
    if (desired.metadata.name === undefined) throw badRequest('name is required in the body of an update');
    return this.writeUpdate(info, namespace, name, sub, () => desired);
  }

  async patch(info: ResourceInfo, namespace: string, name: string, type: PatchType, patch: Json, sub?: Subresource): Promise<WriteResult> {
    if (sub === 'scale') {
      const cur = await this.store.get(this.key(info, namespace, name));
      if (!cur) throw notFound(info, name);
      const scale = applyPatch(type, this.scaleOf(info, cur) as Json, patch);
      return this.updateScale(info, namespace, name, scale);
    }
    return this.writeUpdate(info, namespace, name, sub, (cur) => {
      const patched = applyPatch(type, toExternal(info, cur) as unknown as Json, patch);
      const obj = this.checkBodyType(info, patched);
      return fromExternal(info, obj);
    });
  }

  // ---- scale -------------------------------------------------------------------

  private scaleOf(info: ResourceInfo, obj: KubeObject): unknown {
    if (!info.subresources.includes('scale')) throw notFound(info, obj.metadata.name ?? '');
    const spec = getMap(obj, 'spec');
    const selector = getMap(spec, 'selector');
    const matchLabels = getMap(selector, 'matchLabels') ?? {};
    const parts = Object.entries(matchLabels).map(([k, v]) => `${k}=${String(v)}`);
    for (const e of getArray(selector, 'matchExpressions') ?? []) {
      if (!isObject(e)) continue;
      const values = (getArray(e, 'values') ?? []).map(String).join(',');
      const key = String(e.key);
      if (e.operator === 'In') parts.push(`${key} in (${values})`);
      else if (e.operator === 'NotIn') parts.push(`${key} notin (${values})`);
      else if (e.operator === 'Exists') parts.push(key);
      else if (e.operator === 'DoesNotExist') parts.push(`!${key}`);
    }
    const m = obj.metadata;
    return {
      apiVersion: 'autoscaling/v1',
      kind: 'Scale',
      metadata: { name: m.name, namespace: m.namespace, uid: m.uid, resourceVersion: m.resourceVersion, creationTimestamp: m.creationTimestamp },
      spec: { replicas: getNumber(spec, 'replicas') ?? 0 },
      status: { replicas: getNumber(getMap(obj, 'status'), 'replicas') ?? 0, selector: parts.join(',') },
    };
  }

  private async updateScale(info: ResourceInfo, namespace: string, name: string, body: unknown): Promise<WriteResult> {
    if (!isObject(body)) throw badRequest('the body must be a Scale object');
    const replicas = getNumber(getMap(body, 'spec'), 'replicas');
    if (replicas === undefined || !Number.isInteger(replicas) || replicas < 0) {
      throw invalid({ group: 'autoscaling', resource: 'scale', kind: 'Scale' }, name, [
        { field: 'spec.replicas', message: `Invalid value: ${String(replicas)}: must be greater than or equal to 0` },
      ]);
    }
    const rv = getString(getMap(body, 'metadata'), 'resourceVersion');
    const result = await this.writeUpdate(info, namespace, name, undefined, (cur) => {
      const next = clone(cur);
      if (rv) next.metadata.resourceVersion = rv;
      next.spec = { ...(getMap(cur, 'spec') ?? {}), replicas };
      return next;
    });
    const obj = toKubeObject(result.object)!;
    return { object: this.scaleOf(info, fromExternal(info, obj)), code: 200 };
  }

  // ---- pods/binding ------------------------------------------------------------

  async bind(namespace: string, name: string, body: unknown): Promise<WriteResult> {
    const info = this.info('pods');
    if (!isObject(body)) throw badRequest('the body must be a Binding object');
    const target = getMap(body, 'target');
    const node = getString(target, 'name');
    if (!node) throw invalid({ group: '', resource: 'bindings', kind: 'Binding' }, name, [{ reason: 'FieldValueRequired', field: 'target.name', message: 'Required value' }]);
    try {
      await this.store.update(this.key(info, namespace, name), (cur) => {
        if (cur.metadata.deletionTimestamp) throw conflict(info, name, 'pod is being deleted, cannot be assigned to a host');
        const spec = getMap(cur, 'spec') ?? {};
        const assigned = getString(spec, 'nodeName');
        if (assigned) throw conflict(info, name, `pod ${name} is already assigned to node "${assigned}"`);
        spec.nodeName = node;
        cur.spec = spec;
        const status = getMap(cur, 'status') ?? {};
        const conditions = (getArray(status, 'conditions') ?? []).filter((c) => !(isObject(c) && c.type === 'PodScheduled'));
        conditions.push({ type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: now() });
        status.conditions = conditions;
        cur.status = status;
        return cur;
      });
    } catch (err) {
      throw this.mapStoreError(err, info, name);
    }
    return { object: successStatus(), code: 201 };
  }

  // ---- delete ------------------------------------------------------------------

  async delete(info: ResourceInfo, namespace: string, name: string, options: DeleteOptions): Promise<WriteResult> {
    const grace = options.gracePeriodSeconds;
    if (grace !== undefined && (!Number.isInteger(grace) || grace < 0)) {
      throw invalid(info, name, [{ field: 'gracePeriodSeconds', message: 'Invalid value: must be >= 0' }]);
    }
    let old: KubeObject | undefined;
    let result;
    try {
      result = await this.store.update(this.key(info, namespace, name), (cur) => {
        old = cur;
        const pre = options.preconditions;
        if (pre?.uid && pre.uid !== cur.metadata.uid) {
          throw conflict(info, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${cur.metadata.uid ?? ''}`);
        }
        if (pre?.resourceVersion && pre.resourceVersion !== cur.metadata.resourceVersion) {
          throw conflict(info, name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${cur.metadata.resourceVersion ?? ''}`);
        }
        return this.deletionOf(info, cur, options);
      });
    } catch (err) {
      throw this.mapStoreError(err, info, name);
    }
    if (result.deleted) {
      this.afterDelete(info, old ?? result.object);
      const returnsObject = info.storage === 'pods' || info.storage === 'services' || info.storage === 'namespaces';
      if (!returnsObject) {
        return {
          object: successStatus({ name, group: info.group, kind: info.resource, uid: result.object.metadata.uid ?? '' }),
          code: 200,
        };
      }
    }
    if (info.storage === 'namespaces' && !result.deleted) void this.finalizeNamespaces();
    return { object: toExternal(info, result.object), code: 200 };
  }

  /** The object after a DELETE request: `null` if it goes now, else marked for deletion. */
  private deletionOf(info: ResourceInfo, cur: KubeObject, options: DeleteOptions): KubeObject | null {
    const m = cur.metadata;
    const finalizers = m.finalizers ?? [];
    if (info.storage === 'namespaces') {
      if (!m.deletionTimestamp) {
        m.deletionTimestamp = now();
        m.deletionGracePeriodSeconds = 0;
        cur.status = { ...(getMap(cur, 'status') ?? {}), phase: 'Terminating' };
      }
      return cur;
    }
    if (info.storage === 'pods') {
      const spec = getMap(cur, 'spec');
      const phase = getString(getMap(cur, 'status'), 'phase');
      let grace = options.gracePeriodSeconds ?? getNumber(spec, 'terminationGracePeriodSeconds') ?? 30;
      if (!getString(spec, 'nodeName') || phase === 'Succeeded' || phase === 'Failed') grace = 0;
      const pending = m.deletionGracePeriodSeconds;
      if (grace > 0) {
        if (m.deletionTimestamp && pending !== undefined && pending <= grace) return cur;
        m.deletionTimestamp = new Date(Date.now() + grace * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
        m.deletionGracePeriodSeconds = grace;
        return cur;
      }
      if (finalizers.length === 0) return null;
      m.deletionTimestamp ??= now();
      m.deletionGracePeriodSeconds = 0;
      return cur;
    }
    if (finalizers.length === 0) return null;
    if (!m.deletionTimestamp) {
      m.deletionTimestamp = now();
      m.deletionGracePeriodSeconds = options.gracePeriodSeconds ?? 0;
    }
    return cur;
  }

  private afterDelete(info: ResourceInfo, obj: KubeObject): void {
    if (info.storage === 'services') this.releaseServiceAllocations(obj);
  }

  async deleteCollection(info: ResourceInfo, namespace: string | undefined, list: ListOptions, options: DeleteOptions): Promise<WriteResult> {
    const result = (await this.list(info, namespace, { labelSelector: list.labelSelector, fieldSelector: list.fieldSelector })) as { items: KubeObject[] };
    for (const item of result.items) {
      try {
        await this.delete(info, item.metadata.namespace ?? '', item.metadata.name ?? '', options);
      } catch (err) {
        if (!(err instanceof ApiError && err.reason === 'NotFound')) throw err;
      }
    }
    return { object: await this.list(info, namespace, list), code: 200 };
  }

  // ---- namespaces --------------------------------------------------------------

  private finalizing = false;

  /** Empties terminating namespaces and removes them once empty (the namespace controller's job). */
  async finalizeNamespaces(): Promise<void> {
    if (this.finalizing || this.closed) return;
    this.finalizing = true;
    try {
      const namespaces = await this.store.list('namespaces', undefined);
      for (const ns of namespaces.items) {
        if (!ns.metadata.deletionTimestamp) continue;
        const name = ns.metadata.name ?? '';
        let remaining = 0;
        for (const info of resources) {
          if (!info.namespaced || info.virtual || info.storage !== groupStorage(info)) continue;
          const items = (await this.store.list(info.storage, name)).items;
          remaining += items.length;
          for (const item of items) {
            if (item.metadata.deletionTimestamp && info.storage !== 'pods') continue;
            try {
              await this.delete(info, name, item.metadata.name ?? '', {});
            } catch (err) {
              if (!(err instanceof ApiError && err.reason === 'NotFound')) log.warn('namespace cleanup failed', { namespace: name, err });
            }
          }
        }
        if (remaining === 0 && (ns.metadata.finalizers ?? []).length === 0) {
          try {
            await this.store.delete({ storage: 'namespaces', namespace: '', name });
          } catch (err) {
            if (!isKnodeError(err, 'STORE_NOT_FOUND')) throw err;
          }
        }
      }
    } catch (err) {
      log.warn('namespace finalization failed', { err });
    } finally {
      this.finalizing = false;
    }
  }
}

/** The resource entry that owns a storage key (events are served twice, stored once). */
function groupStorage(info: ResourceInfo): string {
  return info.storage === 'events' && info.group !== '' ? '' : info.storage;
}

/** Upstream's dropTypeDependentFields: leaving NodePort/LoadBalancer drops the node ports it allocated. */
function dropTypeDependentFields(cur: KubeObject, next: KubeObject): void {
  const oldType = getString(getMap(cur, 'spec'), 'type') ?? 'ClusterIP';
  const spec = getMap(next, 'spec');
  const newType = getString(spec, 'type') ?? 'ClusterIP';
  const hadNodePorts = oldType === 'NodePort' || oldType === 'LoadBalancer';
  const needsNodePorts = newType === 'NodePort' || newType === 'LoadBalancer';
  if (!hadNodePorts || needsNodePorts) return;
  const oldPorts = (getArray(getMap(cur, 'spec'), 'ports') ?? []).filter(isObject);
  for (const p of getArray(spec, 'ports') ?? []) {
    if (isObject(p) && p.nodePort !== undefined && oldPorts.some((o) => o.nodePort === p.nodePort)) delete p.nodePort;
  }
}

/**
 * serviceaccount controller and root-ca-cert-publisher, as in
 * kube-controller-manager:
 *
 * - every active namespace gets a `default` ServiceAccount (made again when
 *   deleted);
 * - every active namespace gets the `kube-root-ca.crt` ConfigMap with the
 *   cluster CA bundle under `ca.crt` (--root-ca-file) and upstream's
 *   description annotation; a changed or deleted one is put back.
 *
 * Both are keyed by namespace name; `rootCAConfigMapWanted` is pure.
 */
import { apiReason } from './client.js';
import type { Controller, ControllerContext } from './context.js';
import { waitForSync } from './context.js';
import { WorkQueue } from './queue.js';
import type { ConfigMap, Namespace } from './types.js';

export const defaultServiceAccountName = 'default';
export const rootCAConfigMapName = 'kube-root-ca.crt';
export const rootCADescription =
  'Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.';

function active(ns: Namespace | undefined): ns is Namespace {
  return ns !== undefined && ns.metadata.deletionTimestamp === undefined && ns.status?.phase !== 'Terminating';
}

/** The ConfigMap to write, or undefined when `current` already is right. Pure. */
export function rootCAConfigMapWanted(namespace: string, caPem: string, current: ConfigMap | undefined): ConfigMap | undefined {
  const ok = current !== undefined && current.data?.['ca.crt'] === caPem && Object.keys(current.data ?? {}).length === 1 && current.metadata.annotations?.['kubernetes.io/description'] === rootCADescription;
  if (ok) return undefined;
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      ...(current?.metadata ?? {}),
      name: rootCAConfigMapName,
      namespace,
      annotations: { ...(current?.metadata.annotations ?? {}), 'kubernetes.io/description': rootCADescription },
    },
    data: { 'ca.crt': caPem },
  };
}

export class ServiceAccountsController implements Controller {
  readonly name = 'serviceaccount';
  private readonly queue: WorkQueue;

  constructor(private readonly ctx: ControllerContext) {
    this.queue = new WorkQueue({ name: this.name, logger: ctx.logger });
    ctx.informers.namespaces.on({ add: (n) => this.queue.add(n.metadata.name ?? ''), update: (_o, n) => this.queue.add(n.metadata.name ?? '') });
    ctx.informers.serviceAccounts.on({
      delete: (sa) => {
        if (sa.metadata.name === defaultServiceAccountName) this.queue.add(sa.metadata.namespace ?? '');
      },
    });
  }

  private async sync(namespace: string): Promise<void> {
    if (!active(this.ctx.informers.namespaces.get(namespace))) return;
    if (this.ctx.informers.serviceAccounts.get(`${namespace}/${defaultServiceAccountName}`)) return;
    try {
      await this.ctx.client.create(`/api/v1/namespaces/${namespace}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: defaultServiceAccountName } });
      this.ctx.logger.debug('service account created', { namespace, name: defaultServiceAccountName });
    } catch (err) {
      const reason = apiReason(err);
      if (reason === 'AlreadyExists' || reason === 'NotFound') return;
      if (reason === 'Forbidden') return; // namespace terminating
      throw err;
    }
  }

  async run(signal: AbortSignal): Promise<void> {
    if (!(await waitForSync([this.ctx.informers.namespaces, this.ctx.informers.serviceAccounts], signal))) return;
    await this.queue.run((key) => this.sync(key), signal);
  }
}

export class RootCACertPublisher implements Controller {
  readonly name = 'root-ca-cert-publisher';
  private readonly queue: WorkQueue;

  constructor(
    private readonly ctx: ControllerContext,
    private readonly caPem: string,
  ) {
    this.queue = new WorkQueue({ name: this.name, logger: ctx.logger });
    ctx.informers.namespaces.on({ add: (n) => this.queue.add(n.metadata.name ?? ''), update: (_o, n) => this.queue.add(n.metadata.name ?? '') });
    const onCM = (cm: ConfigMap): void => {
      if (cm.metadata.name === rootCAConfigMapName) this.queue.add(cm.metadata.namespace ?? '');
    };
    ctx.informers.configMaps.on({ update: (_o, cm) => onCM(cm), delete: onCM });
  }

  private async sync(namespace: string): Promise<void> {
    if (!active(this.ctx.informers.namespaces.get(namespace))) return;
    const current = this.ctx.informers.configMaps.get(`${namespace}/${rootCAConfigMapName}`);
    const want = rootCAConfigMapWanted(namespace, this.caPem, current);
    if (want === undefined) return;
    const base = `/api/v1/namespaces/${namespace}/configmaps`;
    try {
      if (current === undefined) await this.ctx.client.create(base, want);
      else await this.ctx.client.update(`${base}/${rootCAConfigMapName}`, want);
    } catch (err) {
      const reason = apiReason(err);
      if (reason === 'AlreadyExists' || reason === 'Conflict') {
        this.queue.addAfter(namespace, 200); // the informer catches up, then compare again
        return;
      }
      if (reason === 'NotFound' || reason === 'Forbidden') return;
      throw err;
    }
  }

  async run(signal: AbortSignal): Promise<void> {
    if (!(await waitForSync([this.ctx.informers.namespaces, this.ctx.informers.configMaps], signal))) return;
    await this.queue.run((key) => this.sync(key), signal);
  }
}

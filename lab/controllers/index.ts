/**
 * The lab's controller manager: scheduler, endpointslice (+ endpoints),
 * node-ipam, ReplicaSet, Deployment, garbage collection, the CSR approver,
 * (given the cluster signing CA) the kubelet-client CSR signer, the
 * serviceaccount controller and (given --root-ca-file) the root-ca-cert-publisher, all ordinary API
 * clients of the apiserver named by `kubeconfigPath`, sharing one informer
 * per resource. `stop()` (or aborting `signal`) ends every loop and watch.
 */
import { setMaxListeners } from 'node:events';
import { createLogger } from '../../lib/log.js';
import type { Logger } from '../../lib/log.js';
import { ApiClient } from './client.js';
import { makeContext } from './context.js';
import type { Controller } from './context.js';
import { DeploymentController } from './deployment.js';
import { EndpointSliceController } from './endpointslice.js';
import { GarbageCollector } from './gc.js';
import { NodeIpamController } from './nodeipam.js';
import { ReplicaSetController } from './replicaset.js';
import { Scheduler } from './scheduler.js';
import { CsrApprovingController } from './csrapproving.js';
import { CsrSigningController } from './csrsigning.js';
import { RootCACertPublisher, ServiceAccountsController } from './serviceaccounts.js';
import { readFile } from 'node:fs/promises';

/** kube-controller-manager's --cluster-signing-duration default: one year. */
export const defaultClusterSigningDurationSeconds = 365 * 24 * 3600;

export interface ControllersOptions {
  kubeconfigPath: string;
  /** Default 10.244.0.0/16. */
  clusterCIDR?: string;
  /** Default 24. */
  nodeCIDRMaskSize?: number;
  signal?: AbortSignal;
  logger?: Logger;
  /** --cluster-signing-cert-file/-key-file: the CA the csrsigning controller signs kubelet client certificates with (unset: no signer). */
  clusterSigning?: { certFile: string; keyFile: string; durationSeconds?: number };
  /** --root-ca-file: the CA bundle the root-ca-cert-publisher puts into every namespace (unset: no publisher). */
  rootCAFile?: string;
  /** Subset to run (by name); default all. */
  only?: string[];
}

export interface RunningControllers {
  stop(): Promise<void>;
}

export async function startControllers(options: ControllersOptions): Promise<RunningControllers> {
  const logger = options.logger ?? createLogger({ component: 'controllers' });
  const client = await ApiClient.fromKubeconfig(options.kubeconfigPath);
  const ctx = makeContext(client, logger);
  const all: Controller[] = [
    new NodeIpamController({ ...ctx, logger: logger.child({ controller: 'node-ipam' }) }, options.clusterCIDR ?? '10.244.0.0/16', options.nodeCIDRMaskSize ?? 24),
    new Scheduler({ ...ctx, logger: logger.child({ controller: 'scheduler' }) }),
    new EndpointSliceController({ ...ctx, logger: logger.child({ controller: 'endpointslice' }) }),
    new ReplicaSetController({ ...ctx, logger: logger.child({ controller: 'replicaset' }) }),
    new DeploymentController({ ...ctx, logger: logger.child({ controller: 'deployment' }) }),
    new GarbageCollector({ ...ctx, logger: logger.child({ controller: 'garbage-collector' }) }),
    new CsrApprovingController({ ...ctx, logger: logger.child({ controller: 'csrapproving' }) }),
    new ServiceAccountsController({ ...ctx, logger: logger.child({ controller: 'serviceaccount' }) }),
  ];
  if (options.rootCAFile) {
    all.push(new RootCACertPublisher({ ...ctx, logger: logger.child({ controller: 'root-ca-cert-publisher' }) }, await readFile(options.rootCAFile, 'utf8')));
  }
  if (options.clusterSigning) {
    const s = options.clusterSigning;
    all.push(new CsrSigningController({ ...ctx, logger: logger.child({ controller: 'csrsigning' }) }, { certFile: s.certFile, keyFile: s.keyFile, durationSeconds: s.durationSeconds ?? defaultClusterSigningDurationSeconds }));
  }
  const controllers = options.only ? all.filter((c) => options.only!.includes(c.name)) : all;
  const abort = new AbortController();
  // Every informer, watch and queue listens on this one signal.
  setMaxListeners(0, abort.signal);
  const onAbort = (): void => abort.abort();
  options.signal?.addEventListener('abort', onAbort);
  const signal = abort.signal;
  const loops: Promise<void>[] = [];
  const guard = (name: string, p: Promise<void>): Promise<void> =>
    p.catch((err: unknown) => {
      if (!signal.aborted) logger.error('controller loop ended', { controller: name, err });
    });
  for (const inf of Object.values(ctx.informers)) loops.push(guard('informer', inf.run(signal)));
  for (const c of controllers) loops.push(guard(c.name, c.run(signal)));
  logger.info('controllers started', { controllers: controllers.map((c) => c.name) });
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      abort.abort();
      options.signal?.removeEventListener('abort', onAbort);
      await Promise.all(loops);
      client.close();
      logger.info('controllers stopped');
    })());
  if (options.signal?.aborted) await stop();
  return { stop };
}

/**
 * The agent's pod network loop (lab-grade, until the overlay lands): a Node
 * informer over all nodes; on every change, the own Node's podCIDR becomes the
 * CNI conflist (written when it changes) and every other node's podCIDR a
 * host-gw route via its InternalIP (routes of nodes that went away are removed).
 * Work is serialised and retried on failure; nothing here throws to the caller.
 */
import type { V1Node } from '@kubernetes/client-node';
import { join } from 'node:path';
import type { Logger } from '../../lib/log.js';
import type { KubeClient } from '../kube/client.js';
import { startInformer } from '../kube/informer.js';
import { nodeListWatch } from '../kube/resources.js';
import { hostGwRoutes, podCIDRv4, renderConflist, syncRoutes, writeConflistIfChanged } from './cni-config.js';

export * from './cni-config.js';

export interface PodNetworkOptions {
  kube: KubeClient;
  nodeName: string;
  cniConfDir: string;
  rootDir: string;
  signal: AbortSignal;
  logger: Logger;
  /** Manage host-gw routes to the other nodes (default true). */
  routes?: boolean;
}

export interface PodNetwork {
  /** Resolves once the conflist has been written (or the signal aborted). */
  configured: Promise<void>;
  done: Promise<void>;
}

export function startPodNetwork(o: PodNetworkOptions): PodNetwork {
  const log = o.logger;
  let resolveConfigured: () => void = () => undefined;
  const configured = new Promise<void>((r) => (resolveConfigured = r));
  o.signal.addEventListener('abort', () => resolveConfigured(), { once: true });
  let running: Promise<void> = Promise.resolve();
  let pending = false;
  let retry: NodeJS.Timeout | undefined;

  const reconcile = async (nodes: V1Node[]): Promise<void> => {
    const self = nodes.find((n) => n.metadata?.name === o.nodeName);
    const cidr = self === undefined ? undefined : podCIDRv4(self);
    if (cidr !== undefined) {
      const wrote = await writeConflistIfChanged(o.cniConfDir, renderConflist({ podCIDR: cidr, ipamDataDir: join(o.rootDir, 'cni', 'networks') }));
      if (wrote) log.info('wrote the CNI config', { dir: o.cniConfDir, podCIDR: cidr });
      resolveConfigured();
    }
    if (o.routes !== false) {
      const { replaced, removed } = await syncRoutes(hostGwRoutes(nodes, o.nodeName));
      for (const r of replaced) log.info('route to a node\'s pods', { dst: r.dst, via: r.via });
      for (const r of removed) log.info('removed the route of a node that went away', { dst: r.dst, via: r.via });
    }
  };

  const kick = (): void => {
    if (o.signal.aborted) return;
    if (pending) return;
    pending = true;
    running = running.then(async () => {
      pending = false;
      if (o.signal.aborted || !informer.hasSynced()) return;
      try {
        await reconcile(informer.list());
      } catch (err) {
        log.warn('pod network sync failed; retrying', { err });
        clearTimeout(retry);
        retry = setTimeout(kick, 5000);
      }
    });
  };

  const informer = startInformer<V1Node>({
    listWatch: nodeListWatch(o.kube),
    signal: o.signal,
    logger: log.child({ part: 'node-informer' }),
    onAdd: kick,
    onUpdate: (old, obj) => {
      if (podCIDRv4(old) !== podCIDRv4(obj) || JSON.stringify(old.status?.addresses) !== JSON.stringify(obj.status?.addresses)) kick();
    },
    onDelete: kick,
  });
  void informer.synced.then(kick);
  const done = informer.done.then(async () => {
    clearTimeout(retry);
    await running;
  });
  return { configured, done };
}

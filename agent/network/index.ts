/**
 * The agent's pod network loop (flannel's job, inside knode-agent): a Node informer over all
 * nodes; on every relevant change (and every `resyncMs`), for the own Node's podCIDR:
 *   1. the overlay backend (vxlan | host-gw, `--overlay-backend`) sets up this node and says
 *      which flannel annotations to publish; they are patched onto the own Node;
 *   2. flannel's subnet file is written (network, lease, MTU, ipMasq);
 *   3. MASQUERADE / FORWARD rules for the cluster CIDR (flannel's FLANNEL-POSTRTG/-FWD);
 *   4. the CNI conflist (knode-flannel + knode-portmap) — from here on the runtime reports
 *      NetworkReady and the node can become Ready;
 *   5. the backend programs every other node (neighbour/FDB/route or a plain route) and removes
 *      what belongs to nodes that went away;
 *   6. NetworkUnavailable=False (FlannelIsUp) on the Node; True with the error when setting up
 *      failed.
 * Backend `none` skips 1 and 5 (pods on one node, or routes made by someone else).
 * Work is serialised and retried on failure; nothing here throws to the caller.
 */
import type { V1Node } from '@kubernetes/client-node';
import { errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { contains, formatIpNet, networkOf, parseIp, parseIpNet } from '../../lib/netlink/ip.js';
import type { IpNet } from '../../lib/netlink/ip.js';
import type { KubeClient } from '../kube/client.js';
import { apiErrorSummary, mergePatch, strategicMergePatch } from '../kube/client.js';
import { startInformer } from '../kube/informer.js';
import { nodeListWatch } from '../kube/resources.js';
import { renderConflist, writeConflistIfChanged } from './cni-config.js';
import { networkConditionPatch, networkDown, networkUp } from './condition.js';
import type { NetworkCondition } from './condition.js';
import { writeFileIfChanged } from './files.js';
import { masqPort } from './masq.js';
import { annotationsPatch, flannelAnnotations, internalIPv4, overlayBackends, podCIDRv4, removeOtherBackends } from './overlay/index.js';
import type { OverlayBackend, OverlayBackendName, OverlayLease } from './overlay/index.js';
import { openRtnl, underlayLink } from './overlay/underlay.js';
import { renderSubnetEnv } from './subnet-env.js';

export * from './cni-config.js';
export * from './subnet-env.js';
export { overlayBackendNames, isOverlayBackendName } from './overlay/names.js';
export type { OverlayBackendName } from './overlay/names.js';

export interface PodNetworkOptions {
  kube: KubeClient;
  nodeName: string;
  cniConfDir: string;
  rootDir: string;
  signal: AbortSignal;
  logger: Logger;
  backend: OverlayBackendName;
  /** The cluster's pod network (FLANNEL_NETWORK), e.g. 10.244.0.0/16. */
  clusterCIDR: string;
  /** Where flannel's subnet.env is written. */
  subnetFile: string;
  /** Masquerade pod traffic that leaves the cluster CIDR (default true). */
  ipMasq?: boolean;
  /** Full resync period (default 60 s). */
  resyncMs?: number;
}

export interface PodNetwork {
  /** Resolves once the conflist has been written (or the signal aborted). */
  configured: Promise<void>;
  done: Promise<void>;
}

function cidrOf(text: string): IpNet | undefined {
  const n = parseIpNet(text);
  return n === undefined ? undefined : { ip: networkOf(n), prefix: n.prefix };
}

async function underlayMtu(lease: OverlayLease): Promise<number> {
  const nl = openRtnl(undefined);
  try {
    return (await underlayLink(nl, lease.publicIP)).mtu;
  } finally {
    nl.close();
  }
}

export function startPodNetwork(o: PodNetworkOptions): PodNetwork {
  const log = o.logger;
  let resolveConfigured: () => void = () => undefined;
  const configured = new Promise<void>((r) => (resolveConfigured = r));
  o.signal.addEventListener('abort', () => resolveConfigured(), { once: true });
  const clusterCIDR = cidrOf(o.clusterCIDR);
  const backend: OverlayBackend | undefined = o.backend === 'none' ? undefined : overlayBackends[o.backend]({ logger: log.child({ backend: o.backend }) });
  const masq = masqPort();
  let running: Promise<void> = Promise.resolve();
  let pending = false;
  let retry: NodeJS.Timeout | undefined;
  let warnedOutside = '';
  let othersRemoved = false;

  const setCondition = async (self: V1Node | undefined, want: NetworkCondition): Promise<void> => {
    const body = networkConditionPatch(self, want, new Date());
    if (body === undefined) return;
    await o.kube.core.patchNodeStatus({ name: o.nodeName, body }, strategicMergePatch);
    log.info('NetworkUnavailable condition', { status: want.status, reason: want.reason });
  };

  const reconcile = async (nodes: V1Node[]): Promise<void> => {
    const self = nodes.find((n) => n.metadata?.name === o.nodeName);
    const cidrText = self === undefined ? undefined : podCIDRv4(self);
    const ipText = self === undefined ? undefined : internalIPv4(self);
    const subnet = cidrText === undefined ? undefined : cidrOf(cidrText);
    const publicIP = ipText === undefined ? undefined : parseIp(ipText);
    if (subnet === undefined || publicIP === undefined || clusterCIDR === undefined) return; // no lease yet
    if (!contains(clusterCIDR, subnet.ip) && warnedOutside !== cidrText) {
      warnedOutside = cidrText ?? '';
      log.warn('the node\'s podCIDR is outside the cluster CIDR', { podCIDR: cidrText, clusterCIDR: o.clusterCIDR });
    }
    const lease: OverlayLease = { nodeName: o.nodeName, subnet, publicIP };
    if (!othersRemoved) {
      const removed = await removeOtherBackends(o.backend);
      if (removed.length > 0) log.info('removed what another overlay backend left', { removed });
      othersRemoved = true;
    }

    let mtu: number;
    try {
      if (backend !== undefined) {
        const up = await backend.setUp(lease);
        mtu = up.mtu;
        const patch = annotationsPatch(self, up.annotations);
        if (patch !== undefined) {
          await o.kube.core.patchNode({ name: o.nodeName, body: { metadata: { annotations: patch } } }, mergePatch);
          log.info('flannel annotations written on the Node', { annotations: patch });
        }
      } else {
        mtu = await underlayMtu(lease);
      }
      if (await writeFileIfChanged(o.subnetFile, renderSubnetEnv({ network: clusterCIDR, subnet, mtu, ipMasq: o.ipMasq !== false }))) {
        log.info('wrote the subnet file', { file: o.subnetFile, subnet: formatIpNet(subnet), mtu });
      }
      if (o.ipMasq !== false && (await masq.ensure({ clusterCIDR, podCIDR: subnet }))) log.info('masquerade rules in place', { clusterCIDR: o.clusterCIDR });
      if (await writeConflistIfChanged(o.cniConfDir, renderConflist({ subnetFile: o.subnetFile, rootDir: o.rootDir }))) {
        log.info('wrote the CNI config', { dir: o.cniConfDir, podCIDR: cidrText });
      }
    } catch (err) {
      await setCondition(self, networkDown(errorMessage(err))).catch((e: unknown) => log.warn('cannot write NetworkUnavailable', { err: apiErrorSummary(e) }));
      throw err;
    }
    resolveConfigured();
    if (backend !== undefined) {
      const report = await backend.sync(lease, nodes);
      for (const node of report.programmed) log.info('programmed the overlay to a node', { peer: node, backend: backend.type });
      for (const what of report.removed) log.info('removed overlay state of a node that went away', { entry: what, backend: backend.type });
    }
    await setCondition(self, networkUp);
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
        log.warn('pod network sync failed; retrying', { err: errorMessage(err) });
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
      const changed =
        podCIDRv4(old) !== podCIDRv4(obj) ||
        JSON.stringify(old.status?.addresses) !== JSON.stringify(obj.status?.addresses) ||
        flannelAnnotations(old) !== flannelAnnotations(obj) ||
        (obj.metadata?.name === o.nodeName && JSON.stringify(old.status?.conditions?.find((c) => c.type === 'NetworkUnavailable')) !== JSON.stringify(obj.status?.conditions?.find((c) => c.type === 'NetworkUnavailable')));
      if (changed) kick();
    },
    onDelete: kick,
  });
  void informer.synced.then(kick);
  const resync = setInterval(kick, o.resyncMs ?? 60_000);
  const done = informer.done.then(async () => {
    clearTimeout(retry);
    clearInterval(resync);
    await running;
    backend?.close();
  });
  return { configured, done };
}

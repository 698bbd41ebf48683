/**
 * The host-gw overlay backend (flannel's hostgw): a plain route per remote node's pod CIDR via
 * that node's public IP. No device, no encapsulation, pod MTU = underlay MTU; the nodes must share
 * an L2 segment (the lab's underlay bridge does).
 *
 * Design notes
 * - Routes are tagged with their own rtnetlink protocol number (77), so the agent only ever
 *   lists, replaces and removes routes it made (`ip route show proto 77`), never the admin's.
 * - Desired routes come from render.ts (pure); this file diffs against the kernel and applies
 *   with NLM_F_REPLACE / RTM_DELROUTE through one rtnetlink socket.
 */
import type { V1Node } from '@kubernetes/client-node';
import { formatIp, formatIpNet, parseIp, parseIpNet } from '../../../../lib/netlink/ip.js';
import { delRoute, isNetlinkErrno, listRoutes, replaceRoute } from '../../../../lib/netlink/index.js';
import type { Rtnl } from '../../../../lib/netlink/index.js';
import { KnodeError } from '../../../../lib/errors.js';
import { renderAnnotations } from '../annotations.js';
import type { OverlayBackend, OverlayBackendFactory, OverlayLease, OverlaySetUp, OverlaySyncReport } from '../types.js';
import { openRtnl, underlayLink } from '../underlay.js';
import { hostGwRoutes, routeChanges } from './render.js';
import type { HostGwRoute } from './render.js';

/** rtnetlink protocol of the routes the agent owns (`ip route ... proto 77`). */
export const routeProtocol = 77;

function toRoute(r: HostGwRoute): { dst: NonNullable<ReturnType<typeof parseIpNet>>; gw: NonNullable<ReturnType<typeof parseIp>> } {
  const dst = parseIpNet(r.dst);
  const gw = parseIp(r.via);
  if (dst === undefined || gw === undefined) throw new KnodeError('OVERLAY_BAD_ROUTE', `bad host-gw route ${r.dst} via ${r.via}`);
  return { dst, gw };
}

async function ownRoutes(nl: Rtnl): Promise<HostGwRoute[]> {
  return (await listRoutes(nl, { family: 4 }))
    .filter((r) => r.protocol === routeProtocol && r.gw !== undefined)
    .map((r) => ({ dst: formatIpNet(r.dst), via: formatIp(r.gw!) }));
}

export const createHostGwBackend: OverlayBackendFactory = (opts) => {
  let nl: Rtnl | undefined;
  const sock = (): Rtnl => (nl ??= openRtnl(opts.netnsPath));
  const backend = {
    type: 'host-gw' as const,
    async setUp(lease: OverlayLease): Promise<OverlaySetUp> {
      const under = await underlayLink(sock(), lease.publicIP);
      return { annotations: renderAnnotations({ backendType: 'host-gw', backendData: null, publicIP: formatIp(lease.publicIP) }), mtu: under.mtu };
    },
    async sync(lease: OverlayLease, nodes: readonly V1Node[]): Promise<OverlaySyncReport> {
      const { replace, remove } = routeChanges(await ownRoutes(sock()), hostGwRoutes(nodes, lease.nodeName));
      const report: OverlaySyncReport = { programmed: [], removed: [] };
      for (const r of remove) {
        try {
          await delRoute(sock(), { ...toRoute(r), protocol: routeProtocol });
        } catch (err) {
          if (!isNetlinkErrno(err, 'ESRCH', 'ENOENT')) throw err;
        }
        report.removed.push(`route ${r.dst} via ${r.via}`);
      }
      for (const r of replace) {
        await replaceRoute(sock(), { ...toRoute(r), protocol: routeProtocol });
        report.programmed.push(r.node ?? r.dst);
      }
      return report;
    },
    close(): void {
      nl?.close();
      nl = undefined;
    },
  };
  return backend satisfies OverlayBackend;
};

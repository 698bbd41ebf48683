/** The overlay backends, picked by name from an explicit map (`--overlay-backend`). */
import { formatIp, formatIpNet } from '../../../lib/netlink/ip.js';
import { delRoute, deleteLink, getLinkByName, isNetlinkErrno, listRoutes } from '../../../lib/netlink/index.js';
import { createHostGwBackend, routeProtocol } from './host-gw/backend.js';
import { openRtnl } from './underlay.js';
import { vxlanDefaults } from './vxlan/render.js';
import type { OverlayBackendFactory } from './types.js';
import { createVxlanBackend } from './vxlan/backend.js';
import type { OverlayBackendName } from './names.js';

export const overlayBackends: Record<Exclude<OverlayBackendName, 'none'>, OverlayBackendFactory> = {
  vxlan: createVxlanBackend,
  'host-gw': createHostGwBackend,
};

export * from './names.js';
export * from './types.js';
export * from './annotations.js';

/**
 * Removes what another backend left in this namespace (the agent restarted with another
 * --overlay-backend): flannel.1 unless the backend is vxlan (its neighbours, FDB entries and
 * routes go with it), the agent's proto-77 routes unless it is host-gw. Returns what it removed.
 */
export async function removeOtherBackends(keep: OverlayBackendName, netnsPath?: string): Promise<string[]> {
  const nl = openRtnl(netnsPath);
  const removed: string[] = [];
  try {
    if (keep !== 'vxlan') {
      const dev = await getLinkByName(nl, vxlanDefaults.device);
      if (dev !== undefined && dev.kind === 'vxlan') {
        await deleteLink(nl, dev.index);
        removed.push(`link ${dev.name}`);
      }
    }
    if (keep !== 'host-gw') {
      for (const r of await listRoutes(nl, { family: 4 })) {
        if (r.protocol !== routeProtocol || r.gw === undefined) continue;
        try {
          await delRoute(nl, { dst: r.dst, gw: r.gw, protocol: routeProtocol });
          removed.push(`route ${formatIpNet(r.dst)} via ${formatIp(r.gw)}`);
        } catch (err) {
          if (!isNetlinkErrno(err, 'ESRCH', 'ENOENT')) throw err;
        }
      }
    }
  } finally {
    nl.close();
  }
  return removed;
}

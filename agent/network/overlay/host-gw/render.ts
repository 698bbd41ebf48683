/**
 * The host-gw backend's desired state: one route per remote node, `<subnet> via <public-ip>`,
 * for nodes whose flannel annotations say backend-type host-gw (flannel's hostgw backend; the
 * nodes must share an L2 segment). Pure (unit-tested).
 */
import type { V1Node } from '@kubernetes/client-node';
import { formatIp, formatIpNet } from '../../../../lib/netlink/ip.js';
import { flannelPeers } from '../annotations.js';

export interface HostGwRoute {
  /** The other node's pod CIDR. */
  dst: string;
  /** The other node's public IP. */
  via: string;
  node?: string;
}

/** One route per other host-gw node with a podCIDR and a public-ip, sorted by destination. */
export function hostGwRoutes(nodes: readonly V1Node[], self: string): HostGwRoute[] {
  return flannelPeers(nodes, self)
    .filter((p) => p.backendType === 'host-gw')
    .map((p) => ({ dst: formatIpNet(p.subnet), via: formatIp(p.publicIP), node: p.node }))
    .sort((a, b) => a.dst.localeCompare(b.dst));
}

/** What to add/replace and what to delete to go from `current` to `desired`. Pure. */
export function routeChanges(current: readonly HostGwRoute[], desired: readonly HostGwRoute[]): { replace: HostGwRoute[]; remove: HostGwRoute[] } {
  const cur = new Map(current.map((r) => [r.dst, r.via]));
  const want = new Set(desired.map((r) => r.dst));
  return {
    replace: desired.filter((r) => cur.get(r.dst) !== r.via),
    remove: current.filter((r) => !want.has(r.dst)),
  };
}

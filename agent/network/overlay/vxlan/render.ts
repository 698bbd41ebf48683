/**
 * The VXLAN backend's desired state, rendered from the Node list. Pure (unit-tested).
 *
 * Per remote node with flannel vxlan annotations and a podCIDR (flannel's handleSubnetEvents):
 *   neighbour  <subnet>.0 lladdr <VtepMAC> nud permanent dev flannel.1
 *   fdb        <VtepMAC> dst <public-ip> self permanent dev flannel.1
 *   route      <subnet> via <subnet>.0 dev flannel.1 onlink
 * programmed in that order (the route last, else the kernel would ARP for the gateway), and
 * removed when the node goes. `planVxlan` turns current + desired into an ordered list of
 * operations: removals of entries nobody wants first, then, for each peer whose three entries are
 * not all in place, the three "replace" operations.
 */
import type { V1Node } from '@kubernetes/client-node';
import { compareIp, formatIp, formatIpNet, ipEqual, networkOf } from '../../../../lib/netlink/ip.js';
import type { Ip, IpNet } from '../../../../lib/netlink/ip.js';
import { flannelPeers } from '../annotations.js';

export const vxlanDefaults = { vni: 1, port: 8472, device: 'flannel.1', encapOverhead: 50 } as const;

/** flannel's vxlanLeaseAttrs as JSON: {"VNI":1,"VtepMAC":"…"}. */
export interface VxlanBackendData {
  VNI: number;
  VtepMAC: string;
}

const macRe = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function parseVxlanBackendData(data: unknown): VxlanBackendData | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const d = data as Record<string, unknown>;
  const mac = typeof d.VtepMAC === 'string' ? d.VtepMAC.toLowerCase() : '';
  if (!macRe.test(mac)) return undefined;
  const vni = typeof d.VNI === 'number' && Number.isInteger(d.VNI) ? d.VNI : vxlanDefaults.vni;
  return { VNI: vni, VtepMAC: mac };
}

export interface VxlanPeer {
  node: string;
  subnet: IpNet;
  /** <subnet>.0: the remote flannel.1 address, the route's gateway and the neighbour's IP. */
  gateway: Ip;
  vtepMac: string;
  publicIP: Ip;
}

/** Remote nodes that are vxlan peers (same VNI), sorted by node name. */
export function vxlanPeers(nodes: readonly V1Node[], self: string, vni: number = vxlanDefaults.vni): VxlanPeer[] {
  const out: VxlanPeer[] = [];
  for (const p of flannelPeers(nodes, self)) {
    if (p.backendType !== 'vxlan') continue;
    const data = parseVxlanBackendData(p.backendData);
    if (data === undefined || data.VNI !== vni) continue;
    out.push({ node: p.node, subnet: p.subnet, gateway: networkOf(p.subnet), vtepMac: data.VtepMAC, publicIP: p.publicIP });
  }
  return out;
}

export interface VxlanNeighbour {
  ip: Ip;
  mac: string;
}
export interface VxlanFdb {
  mac: string;
  dst: Ip;
}
export interface VxlanRoute {
  dst: IpNet;
  gw: Ip;
}

/** Kernel state on flannel.1 (the same shape serves desired and current). */
export interface VxlanState {
  neighbours: VxlanNeighbour[];
  fdb: VxlanFdb[];
  routes: VxlanRoute[];
}

export function renderVxlanState(peers: readonly VxlanPeer[]): VxlanState {
  return {
    neighbours: peers.map((p) => ({ ip: p.gateway, mac: p.vtepMac })),
    fdb: peers.map((p) => ({ mac: p.vtepMac, dst: p.publicIP })),
    routes: peers.map((p) => ({ dst: p.subnet, gw: p.gateway })),
  };
}

export type VxlanOp =
  | { op: 'del-route'; route: VxlanRoute }
  | { op: 'del-fdb'; fdb: VxlanFdb }
  | { op: 'del-neigh'; neighbour: VxlanNeighbour }
  | { op: 'set-neigh'; node: string; neighbour: VxlanNeighbour }
  | { op: 'set-fdb'; node: string; fdb: VxlanFdb }
  | { op: 'set-route'; node: string; route: VxlanRoute };

const netKey = (n: IpNet): string => formatIpNet(n);

/** The ordered operations that take `current` to the state of `peers`. Pure. */
export function planVxlan(current: VxlanState, peers: readonly VxlanPeer[]): VxlanOp[] {
  const want = renderVxlanState(peers);
  const ops: VxlanOp[] = [];
  const wantRoutes = new Set(want.routes.map((r) => netKey(r.dst)));
  const wantMacs = new Set(want.fdb.map((f) => f.mac));
  const wantNeigh = new Set(want.neighbours.map((n) => formatIp(n.ip)));
  for (const r of [...current.routes].sort((a, b) => compareIp(a.dst.ip, b.dst.ip))) if (!wantRoutes.has(netKey(r.dst))) ops.push({ op: 'del-route', route: r });
  for (const f of [...current.fdb].sort((a, b) => a.mac.localeCompare(b.mac))) if (!wantMacs.has(f.mac)) ops.push({ op: 'del-fdb', fdb: f });
  for (const n of [...current.neighbours].sort((a, b) => compareIp(a.ip, b.ip))) if (!wantNeigh.has(formatIp(n.ip))) ops.push({ op: 'del-neigh', neighbour: n });
  for (const p of peers) {
    const neighbour = { ip: p.gateway, mac: p.vtepMac };
    const fdb = { mac: p.vtepMac, dst: p.publicIP };
    const route = { dst: p.subnet, gw: p.gateway };
    const haveNeigh = current.neighbours.some((n) => ipEqual(n.ip, neighbour.ip) && n.mac === neighbour.mac);
    const fdbOfMac = current.fdb.filter((f) => f.mac === fdb.mac);
    const haveFdb = fdbOfMac.length === 1 && ipEqual(fdbOfMac[0]!.dst, fdb.dst);
    const haveRoute = current.routes.some((r) => netKey(r.dst) === netKey(route.dst) && ipEqual(r.gw, route.gw));
    if (haveNeigh && haveFdb && haveRoute) continue;
    // A MAC that points at other destinations too: drop those first (replace keeps only one).
    for (const f of fdbOfMac) if (!ipEqual(f.dst, fdb.dst)) ops.push({ op: 'del-fdb', fdb: f });
    ops.push({ op: 'set-neigh', node: p.node, neighbour }, { op: 'set-fdb', node: p.node, fdb }, { op: 'set-route', node: p.node, route });
  }
  return ops;
}

/** One line per operation (logs, tests). */
export function describeVxlanOp(o: VxlanOp): string {
  switch (o.op) {
    case 'del-route':
    case 'set-route':
      return `${o.op} ${formatIpNet(o.route.dst)} via ${formatIp(o.route.gw)} onlink`;
    case 'del-fdb':
    case 'set-fdb':
      return `${o.op} ${o.fdb.mac} dst ${formatIp(o.fdb.dst)}`;
    case 'del-neigh':
    case 'set-neigh':
      return `${o.op} ${formatIp(o.neighbour.ip)} lladdr ${o.neighbour.mac}`;
  }
}

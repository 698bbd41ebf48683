/**
 * The VXLAN overlay backend, flannel-compatible (flannel-io/flannel pkg/backend/vxlan).
 *
 * Design notes
 * - Device: flannel.<VNI> (VNI 1, UDP 8472, learning off, local = the node's public IP on the
 *   underlay link, MTU = underlay MTU − 50), address <subnet>.0/32 (no broadcast routes; the
 *   source address for host → remote pod traffic), up. `ensureDevice` keeps a compatible existing
 *   device (so its MAC, published as VtepMAC, survives agent restarts) and recreates an
 *   incompatible one, as flannel's ensureLink does.
 * - No L2/L3 miss handling: every remote node's neighbour, FDB entry and route are programmed up
 *   front (flannel's current scheme), from its Node annotations. Desired state is rendered by
 *   render.ts (pure); this file reads the current entries on flannel.1 and applies the plan with
 *   NLM_F_REPLACE requests, so a sync that finds everything in place sends nothing.
 * - Everything goes through one rtnetlink socket bound to the agent's namespace (or `netnsPath`).
 */
import type { V1Node } from '@kubernetes/client-node';
import { KnodeError } from '../../../../lib/errors.js';
import { formatIp, ipEqual, networkOf } from '../../../../lib/netlink/ip.js';
import {
  RT_SCOPE_UNIVERSE,
  addAddress,
  createVxlan,
  delAddress,
  delFdb,
  delNeighbour,
  delRoute,
  deleteLink,
  getLinkByName,
  isNetlinkErrno,
  listAddresses,
  listFdb,
  listNeighbours,
  listRoutes,
  replaceRoute,
  setFdb,
  setLinkUp,
  setMtu,
  setNeighbour,
} from '../../../../lib/netlink/index.js';
import type { Link, Rtnl } from '../../../../lib/netlink/index.js';
import { renderAnnotations } from '../annotations.js';
import type { OverlayBackend, OverlayBackendFactory, OverlayLease, OverlaySetUp, OverlaySyncReport } from '../types.js';
import { openRtnl, underlayLink } from '../underlay.js';
import { describeVxlanOp, planVxlan, vxlanDefaults, vxlanPeers } from './render.js';
import type { VxlanOp, VxlanState } from './render.js';

/** Why an existing device cannot be kept (flannel's vxlanLinksIncompat), or undefined. */
export function vxlanIncompatibility(link: Link, want: { vni: number; port: number; local: string; vtepIndex: number }): string | undefined {
  if (link.kind !== 'vxlan' || link.vxlan === undefined) return `link type ${link.kind ?? 'unknown'}`;
  const v = link.vxlan;
  if (v.vni !== want.vni) return `vni ${v.vni} vs ${want.vni}`;
  if (v.port !== 0 && v.port !== want.port) return `port ${v.port} vs ${want.port}`;
  if (v.local !== undefined && formatIp(v.local) !== want.local) return `local ${formatIp(v.local)} vs ${want.local}`;
  if (v.vtepIndex !== undefined && v.vtepIndex !== want.vtepIndex) return `vtep device #${v.vtepIndex} vs #${want.vtepIndex}`;
  if (v.learning) return 'learning on';
  return undefined;
}

async function ensureDevice(nl: Rtnl, lease: OverlayLease, log: { warn(msg: string, f?: Record<string, unknown>): void }): Promise<{ link: Link; mtu: number }> {
  const under = await underlayLink(nl, lease.publicIP);
  const mtu = under.mtu - vxlanDefaults.encapOverhead;
  const name = vxlanDefaults.device;
  const want = { vni: vxlanDefaults.vni, port: vxlanDefaults.port, local: formatIp(lease.publicIP), vtepIndex: under.index };
  let link = await getLinkByName(nl, name);
  if (link !== undefined) {
    const why = vxlanIncompatibility(link, want);
    if (why !== undefined) {
      log.warn('the VXLAN device exists with an incompatible configuration; recreating it', { device: name, why });
      await deleteLink(nl, link.index);
      link = undefined;
    }
  }
  if (link === undefined) {
    try {
      await createVxlan(nl, { name, vni: want.vni, port: want.port, local: lease.publicIP, vtepIndex: under.index, learning: false, mtu });
    } catch (err) {
      if (!isNetlinkErrno(err, 'EEXIST')) throw err;
    }
    link = await getLinkByName(nl, name);
    if (link === undefined) throw new KnodeError('OVERLAY_DEVICE_MISSING', `${name} was created but cannot be found`);
  }
  if (link.mtu !== mtu) await setMtu(nl, link.index, mtu);
  // Exactly one IPv4 address: <subnet>.0/32.
  const address = { ip: networkOf(lease.subnet), prefix: 32 };
  const addrs = await listAddresses(nl, { index: link.index, family: 4 });
  for (const a of addrs) if (!(ipEqual(a.net.ip, address.ip) && a.net.prefix === 32)) await delAddress(nl, link.index, a.net);
  if (!addrs.some((a) => ipEqual(a.net.ip, address.ip) && a.net.prefix === 32)) await addAddress(nl, link.index, address, { replace: true });
  if (!link.up) await setLinkUp(nl, link.index);
  return { link, mtu };
}

async function readState(nl: Rtnl, index: number): Promise<VxlanState> {
  // One dump at a time: a socket does not interleave multipart replies.
  const neigh = await listNeighbours(nl, { index, family: 4 });
  const fdb = await listFdb(nl, { index });
  const routes = await listRoutes(nl, { family: 4 });
  return {
    neighbours: neigh.filter((n) => n.permanent).map((n) => ({ ip: n.ip, mac: n.mac })),
    fdb: fdb.filter((f) => f.dst !== undefined && f.mac !== '00:00:00:00:00:00').map((f) => ({ mac: f.mac, dst: f.dst! })),
    routes: routes.filter((r) => r.oif === index && r.gw !== undefined).map((r) => ({ dst: r.dst, gw: r.gw! })),
  };
}

async function applyOp(nl: Rtnl, index: number, o: VxlanOp): Promise<void> {
  const gone = (err: unknown): void => {
    if (!isNetlinkErrno(err, 'ENOENT', 'ESRCH', 'ENODEV')) throw err;
  };
  switch (o.op) {
    case 'del-route':
      return delRoute(nl, { dst: o.route.dst, gw: o.route.gw, oif: index, onlink: true, protocol: 0 }).catch(gone);
    case 'del-fdb':
      return delFdb(nl, { index, mac: o.fdb.mac, dst: o.fdb.dst }).catch(gone);
    case 'del-neigh':
      return delNeighbour(nl, { index, ip: o.neighbour.ip }).catch(gone);
    case 'set-neigh':
      return setNeighbour(nl, { index, ip: o.neighbour.ip, mac: o.neighbour.mac });
    case 'set-fdb':
      return setFdb(nl, { index, mac: o.fdb.mac, dst: o.fdb.dst });
    case 'set-route':
      return replaceRoute(nl, { dst: o.route.dst, gw: o.route.gw, oif: index, onlink: true, scope: RT_SCOPE_UNIVERSE });
  }
}

export const createVxlanBackend: OverlayBackendFactory = (opts) => {
  let nl: Rtnl | undefined;
  const sock = (): Rtnl => (nl ??= openRtnl(opts.netnsPath));
  let index: number | undefined;
  const backend = {
    type: 'vxlan' as const,
    async setUp(lease: OverlayLease): Promise<OverlaySetUp> {
      const { link, mtu } = await ensureDevice(sock(), lease, opts.logger);
      index = link.index;
      return {
        annotations: renderAnnotations({ backendType: 'vxlan', backendData: { VNI: vxlanDefaults.vni, VtepMAC: link.mac }, publicIP: formatIp(lease.publicIP) }),
        mtu,
      };
    },
    async sync(lease: OverlayLease, nodes: readonly V1Node[]): Promise<OverlaySyncReport> {
      if (index === undefined) await backend.setUp(lease);
      const ifindex = index!;
      const peers = vxlanPeers(nodes, lease.nodeName);
      const ops = planVxlan(await readState(sock(), ifindex), peers);
      const report: OverlaySyncReport = { programmed: [], removed: [] };
      for (const o of ops) {
        try {
          await applyOp(sock(), ifindex, o);
        } catch (err) {
          // The device went away under us: set it up again on the next sync.
          if (isNetlinkErrno(err, 'ENODEV')) index = undefined;
          throw err;
        }
        if (o.op === 'set-route') report.programmed.push(o.node);
        else if (o.op.startsWith('del-')) report.removed.push(describeVxlanOp(o));
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

/**
 * Routes over rtnetlink (main table unless told otherwise; IPv4 and IPv6 alike).
 */
import { attr, u32 } from './attrs.js';
import { formatIpNet, ipFromBuffer, ipToBuffer, networkOf } from './ip.js';
import type { Ip, IpNet } from './ip.js';
import { NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, RTM } from './socket.js';
import type { Rtnl } from './socket.js';
import { netlinkModule } from './native.js';

const AF_INET = 2;
const AF_INET6 = 10;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_TABLE = 15;
const RTN_UNICAST = 1;
const RTPROT_BOOT = 3;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254;
export const RT_TABLE_MAIN = 254;
const RTNH_F_ONLINK = 4;

export interface Route {
  /** Destination; prefix 0 is the default route. */
  dst: IpNet;
  gw?: Ip;
  /** Output link index. */
  oif?: number;
  priority?: number;
  table?: number;
  /** Defaults to link scope without a gateway, universe with one. */
  scope?: number;
  /** The gateway is on the link even if no address covers it (RTNH_F_ONLINK). */
  onlink?: boolean;
  /** rtm_protocol: who made the route (default RTPROT_BOOT); a daemon tags its own routes with a number of its own. */
  protocol?: number;
}

function rtmsg(r: Route): Buffer {
  const b = Buffer.alloc(12);
  const table = r.table ?? RT_TABLE_MAIN;
  b.writeUInt8(r.dst.ip.family === 4 ? AF_INET : AF_INET6, 0);
  b.writeUInt8(r.dst.prefix, 1);
  b.writeUInt8(0, 2);
  b.writeUInt8(0, 3);
  b.writeUInt8(table < 256 ? table : 0, 4);
  b.writeUInt8(r.protocol ?? RTPROT_BOOT, 5);
  b.writeUInt8(r.scope ?? (r.gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK), 6);
  b.writeUInt8(RTN_UNICAST, 7);
  b.writeUInt32LE(r.onlink ? RTNH_F_ONLINK : 0, 8);
  return b;
}

function routeAttrs(r: Route): Buffer[] {
  const out: Buffer[] = [];
  if (r.dst.prefix > 0) out.push(attr(RTA_DST, ipToBuffer(networkOf(r.dst))));
  if (r.gw) out.push(attr(RTA_GATEWAY, ipToBuffer(r.gw)));
  if (r.oif !== undefined) out.push(attr(RTA_OIF, u32(r.oif)));
  if (r.priority !== undefined) out.push(attr(RTA_PRIORITY, u32(r.priority)));
  const table = r.table ?? RT_TABLE_MAIN;
  if (table >= 256) out.push(attr(RTA_TABLE, u32(table)));
  return out;
}

/** Add a route (EEXIST if an identical one exists). */
export async function addRoute(nl: Rtnl, r: Route): Promise<void> {
  await nl.request(`add route ${formatIpNet(r.dst)}`, RTM.NEWROUTE, [rtmsg(r), ...routeAttrs(r)], NLM_F_CREATE | NLM_F_EXCL);
}

/** Add or replace the route to `dst`. */
export async function replaceRoute(nl: Rtnl, r: Route): Promise<void> {
  await nl.request(`replace route ${formatIpNet(r.dst)}`, RTM.NEWROUTE, [rtmsg(r), ...routeAttrs(r)], NLM_F_CREATE | NLM_F_REPLACE);
}

export async function delRoute(nl: Rtnl, r: Route): Promise<void> {
  await nl.request(`delete route ${formatIpNet(r.dst)}`, RTM.DELROUTE, [rtmsg(r), ...routeAttrs(r)]);
}

/** Routes of the main table (or `table`), optionally one family. */
export async function listRoutes(nl: Rtnl, filter: { family?: 4 | 6; table?: number } = {}): Promise<Route[]> {
  const families = filter.family ? [filter.family] : ([4, 6] as const);
  const wantTable = filter.table ?? RT_TABLE_MAIN;
  const out: Route[] = [];
  for (const family of families) {
    const head = Buffer.alloc(12);
    head.writeUInt8(family === 4 ? AF_INET : AF_INET6, 0);
    const msgs = await nl.request('list routes', RTM.GETROUTE, [head], NLM_F_DUMP);
    for (const m of msgs) {
      if (m.kind !== 'route') continue;
      const table = m.attrs.table ?? m.data.table ?? 0;
      if (table !== wantTable) continue;
      const dstIp = m.attrs.dst ? ipFromBuffer(m.attrs.dst) : { family, value: 0n };
      if (!dstIp) continue;
      const route: Route = { dst: { ip: dstIp, prefix: m.data.dstLen ?? 0 }, table };
      const gw = m.attrs.gateway ? ipFromBuffer(m.attrs.gateway) : undefined;
      if (gw) route.gw = gw;
      if (m.attrs.oif !== undefined) route.oif = m.attrs.oif;
      if (m.attrs.priority !== undefined) route.priority = m.attrs.priority;
      const protocol = m.data.protocol;
      route.protocol = typeof protocol === 'number' ? protocol : protocol === undefined ? 0 : netlinkModule().rt.RouteProtocol[protocol];
      if (((m.data.flags?.__unknown ?? 0) & RTNH_F_ONLINK) !== 0) route.onlink = true;
      const scope = m.data.scope;
      route.scope = typeof scope === 'number' ? scope : RT_SCOPE_UNIVERSE;
      out.push(route);
    }
  }
  return out;
}

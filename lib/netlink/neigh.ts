/**
 * Neighbours (ARP/NDP entries) and bridge/VXLAN forwarding-database (FDB) entries over rtnetlink,
 * for the VXLAN overlay (flannel's layout: a permanent neighbour per remote VTEP, an FDB entry
 * mapping the remote VTEP's MAC to its underlay IP).
 *
 * Design notes
 * - Both are RTM_NEWNEIGH/DELNEIGH/GETNEIGH messages: a neighbour has the IP family
 *   (AF_INET/AF_INET6), an FDB entry family AF_BRIDGE with NTF_SELF (the entry belongs to the
 *   VXLAN device itself, not to a bridge it is enslaved to) and NDA_DST = the remote underlay IP.
 * - `set*` use NLM_F_CREATE|NLM_F_REPLACE, so they are idempotent (`ip neigh replace`,
 *   `bridge fdb replace`); `del*` raise NetlinkError ENOENT when the entry is gone (callers decide).
 * - Lists dump the whole table and filter here (no kernel-side strict filtering needed).
 */
import { attr } from './attrs.js';
import { formatIp, ipFromBuffer, ipToBuffer } from './ip.js';
import type { Ip } from './ip.js';
import { formatMac, parseMac } from './links.js';
import { NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, RTM } from './socket.js';
import type { Rtnl } from './socket.js';

const AF_INET = 2;
const AF_INET6 = 10;
const AF_BRIDGE = 7;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const NUD_PERMANENT = 0x80;
const NTF_SELF = 0x02;
const RTN_UNICAST = 1;

export interface Neighbour {
  index: number;
  ip: Ip;
  mac: string;
  permanent: boolean;
}

export interface FdbEntry {
  index: number;
  mac: string;
  /** NDA_DST: the remote underlay IP (VXLAN), if any. */
  dst: Ip | undefined;
  permanent: boolean;
  self: boolean;
}

function ndmsg(o: { family: number; index: number; state?: number; flags?: number; type?: number }): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(o.family, 0);
  b.writeInt32LE(o.index, 4);
  b.writeUInt16LE(o.state ?? 0, 8);
  b.writeUInt8(o.flags ?? 0, 10);
  b.writeUInt8(o.type ?? 0, 11);
  return b;
}

function familyOf(ip: Ip): number {
  return ip.family === 4 ? AF_INET : AF_INET6;
}

/** Add or replace a permanent neighbour `ip` → `mac` on link `index` (`ip neigh replace … nud permanent`). */
export async function setNeighbour(nl: Rtnl, n: { index: number; ip: Ip; mac: string }): Promise<void> {
  await nl.request(`set neighbour ${formatIp(n.ip)} on #${n.index}`, RTM.NEWNEIGH, [
    ndmsg({ family: familyOf(n.ip), index: n.index, state: NUD_PERMANENT, type: RTN_UNICAST }),
    attr(NDA_DST, ipToBuffer(n.ip)),
    attr(NDA_LLADDR, parseMac(n.mac)),
  ], NLM_F_CREATE | NLM_F_REPLACE);
}

export async function delNeighbour(nl: Rtnl, n: { index: number; ip: Ip }): Promise<void> {
  await nl.request(`delete neighbour ${formatIp(n.ip)} on #${n.index}`, RTM.DELNEIGH, [
    ndmsg({ family: familyOf(n.ip), index: n.index }),
    attr(NDA_DST, ipToBuffer(n.ip)),
  ]);
}

/** Neighbours of one family, optionally of one link. */
export async function listNeighbours(nl: Rtnl, filter: { index?: number; family?: 4 | 6 } = {}): Promise<Neighbour[]> {
  const out: Neighbour[] = [];
  for (const family of filter.family ? [filter.family] : ([4, 6] as const)) {
    const msgs = await nl.request('list neighbours', RTM.GETNEIGH, [ndmsg({ family: family === 4 ? AF_INET : AF_INET6, index: 0 })], NLM_F_DUMP);
    for (const m of msgs) {
      if (m.kind !== 'neighbor') continue;
      const index = m.data.ifindex ?? 0;
      if (filter.index !== undefined && index !== filter.index) continue;
      const ip = m.attrs.dst ? ipFromBuffer(m.attrs.dst) : undefined;
      if (!ip || ip.family !== family) continue;
      out.push({ index, ip, mac: formatMac(m.attrs.lladdr), permanent: m.data.state?.permanent === true });
    }
  }
  return out;
}

/** Add or replace a permanent FDB entry `mac` → `dst` on link `index` (`bridge fdb replace … self permanent`). */
export async function setFdb(nl: Rtnl, f: { index: number; mac: string; dst: Ip }): Promise<void> {
  await nl.request(`set fdb ${f.mac} on #${f.index}`, RTM.NEWNEIGH, [
    ndmsg({ family: AF_BRIDGE, index: f.index, state: NUD_PERMANENT, flags: NTF_SELF }),
    attr(NDA_LLADDR, parseMac(f.mac)),
    attr(NDA_DST, ipToBuffer(f.dst)),
  ], NLM_F_CREATE | NLM_F_REPLACE);
}

export async function delFdb(nl: Rtnl, f: { index: number; mac: string; dst?: Ip }): Promise<void> {
  const attrs = [attr(NDA_LLADDR, parseMac(f.mac))];
  if (f.dst) attrs.push(attr(NDA_DST, ipToBuffer(f.dst)));
  await nl.request(`delete fdb ${f.mac} on #${f.index}`, RTM.DELNEIGH, [ndmsg({ family: AF_BRIDGE, index: f.index, flags: NTF_SELF }), ...attrs]);
}

/** FDB entries (AF_BRIDGE dump), optionally of one link. */
export async function listFdb(nl: Rtnl, filter: { index?: number } = {}): Promise<FdbEntry[]> {
  const msgs = await nl.request('list fdb', RTM.GETNEIGH, [ndmsg({ family: AF_BRIDGE, index: 0 })], NLM_F_DUMP);
  const out: FdbEntry[] = [];
  for (const m of msgs) {
    if (m.kind !== 'neighbor' || m.data.family !== AF_BRIDGE) continue;
    const index = m.data.ifindex ?? 0;
    if (filter.index !== undefined && index !== filter.index) continue;
    out.push({
      index,
      mac: formatMac(m.attrs.lladdr),
      dst: m.attrs.dst ? ipFromBuffer(m.attrs.dst) : undefined,
      permanent: m.data.state?.permanent === true,
      self: m.data.flags?.self === true,
    });
  }
  return out;
}

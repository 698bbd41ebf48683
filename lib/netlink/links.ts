/**
 * Links over rtnetlink: lookup, bridge, veth and VXLAN creation, up/down, MTU, MAC, master,
 * namespace moves, hairpin, promiscuous mode, deletion. Every message is one request; idempotency
 * (EEXIST/ENODEV tolerance) is the caller's choice through `isNetlinkErrno`.
 */
import { attr, cstr, ifinfomsg, parseAttrs, readCstr, u32, u8 } from './attrs.js';
import { ipFromBuffer, ipToBuffer } from './ip.js';
import type { Ip } from './ip.js';
import { NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, RTM, isNetlinkErrno } from './socket.js';
import type { Rtnl, RtMessage } from './socket.js';

const IFF_UP = 0x1;
const IFF_PROMISC = 0x100;
const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_MASTER = 10;
const IFLA_PROTINFO = 12;
const IFLA_LINKINFO = 18;
const IFLA_NET_NS_FD = 28;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
const IFLA_BRPORT_MODE = 4;
const AF_BRIDGE = 7;
const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_LINK = 3;
const IFLA_VXLAN_LOCAL = 4;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PORT = 15;

/** The VXLAN part of a link (IFLA_INFO_DATA of kind vxlan). */
export interface VxlanInfo {
  vni: number;
  /** UDP destination port (0 = the kernel default). */
  port: number;
  local: Ip | undefined;
  /** Index of the underlay device (IFLA_VXLAN_LINK), if pinned. */
  vtepIndex: number | undefined;
  learning: boolean;
}

export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND: 'bridge', 'veth', 'vxlan', … (undefined for physical/loopback). */
  kind: string | undefined;
  mtu: number;
  mac: string;
  up: boolean;
  promisc: boolean;
  master: number | undefined;
  /** IFLA_LINK: the peer's index for a veth (in the peer's namespace). */
  peerIndex: number | undefined;
  /** IFLA_LINK_NETNSID: set when the peer lives in another namespace. */
  linkNetnsid: number | undefined;
  /** Set for kind 'vxlan'. */
  vxlan: VxlanInfo | undefined;
}

function parseVxlanInfo(data: Buffer | undefined): VxlanInfo | undefined {
  if (!data) return undefined;
  const a = parseAttrs(data);
  const local = a.get(IFLA_VXLAN_LOCAL);
  const port = a.get(IFLA_VXLAN_PORT);
  const link = a.get(IFLA_VXLAN_LINK);
  return {
    vni: a.get(IFLA_VXLAN_ID)?.readUInt32LE(0) ?? 0,
    port: port && port.length >= 2 ? port.readUInt16BE(0) : 0,
    local: local ? ipFromBuffer(local) : undefined,
    vtepIndex: link && link.length >= 4 && link.readUInt32LE(0) !== 0 ? link.readUInt32LE(0) : undefined,
    learning: (a.get(IFLA_VXLAN_LEARNING)?.[0] ?? 1) !== 0,
  };
}

export function formatMac(b: Uint8Array | undefined): string {
  if (!b) return '';
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export function parseMac(text: string): Buffer {
  const parts = text.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new TypeError(`invalid MAC ${text}`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

function toLink(m: RtMessage): Link | undefined {
  if (m.kind !== 'link') return undefined;
  const a = m.attrs;
  const info = a.linkinfo ? parseAttrs(a.linkinfo) : undefined;
  const kind = readCstr(info?.get(IFLA_INFO_KIND));
  return {
    index: m.data.index ?? 0,
    name: a.ifname ?? '',
    kind,
    mtu: a.mtu ?? 0,
    mac: formatMac(a.address),
    up: m.data.flags?.up === true,
    promisc: m.data.flags?.promisc === true,
    master: a.master || undefined,
    peerIndex: a.link && a.link.length >= 4 ? a.link.readUInt32LE(0) : undefined,
    linkNetnsid: a.linkNetnsid,
    vxlan: kind === 'vxlan' ? parseVxlanInfo(info?.get(IFLA_INFO_DATA)) : undefined,
  };
}

export async function listLinks(nl: Rtnl): Promise<Link[]> {
  const msgs = await nl.request('list links', RTM.GETLINK, [ifinfomsg()], NLM_F_DUMP);
  return msgs.map(toLink).filter((l): l is Link => l !== undefined);
}

/** The link named `name`, or undefined. */
export async function getLinkByName(nl: Rtnl, name: string): Promise<Link | undefined> {
  try {
    const msgs = await nl.request(`get link ${name}`, RTM.GETLINK, [ifinfomsg(), attr(IFLA_IFNAME, cstr(name))]);
    return msgs.map(toLink).find((l) => l !== undefined);
  } catch (err) {
    if (isNetlinkErrno(err, 'ENODEV', 'ENOENT')) return undefined;
    throw err;
  }
}

export async function getLinkByIndex(nl: Rtnl, index: number): Promise<Link | undefined> {
  try {
    const msgs = await nl.request(`get link #${index}`, RTM.GETLINK, [ifinfomsg({ index })]);
    return msgs.map(toLink).find((l) => l !== undefined);
  } catch (err) {
    if (isNetlinkErrno(err, 'ENODEV', 'ENOENT')) return undefined;
    throw err;
  }
}

/** Create a bridge (EEXIST when a link of that name exists). */
export async function createBridge(nl: Rtnl, opts: { name: string; mtu?: number }): Promise<void> {
  const attrs = [attr(IFLA_IFNAME, cstr(opts.name)), attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, cstr('bridge')))];
  if (opts.mtu) attrs.push(attr(IFLA_MTU, u32(opts.mtu)));
  await nl.request(`create bridge ${opts.name}`, RTM.NEWLINK, [ifinfomsg(), ...attrs], NLM_F_CREATE | NLM_F_EXCL);
}

/** Create a dummy link (EEXIST when a link of that name exists), e.g. knode-proxy's kube-ipvs0. */
export async function createDummy(nl: Rtnl, opts: { name: string }): Promise<void> {
  const attrs = [attr(IFLA_IFNAME, cstr(opts.name)), attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, cstr('dummy')))];
  await nl.request(`create dummy ${opts.name}`, RTM.NEWLINK, [ifinfomsg(), ...attrs], NLM_F_CREATE | NLM_F_EXCL);
}

export interface VxlanOptions {
  name: string;
  vni: number;
  /** UDP destination port (flannel: 8472). */
  port: number;
  /** Source address of the encapsulated packets (the node's underlay IP). */
  local: Ip;
  /** Underlay device index (IFLA_VXLAN_LINK). */
  vtepIndex?: number;
  /** MAC learning (flannel: off; it programs the FDB itself). */
  learning: boolean;
  mtu?: number;
  mac?: string;
}

/** Create a VXLAN device (EEXIST when a link of that name exists), as `ip link add … type vxlan`. */
export async function createVxlan(nl: Rtnl, o: VxlanOptions): Promise<void> {
  const port = Buffer.alloc(2);
  port.writeUInt16BE(o.port, 0);
  const data = [attr(IFLA_VXLAN_ID, u32(o.vni)), attr(IFLA_VXLAN_LOCAL, ipToBuffer(o.local)), attr(IFLA_VXLAN_LEARNING, u8(o.learning ? 1 : 0)), attr(IFLA_VXLAN_PORT, port)];
  if (o.vtepIndex !== undefined) data.push(attr(IFLA_VXLAN_LINK, u32(o.vtepIndex)));
  const attrs = [attr(IFLA_IFNAME, cstr(o.name)), attr(IFLA_LINKINFO, [attr(IFLA_INFO_KIND, cstr('vxlan')), attr(IFLA_INFO_DATA, data, true)], true)];
  if (o.mtu) attrs.push(attr(IFLA_MTU, u32(o.mtu)));
  if (o.mac) attrs.push(attr(IFLA_ADDRESS, parseMac(o.mac)));
  await nl.request(`create vxlan ${o.name}`, RTM.NEWLINK, [ifinfomsg(), ...attrs], NLM_F_CREATE | NLM_F_EXCL);
}

export interface VethOptions {
  /** Name of the end created in this socket's namespace. */
  name: string;
  peerName: string;
  /** fd of the namespace the peer is created in (lib/netns.ts openNetnsFd); omit for same namespace. */
  peerNetnsFd?: number;
  mtu?: number;
  peerMac?: string;
}

/** Create a veth pair, the peer directly inside another namespace (no move afterwards). */
export async function createVeth(nl: Rtnl, opts: VethOptions): Promise<void> {
  const peerAttrs = [attr(IFLA_IFNAME, cstr(opts.peerName))];
  if (opts.peerNetnsFd !== undefined) peerAttrs.push(attr(IFLA_NET_NS_FD, u32(opts.peerNetnsFd)));
  if (opts.mtu) peerAttrs.push(attr(IFLA_MTU, u32(opts.mtu)));
  if (opts.peerMac) peerAttrs.push(attr(IFLA_ADDRESS, parseMac(opts.peerMac)));
  const info = [
    attr(IFLA_INFO_KIND, cstr('veth')),
    attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, [ifinfomsg(), ...peerAttrs], true), true),
  ];
  const attrs = [attr(IFLA_IFNAME, cstr(opts.name)), attr(IFLA_LINKINFO, info, true)];
  if (opts.mtu) attrs.push(attr(IFLA_MTU, u32(opts.mtu)));
  await nl.request(`create veth ${opts.name}`, RTM.NEWLINK, [ifinfomsg(), ...attrs], NLM_F_CREATE | NLM_F_EXCL);
}

async function setLink(nl: Rtnl, op: string, index: number, head: { flags?: number; change?: number }, attrs: Buffer[] = []): Promise<void> {
  await nl.request(op, RTM.SETLINK, [ifinfomsg({ index, ...head }), ...attrs]);
}

export function setLinkUp(nl: Rtnl, index: number): Promise<void> {
  return setLink(nl, `set link #${index} up`, index, { flags: IFF_UP, change: IFF_UP });
}

export function setLinkDown(nl: Rtnl, index: number): Promise<void> {
  return setLink(nl, `set link #${index} down`, index, { flags: 0, change: IFF_UP });
}

export function setPromisc(nl: Rtnl, index: number, on: boolean): Promise<void> {
  return setLink(nl, `set link #${index} promisc ${on}`, index, { flags: on ? IFF_PROMISC : 0, change: IFF_PROMISC });
}

export function setMtu(nl: Rtnl, index: number, mtu: number): Promise<void> {
  return setLink(nl, `set link #${index} mtu`, index, {}, [attr(IFLA_MTU, u32(mtu))]);
}

export function setMac(nl: Rtnl, index: number, mac: string): Promise<void> {
  return setLink(nl, `set link #${index} mac`, index, {}, [attr(IFLA_ADDRESS, parseMac(mac))]);
}

/** Enslave to a bridge (masterIndex 0 releases). */
export function setMaster(nl: Rtnl, index: number, masterIndex: number): Promise<void> {
  return setLink(nl, `set link #${index} master`, index, {}, [attr(IFLA_MASTER, u32(masterIndex))]);
}

/** Move a link to the namespace behind `netnsFd`. */
export function setNetns(nl: Rtnl, index: number, netnsFd: number): Promise<void> {
  return setLink(nl, `move link #${index} to netns`, index, {}, [attr(IFLA_NET_NS_FD, u32(netnsFd))]);
}

/** Bridge-port hairpin mode (IFLA_BRPORT_MODE in a nested AF_BRIDGE IFLA_PROTINFO). */
export async function setHairpin(nl: Rtnl, index: number, on: boolean): Promise<void> {
  await nl.request(`set hairpin #${index}`, RTM.SETLINK, [
    ifinfomsg({ family: AF_BRIDGE, index }),
    attr(IFLA_PROTINFO, attr(IFLA_BRPORT_MODE, u8(on ? 1 : 0)), true),
  ]);
}

/** Read the bridge-port hairpin flag (AF_BRIDGE dump of the port). */
export async function getHairpin(nl: Rtnl, index: number): Promise<boolean | undefined> {
  const msgs = await nl.request(`get bridge port #${index}`, RTM.GETLINK, [ifinfomsg({ family: AF_BRIDGE })], NLM_F_DUMP);
  for (const m of msgs) {
    if (m.kind !== 'link' || m.data.index !== index || !m.attrs.protinfo) continue;
    const mode = m.attrs.protinfo.get(IFLA_BRPORT_MODE);
    return mode ? mode[0] === 1 : undefined;
  }
  return undefined;
}

export async function deleteLink(nl: Rtnl, index: number): Promise<void> {
  await nl.request(`delete link #${index}`, RTM.DELLINK, [ifinfomsg({ index })]);
}

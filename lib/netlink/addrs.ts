/**
 * Addresses over rtnetlink (IPv4 and IPv6 through the same code: the family comes from the IP).
 */
import { attr, u32 } from './attrs.js';
import { formatIp, ipFromBuffer, ipToBuffer, lastOf } from './ip.js';
import type { IpNet } from './ip.js';
import { NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, RTM } from './socket.js';
import type { Rtnl } from './socket.js';

const AF_INET = 2;
const AF_INET6 = 10;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_BROADCAST = 4;
const IFA_FLAGS = 8;
export const IFA_F_NODAD = 0x02;
export const IFA_F_PERMANENT = 0x80;

export interface Address {
  index: number;
  /** Address with its prefix (host bits kept). */
  net: IpNet;
  scope: number;
}

function afOf(net: IpNet): number {
  return net.ip.family === 4 ? AF_INET : AF_INET6;
}

function ifaddrmsg(family: number, prefix: number, index: number, scope = 0): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(family, 0);
  b.writeUInt8(prefix, 1);
  b.writeUInt8(0, 2);
  b.writeUInt8(scope, 3);
  b.writeUInt32LE(index, 4);
  return b;
}

export interface AddAddressOptions {
  /** Skip duplicate address detection (IPv6), so the address is usable at once. */
  noDad?: boolean;
  /** Replace an existing identical address instead of failing with EEXIST. */
  replace?: boolean;
}

export async function addAddress(nl: Rtnl, index: number, net: IpNet, opts: AddAddressOptions = {}): Promise<void> {
  const ip = ipToBuffer(net.ip);
  const attrs = [attr(IFA_LOCAL, ip), attr(IFA_ADDRESS, ip)];
  if (net.ip.family === 4 && net.prefix < 31) attrs.push(attr(IFA_BROADCAST, ipToBuffer(lastOf(net))));
  if (opts.noDad && net.ip.family === 6) attrs.push(attr(IFA_FLAGS, u32(IFA_F_NODAD)));
  const flags = NLM_F_CREATE | (opts.replace ? NLM_F_REPLACE : NLM_F_EXCL);
  await nl.request(`add address ${formatIp(net.ip)}/${net.prefix}`, RTM.NEWADDR, [ifaddrmsg(afOf(net), net.prefix, index), ...attrs], flags);
}

export async function delAddress(nl: Rtnl, index: number, net: IpNet): Promise<void> {
  const ip = ipToBuffer(net.ip);
  await nl.request(`delete address ${formatIp(net.ip)}/${net.prefix}`, RTM.DELADDR, [
    ifaddrmsg(afOf(net), net.prefix, index),
    attr(IFA_LOCAL, ip),
    attr(IFA_ADDRESS, ip),
  ]);
}

/** Addresses, optionally of one link and/or one family. */
export async function listAddresses(nl: Rtnl, filter: { index?: number; family?: 4 | 6 } = {}): Promise<Address[]> {
  const family = filter.family === 4 ? AF_INET : filter.family === 6 ? AF_INET6 : 0;
  const msgs = await nl.request('list addresses', RTM.GETADDR, [ifaddrmsg(family, 0, 0)], NLM_F_DUMP);
  const out: Address[] = [];
  for (const m of msgs) {
    if (m.kind !== 'address') continue;
    const index = m.data.index ?? 0;
    if (filter.index !== undefined && index !== filter.index) continue;
    const raw = m.attrs.local ?? m.attrs.address;
    const ip = raw ? ipFromBuffer(raw) : undefined;
    if (!ip) continue;
    if (filter.family !== undefined && ip.family !== filter.family) continue;
    out.push({ index, net: { ip, prefix: m.data.prefixlen ?? 0 }, scope: m.data.scope ?? 0 });
  }
  return out;
}

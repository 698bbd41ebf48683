/**
 * knode-bridge: the reference bridge plugin's behaviour (same options, same result shape, same
 * iptables chains), over rtnetlink.
 *
 * Design notes
 * - Two netlink sockets: one in the plugin's own namespace (the "host", where the bridge lives)
 *   and one bound to CNI_NETNS (lib/netns.ts: opened by a short setns on the main thread, then
 *   used from the host namespace). No code path leaves a thread in the container namespace.
 * - The veth pair is created from the host socket with the peer born directly inside the
 *   container namespace under CNI_IFNAME (IFLA_NET_NS_FD in the peer info): no rename, no move.
 * - ADD keeps a cleanup stack (veth, IPAM reservation); any failure rolls back what was done, so
 *   a failed ADD leaves neither an IP file nor a veth behind.
 * - Container side order: addresses, then arp_notify=1 and accept_dad=0 (one setns), then link
 *   up (the kernel sends the gratuitous ARP for the new addresses on NETDEV_UP because of
 *   arp_notify), then routes. IPv6 addresses are added with IFA_F_NODAD so they are usable when
 *   ADD returns (the reference disables DAD through accept_dad=0 and then polls for it).
 * - Bridge gateway address follows the reference `ensureAddr`: an identical address is fine, a
 *   different IPv4 address (or an overlapping IPv6 one) is the well-known "already has an IP
 *   address different from" error unless forceAddress, which replaces it. The bridge MAC is then
 *   pinned to itself so it does not follow the lowest port MAC as veths come and go.
 * - DEL releases IPAM first and always; the veth and iptables parts tolerate a namespace or
 *   interface that is already gone.
 */
import { closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { openNetnsFd } from '../lib/netns.js';
import {
  Rtnl,
  addAddress,
  addRoute,
  createBridge,
  createVeth,
  delAddress,
  deleteLink,
  getHairpin,
  getLinkByIndex,
  getLinkByName,
  isNetlinkErrno,
  listAddresses,
  listRoutes,
  setHairpin,
  setLinkUp,
  setMac,
  setMaster,
  setPromisc,
  writeSysctl,
} from '../lib/netlink/index.js';
import type { Link } from '../lib/netlink/index.js';
import { contains, formatIp, formatIpNet, ipEqual, networkOf, nextIp, parseIp, parseIpNet } from '../lib/netlink/ip.js';
import type { Family, Ip, IpNet } from '../lib/netlink/ip.js';
import type { CmdArgs, CniPlugin } from './skel.js';
import { CniCode, CniError, isObject, optBool, optInt, optString, validateIfName } from './types.js';
import type { CniIpConfig, CniResult, CniRoute, JsonObject } from './types.js';
import { ipamAdd, ipamCheck, ipamDel, ipamGc } from './ipam/delegate.js';
import { openContainerRtnl, openContainerRtnlIfExists } from './netns-args.js';
import { setupIpMasq, teardownIpMasq } from './ipmasq.js';

export interface BridgeConf {
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  forceAddress: boolean;
  ipMasq: boolean;
  mtu: number | undefined;
  hairpinMode: boolean;
  promiscMode: boolean;
  ipamType: string;
}

/** Parse and validate the bridge plugin's config (pure). */
export function parseBridgeConf(conf: JsonObject): BridgeConf {
  const bridge = optString(conf, 'bridge') || 'cni0';
  try {
    validateIfName(bridge);
  } catch (err) {
    throw new CniError(CniCode.InvalidConfig, `invalid bridge name "${bridge}"`, { cause: err });
  }
  const vlan = optInt(conf, 'vlan', '', 0, 4094);
  if (vlan) throw new CniError(CniCode.UnsupportedField, 'vlan is not supported by knode-bridge yet', { details: 'vlan' });
  for (const field of ['macspoofchk', 'vlanTrunk', 'preserveDefaultVlan']) {
    const v = conf[field];
    if (v !== undefined && v !== null && v !== false && !(Array.isArray(v) && v.length === 0)) {
      throw new CniError(CniCode.UnsupportedField, `${field} is not supported by knode-bridge yet`, { details: field });
    }
  }
  const ipam = conf.ipam;
  if (!isObject(ipam)) throw new CniError(CniCode.InvalidConfig, 'IPAM config missing \'ipam\' key');
  const ipamType = optString(ipam, 'type', 'ipam.');
  if (!ipamType) throw new CniError(CniCode.InvalidConfig, 'ipam.type is required');
  const isDefaultGateway = optBool(conf, 'isDefaultGateway') ?? false;
  return {
    bridge,
    isGateway: (optBool(conf, 'isGateway') ?? false) || isDefaultGateway,
    isDefaultGateway,
    forceAddress: optBool(conf, 'forceAddress') ?? false,
    ipMasq: optBool(conf, 'ipMasq') ?? false,
    mtu: optInt(conf, 'mtu', '', 0, 65535) || undefined,
    hairpinMode: optBool(conf, 'hairpinMode') ?? false,
    promiscMode: optBool(conf, 'promiscMode') ?? false,
    ipamType,
  };
}

function requestedMac(args: CmdArgs): string | undefined {
  const fromArgs = args.args.get('MAC');
  const rc = args.conf.runtimeConfig;
  const fromRc = isObject(rc) && typeof rc.mac === 'string' ? rc.mac : undefined;
  const mac = fromRc ?? fromArgs;
  if (mac !== undefined && !/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(mac)) {
    throw new CniError(CniCode.InvalidConfig, `invalid MAC address "${mac}"`);
  }
  return mac?.toLowerCase();
}

interface PodIp {
  net: IpNet;
  gateway: Ip | undefined;
}

function podIps(ips: CniIpConfig[]): PodIp[] {
  return ips.map((c) => {
    const net = parseIpNet(c.address);
    if (!net) throw new CniError(CniCode.Internal, `IPAM returned an invalid address "${c.address}"`);
    const gateway = c.gateway ? parseIp(c.gateway) : undefined;
    return { net, gateway };
  });
}

/**
 * The result's routes plus, for isDefaultGateway, a default route per family via its gateway
 * unless IPAM already gave one (pure; the reference calcGateways).
 */
export function withDefaultRoutes(routes: CniRoute[], ips: PodIp[], isDefaultGateway: boolean): CniRoute[] {
  const out = [...routes];
  if (!isDefaultGateway) return out;
  for (const family of [4, 6] as const) {
    const gw = ips.find((p) => p.net.ip.family === family && p.gateway)?.gateway;
    if (!gw) continue;
    const dst = family === 4 ? '0.0.0.0/0' : '::/0';
    if (!out.some((r) => r.dst === dst && r.gw !== undefined)) out.push({ dst, gw: formatIp(gw) });
  }
  return out;
}

/** Gateway per IP: the IPAM one, else the subnet's first address (reference calcGatewayIP). */
function gatewaysFor(ips: PodIp[]): PodIp[] {
  return ips.map((p) => ({ net: p.net, gateway: p.gateway ?? nextIp(networkOf(p.net)) }));
}

async function ensureBridge(nl: Rtnl, conf: BridgeConf): Promise<Link> {
  let br = await getLinkByName(nl, conf.bridge);
  if (!br) {
    try {
      const opts: { name: string; mtu?: number } = { name: conf.bridge };
      if (conf.mtu) opts.mtu = conf.mtu;
      await createBridge(nl, opts);
    } catch (err) {
      if (!isNetlinkErrno(err, 'EEXIST')) throw err;
    }
    br = await getLinkByName(nl, conf.bridge);
    if (!br) throw new CniError(CniCode.Internal, `bridge ${conf.bridge} vanished after creation`);
  }
  if (br.kind !== 'bridge') throw new CniError(CniCode.Internal, `"${conf.bridge}" already exists but is not a bridge`);
  if (conf.promiscMode && !br.promisc) await setPromisc(nl, br.index, true);
  if (!br.up) await setLinkUp(nl, br.index);
  return br;
}

async function createVethPair(host: Rtnl, args: CmdArgs, mtu: number | undefined, mac: string | undefined): Promise<string> {
  const fd = openNetnsFd(args.netns);
  try {
    for (let attempt = 0; ; attempt++) {
      const name = `veth${randomBytes(4).toString('hex')}`;
      try {
        const opts: Parameters<typeof createVeth>[1] = { name, peerName: args.ifName, peerNetnsFd: fd };
        if (mtu) opts.mtu = mtu;
        if (mac) opts.peerMac = mac;
        await createVeth(host, opts);
        return name;
      } catch (err) {
        // A random host name collided: try another one (the container side was checked before).
        if (isNetlinkErrno(err, 'EEXIST') && attempt < 8) continue;
        throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** The reference ensureAddr: put gw/prefix on the bridge. */
async function ensureBridgeAddr(nl: Rtnl, br: Link, gw: IpNet, forceAddress: boolean): Promise<void> {
  const addrs = await listAddresses(nl, { index: br.index, family: gw.ip.family });
  for (const a of addrs) {
    if (ipEqual(a.net.ip, gw.ip) && a.net.prefix === gw.prefix) return;
    const conflicts = gw.ip.family === 4 || contains(a.net, gw.ip) || contains(gw, a.net.ip);
    if (!conflicts) continue;
    if (!forceAddress) {
      throw new CniError(CniCode.Internal, `"${br.name}" already has an IP address different from ${formatIpNet(gw)}`);
    }
    await delAddress(nl, br.index, a.net);
  }
  try {
    await addAddress(nl, br.index, gw, { noDad: true });
  } catch (err) {
    if (!isNetlinkErrno(err, 'EEXIST')) throw err;
  }
  const fresh = await getLinkByIndex(nl, br.index);
  if (fresh?.mac) await setMac(nl, br.index, fresh.mac);
}

function routeGateway(route: CniRoute, ips: PodIp[]): Ip | undefined {
  if (route.gw) return parseIp(route.gw);
  const dst = parseIpNet(route.dst);
  return ips.find((p) => p.net.ip.family === dst?.ip.family && p.gateway)?.gateway;
}

async function add(args: CmdArgs): Promise<CniResult> {
  const conf = parseBridgeConf(args.conf);
  const mac = requestedMac(args);
  const host = Rtnl.open();
  const cont = openContainerRtnl(args.netns);
  const undo: (() => Promise<void>)[] = [];
  try {
    if (await getLinkByName(cont, args.ifName)) {
      throw new CniError(CniCode.Internal, `container veth name provided (${args.ifName}) already exists`);
    }
    const br = await ensureBridge(host, conf);
    const hostName = await createVethPair(host, args, conf.mtu, mac);
    const hostVeth = await getLinkByName(host, hostName);
    if (!hostVeth) throw new CniError(CniCode.Internal, `veth ${hostName} vanished after creation`);
    undo.push(async () => {
      try {
        await deleteLink(host, hostVeth.index);
      } catch (err) {
        if (!isNetlinkErrno(err, 'ENODEV', 'ENOENT')) throw err;
      }
    });
    await setMaster(host, hostVeth.index, br.index);
    if (conf.hairpinMode) await setHairpin(host, hostVeth.index, true);
    await setLinkUp(host, hostVeth.index);

    const ipam = await ipamAdd(args, conf.ipamType);
    undo.push(() => ipamDel(args, conf.ipamType));
    if (!ipam.ips?.length) throw new CniError(CniCode.Internal, 'IPAM plugin returned missing IP config');
    let ips = podIps(ipam.ips);
    if (conf.isGateway) ips = gatewaysFor(ips);
    const routes = withDefaultRoutes(ipam.routes ?? [], ips, conf.isDefaultGateway);

    const contVeth = await getLinkByName(cont, args.ifName);
    if (!contVeth) throw new CniError(CniCode.Internal, `container interface ${args.ifName} not found after creation`);
    for (const p of ips) await addAddress(cont, contVeth.index, p.net, { noDad: true });
    const hasV6 = ips.some((p) => p.net.ip.family === 6);
    try {
      writeSysctl(`net/ipv4/conf/${args.ifName}/arp_notify`, '1', args.netns);
      if (hasV6) writeSysctl(`net/ipv6/conf/${args.ifName}/accept_dad`, '0', args.netns);
    } catch (err) {
      args.log.warn('container sysctl failed', { err });
    }
    await setLinkUp(cont, contVeth.index);
    for (const r of routes) {
      const dst = parseIpNet(r.dst);
      if (!dst) throw new CniError(CniCode.Internal, `invalid route destination "${r.dst}"`);
      const gw = routeGateway(r, ips);
      const route: Parameters<typeof addRoute>[1] = { dst: { ip: networkOf(dst), prefix: dst.prefix }, oif: contVeth.index };
      if (gw) route.gw = gw;
      if (r.priority !== undefined) route.priority = r.priority;
      try {
        await addRoute(cont, route);
      } catch (err) {
        throw new CniError(CniCode.Internal, `failed to add route '${r.dst} via ${gw ? formatIp(gw) : '-'} dev ${args.ifName}'`, { cause: err });
      }
    }

    if (conf.isGateway) {
      for (const p of ips) {
        if (!p.gateway) continue;
        await ensureBridgeAddr(host, br, { ip: p.gateway, prefix: p.net.prefix }, conf.forceAddress);
      }
      const families = new Set<Family>(ips.map((p) => p.net.ip.family));
      if (families.has(4)) writeSysctl('net/ipv4/ip_forward', '1');
      if (families.has(6)) writeSysctl('net/ipv6/conf/all/forwarding', '1');
    }
    if (conf.ipMasq) {
      undo.push(() => teardownIpMasq(args.name, args.containerId));
      await setupIpMasq(ips.map((p) => p.net), args.name, args.containerId);
    }

    const brNow = (await getLinkByIndex(host, br.index)) ?? br;
    const hostNow = (await getLinkByIndex(host, hostVeth.index)) ?? hostVeth;
    const result: CniResult = {
      cniVersion: args.cniVersion,
      interfaces: [
        { name: brNow.name, mac: brNow.mac },
        { name: hostNow.name, mac: hostNow.mac },
        { name: args.ifName, mac: contVeth.mac, sandbox: args.netns },
      ],
      ips: ips.map((p) => {
        const out: CniIpConfig = { address: formatIpNet(p.net), interface: 2 };
        if (p.gateway) out.gateway = formatIp(p.gateway);
        return out;
      }),
      routes,
      dns: ipam.dns ?? {},
    };
    return result;
  } catch (err) {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (cleanupErr) {
        args.log.warn('rollback step failed', { err: cleanupErr });
      }
    }
    throw err;
  } finally {
    cont.close();
    host.close();
  }
}

async function del(args: CmdArgs): Promise<void> {
  const conf = parseBridgeConf(args.conf);
  await ipamDel(args, conf.ipamType);
  const cont = openContainerRtnlIfExists(args.netns);
  if (cont) {
    try {
      const link = await getLinkByName(cont, args.ifName);
      if (link) {
        try {
          await deleteLink(cont, link.index);
        } catch (err) {
          if (!isNetlinkErrno(err, 'ENODEV', 'ENOENT')) throw err;
        }
      }
    } finally {
      cont.close();
    }
  }
  if (conf.ipMasq) await teardownIpMasq(args.name, args.containerId);
}

async function check(args: CmdArgs): Promise<void> {
  const conf = parseBridgeConf(args.conf);
  const prev = args.prevResult!;
  await ipamCheck(args, conf.ipamType);
  const ifaces = prev.interfaces ?? [];
  const contIdx = ifaces.findIndex((i) => i.name === args.ifName && i.sandbox === args.netns);
  if (contIdx < 0) throw new CniError(CniCode.Internal, `prevResult has no interface ${args.ifName} in ${args.netns}`);
  const host = Rtnl.open();
  const cont = openContainerRtnl(args.netns);
  try {
    const br = await getLinkByName(host, conf.bridge);
    if (!br || br.kind !== 'bridge') throw new CniError(CniCode.Internal, `bridge ${conf.bridge} is missing`);
    const link = await getLinkByName(cont, args.ifName);
    if (!link) throw new CniError(CniCode.Internal, `container interface ${args.ifName} is missing`);
    if (link.kind !== 'veth') throw new CniError(CniCode.Internal, `${args.ifName} is not a veth`);
    const want = ifaces[contIdx]!;
    if (want.mac && want.mac.toLowerCase() !== link.mac) {
      throw new CniError(CniCode.Internal, `${args.ifName} MAC ${link.mac} is not ${want.mac}`);
    }
    if (link.peerIndex === undefined) throw new CniError(CniCode.Internal, `${args.ifName} has no peer`);
    const peer = await getLinkByIndex(host, link.peerIndex);
    if (!peer || peer.master !== br.index) {
      throw new CniError(CniCode.Internal, `the host end of ${args.ifName} is not attached to ${conf.bridge}`);
    }
    if (conf.hairpinMode && (await getHairpin(host, peer.index)) !== true) {
      throw new CniError(CniCode.Internal, `hairpin mode is off on ${peer.name}`);
    }
    const addrs = await listAddresses(cont, { index: link.index });
    for (const ipc of prev.ips ?? []) {
      if (ipc.interface !== contIdx) continue;
      const net = parseIpNet(ipc.address);
      if (!net || !addrs.some((a) => ipEqual(a.net.ip, net.ip) && a.net.prefix === net.prefix)) {
        throw new CniError(CniCode.Internal, `address ${ipc.address} is missing on ${args.ifName}`);
      }
    }
    const routes = await listRoutes(cont);
    const ips = podIps((prev.ips ?? []).filter((i) => i.interface === contIdx));
    for (const r of prev.routes ?? []) {
      const dst = parseIpNet(r.dst);
      if (!dst) continue;
      const gw = routeGateway(r, ips);
      const found = routes.some(
        (x) =>
          x.dst.prefix === dst.prefix &&
          ipEqual(x.dst.ip, networkOf(dst)) &&
          (gw === undefined || ipEqual(x.gw, gw)),
      );
      if (!found) throw new CniError(CniCode.Internal, `route ${r.dst} is missing in the container`);
    }
  } finally {
    cont.close();
    host.close();
  }
}

/**
 * GC (spec 1.1): the IPAM plugin drops reservations of attachments not in
 * cni.dev/valid-attachments. Veths need no GC here: the host end dies with the container's
 * namespace.
 */
async function gc(args: CmdArgs): Promise<void> {
  const conf = parseBridgeConf(args.conf);
  await ipamGc(args, conf.ipamType);
}

export const bridgePlugin: CniPlugin = {
  name: 'knode-bridge',
  add,
  del,
  check,
  gc,
  status: async () => undefined,
};

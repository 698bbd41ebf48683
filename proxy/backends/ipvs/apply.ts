/**
 * IPVS kernel port: the virtual/real servers (generic netlink, lib/netlink/ipvs.ts), the
 * kube-ipvs0 dummy device and its addresses (rtnetlink, lib/netlink), local addresses for
 * NodePorts, and IPVS mode's sysctls. Sockets open on first use and stay open.
 */
import { isIPv4 } from 'node:net';
import { IpvsSocket, type IpvsDestination, type IpvsService, type IpvsServiceId } from '../../../lib/netlink/ipvs.js';
import {
  Rtnl,
  addAddress,
  createDummy,
  delAddress,
  deleteLink,
  formatIp,
  getLinkByName,
  isNetlinkErrno,
  listAddresses,
  parseIp,
  writeSysctl,
} from '../../../lib/netlink/index.js';
import type { IPFamily } from '../../model.js';

export interface IpvsKernel {
  listServices(): Promise<IpvsService[]>;
  listDestinations(s: IpvsServiceId): Promise<IpvsDestination[]>;
  newService(s: IpvsService): Promise<void>;
  setService(s: IpvsService): Promise<void>;
  delService(s: IpvsServiceId): Promise<void>;
  newDestination(s: IpvsServiceId, d: IpvsDestination): Promise<void>;
  setDestination(s: IpvsServiceId, d: IpvsDestination): Promise<void>;
  delDestination(s: IpvsServiceId, d: IpvsDestination): Promise<void>;
  /** Create the dummy device if missing; its index. */
  ensureDevice(name: string): Promise<number>;
  /** Index of the device, undefined when absent. */
  deviceIndex(name: string): Promise<number | undefined>;
  deleteDevice(name: string): Promise<void>;
  deviceAddresses(index: number, family: IPFamily): Promise<string[]>;
  addDeviceAddress(index: number, ip: string): Promise<void>;
  delDeviceAddress(index: number, ip: string): Promise<void>;
  /** Every local unicast address of the family except the device's own, loopback and link-local. */
  localAddresses(family: IPFamily, exceptIndex: number | undefined): Promise<string[]>;
  /** upstream's IPVS sysctls (net/ipv4/vs/conntrack=1 …). */
  ensureSysctls(): void;
  close(): void;
}

const SYSCTLS: readonly (readonly [string, string])[] = [
  ['net/ipv4/vs/conntrack', '1'],
  ['net/ipv4/vs/conn_reuse_mode', '0'],
  ['net/ipv4/vs/expire_nodest_conn', '1'],
  ['net/ipv4/vs/expire_quiescent_template', '1'],
];

export function ipvsKernel(opts: { netnsPath?: string }): IpvsKernel {
  let ipvs: Promise<IpvsSocket> | undefined;
  let rtnl: Rtnl | undefined;
  const sock = (): Promise<IpvsSocket> => {
    ipvs ??= IpvsSocket.open({ netnsPath: opts.netnsPath }).catch((err: unknown) => {
      ipvs = undefined;
      throw err;
    });
    return ipvs;
  };
  const nl = (): Rtnl => (rtnl ??= opts.netnsPath === undefined ? Rtnl.open() : Rtnl.openIn(opts.netnsPath));
  const net = (ip: string) => {
    const parsed = parseIp(ip);
    if (!parsed) throw new TypeError(`invalid IP ${ip}`);
    return { ip: parsed, prefix: parsed.family === 4 ? 32 : 128 };
  };
  return {
    listServices: async () => (await sock()).listServices(),
    listDestinations: async (s) => (await sock()).listDestinations(s),
    newService: async (s) => (await sock()).newService(s),
    setService: async (s) => (await sock()).setService(s),
    delService: async (s) => (await sock()).delService(s),
    newDestination: async (s, d) => (await sock()).newDestination(s, d),
    setDestination: async (s, d) => (await sock()).setDestination(s, d),
    delDestination: async (s, d) => (await sock()).delDestination(s, d),
    async ensureDevice(name) {
      const have = await getLinkByName(nl(), name);
      if (have) return have.index;
      try {
        await createDummy(nl(), { name });
      } catch (err) {
        if (!isNetlinkErrno(err, 'EEXIST')) throw err;
      }
      const link = await getLinkByName(nl(), name);
      if (!link) throw new TypeError(`${name} vanished right after its creation`);
      return link.index;
    },
    async deviceIndex(name) {
      return (await getLinkByName(nl(), name))?.index;
    },
    async deleteDevice(name) {
      const link = await getLinkByName(nl(), name);
      if (!link) return;
      await deleteLink(nl(), link.index);
    },
    async deviceAddresses(index, family) {
      const addrs = await listAddresses(nl(), { index, family: family === 'IPv4' ? 4 : 6 });
      return addrs.map((a) => formatIp(a.net.ip));
    },
    async addDeviceAddress(index, ip) {
      try {
        await addAddress(nl(), index, net(ip), { noDad: true });
      } catch (err) {
        if (!isNetlinkErrno(err, 'EEXIST')) throw err;
      }
    },
    async delDeviceAddress(index, ip) {
      try {
        await delAddress(nl(), index, net(ip));
      } catch (err) {
        if (!isNetlinkErrno(err, 'EADDRNOTAVAIL', 'ENODEV')) throw err;
      }
    },
    async localAddresses(family, exceptIndex) {
      const addrs = await listAddresses(nl(), { family: family === 'IPv4' ? 4 : 6 });
      return addrs
        .filter((a) => a.index !== exceptIndex)
        .map((a) => formatIp(a.net.ip))
        .filter((ip) => (isIPv4(ip) ? !ip.startsWith('127.') && !ip.startsWith('169.254.') : ip !== '::1' && !ip.toLowerCase().startsWith('fe80:')));
    },
    ensureSysctls() {
      for (const [key, value] of SYSCTLS) writeSysctl(key, value, opts.netnsPath);
    },
    close() {
      rtnl?.close();
      rtnl = undefined;
      void ipvs?.then((s) => s.close(), () => undefined);
      ipvs = undefined;
    },
  };
}

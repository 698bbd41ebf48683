/**
 * IPVS over generic netlink (family "IPVS", version 1): virtual services and their real servers.
 *
 * Design notes
 * - Numbers from linux include/uapi/linux/ip_vs.h (IPVS_CMD_*, IPVS_CMD_ATTR_*, IPVS_SVC_ATTR_*,
 *   IPVS_DEST_ATTR_*). Addresses travel as a 16-byte `union nf_inet_addr`, ports in network
 *   order, everything else in host order.
 * - Encoding is pure (`encodeService`, `encodeDest`, `genlRequestBytes`) and unit-tested against
 *   known bytes; `IpvsSocket` only sends. It uses the `netlink` package's NetlinkSocket with
 *   `checkError: false` (the package's GenericNetlinkSocket rejects ERROR replies as text) and
 *   turns kernel errors into `NetlinkError` with an errno name, like the rtnetlink socket.
 * - The family id is resolved once per socket with CTRL_CMD_GETFAMILY; ENOENT there means the
 *   kernel has no IPVS (the ip_vs module is not loaded or not built).
 */
import { isIPv4 } from 'node:net';
import type { NetlinkMessage, NetlinkSocket } from 'netlink';
import { KnodeError } from '../errors.js';
import { withNetnsSync } from '../netns.js';
import { attr, cstr, parseAttrs, readCstr, u32 } from './attrs.js';
import { formatIp, ipFromBuffer, ipToBuffer, parseIp } from './ip.js';
import { netlinkModule } from './native.js';
import { NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkError } from './socket.js';

export const IPVS_GENL_NAME = 'IPVS';
export const IPVS_GENL_VERSION = 1;

export const IPVS_CMD = {
  NEW_SERVICE: 1,
  SET_SERVICE: 2,
  DEL_SERVICE: 3,
  GET_SERVICE: 4,
  NEW_DEST: 5,
  SET_DEST: 6,
  DEL_DEST: 7,
  GET_DEST: 8,
  FLUSH: 17,
} as const;

const IPVS_CMD_ATTR_SERVICE = 1;
const IPVS_CMD_ATTR_DEST = 2;

const SVC = { AF: 1, PROTOCOL: 2, ADDR: 3, PORT: 4, FWMARK: 5, SCHED_NAME: 6, FLAGS: 7, TIMEOUT: 8, NETMASK: 9 } as const;
const DEST = { ADDR: 1, PORT: 2, FWD_METHOD: 3, WEIGHT: 4, U_THRESH: 5, L_THRESH: 6, ACTIVE_CONNS: 7, INACT_CONNS: 8, ADDR_FAMILY: 11 } as const;

/** IP_VS_SVC_F_PERSISTENT: ClientIP affinity ("persistent" in ipvsadm -Ln). */
export const IP_VS_SVC_F_PERSISTENT = 0x0001;
/** IP_VS_CONN_F_MASQ: NAT forwarding (kube-proxy's only method). */
export const IP_VS_CONN_F_MASQ = 0x0000;

const GENL_ID_CTRL = 16;
const CTRL_CMD_GETFAMILY = 3;
const CTRL_ATTR_FAMILY_ID = 1;
const CTRL_ATTR_FAMILY_NAME = 2;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const AF_INET = 2;
const AF_INET6 = 10;

export type IpvsProtocol = 'TCP' | 'UDP' | 'SCTP';
const PROTO_NUMBER: Record<IpvsProtocol, number> = { TCP: 6, UDP: 17, SCTP: 132 };

/** The identity of a virtual service: (address, protocol, port). */
export interface IpvsServiceId {
  address: string;
  protocol: IpvsProtocol;
  port: number;
}

export interface IpvsService extends IpvsServiceId {
  scheduler: string;
  /** IP_VS_SVC_F_* bits (PERSISTENT for ClientIP affinity). */
  flags: number;
  /** Persistence timeout in seconds (0 without persistence). */
  timeout: number;
}

export interface IpvsDestination {
  address: string;
  port: number;
  weight: number;
  /** IP_VS_CONN_F_* forwarding method; kube-proxy uses MASQ. */
  fwdMethod: number;
  activeConns?: number;
  inactiveConns?: number;
}

export function serviceKey(s: IpvsServiceId): string {
  return `${s.protocol}/${isIPv4(s.address) ? s.address : `[${s.address}]`}:${s.port}`;
}

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v, 0);
  return b;
}

function be16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return b;
}

/** union nf_inet_addr: 16 bytes, the IPv4 address in the first four. */
function inetAddr(address: string): { af: number; bytes: Buffer } {
  const ip = parseIp(address);
  if (!ip) throw new KnodeError('IPVS_INVALID', `invalid IP address ${JSON.stringify(address)}`);
  const bytes = Buffer.alloc(16);
  ipToBuffer(ip).copy(bytes);
  return { af: ip.family === 4 ? AF_INET : AF_INET6, bytes };
}

function parseInetAddr(b: Buffer | undefined, af: number): string {
  if (!b) return '';
  const ip = ipFromBuffer(af === AF_INET6 ? b.subarray(0, 16) : b.subarray(0, 4));
  return ip ? formatIp(ip) : '';
}

/** IPVS_CMD_ATTR_SERVICE; `full` adds scheduler, flags, timeout and netmask (NEW/SET_SERVICE). */
export function encodeService(s: IpvsServiceId & Partial<Pick<IpvsService, 'scheduler' | 'flags' | 'timeout'>>, full: boolean): Buffer {
  const { af, bytes } = inetAddr(s.address);
  const attrs = [attr(SVC.AF, u16(af)), attr(SVC.PROTOCOL, u16(PROTO_NUMBER[s.protocol])), attr(SVC.ADDR, bytes), attr(SVC.PORT, be16(s.port))];
  if (full) {
    const flags = Buffer.alloc(8);
    flags.writeUInt32LE((s.flags ?? 0) >>> 0, 0);
    flags.writeUInt32LE(0xffffffff, 4);
    attrs.push(
      attr(SVC.SCHED_NAME, cstr(s.scheduler ?? 'rr')),
      attr(SVC.FLAGS, flags),
      attr(SVC.TIMEOUT, u32(s.timeout ?? 0)),
      attr(SVC.NETMASK, u32(af === AF_INET ? 0xffffffff : 128)),
    );
  }
  return attr(IPVS_CMD_ATTR_SERVICE, attrs, true);
}

/** IPVS_CMD_ATTR_DEST; `full` adds forwarding method, weight and thresholds (NEW/SET_DEST). */
export function encodeDest(d: Pick<IpvsDestination, 'address' | 'port'> & Partial<IpvsDestination>, full: boolean): Buffer {
  const { af, bytes } = inetAddr(d.address);
  const attrs = [attr(DEST.ADDR, bytes), attr(DEST.PORT, be16(d.port))];
  if (full) {
    attrs.push(
      attr(DEST.FWD_METHOD, u32(d.fwdMethod ?? IP_VS_CONN_F_MASQ)),
      attr(DEST.WEIGHT, u32(d.weight ?? 1)),
      attr(DEST.U_THRESH, u32(0)),
      attr(DEST.L_THRESH, u32(0)),
      attr(DEST.ADDR_FAMILY, u16(af)),
    );
  }
  return attr(IPVS_CMD_ATTR_DEST, attrs, true);
}

/** genlmsghdr: cmd, version, reserved. */
export function genlHeader(cmd: number, version: number): Buffer {
  return Buffer.from([cmd, version, 0, 0]);
}

/** A whole request message (nlmsghdr + genlmsghdr + attributes), as the socket sends it; for tests. */
export function genlRequestBytes(familyId: number, cmd: number, attrs: Buffer[], opts: { flags: number; seq: number; port: number }): Buffer {
  const body = Buffer.concat([genlHeader(cmd, IPVS_GENL_VERSION), ...attrs]);
  const head = Buffer.alloc(16);
  head.writeUInt32LE(16 + body.length, 0);
  head.writeUInt16LE(familyId, 4);
  head.writeUInt16LE(opts.flags, 6);
  head.writeUInt32LE(opts.seq, 8);
  head.writeUInt32LE(opts.port, 12);
  return Buffer.concat([head, body]);
}

const PROTO_NAME = new Map<number, IpvsProtocol>([
  [6, 'TCP'],
  [17, 'UDP'],
  [132, 'SCTP'],
]);

/** Parse the attributes of one GET_SERVICE reply (after the genl header). */
export function parseServiceReply(data: Buffer): IpvsService | undefined {
  const nested = parseAttrs(data).get(IPVS_CMD_ATTR_SERVICE);
  if (!nested) return undefined;
  const a = parseAttrs(nested);
  if (a.has(SVC.FWMARK) && !a.has(SVC.ADDR)) return undefined; // fwmark services are not ours
  const af = a.get(SVC.AF)?.readUInt16LE(0) ?? AF_INET;
  const protocol = PROTO_NAME.get(a.get(SVC.PROTOCOL)?.readUInt16LE(0) ?? 0);
  if (!protocol) return undefined;
  return {
    address: parseInetAddr(a.get(SVC.ADDR), af),
    protocol,
    port: a.get(SVC.PORT)?.readUInt16BE(0) ?? 0,
    scheduler: readCstr(a.get(SVC.SCHED_NAME)) ?? '',
    flags: a.get(SVC.FLAGS)?.readUInt32LE(0) ?? 0,
    timeout: a.get(SVC.TIMEOUT)?.readUInt32LE(0) ?? 0,
  };
}

/** Parse the attributes of one GET_DEST reply. */
export function parseDestReply(data: Buffer, serviceAf: number): IpvsDestination | undefined {
  const nested = parseAttrs(data).get(IPVS_CMD_ATTR_DEST);
  if (!nested) return undefined;
  const a = parseAttrs(nested);
  const af = a.get(DEST.ADDR_FAMILY)?.readUInt16LE(0) ?? serviceAf;
  return {
    address: parseInetAddr(a.get(DEST.ADDR), af),
    port: a.get(DEST.PORT)?.readUInt16BE(0) ?? 0,
    weight: a.get(DEST.WEIGHT)?.readUInt32LE(0) ?? 0,
    fwdMethod: (a.get(DEST.FWD_METHOD)?.readUInt32LE(0) ?? 0) & 0x7,
    activeConns: a.get(DEST.ACTIVE_CONNS)?.readUInt32LE(0),
    inactiveConns: a.get(DEST.INACT_CONNS)?.readUInt32LE(0),
  };
}

/** A generic netlink socket talking to the IPVS family. */
export class IpvsSocket {
  private closed = false;

  private constructor(
    private readonly sock: NetlinkSocket,
    readonly familyId: number,
  ) {}

  /** Open a socket and resolve the IPVS family; NetlinkError ENOENT when the kernel has no IPVS. */
  static async open(opts: { netnsPath?: string } = {}): Promise<IpvsSocket> {
    const create = (): NetlinkSocket => netlinkModule().createNetlink(netlinkModule().Protocol.GENERIC);
    const sock = opts.netnsPath === undefined ? create() : withNetnsSync(opts.netnsPath, create);
    try {
      const msgs = await request(sock, 'resolve generic netlink family IPVS', GENL_ID_CTRL, [genlHeader(CTRL_CMD_GETFAMILY, 1), attr(CTRL_ATTR_FAMILY_NAME, cstr(IPVS_GENL_NAME))], 0);
      for (const m of msgs) {
        const id = parseAttrs(m.data.subarray(4)).get(CTRL_ATTR_FAMILY_ID);
        if (id) return new IpvsSocket(sock, id.readUInt16LE(0));
      }
      throw new KnodeError('IPVS_UNAVAILABLE', 'generic netlink family IPVS: no family id in the reply');
    } catch (err) {
      sock.socket.close();
      throw err;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.socket.close();
  }

  private async cmd(op: string, cmd: number, attrs: Buffer[], flags = 0): Promise<NetlinkMessage[]> {
    const msgs = await request(this.sock, op, this.familyId, [genlHeader(cmd, IPVS_GENL_VERSION), ...attrs], flags);
    return msgs.filter((m) => m.type === this.familyId);
  }

  async listServices(): Promise<IpvsService[]> {
    const msgs = await this.cmd('list IPVS services', IPVS_CMD.GET_SERVICE, [], NLM_F_DUMP);
    return msgs.map((m) => parseServiceReply(m.data.subarray(4))).filter((s): s is IpvsService => s !== undefined && s.address !== '');
  }

  async listDestinations(s: IpvsServiceId): Promise<IpvsDestination[]> {
    const af = isIPv4(s.address) ? AF_INET : AF_INET6;
    const msgs = await this.cmd(`list destinations of ${serviceKey(s)}`, IPVS_CMD.GET_DEST, [encodeService(s, false)], NLM_F_DUMP);
    return msgs.map((m) => parseDestReply(m.data.subarray(4), af)).filter((d): d is IpvsDestination => d !== undefined);
  }

  async newService(s: IpvsService): Promise<void> {
    await this.cmd(`add IPVS service ${serviceKey(s)}`, IPVS_CMD.NEW_SERVICE, [encodeService(s, true)]);
  }

  async setService(s: IpvsService): Promise<void> {
    await this.cmd(`update IPVS service ${serviceKey(s)}`, IPVS_CMD.SET_SERVICE, [encodeService(s, true)]);
  }

  async delService(s: IpvsServiceId): Promise<void> {
    await this.cmd(`delete IPVS service ${serviceKey(s)}`, IPVS_CMD.DEL_SERVICE, [encodeService(s, false)]);
  }

  async newDestination(s: IpvsServiceId, d: IpvsDestination): Promise<void> {
    await this.cmd(`add destination ${d.address}:${d.port} to ${serviceKey(s)}`, IPVS_CMD.NEW_DEST, [encodeService(s, false), encodeDest(d, true)]);
  }

  async setDestination(s: IpvsServiceId, d: IpvsDestination): Promise<void> {
    await this.cmd(`update destination ${d.address}:${d.port} of ${serviceKey(s)}`, IPVS_CMD.SET_DEST, [encodeService(s, false), encodeDest(d, true)]);
  }

  async delDestination(s: IpvsServiceId, d: Pick<IpvsDestination, 'address' | 'port'>): Promise<void> {
    await this.cmd(`delete destination ${d.address}:${d.port} from ${serviceKey(s)}`, IPVS_CMD.DEL_DEST, [encodeService(s, false), encodeDest(d, false)]);
  }
}

async function request(sock: NetlinkSocket, op: string, type: number, payload: Buffer[], flags: number): Promise<NetlinkMessage[]> {
  const [msgs] = await sock.request(type, payload, { flags: flags | NLM_F_REQUEST | NLM_F_ACK, checkError: false });
  const out: NetlinkMessage[] = [];
  for (const m of msgs) {
    if (m.type === NLMSG_ERROR) {
      const { errno } = netlinkModule().parseError(m.data, m.flags);
      if (errno !== 0) throw new NetlinkError(op, errno);
      continue;
    }
    if (m.type === NLMSG_DONE) continue;
    out.push(m);
  }
  return out;
}

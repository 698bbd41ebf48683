/**
 * The rtnetlink socket knode uses, over the `netlink` package.
 *
 * Design notes
 * - The package rejects kernel errors as `Error("Request rejected: EEXIST")`; knode must branch
 *   on errno, not on text, so requests go through the package's lower `NetlinkSocket.request`
 *   with `checkError: false` and the ERROR message is decoded here into a `NetlinkError` with
 *   `errno` ('EEXIST', 'ENOENT', 'ENODEV', …).
 * - Messages are built from the package's typed formatters where those cover the need (link
 *   header, addresses) and from the small attribute encoder in attrs.ts where the package only
 *   offers raw buffers (IFLA_LINKINFO, nested IFLA_PROTINFO, route header flags).
 * - A socket belongs to one network namespace forever (the one its creator thread was in at
 *   socket()): `Rtnl.open()` is the current namespace, `Rtnl.openIn(path)` another one (through
 *   lib/netns.ts, no thread ever stays in the foreign namespace).
 */
import { getSystemErrorName } from 'node:util';
import type { NetlinkMessage, RtNetlinkSocket, rt as rtTypes } from 'netlink';
import { KnodeError } from '../errors.js';
import { withNetnsSync } from '../netns.js';
import { netlinkModule } from './native.js';

export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;

const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;

export const RTM = {
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  SETLINK: 19,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
  NEWNEIGH: 28,
  DELNEIGH: 29,
  GETNEIGH: 30,
} as const;

/** A kernel error for one request; `errno` is the symbolic name ('EEXIST', …). */
export class NetlinkError extends KnodeError {
  readonly errno: string;
  readonly errnoNumber: number;

  constructor(op: string, errnoNumber: number) {
    // The kernel reports -errno; keep the positive number and the symbolic name.
    const positive = Math.abs(errnoNumber);
    let name = `E${positive}`;
    try {
      name = getSystemErrorName(-positive);
    } catch {
      // unknown errno number: keep the numeric name
    }
    super('NETLINK_ERROR', `netlink ${op}: ${name}`, { details: { op, errno: name } });
    this.name = 'NetlinkError';
    this.errno = name;
    this.errnoNumber = positive;
  }
}

export function isNetlinkErrno(err: unknown, ...names: string[]): err is NetlinkError {
  return err instanceof NetlinkError && names.includes(err.errno);
}

export type RtMessage = rtTypes.Message;

export class Rtnl {
  private closed = false;

  private constructor(private readonly sock: RtNetlinkSocket, readonly netns: string | undefined) {}

  /** A socket in the namespace the calling thread is in (the plugin's "host" namespace). */
  static open(): Rtnl {
    return new Rtnl(netlinkModule().createRtNetlink(), undefined);
  }

  /** A socket bound to the network namespace at `nsPath` (see lib/netns.ts). */
  static openIn(nsPath: string): Rtnl {
    return new Rtnl(
      withNetnsSync(nsPath, () => netlinkModule().createRtNetlink()),
      nsPath,
    );
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.socket.close();
  }

  /**
   * Send one request and return the reply messages (parsed), [] for a bare ACK.
   * Kernel errors throw NetlinkError.
   */
  async request(op: string, type: number, payload: Uint8Array[], flags = 0): Promise<RtMessage[]> {
    const [msgs] = await this.sock.socket.request(type, payload, { flags, checkError: false });
    return this.decode(op, msgs);
  }

  private decode(op: string, msgs: NetlinkMessage[]): RtMessage[] {
    const out: RtMessage[] = [];
    for (const m of msgs) {
      if (m.type === NLMSG_ERROR) {
        const { errno } = netlinkModule().parseError(m.data, m.flags);
        if (errno !== 0) throw new NetlinkError(op, errno);
        continue;
      }
      if (m.type === NLMSG_DONE) continue;
      out.push(netlinkModule().rt.parseMessage(m.type, m.data));
    }
    return out;
  }
}

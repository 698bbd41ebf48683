/**
 * Who is on the other end of a daemon connection: SO_PEERCRED (pid, uid, gid as the kernel saw
 * them at connect()) through koffi's getsockopt, and whether that process lives in the daemon's
 * network namespace.
 *
 * Design notes
 * - The socket file is mode 0600 in a root-owned directory, so only root can connect at all;
 *   the uid check is a second fence that costs one syscall.
 * - A CNI plugin's "host" namespace is the namespace it was started in. The daemon configures
 *   its own namespace only (Rtnl.open(), sysctls, iptables run from it), so a caller in another
 *   namespace is told to fall back to in-process work instead of being served in the wrong place.
 *   /proc/<pid>/ns/net is the caller's thread-group leader's namespace: the shim never setns()es.
 */
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { koffiModule } from '../../lib/netlink/native.js';
import { sameNetns } from '../../lib/netns.js';

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

type GetsockoptFn = (fd: number, level: number, name: number, out: Buffer, len: number[]) => number;
let getsockoptFn: GetsockoptFn | undefined;

/** The socket's file descriptor (libuv keeps it on the handle); undefined if not available. */
export function socketFd(sock: Socket): number | undefined {
  const fd = (sock as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

export function peerCred(sock: Socket): PeerCred | undefined {
  const fd = socketFd(sock);
  if (fd === undefined) return undefined;
  getsockoptFn ??= koffiModule()
    .load('libc.so.6')
    .func('int getsockopt(int sockfd, int level, int optname, _Out_ void *optval, _Inout_ uint32_t *optlen)') as GetsockoptFn;
  const buf = Buffer.alloc(12);
  const len = [12];
  if (getsockoptFn(fd, SOL_SOCKET, SO_PEERCRED, buf, len) !== 0) return undefined;
  return { pid: buf.readInt32LE(0), uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8) };
}

export type PeerVerdict = { ok: true; pid: number | undefined } | { ok: false; why: 'uid' | 'netns' | 'unknown'; pid: number | undefined };

/** Root, and in the daemon's network namespace. */
export function checkPeer(sock: Socket): PeerVerdict {
  const cred = peerCred(sock);
  if (!cred) return { ok: false, why: 'unknown', pid: undefined };
  if (cred.uid !== 0) return { ok: false, why: 'uid', pid: cred.pid };
  // The peer is gone already (it gave up waiting): nothing to serve, nobody to tell.
  if (!existsSync(`/proc/${cred.pid}/ns/net`)) return { ok: false, why: 'unknown', pid: cred.pid };
  if (!sameNetns(`/proc/${cred.pid}/ns/net`, '/proc/self/ns/net')) return { ok: false, why: 'netns', pid: cred.pid };
  return { ok: true, pid: cred.pid };
}

/**
 * sd_notify(3): tells systemd that a Type=notify service is ready (READY=1),
 * what it is doing (STATUS=...), or that it is stopping (STOPPING=1).
 *
 * Design notes:
 * - The protocol is one datagram of "KEY=value\n" lines on the AF_UNIX
 *   SOCK_DGRAM socket named by $NOTIFY_SOCKET (a path, or '@name' for the
 *   abstract namespace). Node's dgram module has no AF_UNIX, so the datagram is
 *   sent with libc's socket/sendto/close through koffi (already a dependency
 *   for setns).
 * - Without $NOTIFY_SOCKET (not started by systemd, or Type=simple) it is a
 *   no-op returning false, as libsystemd's sd_notify returns 0.
 * - Never throws: a failed notification is reported through the return value
 *   (the caller logs it) and must not stop a node agent.
 * - systemd checks the sender's PID against NotifyAccess=main, so the datagram
 *   is sent from this process, not from a `systemd-notify` child.
 */
import type { Logger } from './log.js';
import { koffiModule } from './netlink/native.js';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
/** sizeof(struct sockaddr_un): sa_family_t (2 bytes) + sun_path[108]. */
const SOCKADDR_UN_SIZE = 110;

export interface NotifyResult {
  sent: boolean;
  /** Why nothing was sent ('no NOTIFY_SOCKET', 'socket: errno 13', ...). */
  reason?: string;
}

type SocketFn = (domain: number, type: number, protocol: number) => number;
type SendtoFn = (fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number) => number;
type CloseFn = (fd: number) => number;

let libc: { socket: SocketFn; sendto: SendtoFn; close: CloseFn } | undefined;

function loadLibc(): { socket: SocketFn; sendto: SendtoFn; close: CloseFn } {
  if (libc === undefined) {
    const lib = koffiModule().load('libc.so.6');
    libc = {
      socket: lib.func('int socket(int domain, int type, int protocol)') as SocketFn,
      sendto: lib.func('long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)') as SendtoFn,
      close: lib.func('int close(int fd)') as CloseFn,
    };
  }
  return libc;
}

/** Encodes $NOTIFY_SOCKET as a struct sockaddr_un and its length. Pure. */
export function encodeSockaddrUn(socketPath: string): { addr: Buffer; length: number } {
  const abstract = socketPath.startsWith('@');
  const path = Buffer.from(abstract ? socketPath.slice(1) : socketPath, 'utf8');
  // sun_path holds the name and one NUL (leading for an abstract name, trailing for a path).
  if (path.length + 1 > SOCKADDR_UN_SIZE - 2) throw new RangeError(`NOTIFY_SOCKET path too long (${path.length} bytes)`);
  const addr = Buffer.alloc(SOCKADDR_UN_SIZE);
  addr.writeUInt16LE(AF_UNIX, 0);
  if (abstract) path.copy(addr, 3); // addr[2] stays NUL
  else path.copy(addr, 2);
  // For an abstract address the length counts exactly the name (no trailing NUL), as libsystemd does.
  return { addr, length: abstract ? 2 + 1 + path.length : 2 + path.length + 1 };
}

/** Renders the notification text for a set of fields ('READY' → 'READY=1\n'...). Pure. */
export function renderNotification(fields: Record<string, string | number>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}=${String(v).replace(/\n/g, ' ')}\n`)
    .join('');
}

/** Sends one notification to systemd; a no-op (sent: false) when $NOTIFY_SOCKET is unset. */
export function sdNotify(fields: Record<string, string | number>, env: NodeJS.ProcessEnv = process.env): NotifyResult {
  const socketPath = env.NOTIFY_SOCKET;
  if (socketPath === undefined || socketPath === '') return { sent: false, reason: 'no NOTIFY_SOCKET' };
  if (!socketPath.startsWith('/') && !socketPath.startsWith('@')) return { sent: false, reason: `unsupported NOTIFY_SOCKET ${JSON.stringify(socketPath)}` };
  let sockaddr: { addr: Buffer; length: number };
  try {
    sockaddr = encodeSockaddrUn(socketPath);
  } catch (err) {
    return { sent: false, reason: (err as Error).message };
  }
  const c = loadLibc();
  const errno = (): number => koffiModule().errno();
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return { sent: false, reason: `socket: errno ${errno()}` };
  try {
    const msg = Buffer.from(renderNotification(fields), 'utf8');
    const n = c.sendto(fd, msg, msg.length, MSG_NOSIGNAL, sockaddr.addr, sockaddr.length);
    if (n < 0) return { sent: false, reason: `sendto ${socketPath}: errno ${errno()}` };
    return { sent: true };
  } finally {
    c.close(fd);
  }
}

/** sdNotify, logging (at debug) what was sent and (at warn) a failure; for the programs' main(). */
export function notifySystemd(log: Logger, fields: Record<string, string | number>): void {
  const r = sdNotify(fields);
  if (r.sent) log.debug('notified systemd', { fields });
  else if (r.reason !== 'no NOTIFY_SOCKET') log.warn('cannot notify systemd', { reason: r.reason });
}

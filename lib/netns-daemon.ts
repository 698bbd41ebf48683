/**
 * For daemons that serve in more than one network namespace (the lab apiserver
 * listens on the host's loopback and on the lab's underlay).
 *
 * A TCP listening socket bound inside another network namespace: Node's `server.listen(port, host)` binds on a later tick (it resolves the host
 * first, even an IP literal), so it cannot run inside `withNetnsSync`. Instead the
 * socket is made with plain syscalls (koffi) while the thread is in the target
 * namespace; a socket keeps the namespace it was created in for its whole life.
 * The returned fd is handed to `server.listen({ fd })`.
 */
import koffi from 'koffi';
import { isIPv4 } from 'node:net';
import { KnodeError } from './errors.js';
import { closeSync } from 'node:fs';
import { openNetnsFd, withNetnsSync } from './netns.js';

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;

interface Libc {
  setns: (fd: number, nstype: number) => number;
  socket: (domain: number, type: number, protocol: number) => number;
  setsockopt: (fd: number, level: number, name: number, value: Buffer, len: number) => number;
  bind: (fd: number, addr: Buffer, len: number) => number;
  listen: (fd: number, backlog: number) => number;
  connect: (fd: number, addr: Buffer, len: number) => number;
  close: (fd: number) => number;
}
let libc: Libc | undefined;
function load(): Libc {
  if (libc) return libc;
  const lib = koffi.load('libc.so.6');
  libc = {
    setns: lib.func('int setns(int fd, int nstype)') as Libc['setns'],
    socket: lib.func('int socket(int domain, int type, int protocol)') as Libc['socket'],
    setsockopt: lib.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)') as Libc['setsockopt'],
    bind: lib.func('int bind(int fd, const void *addr, uint32_t len)') as Libc['bind'],
    listen: lib.func('int listen(int fd, int backlog)') as Libc['listen'],
    connect: lib.func('int connect(int fd, const void *addr, uint32_t len)') as Libc['connect'],
    close: lib.func('int close(int fd)') as Libc['close'],
  };
  return libc;
}

/** struct sockaddr_in for an IPv4 address and port (network byte order). Pure. */
export function sockaddrIn(host: string, port: number): Buffer {
  if (!isIPv4(host)) throw new KnodeError('INVALID_LISTEN', `${host} is not an IPv4 address`);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new KnodeError('INVALID_LISTEN', `bad port ${port}`);
  const b = Buffer.alloc(16);
  b.writeUInt16LE(AF_INET, 0);
  b.writeUInt16BE(port, 2);
  host.split('.').forEach((octet, i) => b.writeUInt8(Number(octet), 4 + i));
  return b;
}

/** A listening IPv4 TCP socket on host:port inside the namespace at nsPath; returns its fd. */
export function listenTcpInNetns(nsPath: string, host: string, port: number, backlog = 511): number {
  const addr = sockaddrIn(host, port);
  const c = load();
  return withNetnsSync(nsPath, () => {
    const fd = c.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new KnodeError('SOCKET_FAILED', `socket() failed (errno ${koffi.errno()})`);
    const fail = (what: string): never => {
      const errno = koffi.errno();
      c.close(fd);
      throw new KnodeError('SOCKET_FAILED', `${what} ${host}:${port} in ${nsPath} failed (errno ${errno})`, { details: { errno } });
    };
    const one = Buffer.alloc(4);
    one.writeInt32LE(1);
    if (c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4) !== 0) fail('setsockopt');
    if (c.bind(fd, addr, addr.length) !== 0) fail('bind');
    if (c.listen(fd, backlog) !== 0) fail('listen');
    return fd;
  });
}

/**
 * A TCP connection to host:port made from inside the namespace at nsPath;
 * returns its fd (for `new net.Socket({ fd })`, which makes it non-blocking).
 * The connect is blocking, so use it for addresses that answer at once —
 * loopback inside a pod (port-forward), where it succeeds or is refused
 * immediately. ECONNREFUSED keeps its errno in `details`.
 */
export function connectTcpInNetns(nsPath: string, host: string, port: number): number {
  const addr = sockaddrIn(host, port);
  const c = load();
  return withNetnsSync(nsPath, () => {
    const fd = c.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new KnodeError('SOCKET_FAILED', `socket() failed (errno ${koffi.errno()})`);
    if (c.connect(fd, addr, addr.length) !== 0) {
      const errno = koffi.errno();
      c.close(fd);
      const why = errno === 111 ? 'connection refused' : `errno ${errno}`;
      throw new KnodeError('CONNECT_FAILED', `connect to ${host}:${port} in ${nsPath}: ${why}`, { details: { errno } });
    }
    return fd;
  });
}

/**
 * Move the main thread into the namespace at nsPath for good: sockets the
 * process creates from now on (outgoing connections) are made there, while
 * listeners bound earlier stay where they were bound. Only for daemons whose
 * every later connection belongs to that namespace.
 */
export function enterNetns(nsPath: string): void {
  const CLONE_NEWNET = 0x40000000;
  const fd = openNetnsFd(nsPath);
  try {
    if (load().setns(fd, CLONE_NEWNET) !== 0) {
      const errno = koffi.errno();
      throw new KnodeError('NETNS_SETNS_FAILED', `setns(${nsPath}) failed (errno ${errno})`, { details: { errno } });
    }
  } finally {
    closeSync(fd);
  }
}

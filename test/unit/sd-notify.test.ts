// lib/sd-notify.ts: the sockaddr encoding, and real datagrams received on an AF_UNIX socket.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { koffiModule } from '../../lib/netlink/native.js';
import { encodeSockaddrUn, renderNotification, sdNotify } from '../../lib/sd-notify.js';

type SocketFn = (domain: number, type: number, protocol: number) => number;
type BindFn = (fd: number, addr: Buffer, len: number) => number;
type RecvFn = (fd: number, buf: Buffer, len: number, flags: number) => number;
type CloseFn = (fd: number) => number;
const lib = koffiModule().load('libc.so.6');
const socket = lib.func('int socket(int, int, int)') as SocketFn;
const bind = lib.func('int bind(int, const void *, uint32_t)') as BindFn;
const recv = lib.func('long recv(int, void *, size_t, int)') as RecvFn;
const close = lib.func('int close(int)') as CloseFn;
const MSG_DONTWAIT = 0x40;

/** A receiving end like systemd's: an AF_UNIX datagram socket bound to `name`. */
function listen(name: string): { read(): string | undefined; close(): void } {
  const fd = socket(1, 2, 0);
  if (fd < 0) throw new Error('socket failed');
  const { addr, length } = encodeSockaddrUn(name);
  if (bind(fd, addr, length) !== 0) throw new Error(`bind ${name}: errno ${koffiModule().errno()}`);
  const buf = Buffer.alloc(4096);
  return {
    read: () => {
      const n = recv(fd, buf, buf.length, MSG_DONTWAIT);
      return n < 0 ? undefined : buf.subarray(0, n).toString('utf8');
    },
    close: () => void close(fd),
  };
}

t.test('renderNotification: one KEY=value line per field, no embedded newline', async (t) => {
  t.equal(renderNotification({ READY: 1, STATUS: 'node a\nregistered' }), 'READY=1\nSTATUS=node a registered\n');
});

t.test('encodeSockaddrUn: path with a trailing NUL, abstract name with a leading one', async (t) => {
  const p = encodeSockaddrUn('/run/systemd/notify');
  t.equal(p.addr.readUInt16LE(0), 1, 'AF_UNIX');
  t.equal(p.addr.subarray(2, 2 + 19).toString(), '/run/systemd/notify');
  t.equal(p.length, 2 + 19 + 1);
  const a = encodeSockaddrUn('@knode/notify');
  t.equal(a.addr[2], 0, 'leading NUL');
  t.equal(a.addr.subarray(3, 3 + 12).toString(), 'knode/notify');
  t.equal(a.length, 2 + 1 + 12);
  t.throws(() => encodeSockaddrUn('/' + 'x'.repeat(200)), RangeError);
});

t.test('no NOTIFY_SOCKET: nothing sent, no error', async (t) => {
  t.same(sdNotify({ READY: 1 }, {}), { sent: false, reason: 'no NOTIFY_SOCKET' });
  t.match(sdNotify({ READY: 1 }, { NOTIFY_SOCKET: 'relative' }), { sent: false, reason: /unsupported/ });
});

t.test('a datagram reaches a socket named by a path', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'knode-sdnotify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'notify');
  const l = listen(path);
  t.teardown(() => l.close());
  t.same(sdNotify({ READY: 1, STATUS: 'registered' }, { NOTIFY_SOCKET: path }), { sent: true });
  t.equal(l.read(), 'READY=1\nSTATUS=registered\n');
});

t.test('a datagram reaches an abstract socket (@name)', async (t) => {
  const name = `@knode-t-notify-${process.pid}-${Date.now()}`;
  const l = listen(name);
  t.teardown(() => l.close());
  t.same(sdNotify({ STOPPING: 1 }, { NOTIFY_SOCKET: name }), { sent: true });
  t.equal(l.read(), 'STOPPING=1\n');
});

t.test('nobody listening: a reported failure, not a throw', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'knode-sdnotify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.match(sdNotify({ READY: 1 }, { NOTIFY_SOCKET: join(dir, 'absent') }), { sent: false, reason: /sendto .*errno 2/ });
});

import t from 'tap';
import { sockaddrIn } from '../../lib/netns-daemon.js';
import { isKnodeError } from '../../lib/errors.js';

t.test('sockaddr_in: family little-endian, port and address in network order', async (t) => {
  const b = sockaddrIn('172.31.0.1', 6443);
  t.equal(b.length, 16);
  t.equal(b.readUInt16LE(0), 2, 'AF_INET');
  t.equal(b.readUInt16BE(2), 6443, 'port');
  t.same([...b.subarray(4, 8)], [172, 31, 0, 1], 'address');
  t.same([...b.subarray(8)], [0, 0, 0, 0, 0, 0, 0, 0], 'zero padding');
});

t.test('sockaddr_in refuses what it cannot encode', async (t) => {
  for (const [host, port] of [['::1', 1], ['example', 1], ['10.0.0.1', 70000], ['10.0.0.1', -1]] as const) {
    let error: unknown;
    try {
      sockaddrIn(host, port);
    } catch (e) {
      error = e;
    }
    t.ok(isKnodeError(error, 'INVALID_LISTEN'), `${host}:${port} refused with INVALID_LISTEN`);
  }
});

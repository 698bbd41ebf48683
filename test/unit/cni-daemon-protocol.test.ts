// The shim <-> daemon wire format: request parsing and validation, responses, env forwarding.
import t from 'tap';
import {
  DEFAULT_SOCKET,
  MAX_REQUEST_BYTES,
  PROTOCOL_VERSION,
  parseRequest,
  parseResponse,
  requestFromEnv,
  socketPathFromEnv,
} from '../../cni/daemon/protocol.js';

const good = {
  v: PROTOCOL_VERSION,
  plugin: 'knode-bridge',
  env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' },
  stdin: '{"cniVersion":"1.0.0"}',
};

function errorOf(raw: string | Buffer): { code: number; msg: string } {
  const p = parseRequest(raw);
  if (p.ok) throw new Error('expected a failure');
  const body = JSON.parse(p.response.stdout) as { code: number; msg: string; cniVersion: string };
  if (p.response.exitCode !== 1 || body.cniVersion !== '1.1.0') throw new Error('bad error response');
  return body;
}

t.test('a well-formed request parses', async (t) => {
  const p = parseRequest(JSON.stringify(good));
  t.ok(p.ok);
  if (p.ok) t.same(p.request, good);
  const fromBuf = parseRequest(Buffer.from(JSON.stringify(good)));
  t.ok(fromBuf.ok);
});

t.test('malformed requests become CNI error JSON with the spec codes', async (t) => {
  t.equal(errorOf('').code, 6, 'empty');
  t.equal(errorOf('{not json').code, 6, 'not JSON');
  t.equal(errorOf('[1,2]').code, 6, 'not an object');
  t.equal(errorOf('null').code, 6, 'null');
  t.equal(errorOf(JSON.stringify({ ...good, plugin: 'host-local' })).code, 7, 'unknown plugin');
  t.equal(errorOf(JSON.stringify({ ...good, plugin: '../../bin/sh' })).code, 7, 'path as plugin');
  t.equal(errorOf(JSON.stringify({ ...good, plugin: 3 })).code, 7, 'plugin not a string');
  t.equal(errorOf(JSON.stringify({ ...good, env: 'CNI_COMMAND=ADD' })).code, 4, 'env not an object');
  t.equal(errorOf(JSON.stringify({ ...good, env: { CNI_COMMAND: 1 } })).code, 4, 'env value not a string');
  t.equal(errorOf(JSON.stringify({ ...good, env: { ...good.env, PATH: '/tmp' } })).code, 4, 'PATH is not forwarded');
  t.equal(errorOf(JSON.stringify({ ...good, env: { LD_PRELOAD: '/tmp/x.so' } })).code, 4, 'LD_PRELOAD is refused');
  t.equal(errorOf(JSON.stringify({ ...good, stdin: { a: 1 } })).code, 6, 'stdin not a string');
  t.equal(errorOf(JSON.stringify({ ...good, extra: true })).code, 6, 'unknown field');
  const big = JSON.stringify({ ...good, stdin: 'x'.repeat(MAX_REQUEST_BYTES) });
  t.match(errorOf(big), { code: 6, msg: /too large/ });
});

t.test('another protocol version asks the shim to fall back', async (t) => {
  for (const v of [2, 0, '1', undefined]) {
    const p = parseRequest(JSON.stringify({ ...good, v }));
    t.notOk(p.ok);
    if (!p.ok) t.equal(p.response.fallback, 'protocol', `v=${String(v)}`);
  }
});

t.test('requestFromEnv forwards the CNI variables only', async (t) => {
  const req = requestFromEnv('knode-loopback', { ...good.env, PATH: '/usr/bin', HOME: '/root', CNI_ARGS: 'K=V', KNODE_LOG_LEVEL: 'debug' }, 'x');
  t.same(req, { v: PROTOCOL_VERSION, plugin: 'knode-loopback', env: { ...good.env, CNI_ARGS: 'K=V', KNODE_LOG_LEVEL: 'debug' }, stdin: 'x' });
  const back = parseRequest(JSON.stringify(req));
  t.ok(back.ok, 'what the shim sends, the daemon accepts');
});

t.test('parseResponse', async (t) => {
  t.same(parseResponse('{"exitCode":0,"stdout":"{}","stderr":""}'), { exitCode: 0, stdout: '{}', stderr: '' });
  t.same(parseResponse('{"exitCode":1,"stdout":"","stderr":"","fallback":"netns"}'), { exitCode: 1, stdout: '', stderr: '', fallback: 'netns' });
  t.same(parseResponse('{"exitCode":1,"stdout":"","stderr":"","fallback":"bogus"}'), { exitCode: 1, stdout: '', stderr: '' });
  t.equal(parseResponse(''), undefined);
  t.equal(parseResponse('{"exitCode":"0","stdout":"","stderr":""}'), undefined);
  t.equal(parseResponse('{"exitCode":0}'), undefined);
});

t.test('socket path: env override, else the default', async (t) => {
  t.equal(socketPathFromEnv({}), DEFAULT_SOCKET);
  t.equal(socketPathFromEnv({ KNODE_CNI_SOCKET: '' }), DEFAULT_SOCKET);
  t.equal(socketPathFromEnv({ KNODE_CNI_SOCKET: '/tmp/x.sock' }), '/tmp/x.sock');
});

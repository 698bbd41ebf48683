// The launcher/shim <-> daemon wire format KNODE-CNI/2: request encoding and parsing, validation,
// answers, env forwarding.
import t from 'tap';
import {
  ACK,
  DEFAULT_SOCKET,
  MAX_REQUEST_BYTES,
  TRAILER,
  encodeFallback,
  encodeRequest,
  encodeResult,
  parseAnswer,
  parseRequest,
  requestFromEnv,
  socketPathFromEnv,
} from '../../cni/daemon/protocol.js';
import type { DaemonRequest } from '../../cni/daemon/protocol.js';

const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
const good: DaemonRequest = { plugin: 'knode-bridge', env, stdin: Buffer.from('{"cniVersion":"1.0.0"}') };

function errorOf(raw: string | Buffer): { code: number; msg: string } {
  const p = parseRequest(Buffer.isBuffer(raw) ? raw : Buffer.from(raw));
  if (p.ok || !('response' in p)) throw new Error(`expected an error response: ${JSON.stringify(p)}`);
  const body = JSON.parse(p.response.stdout) as { code: number; msg: string; cniVersion: string };
  if (p.response.exitCode !== 1 || body.cniVersion !== '1.1.0') throw new Error('bad error response');
  return body;
}

t.test('the encoding is the documented text', async (t) => {
  t.equal(
    encodeRequest({ plugin: 'knode-loopback', env: { CNI_COMMAND: 'DEL', CNI_ARGS: 'A=1;B=x y' }, stdin: Buffer.from('{}') }).toString(),
    'KNODE-CNI/2 knode-loopback\nCNI_COMMAND 3\nDEL\nCNI_ARGS 9\nA=1;B=x y\nstdin 2\n{}\n',
  );
});

t.test('a well-formed request round-trips, values with newlines, quotes and UTF-8 included', async (t) => {
  const odd = { ...env, CNI_ARGS: 'K8S_POD_NAME=a b;X="q\'\n\nz"\n', CNI_NETNS: '/run/netns/ä ö' };
  const req: DaemonRequest = { plugin: 'knode-bridge', env: odd, stdin: Buffer.from('{"a":"é\\n"}\n\n') };
  const p = parseRequest(encodeRequest(req));
  t.ok(p.ok);
  if (p.ok) t.same(p.request, req);
});

t.test('what the sh launcher sends parses: every variable, empty ones too, the here-document newline', async (t) => {
  // The launcher sends all seven variables, unset ones with length 0.
  const raw =
    'KNODE-CNI/2 knode-flannel\nCNI_COMMAND 3\nDEL\nCNI_CONTAINERID 2\nc1\nCNI_NETNS 0\n\nCNI_IFNAME 4\neth0\n' +
    'CNI_ARGS 0\n\nCNI_PATH 4\n/bin\nKNODE_LOG_LEVEL 0\n\nstdin 2\n{}\n';
  const p = parseRequest(Buffer.from(raw));
  t.ok(p.ok);
  if (p.ok) t.same(p.request, { plugin: 'knode-flannel', env: { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_PATH: '/bin' }, stdin: Buffer.from('{}') });
});

t.test('malformed requests become CNI error JSON with the spec codes', async (t) => {
  t.equal(errorOf('').code, 6, 'empty');
  t.equal(errorOf('garbage').code, 6, 'not the protocol');
  t.equal(errorOf('KNODE-CNI/2 host-local\nstdin 0\n\n').code, 6, 'unknown plugin');
  t.equal(errorOf('KNODE-CNI/2 ../../bin/sh\nstdin 0\n\n').code, 6, 'path as plugin');
  t.equal(errorOf('KNODE-CNI/2 knode-bridge\nCNI_COMMAND 3\nADD\n').code, 6, 'no stdin section');
  t.equal(errorOf('KNODE-CNI/2 knode-bridge\nCNI_COMMAND 9\nADD\nstdin 0\n\n').code, 6, 'length beyond the value');
  t.equal(errorOf('KNODE-CNI/2 knode-bridge\nCNI_COMMAND 1\nADD\nstdin 0\n\n').code, 6, 'length shorter than the value');
  t.equal(errorOf('KNODE-CNI/2 knode-bridge\nCNI_COMMAND -1\nADD\nstdin 0\n\n').code, 6, 'negative length');
  t.equal(errorOf('KNODE-CNI/2 knode-bridge\nCNI_COMMAND 03\nADD\nstdin 0\n\n').code, 6, 'leading zero');
  t.equal(errorOf('KNODE-CNI/2 knode-bridge\nstdin 2\n{}\nX').code, 6, 'data after stdin');
  t.equal(errorOf('KNODE-CNI/2 knode-bridge\nPATH 4\n/tmp\nstdin 0\n\n').code, 4, 'PATH is not forwarded');
  t.equal(errorOf('KNODE-CNI/2 knode-bridge\nLD_PRELOAD 4\n/x.s\nstdin 0\n\n').code, 4, 'LD_PRELOAD is refused');
  t.equal(errorOf('KNODE-CNI/2 knode-bridge\nCNI_COMMAND 3\nADD\nCNI_COMMAND 3\nDEL\nstdin 0\n\n').code, 4, 'a variable twice');
  t.equal(errorOf(Buffer.from('KNODE-CNI/2 knode-bridge\nCNI_ARGS 3\na\0b\nstdin 0\n\n')).code, 4, 'NUL in a value');
  const big = Buffer.concat([Buffer.from('KNODE-CNI/2 knode-bridge\nstdin 8\n'), Buffer.alloc(MAX_REQUEST_BYTES, 0x61)]);
  t.match(errorOf(big), { code: 6, msg: /too large/ });
});

t.test('another protocol version, or v1 JSON, asks the client to fall back', async (t) => {
  for (const raw of ['KNODE-CNI/3 knode-bridge\nstdin 0\n\n', 'KNODE-CNI/1 x', '{"v":1,"plugin":"knode-bridge","env":{},"stdin":""}']) {
    t.same(parseRequest(Buffer.from(raw)), { ok: false, fallback: 'protocol' }, raw.slice(0, 14));
  }
});

t.test('requestFromEnv forwards the non-empty CNI variables only', async (t) => {
  const req = requestFromEnv('knode-loopback', { ...env, PATH: '/usr/bin', HOME: '/root', CNI_ARGS: 'K=V', KNODE_LOG_LEVEL: 'debug', CNI_NETNS: '' }, 'x');
  const { CNI_NETNS: _n, ...rest } = env;
  t.same(req, { plugin: 'knode-loopback', env: { ...rest, CNI_ARGS: 'K=V', KNODE_LOG_LEVEL: 'debug' }, stdin: Buffer.from('x') });
  const back = parseRequest(encodeRequest(req));
  t.ok(back.ok, 'what the shim sends, the daemon accepts');
  t.ok(parseRequest(encodeRequest(good)).ok);
});

t.test('answers: encode and parse', async (t) => {
  const full = ACK + encodeResult({ exitCode: 0, stdout: '{"ips":[]}', stderr: 'line 1\nline 2' });
  t.equal(full, 'KNODE-CNI/2 ok\n0\n{"ips":[]}\nline 1\nline 2\nKNODE-CNI/2 end\n');
  t.same(parseAnswer(full), { kind: 'response', response: { exitCode: 0, stdout: '{"ips":[]}', stderr: 'line 1\nline 2\n' } });
  t.same(parseAnswer(ACK + encodeResult({ exitCode: 0, stdout: '', stderr: '' })), { kind: 'response', response: { exitCode: 0, stdout: '', stderr: '' } });
  t.same(parseAnswer(ACK + encodeResult({ exitCode: 1, stdout: '{"code":7}', stderr: '' })), { kind: 'response', response: { exitCode: 1, stdout: '{"code":7}', stderr: '' } });
  t.same(parseAnswer(encodeFallback('netns')), { kind: 'fallback', why: 'netns' });
  t.same(parseAnswer(''), { kind: 'incomplete' }, 'nothing after connecting');
  t.same(parseAnswer(ACK), { kind: 'incomplete' }, 'acknowledged, then nothing');
  t.same(parseAnswer(ACK + '0\n{"ips"'), { kind: 'incomplete' }, 'cut in the middle');
  t.same(parseAnswer(full.slice(0, -1)), { kind: 'incomplete' }, 'trailer incomplete');
  t.same(parseAnswer(ACK + TRAILER), { kind: 'incomplete' }, 'no exit code');
  t.same(parseAnswer('{"exitCode":0,"stdout":"","stderr":""}'), { kind: 'foreign' }, 'v1 JSON');
  t.equal(encodeResult({ exitCode: 0, stdout: '{\n"a":1}', stderr: '' }).split('\n').length, 4, 'stdout stays one line');
});

t.test('socket path: env override, else the default', async (t) => {
  t.equal(socketPathFromEnv({}), DEFAULT_SOCKET);
  t.equal(socketPathFromEnv({ KNODE_CNI_SOCKET: '' }), DEFAULT_SOCKET);
  t.equal(socketPathFromEnv({ KNODE_CNI_SOCKET: '/tmp/x.sock' }), '/tmp/x.sock');
});

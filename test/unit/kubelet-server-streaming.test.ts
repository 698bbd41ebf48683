/** Streaming requests: the kubelet's parameter parsing, upgrade protocol choice and request heads; the lab apiserver's kubelet targets. */
import t from 'tap';
import { parseStreamRequest, runtimeWebSocketProtocols, unsupportedUpgrade, upstreamRequestHead } from '../../agent/server/streaming.js';
import { kubeletAddress, kubeletRequestHead, kubeletStreamTarget, podContainer } from '../../lab/apiserver/kubelet-proxy.js';
import type { KubeObject } from '../../lab/apiserver/object.js';

const q = (s: string): URLSearchParams => new URLSearchParams(s);

t.test('exec/attach/portForward paths and parameters', async (t) => {
  const e = parseStreamRequest('/exec/ns/pod/c', q('command=sh&command=-c&command=echo%20hi&input=1&output=1&error=1'))!;
  t.same(e, { kind: 'exec', namespace: 'ns', pod: 'pod', uid: undefined, container: 'c', command: ['sh', '-c', 'echo hi'], stdin: true, stdout: true, stderr: true, tty: false, ports: [] });
  const u = parseStreamRequest('/exec/ns/pod/uid-1/c', q('command=ls&stdout=true&stderr=true&tty=true'))!;
  t.equal(u.uid, 'uid-1');
  t.equal(u.stderr, false, 'tty: no separate stderr');
  t.equal(u.tty, true);
  t.equal(parseStreamRequest('/attach/ns/pod/c', q('output=1'))!.kind, 'attach');
  const pf = parseStreamRequest('/portForward/ns/pod', q('port=80&port=8080'))!;
  t.same([pf.kind, pf.container, pf.ports], ['portForward', '', [80, 8080]]);
  t.equal(parseStreamRequest('/pods', q('')), undefined, 'not a streaming path');
});

t.test('malformed streaming requests are errors (→ 400)', async (t) => {
  t.throws(() => parseStreamRequest('/exec/ns/pod/c', q('output=1')), /at least 1 command/);
  t.throws(() => parseStreamRequest('/exec/ns/pod/c', q('command=ls')), /at least 1 of stdin, stdout, stderr/);
  t.throws(() => parseStreamRequest('/exec/ns/pod', q('command=ls&output=1')), /expected/);
  t.throws(() => parseStreamRequest('/exec/ns//c', q('command=ls&output=1')), /malformed/);
  t.throws(() => parseStreamRequest('/exec/ns/%zz/c', q('command=ls&output=1')), /malformed/);
  t.throws(() => parseStreamRequest('/portForward/ns/pod', q('port=0')), /invalid port/);
  t.throws(() => parseStreamRequest('/portForward/ns/pod', q('port=http')), /invalid port/);
});

t.test('which upgrades go on to the runtime', async (t) => {
  t.equal(unsupportedUpgrade({ upgrade: 'SPDY/3.1' }), undefined);
  t.equal(unsupportedUpgrade({ upgrade: 'websocket', 'sec-websocket-protocol': 'v4.channel.k8s.io' }), undefined);
  t.equal(unsupportedUpgrade({ upgrade: 'websocket', 'sec-websocket-protocol': 'v5.channel.k8s.io, v4.channel.k8s.io' }), undefined);
  t.equal(unsupportedUpgrade({ upgrade: 'websocket' }), undefined, 'no subprotocol: the runtime decides');
  t.match(unsupportedUpgrade({ upgrade: 'websocket', 'sec-websocket-protocol': 'v5.channel.k8s.io' }), /v5\.channel\.k8s\.io.*not supported|none of/);
  t.match(unsupportedUpgrade({ upgrade: 'websocket', 'sec-websocket-protocol': 'SPDY/3.1+portforward.k8s.io' }), /none of/);
  t.match(unsupportedUpgrade({}), /Upgrade request required/);
  t.match(unsupportedUpgrade({ upgrade: 'h2c' }), /unsupported upgrade/);
  t.ok(runtimeWebSocketProtocols.includes('v4.channel.k8s.io'));
});

t.test('request heads keep the upgrade headers and drop credentials', async (t) => {
  const raw = ['Host', 'kubelet:10250', 'Authorization', 'Bearer secret', 'Connection', 'Upgrade', 'Upgrade', 'SPDY/3.1', 'X-Stream-Protocol-Version', 'v4.channel.k8s.io', 'X-Evil', 'a\r\nInjected: 1'];
  const head = upstreamRequestHead({ method: 'POST', rawHeaders: raw }, new URL('http://127.0.0.1:4000/exec/TOKEN'));
  t.equal(
    head,
    'POST /exec/TOKEN HTTP/1.1\r\nHost: 127.0.0.1:4000\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Evil: aInjected: 1\r\n\r\n',
  );
  const k = kubeletRequestHead({ method: 'GET', rawHeaders: raw }, { host: '10.0.0.1', port: 10250, path: '/exec/a/b/c?command=ls' });
  t.match(k, /^GET \/exec\/a\/b\/c\?command=ls HTTP\/1\.1\r\nHost: 10\.0\.0\.1:10250\r\n/);
  t.notMatch(k, /Authorization/);
});

const pod = (containers: string[], nodeName?: string): KubeObject =>
  ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'ns' }, spec: { ...(nodeName ? { nodeName } : {}), containers: containers.map((name) => ({ name })), initContainers: [{ name: 'init' }] } }) as unknown as KubeObject;
const node = { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, status: { addresses: [{ type: 'Hostname', address: 'n1' }, { type: 'InternalIP', address: '172.31.0.2' }], daemonEndpoints: { kubeletEndpoint: { Port: 10255 } } } } as unknown as KubeObject;

t.test('the lab apiserver\'s kubelet targets for pods/exec|attach|portforward', async (t) => {
  t.same(kubeletAddress(node, 'n1'), { host: '172.31.0.2', port: 10255 });
  t.throws(() => kubeletAddress(undefined, 'n1'), /not found/);
  t.equal(podContainer(pod(['a']), null), 'a');
  t.equal(podContainer(pod(['a', 'b']), 'init'), 'init');
  t.throws(() => podContainer(pod(['a', 'b']), null), /choose one of: \[a b\]/);
  t.throws(() => podContainer(pod(['a']), 'zz'), /not valid/);
  t.same(kubeletStreamTarget('exec', pod(['a'], 'n1'), node, q('command=sh&command=-c&command=x y&stdin=true&stdout=true&stderr=true&tty=false')), {
    host: '172.31.0.2',
    port: 10255,
    path: '/exec/ns/p/a?command=sh&command=-c&command=x+y&input=1&output=1&error=1',
  });
  t.equal(kubeletStreamTarget('attach', pod(['a'], 'n1'), node, q('stdout=true&tty=true')).path, '/attach/ns/p/a?output=1&tty=1');
  t.equal(kubeletStreamTarget('portforward', pod(['a'], 'n1'), node, q('ports=80,81')).path, '/portForward/ns/p?port=80&port=81');
  t.throws(() => kubeletStreamTarget('exec', pod(['a'], 'n1'), node, q('stdout=true')), /at least 1 command/);
  t.throws(() => kubeletStreamTarget('exec', pod(['a']), node, q('command=ls&stdout=true')), /does not have a host assigned/);
});

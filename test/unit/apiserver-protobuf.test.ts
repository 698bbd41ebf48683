import t from 'tap';
import { decodeKubeProtobuf } from '../../lab/apiserver/protobuf.js';

// A minimal protobuf writer for the test inputs.
function varint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, BigInt(n));
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}
const bytesField = (num: number, data: Buffer | string): Buffer => {
  const b = typeof data === 'string' ? Buffer.from(data) : data;
  return Buffer.from([...varint((num << 3) | 2), ...varint(b.length), ...b]);
};
const intField = (num: number, v: number): Buffer => Buffer.from([...varint(num << 3), ...varint(v)]);
const msg = (...parts: Buffer[]): Buffer => Buffer.concat(parts);
const envelope = (apiVersion: string, kind: string, raw: Buffer): Buffer =>
  Buffer.concat([Buffer.from('k8s\0'), bytesField(1, msg(bytesField(1, apiVersion), bytesField(2, kind))), bytesField(2, raw), bytesField(3, ''), bytesField(4, '')]);

t.test('decodes a deployment as kubectl sends it', async (t) => {
  const meta = msg(bytesField(1, 'd'), bytesField(2, ''), bytesField(11, msg(bytesField(1, 'app'), bytesField(2, 'd'))), bytesField(8, Buffer.alloc(0)));
  const container = msg(bytesField(1, 'c'), bytesField(2, 'img:1'), bytesField(3, 'sleep'), bytesField(3, '10'), intField(16, 0), bytesField(6, msg(intField(3, 8080), bytesField(4, 'TCP'))));
  const spec = msg(
    intField(1, 0),
    bytesField(2, bytesField(1, msg(bytesField(1, 'app'), bytesField(2, 'd')))),
    bytesField(3, msg(bytesField(1, bytesField(11, msg(bytesField(1, 'app'), bytesField(2, 'd')))), bytesField(2, bytesField(2, container)))),
    bytesField(4, Buffer.alloc(0)),
    intField(7, 0),
  );
  const obj = decodeKubeProtobuf(envelope('apps/v1', 'Deployment', msg(bytesField(1, meta), bytesField(2, spec), bytesField(3, intField(2, 0)))));
  t.same(obj, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'd', labels: { app: 'd' } },
    spec: {
      replicas: 0,
      selector: { matchLabels: { app: 'd' } },
      template: { metadata: { labels: { app: 'd' } }, spec: { containers: [{ name: 'c', image: 'img:1', command: ['sleep', '10'], ports: [{ containerPort: 8080, protocol: 'TCP' }] }] } },
    },
  }, 'replicas 0 kept, empty values dropped, no status');
});

t.test('service ports with named and numeric target ports; secrets as base64', async (t) => {
  const intOrString = (v: number | string): Buffer => (typeof v === 'number' ? msg(intField(1, 0), intField(2, v)) : msg(intField(1, 1), bytesField(3, v)));
  const port = (p: number, target: number | string): Buffer => msg(bytesField(1, ''), bytesField(2, 'TCP'), intField(3, p), bytesField(4, intOrString(target)), intField(5, 0));
  const svc = decodeKubeProtobuf(envelope('v1', 'Service', msg(bytesField(1, bytesField(1, 's')), bytesField(2, msg(bytesField(1, port(80, 8080)), bytesField(1, port(443, 'https')), bytesField(4, 'NodePort'))))));
  t.same(svc.spec, { ports: [{ protocol: 'TCP', port: 80, targetPort: 8080 }, { protocol: 'TCP', port: 443, targetPort: 'https' }], type: 'NodePort' });
  const secret = decodeKubeProtobuf(envelope('v1', 'Secret', msg(bytesField(1, bytesField(1, 'x')), bytesField(2, msg(bytesField(1, 'k'), bytesField(2, Buffer.from([0, 255])))), bytesField(3, 'Opaque'))));
  t.same(secret.data, { k: Buffer.from([0, 255]).toString('base64') });
});

t.test('anything outside the table is refused, never dropped', async (t) => {
  t.throws(() => decodeKubeProtobuf(envelope('v1', 'Pod', Buffer.alloc(0))), { code: 'PROTOBUF_UNSUPPORTED' });
  t.throws(() => decodeKubeProtobuf(envelope('v1', 'ConfigMap', bytesField(1, bytesField(99, 'x')))), { code: 'PROTOBUF_UNSUPPORTED' });
  t.throws(() => decodeKubeProtobuf(Buffer.from('{"kind":"ConfigMap"}')), { code: 'PROTOBUF_UNSUPPORTED' });
  t.throws(() => decodeKubeProtobuf(Buffer.concat([Buffer.from('k8s\0'), Buffer.from([0x12, 0x05, 0x01])])), { code: 'PROTOBUF_UNSUPPORTED' }, 'truncated');
});

t.test('a TokenRequest as `kubectl create token --duration 10m --bound-object-kind Pod` sends it', async (t) => {
  const ref = msg(bytesField(1, 'Pod'), bytesField(2, 'v1'), bytesField(3, 'web'), bytesField(4, 'uid-1'));
  const spec = msg(bytesField(1, 'vault'), bytesField(3, ref), intField(4, 600));
  const obj = decodeKubeProtobuf(envelope('authentication.k8s.io/v1', 'TokenRequest', msg(bytesField(1, msg(bytesField(1, 'robot'), bytesField(3, 'team'))), bytesField(2, spec), bytesField(3, Buffer.alloc(0)))));
  t.same(obj, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    metadata: { name: 'robot', namespace: 'team' },
    spec: { audiences: ['vault'], boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: 'web', uid: 'uid-1' }, expirationSeconds: 600 },
  });
});

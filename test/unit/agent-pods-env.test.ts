/** Container env: $(VAR) expansion as upstream's expansion.go, valueFrom, envFrom, service variables. */
import t from 'tap';
import type { V1ConfigMap, V1Container, V1Pod, V1Secret, V1Service } from '@kubernetes/client-node';
import { containerResourceValue, expandCommandAndArgs, makeEnvironment, serviceEnvVars, type EnvContext } from '../../agent/pods/env.js';
import { expand, mappingFor } from '../../agent/pods/expansion.js';
import type { ObjectLookup } from '../../agent/pods/types.js';
import { parseQuantity, quantityMilli, quantityValue } from '../../agent/pods/quantity.js';

t.test('expansion (upstream expansion_test cases)', async (t) => {
  const m = mappingFor(new Map([['VAR_A', 'A'], ['VAR_B', 'B'], ['VAR_C', 'C'], ['VAR_REF', '$(VAR_A)'], ['VAR_EMPTY', '']]));
  const cases: [string, string][] = [
    ['$(VAR_A)', 'A'],
    ['___$(VAR_B)___', '___B___'],
    ['$(VAR_A)-$(VAR_A)', 'A-A'],
    ['$(VAR_A)$(VAR_B)$(VAR_C)', 'ABC'],
    ['foo\\$(VAR_C)bar', 'foo\\Cbar'],
    ['$$(VAR_B)_$(VAR_A)', '$(VAR_B)_A'],
    ['$$$(VAR_A)', '$A'],
    ['$$$$(VAR_A)', '$$(VAR_A)'],
    ['f000-$$VAR_A', 'f000-$VAR_A'],
    ['$(VAR_DNE)', '$(VAR_DNE)'],
    ['$(VAR_EMPTY)', ''],
    ['$(VAR_REF)', '$(VAR_A)'],
    ['$(VAR_A', '$(VAR_A'],
    ['$VAR_A', '$VAR_A'],
    ['$', '$'],
    ['$()', '$()'],
    ['foo$', 'foo$'],
    ['$(VAR_A)$', 'A$'],
    ['$$', '$'],
    ['$(foo$$var)', '$(foo$$var)'],
  ];
  for (const [input, want] of cases) t.equal(expand(input, m), want, JSON.stringify(input));
});

t.test('quantities', async (t) => {
  t.equal(quantityMilli('100m'), 100);
  t.equal(quantityMilli('0.1'), 100, 'exact decimal');
  t.equal(quantityMilli('1.5'), 1500);
  t.equal(quantityMilli('2'), 2000);
  t.equal(quantityValue('64Mi'), 64 * 1024 * 1024);
  t.equal(quantityValue('1G'), 1e9);
  t.equal(quantityValue('1e3'), 1000);
  t.equal(quantityValue('100m'), 1, 'Value rounds up');
  t.throws(() => parseQuantity('12x'), { code: 'INVALID_QUANTITY' });
});

const cms: Record<string, V1ConfigMap> = {
  app: { metadata: { name: 'app', namespace: 'ns1' }, data: { MODE: 'prod', 'log.level': 'debug', '1bad': 'x' } },
};
const secrets: Record<string, V1Secret> = {
  creds: { metadata: { name: 'creds', namespace: 'ns1' }, data: { password: Buffer.from('s3cr3t').toString('base64') } },
};
const services: V1Service[] = [
  { metadata: { name: 'kubernetes', namespace: 'default' }, spec: { clusterIP: '10.96.0.1', ports: [{ name: 'https', port: 443, protocol: 'TCP' }] } },
  { metadata: { name: 'redis-primary', namespace: 'ns1' }, spec: { clusterIP: '10.96.0.20', ports: [{ port: 6379 }, { name: 'metrics', port: 9121, protocol: 'TCP' }] } },
  { metadata: { name: 'headless', namespace: 'ns1' }, spec: { clusterIP: 'None', ports: [{ port: 80 }] } },
  { metadata: { name: 'other', namespace: 'ns2' }, spec: { clusterIP: '10.96.0.30', ports: [{ port: 80 }] } },
];
const lookup: ObjectLookup = {
  getConfigMap: async (ns, name) => (ns === 'ns1' ? cms[name] : undefined),
  getSecret: async (ns, name) => (ns === 'ns1' ? secrets[name] : undefined),
  listServices: async () => services,
};
const ctx: EnvContext = { hostIPs: ['172.31.0.11'], podIPs: ['10.250.0.9', 'fd00::9'], nodeAllocatable: { cpu: '2', memory: '4Gi' }, lookup };

function pod(container: V1Container, extra: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod {
  return {
    metadata: { name: 'web-1', namespace: 'ns1', uid: 'u-1', labels: { app: 'web' }, annotations: { 'team.io/owner': 'ops' } },
    spec: { nodeName: 'node-1', serviceAccountName: 'builder', containers: [container], ...extra },
  };
}

function asMap(env: { name: string; value: string }[]): Record<string, string> {
  return Object.fromEntries(env.map((e) => [e.name, e.value]));
}

t.test('values, valueFrom and expansion against earlier variables', async (t) => {
  const c: V1Container = {
    name: 'app',
    resources: { limits: { memory: '128Mi' }, requests: { cpu: '250m' } },
    env: [
      { name: 'A', value: 'alpha' },
      { name: 'B', value: '$(A)-beta' },
      { name: 'ESC', value: '$$(A)' },
      { name: 'LATER', value: '$(C)' },
      { name: 'C', value: 'gamma' },
      { name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'NS', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'UID', valueFrom: { fieldRef: { fieldPath: 'metadata.uid' } } },
      { name: 'LBL', valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
      { name: 'ANN', valueFrom: { fieldRef: { fieldPath: "metadata.annotations['team.io/owner']" } } },
      { name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
      { name: 'SA', valueFrom: { fieldRef: { fieldPath: 'spec.serviceAccountName' } } },
      { name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } },
      { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
      { name: 'POD_IPS', valueFrom: { fieldRef: { fieldPath: 'status.podIPs' } } },
      { name: 'MEM_MI', valueFrom: { resourceFieldRef: { resource: 'limits.memory', divisor: '1Mi' } } },
      { name: 'CPU_REQ_M', valueFrom: { resourceFieldRef: { resource: 'requests.cpu', divisor: '1m' } } },
      { name: 'CPU_REQ', valueFrom: { resourceFieldRef: { resource: 'requests.cpu' } } },
      { name: 'CPU_LIM', valueFrom: { resourceFieldRef: { resource: 'limits.cpu' } } },
      { name: 'MODE', valueFrom: { configMapKeyRef: { name: 'app', key: 'MODE' } } },
      { name: 'PASS', valueFrom: { secretKeyRef: { name: 'creds', key: 'password' } } },
      { name: 'OPT', valueFrom: { configMapKeyRef: { name: 'nope', key: 'x', optional: true } } },
      { name: 'OPT_KEY', valueFrom: { configMapKeyRef: { name: 'app', key: 'nokey', optional: true } } },
      { name: 'SVC', value: '$(REDIS_PRIMARY_SERVICE_HOST):$(REDIS_PRIMARY_SERVICE_PORT)' },
    ],
  };
  const env = asMap(await makeEnvironment(pod(c), c, ctx));
  t.match(env, {
    A: 'alpha',
    B: 'alpha-beta',
    ESC: '$(A)',
    LATER: '$(C)',
    C: 'gamma',
    POD: 'web-1',
    NS: 'ns1',
    UID: 'u-1',
    LBL: 'web',
    ANN: 'ops',
    NODE: 'node-1',
    SA: 'builder',
    HOST_IP: '172.31.0.11',
    POD_IP: '10.250.0.9',
    POD_IPS: '10.250.0.9,fd00::9',
    MEM_MI: '128',
    CPU_REQ_M: '250',
    CPU_REQ: '1',
    CPU_LIM: '2',
    MODE: 'prod',
    PASS: 's3cr3t',
    SVC: '10.96.0.20:6379',
  });
  t.notOk('OPT' in env, 'optional missing configMap: skipped');
  t.notOk('OPT_KEY' in env, 'optional missing key: skipped');
  const { command, args } = expandCommandAndArgs({ name: 'x', command: ['sh', '-c', 'echo $(A) $$(A)'], args: ['$(B)'] }, await makeEnvironment(pod(c), c, ctx));
  t.same(command, ['sh', '-c', 'echo alpha $(A)']);
  t.same(args, ['alpha-beta']);
});

t.test('resourceFieldRef divisors round up', async (t) => {
  const c: V1Container = { name: 'c', resources: { limits: { cpu: '1500m', memory: '100M' } } };
  t.equal(containerResourceValue(c, 'limits.cpu', undefined, ctx.nodeAllocatable), '2', 'ceil(1.5)');
  t.equal(containerResourceValue(c, 'limits.cpu', '1m', ctx.nodeAllocatable), '1500');
  t.equal(containerResourceValue(c, 'limits.memory', '1Mi', ctx.nodeAllocatable), '96', 'ceil(100e6 / 2^20)');
  t.equal(containerResourceValue(c, 'limits.memory', '1k', ctx.nodeAllocatable), '100000');
  t.equal(containerResourceValue({ name: 'd' }, 'limits.memory', '1Gi', ctx.nodeAllocatable), '4', 'no limit: node allocatable');
  t.equal(containerResourceValue({ name: 'd' }, 'requests.cpu', undefined, ctx.nodeAllocatable), '0');
});

t.test('missing configMap / key / secret: errors with upstream wording', async (t) => {
  const run = (env: V1Container['env'], envFrom?: V1Container['envFrom']) => {
    const c: V1Container = { name: 'app', env, ...(envFrom !== undefined ? { envFrom } : {}) };
    return makeEnvironment(pod(c), c, ctx);
  };
  await t.rejects(run([{ name: 'X', valueFrom: { configMapKeyRef: { name: 'missing', key: 'k' } } }]), { code: 'CREATE_CONTAINER_CONFIG', message: 'configmap "missing" not found' });
  await t.rejects(run([{ name: 'X', valueFrom: { configMapKeyRef: { name: 'app', key: 'nokey' } } }]), { message: "couldn't find key nokey in ConfigMap ns1/app" });
  await t.rejects(run([{ name: 'X', valueFrom: { secretKeyRef: { name: 'gone', key: 'k' } } }]), { message: 'secret "gone" not found' });
  await t.rejects(run([{ name: 'X', valueFrom: { secretKeyRef: { name: 'creds', key: 'user' } } }]), { message: "couldn't find key user in Secret ns1/creds" });
  await t.rejects(run([], [{ configMapRef: { name: 'missing' } }]), { message: 'configmap "missing" not found' });
  t.same(await run([], [{ configMapRef: { name: 'missing', optional: true } }]).then((e) => e.filter((v) => !v.name.includes('SERVICE') && !v.name.includes('PORT'))), []);
});

t.test('envFrom with prefix, invalid keys skipped, env overrides', async (t) => {
  const c: V1Container = {
    name: 'app',
    envFrom: [{ configMapRef: { name: 'app' }, prefix: 'CFG_' }, { secretRef: { name: 'creds' } }],
    env: [{ name: 'password', value: 'overridden' }],
  };
  const env = asMap(await makeEnvironment(pod(c, { enableServiceLinks: false }), c, ctx));
  t.equal(env.CFG_MODE, 'prod');
  t.equal(env['CFG_log.level'], 'debug');
  t.equal(env.CFG_1bad, 'x', 'valid once prefixed');
  t.equal(env.password, 'overridden');
  const bare: V1Container = { name: 'app', envFrom: [{ configMapRef: { name: 'app' } }] };
  t.notOk('1bad' in asMap(await makeEnvironment(pod(bare), bare, ctx)), 'keys that are not env var names are skipped');
});

t.test('service variables: namespace services + kubernetes, links off keeps only the master service', async (t) => {
  const c: V1Container = { name: 'app' };
  const env = asMap(await makeEnvironment(pod(c), c, ctx));
  t.match(env, {
    KUBERNETES_SERVICE_HOST: '10.96.0.1',
    KUBERNETES_SERVICE_PORT: '443',
    KUBERNETES_SERVICE_PORT_HTTPS: '443',
    KUBERNETES_PORT: 'tcp://10.96.0.1:443',
    KUBERNETES_PORT_443_TCP: 'tcp://10.96.0.1:443',
    KUBERNETES_PORT_443_TCP_PROTO: 'tcp',
    KUBERNETES_PORT_443_TCP_PORT: '443',
    KUBERNETES_PORT_443_TCP_ADDR: '10.96.0.1',
    REDIS_PRIMARY_SERVICE_HOST: '10.96.0.20',
    REDIS_PRIMARY_SERVICE_PORT: '6379',
    REDIS_PRIMARY_SERVICE_PORT_METRICS: '9121',
    REDIS_PRIMARY_PORT: 'tcp://10.96.0.20:6379',
    REDIS_PRIMARY_PORT_9121_TCP_ADDR: '10.96.0.20',
  });
  t.notOk('HEADLESS_SERVICE_HOST' in env, 'headless: none');
  t.notOk('OTHER_SERVICE_HOST' in env, 'other namespace: none');
  const noLinks = asMap(await makeEnvironment(pod(c, { enableServiceLinks: false }), c, ctx));
  t.ok('KUBERNETES_SERVICE_HOST' in noLinks);
  t.notOk('REDIS_PRIMARY_SERVICE_HOST' in noLinks);
  t.same(serviceEnvVars([{ metadata: { name: 'v6' }, spec: { clusterIP: 'fd00::1', ports: [{ port: 53, protocol: 'UDP' }] } }]).find((v) => v.name === 'V6_PORT'), { name: 'V6_PORT', value: 'udp://[fd00::1]:53' });
});

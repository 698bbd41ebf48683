/** Projected volumes (pure payload, token request spec, set-up with fake lookup/tokens in a temp dir) and the token manager's refresh decisions. */
import t from 'tap';
import { mkdtemp, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod, V1Volume } from '@kubernetes/client-node';
import { projectedPayload, tokenRequestSpec, type ProjectedInputs } from '../../agent/pods/projected.js';
import { requiresRefresh, ServiceAccountTokenManager, tokenCacheKey, type IssuedToken, type TokenRequestSpec } from '../../agent/pods/tokens.js';
import type { ObjectLookup } from '../../agent/pods/types.js';
import { setUpVolumes, volumeHostPath } from '../../agent/pods/volumes.js';

const dir = await mkdtemp(join(tmpdir(), 'knode-agent-projected-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

const pod: V1Pod = {
  metadata: { name: 'web', namespace: 'team', uid: 'uid-1' },
  spec: { serviceAccountName: 'robot', containers: [{ name: 'app', image: 'app', resources: { limits: { memory: '64Mi' } } }] },
};

/** The volume the ServiceAccount admission plugin adds, plus a secret and a resource file. */
const apiAccess: V1Volume = {
  name: 'kube-api-access-abcde',
  projected: {
    defaultMode: 0o644,
    sources: [
      { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
      { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
      { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
    ],
  },
};

const ctx = { hostIPs: ['10.0.0.1'], podIPs: ['10.244.0.5'], nodeAllocatable: { cpu: '2', memory: '4Gi' } };

function inputs(over: Partial<ProjectedInputs> = {}): ProjectedInputs {
  return {
    ...ctx,
    configMaps: new Map([['kube-root-ca.crt', { data: { 'ca.crt': 'PEM', other: 'x' } }]]),
    secrets: new Map(),
    tokens: new Map([[0, 'jwt-1']]),
    ...over,
  };
}

t.test('kube-api-access layout: token, ca.crt, namespace with the default mode', async (t) => {
  const files = projectedPayload(pod, apiAccess, inputs());
  t.same([...files.entries()].map(([p, f]) => [p, f.data.toString(), f.mode]), [
    ['token', 'jwt-1', 0o644],
    ['ca.crt', 'PEM', 0o644],
    ['namespace', 'team', 0o644],
  ]);
  t.equal(volumeHostPath('/r', 'u1', apiAccess), '/r/pods/u1/volumes/kubernetes.io~projected/kube-api-access-abcde');
});

t.test('secret and configMap sources: items, item modes, defaultMode, optional', async (t) => {
  const v: V1Volume = {
    name: 'all',
    projected: {
      defaultMode: 0o440,
      sources: [
        { secret: { name: 'creds', items: [{ key: 'pw', path: 'secret/pw', mode: 0o400 }] } },
        { configMap: { name: 'cfg' } },
        { configMap: { name: 'absent', optional: true } },
        { secret: { name: 'absent', optional: true } },
        { downwardAPI: { items: [{ path: 'mem', resourceFieldRef: { containerName: 'app', resource: 'limits.memory', divisor: '1Mi' } }] } },
      ],
    },
  };
  const files = projectedPayload(
    pod,
    v,
    inputs({
      secrets: new Map([['creds', { data: { pw: Buffer.from('s3cret').toString('base64') } }], ['absent', undefined]]),
      configMaps: new Map([['cfg', { data: { a: '1', b: '2' } }], ['absent', undefined]]),
      tokens: new Map(),
    }),
  );
  t.same([...files.entries()].map(([p, f]) => [p, f.data.toString(), f.mode]), [
    ['secret/pw', 's3cret', 0o400],
    ['a', '1', 0o440],
    ['b', '2', 0o440],
    ['mem', '64', 0o440],
  ]);
});

t.test('errors of every source are reported together; clusterTrustBundle is refused clearly', async (t) => {
  const v: V1Volume = {
    name: 'bad',
    projected: {
      sources: [
        { configMap: { name: 'gone' } },
        { secret: { name: 'creds', items: [{ key: 'nope', path: 'x' }] } },
        { clusterTrustBundle: { path: 'bundle.pem', signerName: 'example.com/signer' } },
      ],
    },
  };
  t.throws(() => projectedPayload(pod, v, inputs({ configMaps: new Map([['gone', undefined]]), secrets: new Map([['creds', { data: {} }]]) })), {
    code: 'VOLUME_SETUP',
    message:
      'MountVolume.SetUp failed for volume "bad" : configmap "gone" not found, secret references non-existent secret key: nope, clusterTrustBundle projections are not supported by knode-agent',
  });
});

t.test('token request spec: audience, default and minimum expiration, bound pod', async (t) => {
  t.same(tokenRequestSpec(pod, { path: 'token' }), { audiences: [], expirationSeconds: 3600, boundPod: { name: 'web', uid: 'uid-1' } });
  t.same(tokenRequestSpec(pod, { path: 'token', audience: 'vault', expirationSeconds: 7200 }).audiences, ['vault']);
  t.throws(() => tokenRequestSpec(pod, { path: 'token', expirationSeconds: 599 }), /599 is below the minimum of 600 seconds/);
  t.equal(tokenRequestSpec(pod, { path: 'token', expirationSeconds: 20 }, 10).expirationSeconds, 20, 'a lower bound for tests');
});

t.test('refresh decisions: 80 % of the TTL (minus jitter) or 24 h', async (t) => {
  const issuedAt = 1_000_000_000_000;
  const tok = (ttl: number): IssuedToken => ({ token: 't', expiresAtMs: issuedAt + ttl * 1000, expirationSeconds: ttl });
  t.notOk(requiresRefresh(tok(3600), issuedAt + 2879_000, 0), 'at 79.97 % of an hour: keep');
  t.ok(requiresRefresh(tok(3600), issuedAt + 2881_000, 0), 'past 80 %: refresh');
  t.ok(requiresRefresh(tok(3600), issuedAt + 2875_000, 10_000), 'the jitter brings it forward');
  const day = 48 * 3600;
  t.notOk(requiresRefresh(tok(day), issuedAt + 23 * 3600_000, 0), 'two-day token at 23 h: keep');
  t.ok(requiresRefresh(tok(day), issuedAt + 24 * 3600_000 + 1, 0), 'two-day token past 24 h: refresh');
});

t.test('token manager: cache per key, refresh, stale fallback, forgetPod, cleanup', async (t) => {
  let now = 0;
  let n = 0;
  let fail = false;
  const asked: string[] = [];
  const stale: unknown[] = [];
  const m = new ServiceAccountTokenManager(
    async (ns, sa, spec) => {
      asked.push(`${ns}/${sa}/${spec.boundPod.uid}/${spec.audiences.join(',')}`);
      if (fail) throw new Error('apiserver down');
      n++;
      return { token: `tok-${n}`, expiresAtMs: now + spec.expirationSeconds * 1000, expirationSeconds: spec.expirationSeconds };
    },
    { now: () => now, jitterMs: () => 0, onStaleServed: (err) => stale.push(err) },
  );
  const spec: TokenRequestSpec = { audiences: [], expirationSeconds: 100, boundPod: { name: 'web', uid: 'uid-1' } };
  t.equal(await m.token('team', 'robot', spec), 'tok-1');
  t.equal(await m.token('team', 'robot', spec), 'tok-1', 'cached');
  t.equal(await m.token('team', 'robot', { ...spec, audiences: ['vault'] }), 'tok-2', 'another audience is another entry');
  t.not(tokenCacheKey('team', 'robot', spec), tokenCacheKey('team', 'robot', { ...spec, boundPod: { name: 'web', uid: 'uid-2' } }));
  now = 79_000;
  t.equal(await m.token('team', 'robot', spec), 'tok-1', 'at 79 %: still cached');
  now = 81_000;
  t.equal(await m.token('team', 'robot', spec), 'tok-3', 'at 81 %: refreshed');
  fail = true;
  now = 81_000 + 81_000;
  t.equal(await m.token('team', 'robot', spec), 'tok-3', 'refresh failed: the unexpired cached token is served');
  t.equal(stale.length, 1);
  now = 81_000 + 101_000;
  await t.rejects(m.token('team', 'robot', spec), /apiserver down/, 'expired and no answer: an error');
  fail = false;
  t.equal(m.size, 2);
  m.forgetPod('uid-1');
  t.equal(m.size, 0, 'entries of the pod are gone');
  await m.token('team', 'robot', spec);
  now += 200_000;
  m.cleanup();
  t.equal(m.size, 0, 'expired entries dropped');
  t.equal(asked.length, 6, 'two misses, one refresh, two failed refreshes, one after forgetPod');
});

t.test('setUpVolumes writes the projected volume and rewrites the token when it changes', async (t) => {
  let token = 'jwt-a';
  const asked: { ns: string; sa: string; spec: TokenRequestSpec }[] = [];
  const lookup: ObjectLookup = {
    getConfigMap: async (_ns, name) => (name === 'kube-root-ca.crt' ? { data: { 'ca.crt': 'PEM' } } : undefined),
    getSecret: async () => undefined,
    listServices: async () => [],
  };
  const tokens = {
    token: async (ns: string, sa: string, spec: TokenRequestSpec) => {
      asked.push({ ns, sa, spec });
      return token;
    },
    forgetPod: () => undefined,
  };
  const rootDir = join(dir, 'root');
  const paths = await setUpVolumes({ ...pod, spec: { ...pod.spec!, volumes: [apiAccess] } }, { rootDir, lookup, tokens, ...ctx });
  const vol = paths.get(apiAccess.name)!;
  t.equal(vol, join(rootDir, 'pods', 'uid-1', 'volumes', 'kubernetes.io~projected', apiAccess.name));
  t.equal(await readFile(join(vol, 'token'), 'utf8'), 'jwt-a');
  t.equal(await readFile(join(vol, 'ca.crt'), 'utf8'), 'PEM');
  t.equal(await readFile(join(vol, 'namespace'), 'utf8'), 'team');
  t.equal((await stat(join(vol, 'token'))).mode & 0o777, 0o644);
  t.same(asked[0], { ns: 'team', sa: 'robot', spec: { audiences: [], expirationSeconds: 3607, boundPod: { name: 'web', uid: 'uid-1' } } });
  const first = await readlink(join(vol, '..data'));
  token = 'jwt-b';
  await setUpVolumes({ ...pod, spec: { ...pod.spec!, volumes: [apiAccess] } }, { rootDir, lookup, tokens, ...ctx });
  t.equal(await readFile(join(vol, 'token'), 'utf8'), 'jwt-b');
  t.not(await readlink(join(vol, '..data')), first, 'a new ..data generation');

  await t.rejects(setUpVolumes({ ...pod, spec: { ...pod.spec!, volumes: [apiAccess] } }, { rootDir, lookup, ...ctx }), {
    code: 'VOLUME_SETUP',
    message: /service account tokens are not available/,
  });
  const failing = { token: async () => Promise.reject(new Error('failed to fetch token: HTTP 404: serviceaccounts "robot" not found')), forgetPod: () => undefined };
  await t.rejects(setUpVolumes({ ...pod, spec: { ...pod.spec!, volumes: [apiAccess] } }, { rootDir, lookup, tokens: failing, ...ctx }), {
    code: 'VOLUME_SETUP',
    message: 'MountVolume.SetUp failed for volume "kube-api-access-abcde" : failed to fetch token: HTTP 404: serviceaccounts "robot" not found',
  });
});

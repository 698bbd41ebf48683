/** Service-account tokens (JWT claims, TokenRequest rules, authentication checks) and the ServiceAccount admission plugin: pure parts, with in-memory objects. */
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KubeObject } from '../../lab/apiserver/object.js';
import { admitPod, mountServiceAccountToken, projectedTokenErrors, shouldAutomount, tokenMountPath } from '../../lab/apiserver/serviceaccount-admission.js';
import {
  authenticateServiceAccountToken,
  defaultIssuer,
  ensureServiceAccountKey,
  signJwt,
  tokenRequest,
  verifyJwt,
  type ServiceAccountTokenOptions,
  type TokenObjects,
} from '../../lab/apiserver/serviceaccount-tokens.js';
import { rootCAConfigMapWanted, rootCADescription } from '../../lab/controllers/serviceaccounts.js';

const dir = await mkdtemp(join(tmpdir(), 'knode-sa-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const key = await ensureServiceAccountKey(dir);

let nowMs = Date.UTC(2026, 0, 1);
const opts: ServiceAccountTokenOptions = { key, now: () => nowMs };
const objects = new Map<string, KubeObject>();
const lookup: TokenObjects = {
  serviceAccount: async (ns, name) => objects.get(`sa/${ns}/${name}`),
  pod: async (ns, name) => objects.get(`pod/${ns}/${name}`),
};
objects.set('sa/team/robot', { metadata: { name: 'robot', namespace: 'team', uid: 'sa-uid' } });
objects.set('pod/team/web', { metadata: { name: 'web', namespace: 'team', uid: 'pod-uid' }, spec: { serviceAccountName: 'robot' } });

interface Answer {
  spec: { audiences: string[]; expirationSeconds: number; boundObjectRef?: { name: string; uid: string } };
  status: { token: string; expirationTimestamp: string };
}
const ask = async (spec: Record<string, unknown>, sa = 'robot'): Promise<Answer> =>
  (await tokenRequest('team', sa, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec } as never, lookup, opts)) as Answer;

t.test('the key is made once and reused', async (t) => {
  const again = await ensureServiceAccountKey(dir);
  t.equal(again.kid, key.kid);
  const other = await ensureServiceAccountKey(await mkdtemp(join(tmpdir(), 'knode-sa-')));
  t.not(other.kid, key.kid);
  const jwt = signJwt({ sub: 'x' }, key);
  t.same(verifyJwt(jwt, key), { claims: { sub: 'x' } });
  t.same(verifyJwt(jwt, other), { error: 'invalid signature' });
  t.same(verifyJwt('a.b', key), { error: 'not a JWT' });
});

t.test('TokenRequest: claims as upstream, bound to the pod', async (t) => {
  const a = await ask({ expirationSeconds: 1200, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'web', uid: 'pod-uid' } });
  t.same(a.spec.audiences, [defaultIssuer], 'default audience: the apiserver');
  t.equal(a.status.expirationTimestamp, new Date(nowMs + 1200_000).toISOString().replace('.000', ''));
  const v = verifyJwt(a.status.token, key);
  if (!('claims' in v)) throw new Error(v.error);
  const s = nowMs / 1000;
  t.match(v.claims, {
    iss: defaultIssuer,
    sub: 'system:serviceaccount:team:robot',
    aud: [defaultIssuer],
    iat: s,
    nbf: s,
    exp: s + 1200,
    'kubernetes.io': { namespace: 'team', pod: { name: 'web', uid: 'pod-uid' }, serviceaccount: { name: 'robot', uid: 'sa-uid' } },
  });
  t.type(v.claims.jti, 'string');
});

t.test('TokenRequest: 3607 s pod tokens are extended to a year with warnafter; the answer still says 3607 s', async (t) => {
  const a = await ask({ expirationSeconds: 3607, boundObjectRef: { kind: 'Pod', name: 'web', uid: 'pod-uid' } });
  t.equal(a.status.expirationTimestamp, new Date(nowMs + 3607_000).toISOString().replace('.000', ''));
  const v = verifyJwt(a.status.token, key);
  if (!('claims' in v)) throw new Error(v.error);
  t.equal(v.claims.exp, nowMs / 1000 + 365 * 24 * 3600);
  t.match(v.claims['kubernetes.io'], { warnafter: nowMs / 1000 + 3607 });
});

t.test('TokenRequest: rules and errors', async (t) => {
  await t.rejects(ask({ expirationSeconds: 599 }), { message: 'TokenRequest "robot" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes' });
  await t.rejects(ask({}, 'ghost'), { reason: 'NotFound', message: 'serviceaccounts "ghost" not found' });
  await t.rejects(ask({ boundObjectRef: { kind: 'Pod', name: 'gone', uid: 'x' } }), { reason: 'NotFound', message: 'pods "gone" not found' });
  await t.rejects(ask({ boundObjectRef: { kind: 'Pod', name: 'web', uid: 'old' } }), { reason: 'Conflict', message: /the UID in the bound object reference \(old\) does not match/ });
  objects.set('sa/team/other', { metadata: { name: 'other', namespace: 'team', uid: 'o' } });
  await t.rejects(ask({ boundObjectRef: { kind: 'Pod', name: 'web', uid: 'pod-uid' } }, 'other'), { reason: 'BadRequest', message: 'cannot bind token for serviceaccount "other" to pod running with different serviceaccount name.' });
  t.equal((await ask({})).spec.expirationSeconds, 3600, 'default 3600');
  const low = (await tokenRequest('team', 'robot', { spec: { expirationSeconds: 20 } }, lookup, { ...opts, minExpirationSeconds: 10 })) as Answer;
  t.equal(low.spec.expirationSeconds, 20, 'a test-only lower bound');
});

t.test('authentication: the service-account user; expired, wrong audience, deleted pod or SA are refused', async (t) => {
  const a = await ask({ expirationSeconds: 600, boundObjectRef: { kind: 'Pod', name: 'web', uid: 'pod-uid' } });
  const r = await authenticateServiceAccountToken(a.status.token, [defaultIssuer], lookup, opts);
  if (!('user' in r)) throw new Error(r.error);
  t.same(r.user.groups, ['system:serviceaccounts', 'system:serviceaccounts:team', 'system:authenticated']);
  t.equal(r.user.name, 'system:serviceaccount:team:robot');
  t.equal(r.user.uid, 'sa-uid');
  t.same(r.user.extra?.['authentication.kubernetes.io/pod-name'], ['web']);
  t.same(r.audiences, [defaultIssuer]);
  t.same(await authenticateServiceAccountToken(a.status.token, ['vault'], lookup, opts), { error: 'token audiences are invalid' });
  const vault = await ask({ audiences: ['vault'] });
  t.match(await authenticateServiceAccountToken(vault.status.token, ['vault'], lookup, opts), { audiences: ['vault'] });

  const saved = nowMs;
  nowMs += 661_000;
  t.same(await authenticateServiceAccountToken(a.status.token, [defaultIssuer], lookup, opts), { error: 'service account token has expired' });
  nowMs = saved;

  objects.set('pod/team/web', { metadata: { name: 'web', namespace: 'team', uid: 'new-uid' }, spec: { serviceAccountName: 'robot' } });
  t.same(await authenticateServiceAccountToken(a.status.token, [defaultIssuer], lookup, opts), { error: 'pod UID (new-uid) does not match claim (pod-uid)' });
  objects.delete('pod/team/web');
  t.same(await authenticateServiceAccountToken(a.status.token, [defaultIssuer], lookup, opts), { error: 'pod team/web has been deleted' });
  objects.set('pod/team/web', { metadata: { name: 'web', namespace: 'team', uid: 'pod-uid' }, spec: { serviceAccountName: 'robot' } });
  objects.set('sa/team/robot', { metadata: { name: 'robot', namespace: 'team', uid: 'recreated' } });
  t.match(await authenticateServiceAccountToken(a.status.token, [defaultIssuer], lookup, opts), { error: /service account UID \(recreated\) does not match claim/ });
  objects.set('sa/team/robot', { metadata: { name: 'robot', namespace: 'team', uid: 'sa-uid' } });
  const forged = a.status.token.slice(0, -4) + (a.status.token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  t.same(await authenticateServiceAccountToken(forged, [defaultIssuer], lookup, opts), { error: 'invalid signature' });
});

t.test('admission: volume and mounts as upstream', async (t) => {
  const spec = {
    initContainers: [{ name: 'init', image: 'app' }],
    containers: [
      { name: 'a', image: 'app', volumeMounts: [{ name: 'data', mountPath: '/data' }] },
      { name: 'b', image: 'app', volumeMounts: [{ name: 'mine', mountPath: tokenMountPath }] },
    ],
    volumes: [{ name: 'data', emptyDir: {} }],
  };
  mountServiceAccountToken(spec, 'abcde');
  t.same(spec.volumes[1], {
    name: 'kube-api-access-abcde',
    projected: {
      defaultMode: 0o644,
      sources: [
        { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
        { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
        { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
      ],
    },
  });
  const mount = { name: 'kube-api-access-abcde', readOnly: true, mountPath: tokenMountPath };
  t.same((spec.initContainers[0] as { volumeMounts?: unknown[] }).volumeMounts, [mount]);
  t.same(spec.containers[0]!.volumeMounts, [{ name: 'data', mountPath: '/data' }, mount]);
  t.same(spec.containers[1]!.volumeMounts, [{ name: 'mine', mountPath: tokenMountPath }], 'an existing mount at the path wins');
  mountServiceAccountToken(spec, 'zzzzz');
  t.equal(spec.volumes.length, 2, 'idempotent: an existing kube-api-access volume is reused');

  t.equal(shouldAutomount({}, { metadata: {} }), true);
  t.equal(shouldAutomount({}, { metadata: {}, automountServiceAccountToken: false }), false);
  t.equal(shouldAutomount({ automountServiceAccountToken: true }, { metadata: {}, automountServiceAccountToken: false }), true, 'the pod wins');
});

t.test('admission: missing SA is Forbidden, automount false adds nothing, pull secrets copied, mirror pods skipped', async (t) => {
  const sas = new Map<string, KubeObject>([
    ['team/default', { metadata: { name: 'default', namespace: 'team' }, imagePullSecrets: [{ name: 'reg' }] }],
    ['team/quiet', { metadata: { name: 'quiet', namespace: 'team' }, automountServiceAccountToken: false }],
  ]);
  const l = { serviceAccount: async (ns: string, n: string) => sas.get(`${ns}/${n}`) };
  const pod = (spec: Record<string, unknown>, annotations?: Record<string, string>): KubeObject => ({
    metadata: { name: 'p', namespace: 'team', ...(annotations ? { annotations } : {}) },
    spec: { containers: [{ name: 'c', image: 'app' }], ...spec },
  });
  const p1 = pod({});
  await admitPod(p1, l, () => 'xxxxx');
  t.match(p1.spec, { serviceAccountName: 'default', volumes: [{ name: 'kube-api-access-xxxxx' }], imagePullSecrets: [{ name: 'reg' }] });
  const p2 = pod({ serviceAccountName: 'quiet' });
  await admitPod(p2, l);
  t.equal((p2.spec as { volumes?: unknown }).volumes, undefined);
  const p3 = pod({ automountServiceAccountToken: false });
  await admitPod(p3, l);
  t.equal((p3.spec as { volumes?: unknown }).volumes, undefined);
  await t.rejects(admitPod(pod({ serviceAccountName: 'ghost' }), l), {
    reason: 'Forbidden',
    message: 'pods "p" is forbidden: error looking up service account team/ghost: serviceaccount "ghost" not found',
  });
  const mirror = pod({ serviceAccountName: 'ghost' }, { 'kubernetes.io/config.mirror': 'abc' });
  await admitPod(mirror, l);
  t.equal((mirror.spec as { volumes?: unknown }).volumes, undefined);
});

t.test('root-ca-cert-publisher: the ConfigMap it wants', async (t) => {
  const want = rootCAConfigMapWanted('team', 'PEM', undefined)!;
  t.same(want.data, { 'ca.crt': 'PEM' });
  t.equal(want.metadata.annotations?.['kubernetes.io/description'], rootCADescription);
  t.equal(rootCAConfigMapWanted('team', 'PEM', want), undefined, 'right already');
  t.same(rootCAConfigMapWanted('team', 'PEM', { ...want, data: { 'ca.crt': 'OLD', extra: 'x' } })?.data, { 'ca.crt': 'PEM' });
});

t.test('pod validation of serviceAccountToken projections', async (t) => {
  const spec = (exp: number, path = 'token'): unknown => ({ volumes: [{ name: 'v', projected: { sources: [{ configMap: { name: 'x' } }, { serviceAccountToken: { path, expirationSeconds: exp } }] } }] });
  t.same(projectedTokenErrors(spec(600)), []);
  t.same(projectedTokenErrors(spec(599)), [{ field: 'spec.volumes[0].projected.sources[1].serviceAccountToken.expirationSeconds', message: 'Invalid value: 599: may not specify a duration less than 10 minutes' }]);
  t.same(projectedTokenErrors(spec(20), 10), [], 'the test-only lower bound');
  t.match(projectedTokenErrors(spec(3600, '')), [{ reason: 'FieldValueRequired', field: 'spec.volumes[0].projected.sources[1].serviceAccountToken.path' }]);
});

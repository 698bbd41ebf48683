/**
 * Service-account tokens end to end without the lab: the lab apiserver (with
 * the ServiceAccount admission plugin and a test-only 10 s lower bound for
 * token lifetimes) and its serviceaccount + root-ca-cert-publisher controllers
 * in this process; the agent's pod workers with the real token manager and
 * TokenRequest call (as the node's user) on a containerd with CRI in a
 * throw-away `knode-t-<random>` namespace (test/helpers/agent-pods.ts).
 *
 * - A pod created through the API gets the kube-api-access volume; inside the
 *   container /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}
 *   hold a token that authenticates as the service account (SelfSubjectReview
 *   with it, TokenReview by the admin), the lab CA and the namespace.
 * - A 20 s token is refreshed and the file rewritten; the new token is valid too.
 * - automountServiceAccountToken: false gets no volume; a missing service
 *   account is refused by admission; once the pod is gone its token is refused.
 *
 * Teardown: worker loops, controllers and the apiserver stop; the helpers
 * remove containerd, mounts, cgroups, the CNI cache, the namespace and temp dir.
 */
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { createKubeClient, isNotFound } from '../../agent/kube/index.js';
import { requestServiceAccountToken } from '../../agent/kube/token-request.js';
import { ServiceAccountTokenManager } from '../../agent/pods/tokens.js';
import type { ObjectLookup } from '../../agent/pods/types.js';
import { startApiServer } from '../../lab/apiserver/server.js';
import { ApiClient, apiReason } from '../../lab/controllers/client.js';
import { startControllers } from '../../lab/controllers/index.js';
import { imageRefs } from '../../lab/paths.js';
import { createLogger } from '../../lib/log.js';
import { cs, podWorld, startCriContainerd, waitStatus } from '../helpers/agent-pods.js';
import { createTestEnv, waitFor } from '../helpers/containerd.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const env = await createTestEnv(t, 'agent-projected');
const { rand, tmp } = env;
const network = `knode-t-${rand}`;
const cgroupParent = `/knode-t-${rand}`;
env.cleanupCgroup(cgroupParent);
env.cleanupCniCache(network);
const quiet = createLogger({ component: 'agent-projected-test', level: 'warn' });
const nodeName = `node-${rand}`;

const server = await startApiServer({
  dataDir: join(tmp, 'apiserver'),
  listen: ['127.0.0.1:0'],
  nodes: [nodeName],
  serviceAccountAdmission: true,
  serviceAccountMinTokenExpirationSeconds: 10,
});
t.teardown(() => server.close());
const controllers = await startControllers({ kubeconfigPath: server.adminKubeconfig, rootCAFile: server.pki.ca.certFile, only: ['serviceaccount', 'root-ca-cert-publisher'], logger: quiet });
t.teardown(() => controllers.stop());
const admin = await ApiClient.fromKubeconfig(server.adminKubeconfig);
t.teardown(() => admin.close());
const caPem = server.pki.ca.cert;

const kube = createKubeClient(await server.nodeKubeconfig(nodeName));
const orUndefined = async <T>(p: Promise<T>): Promise<T | undefined> => p.catch((err: unknown) => (isNotFound(err) ? undefined : Promise.reject(err)));
const lookup: ObjectLookup = {
  getConfigMap: (namespace, name) => orUndefined(kube.core.readNamespacedConfigMap({ namespace, name })),
  getSecret: (namespace, name) => orUndefined(kube.core.readNamespacedSecret({ namespace, name })),
  listServices: async () => [],
};
const tokens = new ServiceAccountTokenManager((ns, sa, spec) => requestServiceAccountToken(kube, ns, sa, spec));
const cri = await startCriContainerd(t, env, { network, logger: quiet });
const w = podWorld(t, { runtime: cri, tmp, cgroupParent, lookup, logger: quiet }, { tokens, minTokenExpirationSeconds: 10 });

/** POSTs `body` to the apiserver with a bearer token. */
function postWithToken(path: string, token: string, body: unknown): Promise<{ code: number; json: Record<string, unknown> }> {
  const url = new URL(path, server.urls[0]);
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', ca: caPem, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ code: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(text);
  });
}

async function whoAmI(token: string): Promise<{ code: number; username?: string; groups?: string[] }> {
  const r = await postWithToken('/apis/authentication.k8s.io/v1/selfsubjectreviews', token, { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' });
  const info = (r.json.status as { userInfo?: { username?: string; groups?: string[] } } | undefined)?.userInfo;
  return { code: r.code, ...(info?.username ? { username: info.username } : {}), ...(info?.groups ? { groups: info.groups } : {}) };
}

async function tokenReview(token: string): Promise<{ authenticated?: boolean; user?: { username?: string }; error?: string }> {
  const r = await admin.create<{ status: { authenticated?: boolean; user?: { username?: string }; error?: string } }>('/apis/authentication.k8s.io/v1/tokenreviews', {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenReview',
    spec: { token },
  });
  return r.status;
}

const createPod = (pod: V1Pod): Promise<V1Pod> => admin.create<V1Pod>('/api/v1/namespaces/default/pods', pod);

await waitFor('default service account and kube-root-ca.crt', async () => {
  const sa = await admin.get('/api/v1/namespaces/default/serviceaccounts/default').catch(() => undefined);
  const cm = await admin.get<{ data?: Record<string, string> }>('/api/v1/namespaces/default/configmaps/kube-root-ca.crt').catch(() => undefined);
  return sa !== undefined && cm?.data?.['ca.crt'] === caPem ? true : undefined;
});

t.test('the kube-api-access volume: token, ca.crt and namespace in the container; the token authenticates', async (t) => {
  const pod = await createPod({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `api-${rand}` }, spec: { containers: [{ name: 'app', image: imageRefs.app }] } });
  const vol = pod.spec!.volumes?.find((v) => v.name.startsWith('kube-api-access-'));
  t.ok(vol?.projected, `admission added ${vol?.name ?? 'no volume'}`);
  t.same(pod.spec!.containers[0]!.volumeMounts, [{ name: vol!.name, readOnly: true, mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' }]);
  const uid = pod.metadata!.uid!;
  w.workers.updatePod(pod);
  const s = await waitStatus(w, uid, 'Running', (s) => s.phase === 'Running');
  const id = cs(s, 'app')!.containerID!.replace('containerd://', '');
  const sh = async (cmd: string): Promise<string> => (await cri.execSync(id, ['sh', '-c', cmd], 10)).stdout.toString();
  const dir = '/var/run/secrets/kubernetes.io/serviceaccount';
  t.equal(await sh(`cat ${dir}/namespace`), 'default');
  t.equal(await sh(`cat ${dir}/ca.crt`), caPem);
  const token = await sh(`cat ${dir}/token`);
  t.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a JWT');
  t.equal(await sh(`touch ${dir}/x 2>/dev/null; echo $?`), '1\n', 'read-only');
  t.same(await whoAmI(token), { code: 201, username: 'system:serviceaccount:default:default', groups: ['system:serviceaccounts', 'system:serviceaccounts:default', 'system:authenticated'] }, 'the token authenticates as the service account');
  t.match(await tokenReview(token), { authenticated: true, user: { username: 'system:serviceaccount:default:default' } });
  const host = join(tmp, 'kubelet', 'pods', uid, 'volumes', 'kubernetes.io~projected', vol!.name);
  t.equal(await readFile(join(host, 'token'), 'utf8'), token, 'kubernetes.io~projected layout on the host');

  t.equal(await w.workers.terminatePod(pod, 0), true);
  await admin.delete(`/api/v1/namespaces/default/pods/${pod.metadata!.name!}`, { gracePeriodSeconds: 0 });
  t.match(await tokenReview(token), { authenticated: false, error: `pod default/${pod.metadata!.name!} has been deleted` }, 'the token of a deleted pod is refused');
  t.equal((await whoAmI(token)).code, 401);
});

t.test('a short-lived token is refreshed and the file rewritten', async (t) => {
  const pod = await createPod({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `short-${rand}` },
    spec: {
      automountServiceAccountToken: false,
      containers: [{ name: 'app', image: imageRefs.app, volumeMounts: [{ name: 'tok', mountPath: '/tok', readOnly: true }] }],
      volumes: [{ name: 'tok', projected: { sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 20, audience: 'knode-test' } }] } }],
    },
  });
  const uid = pod.metadata!.uid!;
  w.workers.updatePod(pod);
  const s = await waitStatus(w, uid, 'Running', (s) => s.phase === 'Running');
  const id = cs(s, 'app')!.containerID!.replace('containerd://', '');
  const read = async (): Promise<string> => (await cri.execSync(id, ['cat', '/tok/token'], 10)).stdout.toString();
  const first = await read();
  const second = await waitFor('the token file rewritten', async () => {
    const now = await read();
    return now !== first && now !== '' ? now : undefined;
  }, 40_000);
  const decode = (jwt: string): { aud: string[]; exp: number; iat: number } => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as { aud: string[]; exp: number; iat: number };
  t.same(decode(second).aud, ['knode-test']);
  t.equal(decode(second).exp - decode(second).iat, 20, 'a 20 s token');
  t.ok(decode(second).iat >= decode(first).iat + 6, `refreshed ${decode(second).iat - decode(first).iat} s later (at 80 % of 20 s minus a jitter of up to 10 s)`);
  const r = await postWithToken('/apis/authentication.k8s.io/v1/tokenreviews', '', {}).catch(() => undefined);
  t.equal(r?.code, 401, 'an empty bearer token is refused');
  const review = await admin.create<{ status: { authenticated?: boolean; audiences?: string[] } }>('/apis/authentication.k8s.io/v1/tokenreviews', {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenReview',
    spec: { token: second, audiences: ['knode-test'] },
  });
  t.match(review.status, { authenticated: true, audiences: ['knode-test'] }, 'the refreshed token is valid for its audience');
  t.equal(await w.workers.terminatePod(pod, 0), true);
  await admin.delete(`/api/v1/namespaces/default/pods/${pod.metadata!.name!}`, { gracePeriodSeconds: 0 });
});

t.test('automountServiceAccountToken: false gets nothing; a missing service account is refused by admission', async (t) => {
  const pod = await createPod({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `quiet-${rand}` }, spec: { automountServiceAccountToken: false, containers: [{ name: 'app', image: imageRefs.app }] } });
  t.equal(pod.spec!.volumes, undefined, 'no volume');
  t.equal(pod.spec!.containers[0]!.volumeMounts, undefined, 'no mount');
  await admin.delete(`/api/v1/namespaces/default/pods/${pod.metadata!.name!}`, { gracePeriodSeconds: 0 });
  const err = await createPod({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `ghost-${rand}` }, spec: { serviceAccountName: 'ghost', containers: [{ name: 'app', image: imageRefs.app }] } }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.equal(apiReason(err), 'Forbidden');
  t.match(String(err), /pods "ghost-\w+" is forbidden: error looking up service account default\/ghost: serviceaccount "ghost" not found/);
});

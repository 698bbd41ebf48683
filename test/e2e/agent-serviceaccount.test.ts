// Service-account tokens in the lab, for real (root, under the lab lock): `scripts/lab up
// --nodes 1` (containerd). A pod created in a fresh namespace right after the namespace
// (the serviceaccount controller's `default` appears within the admission plugin's
// retries) gets the kube-api-access projected volume; `kubectl exec` reads
// /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}; the token
// works with kubectl against the lab apiserver (`auth whoami` with only that token);
// `kubectl create token` (TokenRequest over protobuf) works too; automountServiceAccountToken:
// false gets nothing; a pod naming a missing service account is refused; the pod's token is
// refused once the pod is deleted; `down` at the end.
import t from 'tap';
import { readFileSync } from 'node:fs';
import type { V1Pod } from '@kubernetes/client-node';
import { execFile } from '../../lib/exec.js';
import { controlPlanePaths } from '../../lab/machines/control-plane.js';
import { getJson, kubectl, lab, until } from '../helpers/lab.js';

const ns = 'knode-e2e-sa';
const dir = '/var/run/secrets/kubernetes.io/serviceaccount';

/** kubectl with nothing but a bearer token (no kubeconfig credentials). */
function kubectlWithToken(token: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return execFile('kubectl', ['--kubeconfig=/dev/null', `--server=${controlPlanePaths.hostUrl}`, `--certificate-authority=${controlPlanePaths.caCert}`, `--token=${token}`, ...args], {
    allowFailure: true,
    timeoutMs: 30_000,
  });
}

t.before(async () => {
  await lab(['down']);
  const r = await lab(['up', '--nodes', '1']);
  if (r.code !== 0) throw new Error(`scripts/lab up: ${r.stderr.slice(-3000)}`);
});

t.teardown(async () => {
  await kubectl(['delete', 'namespace', ns, '--wait=false']);
  await lab(['down']);
});

t.test('a pod reads its service-account token and uses it against the apiserver', async (t) => {
  await until('node-1 Ready', async () => {
    const n = await getJson<{ items: { status?: { conditions?: { type: string; status: string }[] } }[] }>(['get', 'nodes']);
    return n.items.some((x) => (x.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')) ? true : undefined;
  }, 60_000);
  t.equal((await kubectl(['create', 'namespace', ns])).code, 0, 'namespace created');
  const run = await kubectl(['run', 'reader', '-n', ns, '--image=knode.local/app:1.0', '--restart=Never']);
  t.equal(run.code, 0, 'pod created right after its namespace', { stderr: run.stderr });
  const pod = await until('reader Running', async () => {
    const p = await getJson<V1Pod>(['get', 'pod', 'reader', '-n', ns]).catch(() => undefined);
    return p?.status?.phase === 'Running' ? p : undefined;
  }, 60_000);
  t.equal(pod.spec?.serviceAccountName, 'default');
  t.match(pod.spec?.volumes?.[0]?.name, /^kube-api-access-[a-z0-9]{5}$/, 'the kube-api-access volume');
  const exec = async (file: string): Promise<string> => {
    const r = await kubectl(['exec', '-n', ns, 'reader', '--', 'cat', `${dir}/${file}`]);
    if (r.code !== 0) throw new Error(`kubectl exec cat ${file}: ${r.stderr}`);
    return r.stdout;
  };
  t.equal(await exec('namespace'), ns);
  t.equal(await exec('ca.crt'), readFileSync(controlPlanePaths.caCert, 'utf8'), 'ca.crt is the lab CA');
  const token = await exec('token');
  const who = await kubectlWithToken(token, ['auth', 'whoami', '-o', 'json']);
  t.equal(who.code, 0, 'kubectl auth whoami with the pod token', { stderr: who.stderr });
  const info = (JSON.parse(who.stdout) as { status: { userInfo: { username: string; groups: string[] } } }).status.userInfo;
  t.equal(info.username, `system:serviceaccount:${ns}:default`);
  t.same(info.groups, ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated']);
  const forbidden = await kubectlWithToken(token, ['get', 'secrets', '-n', ns]);
  t.match(forbidden.stderr, /forbidden: User "system:serviceaccount:knode-e2e-sa:default" cannot list resource "secrets"/, 'authenticated, but not authorised for secrets');

  const created = await kubectl(['create', 'token', 'default', '-n', ns, '--duration=10m']);
  t.equal(created.code, 0, 'kubectl create token (TokenRequest)', { stderr: created.stderr });
  const who2 = await kubectlWithToken(created.stdout.trim(), ['auth', 'whoami', '-o', 'json']);
  t.match(who2.stdout, `system:serviceaccount:${ns}:default`, 'that token works too');

  const del = await kubectl(['delete', 'pod', 'reader', '-n', ns, '--grace-period=1', '--wait=false']);
  t.equal(del.code, 0, 'kubectl delete pod', { stderr: del.stderr });
  await until('the agent finally deleted the pod', async () => ((await kubectl(['get', 'pod', 'reader', '-n', ns])).code !== 0 ? true : undefined), 60_000);
  const after = await kubectlWithToken(token, ['auth', 'whoami']);
  t.not(after.code, 0, 'the token of the deleted pod is refused');
  t.match(after.stderr, /Unauthorized|must be logged in/);
});

t.test('automountServiceAccountToken: false gets no volume; a missing service account is refused', async (t) => {
  const quiet = await kubectl(['run', 'quiet', '-n', ns, '--image=knode.local/app:1.0', '--restart=Never', '--overrides={"apiVersion":"v1","spec":{"automountServiceAccountToken":false}}']);
  t.equal(quiet.code, 0, { stderr: quiet.stderr });
  const p = await getJson<V1Pod>(['get', 'pod', 'quiet', '-n', ns]);
  t.equal(p.spec?.volumes, undefined, 'no volumes');
  t.equal(p.spec?.containers[0]?.volumeMounts, undefined, 'no mounts');
  const ghost = await kubectl(['run', 'ghost', '-n', ns, '--image=knode.local/app:1.0', '--restart=Never', '--overrides={"apiVersion":"v1","spec":{"serviceAccountName":"ghost"}}']);
  t.not(ghost.code, 0);
  t.match(ghost.stderr, `pods "ghost" is forbidden: error looking up service account ${ns}/ghost: serviceaccount "ghost" not found`);
});

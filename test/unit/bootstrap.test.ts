/**
 * The TLS bootstrap's pure parts: bootstrap-token authentication decisions,
 * CSR validation and subresource updates (lab apiserver), the approver's and
 * signer's decisions (lab controllers), the rotation deadline and back-off,
 * request outcomes, kubeconfig rendering and the certificate store (agent).
 */
import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { bootstrapTokenUser, parseBootstrapToken } from '../../lab/apiserver/bootstrap-tokens.js';
import { csrCondition, csrErrors, csrUpdate, stampRequester } from '../../lab/apiserver/certificates.js';
import type { KubeObject } from '../../lab/apiserver/object.js';
import { approvalPlan, approvalReview, kubeletClientSigner, signingPlan } from '../../lab/controllers/csr-logic.js';
import type { CertificateSigningRequest } from '../../lab/controllers/types.js';
import { createCsr } from '../../lib/x509/pkcs10.js';
import { isExpired, retryDelayMs, rotationDeadline } from '../../agent/bootstrap/rotation.js';
import { digestedName, requestOutcome } from '../../agent/bootstrap/request.js';
import { renderNodeKubeconfig } from '../../agent/bootstrap/kubeconfig.js';
import { kubeconfigState } from '../../agent/bootstrap/index.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
const nodeCsrPem = createCsr(key, { commonName: 'system:node:w1', organizations: ['system:nodes'] });

function tokenSecret(data: Record<string, string>, extra: Partial<KubeObject> = {}): KubeObject {
  const enc: Record<string, string> = {};
  for (const [k, v] of Object.entries(data)) enc[k] = b64(v);
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'bootstrap-token-abcdef', namespace: 'kube-system' }, type: 'bootstrap.kubernetes.io/token', data: enc, ...extra };
}

t.test('bootstrap tokens', async (t) => {
  t.same(parseBootstrapToken('abcdef.0123456789abcdef'), { id: 'abcdef', secret: '0123456789abcdef' });
  for (const bad of ['abcdef0123456789abcdef', 'ABCDEF.0123456789abcdef', 'abcde.0123456789abcdef', 'abcdef.0123456789abcde', 'abcdef.0123456789abcdef0']) t.equal(parseBootstrapToken(bad), undefined, bad);
  const tok = { id: 'abcdef', secret: '0123456789abcdef' };
  const good = { 'token-id': 'abcdef', 'token-secret': '0123456789abcdef', 'usage-bootstrap-authentication': 'true' };
  const now = Date.parse('2026-11-23T12:00:00Z');
  t.same(bootstrapTokenUser(tok, tokenSecret(good), now), { user: { name: 'system:bootstrap:abcdef', groups: ['system:bootstrappers', 'system:authenticated'] } });
  t.same(bootstrapTokenUser(tok, tokenSecret({ ...good, 'auth-extra-groups': 'system:bootstrappers:kubeadm:default-node-token' }), now), {
    user: { name: 'system:bootstrap:abcdef', groups: ['system:bootstrappers', 'system:bootstrappers:kubeadm:default-node-token', 'system:authenticated'] },
  });
  const refused = (s: KubeObject | undefined): string => {
    const r = bootstrapTokenUser(tok, s, now);
    return 'reason' in r ? r.reason : 'accepted';
  };
  t.match(refused(undefined), /no secret/);
  t.match(refused(tokenSecret({ ...good, 'token-secret': '0123456789abcdee' })), /token-secret/);
  t.match(refused(tokenSecret({ ...good, 'token-id': 'zzzzzz' })), /token-id/);
  t.match(refused(tokenSecret({ ...good, 'usage-bootstrap-authentication': 'false' })), /not for authentication/);
  t.match(refused(tokenSecret({ ...good, expiration: '2026-11-23T11:59:59Z' })), /expired/);
  t.equal(refused(tokenSecret({ ...good, expiration: '2026-11-23T12:00:01Z' })), 'accepted');
  t.match(refused(tokenSecret({ ...good, expiration: 'tomorrow' })), /invalid expiration/);
  t.match(refused(tokenSecret({ ...good, 'auth-extra-groups': 'system:masters' })), /auth-extra-groups/);
  t.match(refused(tokenSecret(good, { type: 'Opaque' })), /type/);
  t.match(refused(tokenSecret(good, { metadata: { name: 'bootstrap-token-abcdef', namespace: 'kube-system', deletionTimestamp: '2026-11-23T11:00:00Z' } })), /deleted/);
});

function csrObject(spec: Record<string, unknown>, status: Record<string, unknown> = {}): KubeObject {
  return { apiVersion: 'certificates.k8s.io/v1', kind: 'CertificateSigningRequest', metadata: { name: 'c1' }, spec: { request: b64(nodeCsrPem), signerName: kubeletClientSigner, usages: ['digital signature', 'client auth'], ...spec }, status } as KubeObject;
}

t.test('CSR validation and updates (lab apiserver)', async (t) => {
  t.same(csrErrors(csrObject({})), []);
  const fields = (o: KubeObject): string[] => csrErrors(o).map((c) => c.field ?? '');
  t.same(fields(csrObject({ request: b64('not a csr') })), ['spec.request']);
  t.same(fields(csrObject({ request: undefined })), ['spec.request']);
  t.same(fields(csrObject({ signerName: 'no-slash' })), ['spec.signerName']);
  t.same(fields(csrObject({ usages: [] })), ['spec.usages']);
  t.same(fields(csrObject({ usages: ['client auth', 'client auth'] })), ['spec.usages[1]']);
  t.same(fields(csrObject({ usages: ['flying'] })), ['spec.usages[0]']);
  t.same(fields(csrObject({ expirationSeconds: 599 })), ['spec.expirationSeconds']);
  t.same(fields(csrObject({}, { conditions: [{ type: 'Approved' }, { type: 'Denied' }] })), ['status.conditions']);
  t.same(fields(csrObject({}, { certificate: b64('x') })), ['status.certificate', 'status.certificate']);
  // The requester is stamped, whatever the body claims.
  const stamped = stampRequester({ spec: { username: 'admin', groups: ['system:masters'], request: 'x' } }, { name: 'system:bootstrap:abcdef', groups: ['system:bootstrappers', 'system:authenticated'] }) as { spec: Record<string, unknown> };
  t.same(stamped.spec, { request: 'x', username: 'system:bootstrap:abcdef', groups: ['system:bootstrappers', 'system:authenticated'] });
  // Main resource: spec and status kept; /approval: conditions only; /status: approval conditions kept, certificate set once.
  const cur = csrObject({}, {});
  const changed = csrObject({ signerName: 'example.com/other' }, { conditions: [{ type: 'Approved' }] });
  const main = csrUpdate(cur, changed, structuredClone(changed), undefined);
  t.equal((main.spec as { signerName: string }).signerName, kubeletClientSigner);
  t.same(main.status, {});
  const approved = csrUpdate(cur, changed, structuredClone(cur), 'approval');
  t.equal(csrCondition(approved), 'Approved');
  const viaStatus = csrUpdate(cur, changed, structuredClone(cur), 'status');
  t.equal(csrCondition(viaStatus), 'Pending', '/status cannot approve');
  const issued = csrUpdate(approved, csrObject({}, { certificate: 'Y2VydA==' }), structuredClone(approved), 'status');
  t.equal(csrCondition(issued), 'Approved,Issued');
  const again = csrUpdate(issued, csrObject({}, { certificate: 'b3RoZXI=' }), structuredClone(issued), 'status');
  t.equal((again.status as { certificate: string }).certificate, 'Y2VydA==', 'the certificate is set once');
});

function csr(spec: Partial<CertificateSigningRequest['spec']>, status?: CertificateSigningRequest['status']): CertificateSigningRequest {
  return {
    metadata: { name: 'c1' },
    spec: { request: b64(nodeCsrPem), signerName: kubeletClientSigner, usages: ['digital signature', 'client auth'], username: 'system:bootstrap:abcdef', groups: ['system:bootstrappers'], ...spec },
    ...(status ? { status } : {}),
  };
}

t.test('approver decisions', async (t) => {
  t.same(approvalPlan(csr({})), { action: 'review', subresource: 'nodeclient' });
  t.same(approvalPlan(csr({ username: 'system:node:w1' })), { action: 'review', subresource: 'selfnodeclient' });
  t.same(approvalPlan(csr({ usages: ['digital signature', 'key encipherment', 'client auth'] })), { action: 'review', subresource: 'nodeclient' });
  const skip = (c: CertificateSigningRequest): string => {
    const p = approvalPlan(c);
    return p.action === 'skip' ? p.why : 'review';
  };
  t.match(skip(csr({}, { conditions: [{ type: 'Approved', status: 'True' }] })), /already/);
  t.match(skip(csr({}, { conditions: [{ type: 'Denied', status: 'True' }] })), /already/);
  t.match(skip(csr({ signerName: 'kubernetes.io/kube-apiserver-client' })), /not handled/);
  t.match(skip(csr({ usages: ['digital signature', 'server auth'] })), /server auth/);
  t.match(skip(csr({ usages: ['digital signature'] })), /client auth/);
  t.match(skip(csr({ request: b64(createCsr(key, { commonName: 'system:node:w1', organizations: ['system:masters'] })) })), /organization/);
  t.match(skip(csr({ request: b64(createCsr(key, { commonName: 'admin', organizations: ['system:nodes'] })) })), /common name/);
  t.match(skip(csr({ request: b64('garbage') })), /CERTIFICATE REQUEST/);
  t.match(approvalReview(csr({}), 'nodeclient'), {
    kind: 'SubjectAccessReview',
    spec: { user: 'system:bootstrap:abcdef', groups: ['system:bootstrappers'], resourceAttributes: { group: 'certificates.k8s.io', resource: 'certificatesigningrequests', verb: 'create', subresource: 'nodeclient' } },
  });
});

t.test('signer decisions', async (t) => {
  const now = Date.parse('2026-11-23T12:00:00Z');
  const approved = { conditions: [{ type: 'Approved', status: 'True' }] };
  t.same(signingPlan(csr({}), 3600, now), { action: 'skip' }, 'not approved');
  t.same(signingPlan(csr({}, { ...approved, certificate: 'x' }), 3600, now), { action: 'skip' }, 'already issued');
  t.same(signingPlan(csr({}, { conditions: [...approved.conditions, { type: 'Failed', status: 'True' }] }), 3600, now), { action: 'skip' });
  t.same(signingPlan(csr({ signerName: 'example.com/x' }, approved), 3600, now), { action: 'skip' });
  const plan = signingPlan(csr({ expirationSeconds: 600 }, approved), 3600, now);
  t.equal(plan.action, 'sign');
  if (plan.action === 'sign') {
    t.equal(plan.notBefore.getTime(), now - 300_000);
    t.equal(plan.notAfter.getTime(), now + 600_000);
  }
  const capped = signingPlan(csr({ expirationSeconds: 86400 }, approved), 3600, now);
  if (capped.action === 'sign') t.equal(capped.notAfter.getTime(), now + 3600_000, 'capped by --cluster-signing-duration');
  const bad = signingPlan(csr({ usages: ['server auth'] }, approved), 3600, now);
  t.match(bad, { action: 'fail', message: /server auth/ });
});

t.test('rotation timing and back-off', async (t) => {
  const v = { notBefore: 1_000_000, notAfter: 2_000_000 };
  t.equal(rotationDeadline(v, 0), 1_700_000);
  t.equal(rotationDeadline(v, 0.5), 1_800_000);
  t.equal(rotationDeadline(v, 1), 1_900_000);
  t.equal(rotationDeadline(v, 7), 1_900_000, 'clamped');
  t.equal(isExpired(v, 1_999_999), false);
  t.equal(isExpired(v, 2_000_000), true);
  t.same([0, 1, 2, 3].map((a) => retryDelayMs(a)), [2000, 4000, 8000, 16000]);
  t.equal(retryDelayMs(100), 300_000);
});

t.test('request outcomes and names', async (t) => {
  t.same(requestOutcome({ spec: { request: '', signerName: '' }, status: {} }), { state: 'pending' });
  t.same(requestOutcome({ spec: { request: '', signerName: '' }, status: { conditions: [{ type: 'Approved', status: 'True' }] } }), { state: 'pending' }, 'approved, not issued yet');
  t.same(requestOutcome({ spec: { request: '', signerName: '' }, status: { conditions: [{ type: 'Approved', status: 'True' }], certificate: b64('PEM') } }), { state: 'issued', certPem: 'PEM' });
  t.match(requestOutcome({ metadata: { name: 'x' }, spec: { request: '', signerName: '' }, status: { conditions: [{ type: 'Denied', status: 'True', reason: 'Nope' }] } }), { state: 'refused', message: /x was denied: Nope/ });
  const n1 = digestedName(key, 'system:node:w1', ['system:nodes'], ['digital signature', 'client auth']);
  t.equal(n1, digestedName(key, 'system:node:w1', ['system:nodes'], ['digital signature', 'client auth']), 'stable for the same key');
  t.not(n1, digestedName(key, 'system:node:w2', ['system:nodes'], ['digital signature', 'client auth']));
  t.match(n1, /^node-csr-[A-Za-z0-9_-]{43}$/);
});

t.test('node kubeconfig and its state', async (t) => {
  const text = renderNodeKubeconfig({ server: 'https://10.0.0.1:6443', caPem: 'CA', insecureSkipTLSVerify: false, tlsServerName: undefined }, '/var/lib/knode/pki/kubelet-client-current.pem');
  t.match(parseYaml(text), {
    clusters: [{ cluster: { server: 'https://10.0.0.1:6443', 'certificate-authority-data': b64('CA') } }],
    users: [{ user: { 'client-certificate': '/var/lib/knode/pki/kubelet-client-current.pem', 'client-key': '/var/lib/knode/pki/kubelet-client-current.pem' } }],
  });
  const dir = await mkdtemp(join(tmpdir(), 'knode-t-bootstrap-unit-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  t.match(await kubeconfigState(join(dir, 'missing'), Date.now()), { usable: false, why: /ENOENT/ });
  await writeFile(join(dir, 'bad.pem'), 'not a certificate');
  await writeFile(join(dir, 'kc'), renderNodeKubeconfig({ server: 'https://127.0.0.1:1', caPem: undefined, insecureSkipTLSVerify: false, tlsServerName: undefined }, join(dir, 'bad.pem')));
  t.match(await kubeconfigState(join(dir, 'kc'), Date.now()), { usable: false, why: /does not parse/ });
  await writeFile(join(dir, 'token'), 'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: u, user: {token: abc}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n');
  t.match(await kubeconfigState(join(dir, 'token'), Date.now()), { usable: true, certificate: undefined }, 'a token kubeconfig is used as it is');
});

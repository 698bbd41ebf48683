/**
 * The pure parts of the agent's lean apiserver client: kubeconfig parsing,
 * URL/query building, the request each typed call makes (over a recording
 * transport), watch-stream decoding, date revival, API errors.
 */
import t from 'tap';
import type { V1Pod } from '@kubernetes/client-node';
import { coordinationV1, coreV1, mergePatch, strategicMergePatch } from '../../agent/kube/apis.js';
import { apiErrorSummary, httpStatus, isConflict, isNotFound } from '../../agent/kube/client.js';
import { parseKubeconfig } from '../../agent/kube/kubeconfig.js';
import type { KubeRequest, KubeRest } from '../../agent/kube/rest.js';
import { KubeApiError, MicroTime, WatchDecoder, encodeQuery, parseWatchLine, requestQuery, reviveDates, seg } from '../../agent/kube/wire.js';

const kubeconfig = (user: string, cluster = 'server: https://10.0.0.1:6443/\n    certificate-authority: pki/ca.crt'): string => `
apiVersion: v1
kind: Config
current-context: ctx
contexts:
- name: other
  context: { cluster: nope, user: nope }
- name: ctx
  context:
    cluster: c1
    user: u1
    namespace: kube-system
clusters:
- name: c1
  cluster:
    ${cluster}
users:
- name: u1
  user:
${user}
`;

t.test('kubeconfig: current context, relative files, credentials', async (t) => {
  const kc = parseKubeconfig(kubeconfig('    client-certificate: /abs/cert.pem\n    client-key: key.pem'), '/etc/knode');
  t.same(kc.cluster, { name: 'c1', server: 'https://10.0.0.1:6443', skipTLSVerify: false, caFile: '/etc/knode/pki/ca.crt' }, 'trailing slash dropped, CA path resolved');
  t.same(kc.user, { name: 'u1', certFile: '/abs/cert.pem', keyFile: '/etc/knode/key.pem' });
  t.equal(kc.namespace, 'kube-system');
  t.equal(kc.currentContext, 'ctx');

  const tok = parseKubeconfig(kubeconfig('    token: abc.def', 'server: https://h:1\n    insecure-skip-tls-verify: true\n    tls-server-name: api\n    certificate-authority-data: Q0E='), '/x');
  t.same(tok.cluster, { name: 'c1', server: 'https://h:1', skipTLSVerify: true, caData: 'Q0E=', tlsServerName: 'api' });
  t.same(tok.user, { name: 'u1', token: 'abc.def' });
  t.same(parseKubeconfig(kubeconfig('    tokenFile: t/token'), '/r').user, { name: 'u1', tokenFile: '/r/t/token' });
  t.same(parseKubeconfig(kubeconfig('    username: a\n    password: b'), '/r').user, { name: 'u1', username: 'a', password: 'b' });
  t.same(parseKubeconfig(kubeconfig('    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ'), '/r').user, { name: 'u1', certData: 'Q0VSVA==', keyData: 'S0VZ' });
});

t.test('kubeconfig: bad input gives KUBECONFIG_INVALID with the reason', async (t) => {
  const bad = (text: string, why: RegExp): void => void t.throws(() => parseKubeconfig(text, '/'), { code: 'KUBECONFIG_INVALID', message: why });
  bad(': : :\n  - [', /not YAML/);
  bad('- a list', /expected a map/);
  bad('apiVersion: v1\nclusters: []', /no current-context/);
  bad('current-context: nope\ncontexts: []', /contexts has no entry named "nope"/);
  bad(kubeconfig('    token: x', 'server: ftp://h'), /bad server URL/);
  bad(kubeconfig('    token: x', 'certificate-authority: ca'), /has no server/);
  bad(kubeconfig('    exec:\n      command: aws'), /exec credential plugins are not supported/);
  bad(kubeconfig('    auth-provider:\n      name: gcp'), /auth-provider is not supported/);
  bad(kubeconfig('    token: 42'), /token must be a string/);
});

t.test('query and path building', async (t) => {
  t.equal(encodeQuery(undefined), '');
  t.equal(encodeQuery({ a: undefined, b: null }), '');
  t.equal(encodeQuery({ fieldSelector: 'spec.nodeName=n 1', watch: true, timeoutSeconds: 300, x: undefined }), '?fieldSelector=spec.nodeName%3Dn%201&watch=true&timeoutSeconds=300');
  t.same(requestQuery({ name: 'p', namespace: 'ns', body: {}, gracePeriodSeconds: 0, dryRun: 'All', force: false, obj: {} }), { gracePeriodSeconds: 0, dryRun: 'All', force: false });
  t.equal(seg('a/b'), 'a%2Fb', 'a name cannot escape its segment');
  t.throws(() => seg(''), { code: 'KUBE_BAD_REQUEST' });
});

/** A transport that records requests and answers `{}`. */
function recorder(): { rest: KubeRest; seen: KubeRequest[] } {
  const seen: KubeRequest[] = [];
  const rest: KubeRest = {
    server: 'https://x',
    async request<T>(r: KubeRequest): Promise<T> {
      seen.push(r);
      return {} as T;
    },
    async watch() {},
    close() {},
  };
  return { rest, seen };
}

t.test('typed calls: verb, path, query, body, patch type', async (t) => {
  const { rest, seen } = recorder();
  const core = coreV1(rest);
  const pod: V1Pod = { metadata: { name: 'p' } };
  await core.createNamespacedPod({ namespace: 'ns', body: pod });
  await core.deleteNamespacedPod({ name: 'p', namespace: 'ns', gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid: 'u' } } });
  await core.patchNamespacedPodStatus({ name: 'p', namespace: 'ns', body: { status: {} } }, mergePatch);
  await core.patchNodeStatus({ name: 'n1', body: {} }, strategicMergePatch);
  await core.patchNode({ name: 'n1', body: [] });
  await core.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=n1' });
  await core.readNamespacedSecret({ name: 's', namespace: 'ns' });
  await core.createNamespacedServiceAccountToken({ name: 'default', namespace: 'ns', body: { spec: { audiences: ['a'] } } });
  await coordinationV1(rest).replaceNamespacedLease({ name: 'n1', namespace: 'kube-node-lease', body: {} });
  t.same(
    seen.map((r) => [r.method, r.path, r.query, r.contentType ?? '-']),
    [
      ['POST', '/api/v1/namespaces/ns/pods', {}, '-'],
      ['DELETE', '/api/v1/namespaces/ns/pods/p', { gracePeriodSeconds: 0 }, '-'],
      ['PATCH', '/api/v1/namespaces/ns/pods/p/status', {}, 'application/merge-patch+json'],
      ['PATCH', '/api/v1/nodes/n1/status', {}, 'application/strategic-merge-patch+json'],
      ['PATCH', '/api/v1/nodes/n1', {}, 'application/json-patch+json'],
      ['GET', '/api/v1/pods', { fieldSelector: 'spec.nodeName=n1' }, '-'],
      ['GET', '/api/v1/namespaces/ns/secrets/s', {}, '-'],
      ['POST', '/api/v1/namespaces/ns/serviceaccounts/default/token', {}, '-'],
      ['PUT', '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1', {}, '-'],
    ],
  );
  t.same(seen[0]!.body, pod);
  t.same(seen[1]!.body, { gracePeriodSeconds: 0, preconditions: { uid: 'u' } });
  await t.rejects(core.readNamespacedPod({ name: '', namespace: 'ns' }), { code: 'KUBE_BAD_REQUEST' }, 'an empty name rejects (not throws)');
});

t.test('watch stream decoding: split lines and UTF-8, blank lines, bad lines', async (t) => {
  const d = new WatchDecoder();
  const line = JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'pé', creationTimestamp: '2026-01-02T03:04:05Z' } } }) + '\n';
  const bytes = Buffer.from(line + '\n' + JSON.stringify({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '9' } } }) + '\n');
  const cut = bytes.indexOf(Buffer.from('é')) + 1; // inside the two-byte é
  const first = d.push(bytes.subarray(0, cut));
  t.same(first, [], 'nothing complete yet');
  const rest = d.push(bytes.subarray(cut));
  t.equal(rest.length, 2);
  t.equal((rest[0]!.object as V1Pod).metadata!.name, 'pé');
  t.ok((rest[0]!.object as V1Pod).metadata!.creationTimestamp instanceof Date, 'dates revived');
  t.same(rest[1], { type: 'BOOKMARK', object: { metadata: { resourceVersion: '9' } } });
  t.same(d.push('{"type":"DELETED","object":{"metadata":{"name":"x"}}}'), [], 'unterminated');
  t.same(d.end(), [{ type: 'DELETED', object: { metadata: { name: 'x' } } }], 'the final line without a newline');
  t.same(parseWatchLine('{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}}'), [{ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } }]);
  t.throws(() => new WatchDecoder().push('not json\n'), { code: 'KUBE_WATCH_DECODE' });
  t.throws(() => parseWatchLine('{"object":{}}'), { code: 'KUBE_WATCH_DECODE' });
});

t.test('date revival: date-time fields, MicroTime, user maps untouched', async (t) => {
  const obj = reviveDates({
    metadata: { creationTimestamp: '2026-01-02T03:04:05Z', annotations: { startTime: '2026-01-02T03:04:05Z' }, labels: { lastTimestamp: '2026-01-02T03:04:05Z' } },
    status: { startTime: '2026-01-02T03:04:05.5+02:00', conditions: [{ lastTransitionTime: '2026-01-02T03:04:05Z', lastProbeTime: null }], containerStatuses: [{ state: { terminated: { finishedAt: 'not a date' } } }] },
    spec: { renewTime: '2026-01-02T03:04:05.123456Z' },
  });
  t.ok((obj.metadata.creationTimestamp as unknown) instanceof Date);
  t.equal(obj.metadata.annotations.startTime, '2026-01-02T03:04:05Z', 'annotation values stay strings');
  t.equal(obj.metadata.labels.lastTimestamp, '2026-01-02T03:04:05Z');
  t.equal((obj.status.startTime as unknown as Date).toISOString(), '2026-01-02T01:04:05.500Z');
  t.ok((obj.status.conditions[0]!.lastTransitionTime as unknown) instanceof Date);
  t.equal(obj.status.conditions[0]!.lastProbeTime, null);
  t.equal(obj.status.containerStatuses[0]!.state.terminated.finishedAt, 'not a date');
  t.ok((obj.spec.renewTime as unknown) instanceof MicroTime);
  t.equal(JSON.stringify(obj.spec.renewTime), '"2026-01-02T03:04:05.123000Z"', 'MicroTime writes six fractional digits');
  t.equal(JSON.stringify({ d: obj.metadata.creationTimestamp }), '{"d":"2026-01-02T03:04:05.000Z"}', 'a Date goes back as RFC 3339');
});

t.test('API errors: status, summary', async (t) => {
  const e = new KubeApiError(404, JSON.stringify({ kind: 'Status', message: 'pods "x" not found', code: 404 }), 'GET /api/v1/namespaces/d/pods/x');
  t.equal(httpStatus(e), 404);
  t.ok(isNotFound(e));
  t.notOk(isConflict(e));
  t.equal(e.code, 'KUBE_API_ERROR');
  t.match(e.message, /HTTP 404: pods "x" not found/);
  t.equal(apiErrorSummary(e), 'HTTP 404: pods "x" not found');
  t.equal(apiErrorSummary(new KubeApiError(500, 'plain text', 'x')), 'HTTP 500: plain text');
  t.equal(httpStatus(new Error('x')), undefined);
  t.equal(httpStatus(Object.assign(new Error('x'), { code: 409 })), 409, "client-node's ApiException shape still reads");
});

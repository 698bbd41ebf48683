/**
 * The agent's lean apiserver client (agent/kube: kubeconfig.ts, rest.ts,
 * apis.ts) against the real lab apiserver, started here on a loopback port:
 * client-certificate and token credentials, get/list with dates revived, 404
 * and 409 as KubeApiError, merge / strategic merge / JSON patches and the
 * status subresource, Lease replace with a stale resourceVersion, delete with
 * a uid precondition, watch from a resourceVersion (resume without replay), a
 * watch from an expired resourceVersion (410) and the informer's relist, and
 * credential files re-read when they appear.
 */
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { createKubeClient, httpStatus, isConflict, isNotFound, jsonPatch, mergePatch, strategicMergePatch } from '../../agent/kube/client.js';
import { restListWatch, startInformer } from '../../agent/kube/informer.js';
import { loadKubeconfig } from '../../agent/kube/kubeconfig.js';
import { MicroTime } from '../../agent/kube/wire.js';
import type { WatchEvent } from '../../agent/kube/wire.js';
import { createLogger } from '../../lib/log.js';
import { startApiServer } from '../../lab/apiserver/server.js';
import { createTestEnv, waitFor } from '../helpers/containerd.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const env = await createTestEnv(t, 'agent-kube-client');
const nodeName = `knode-t-${env.rand}`;
const logger = createLogger({ component: 'agent-kube-client-test', level: process.env.KNODE_TEST_DEBUG ? 'debug' : 'warn' });
const server = await startApiServer({ dataDir: join(env.tmp, 'apiserver'), listen: ['127.0.0.1:0'], watchWindow: 20, bookmarkIntervalMs: 200, nodes: [nodeName] });
env.onTeardown(() => server.close());
const admin = createKubeClient(server.adminKubeconfig);
const node = createKubeClient(await server.nodeKubeconfig(nodeName));
env.onTeardown(async () => {
  admin.rest.close();
  node.rest.close();
});
const ns = `knode-t-${env.rand}`;
await admin.core.createNamespace({ body: { metadata: { name: ns } } });
await admin.core.createNode({ body: { metadata: { name: nodeName, labels: { 'kubernetes.io/hostname': nodeName } } } });
const podBody = (name: string): V1Pod => ({ metadata: { name, namespace: ns, labels: { app: 'x' }, annotations: { startTime: 'not-a-date' } }, spec: { nodeName, containers: [{ name: 'c', image: 'busybox' }] } });

t.test('get and list: typed objects, dates revived, user maps untouched; 404', async (t) => {
  const created = await admin.core.createNamespacedPod({ namespace: ns, body: podBody('p1') });
  t.ok(created.metadata!.creationTimestamp instanceof Date, 'creationTimestamp is a Date');
  const read = await node.core.readNamespacedPod({ name: 'p1', namespace: ns });
  t.equal(read.metadata!.uid, created.metadata!.uid, 'read with the node client certificate');
  t.equal(read.metadata!.annotations!.startTime, 'not-a-date', 'annotations stay as they are');
  const list = await node.core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${nodeName}` });
  t.same(list.items.map((p) => p.metadata!.name), ['p1']);
  t.ok(list.metadata?.resourceVersion, 'the list has a resourceVersion');
  const err = await node.core.readNamespacedPod({ name: 'nope', namespace: ns }).catch((e: unknown) => e);
  t.ok(isNotFound(err), '404 → isNotFound');
  t.match(err, { code: 'KUBE_API_ERROR', statusCode: 404, message: /nope/ });
});

t.test('patches: merge patch on pods/status, strategic merge on nodes/status, JSON patch', async (t) => {
  const p = await node.core.patchNamespacedPodStatus({ name: 'p1', namespace: ns, body: { status: { phase: 'Running', startTime: new Date('2026-01-02T03:04:05Z') } } }, mergePatch);
  t.equal(p.status!.phase, 'Running');
  t.same(p.status!.startTime, new Date('2026-01-02T03:04:05Z'), 'a Date goes out as RFC 3339 and comes back as a Date');
  t.same(p.spec!.containers.map((c) => c.name), ['c'], 'the status subresource leaves the spec alone');
  const n = await node.core.patchNodeStatus({ name: nodeName, body: { status: { addresses: [{ type: 'InternalIP', address: '10.9.9.9' }] } } }, strategicMergePatch);
  t.same(n.status!.addresses, [{ type: 'InternalIP', address: '10.9.9.9' }]);
  const j = await admin.core.patchNode({ name: nodeName, body: [{ op: 'add', path: '/metadata/labels/knode-t', value: 'yes' }] }, jsonPatch);
  t.equal(j.metadata!.labels!['knode-t'], 'yes');
});

t.test('Lease: create, replace with its resourceVersion, 409 with a stale one (MicroTime)', async (t) => {
  const body = { metadata: { name: nodeName, namespace: 'kube-node-lease' }, spec: { holderIdentity: nodeName, leaseDurationSeconds: 40, renewTime: new MicroTime('2026-01-02T03:04:05.123Z') } };
  const lease = await node.coordination.createNamespacedLease({ namespace: 'kube-node-lease', body }).catch(async (err: unknown) => {
    if (httpStatus(err) !== 409) throw err;
    return node.coordination.readNamespacedLease({ name: nodeName, namespace: 'kube-node-lease' });
  });
  const renewed = await node.coordination.replaceNamespacedLease({ name: nodeName, namespace: 'kube-node-lease', body: { ...lease, spec: { ...lease.spec, renewTime: new MicroTime('2026-01-02T03:04:06Z') } } });
  t.ok(renewed.spec!.renewTime instanceof MicroTime, 'renewTime comes back as a MicroTime');
  t.equal(JSON.stringify(renewed.spec!.renewTime), '"2026-01-02T03:04:06.000000Z"');
  const stale = await node.coordination.replaceNamespacedLease({ name: nodeName, namespace: 'kube-node-lease', body: lease }).catch((e: unknown) => e);
  t.ok(isConflict(stale), 'a stale resourceVersion → 409');
});

t.test('delete with a uid precondition: 409 for another uid, then the delete', async (t) => {
  await admin.core.createNamespacedPod({ namespace: ns, body: podBody('p2') });
  const wrong = await node.core.deleteNamespacedPod({ name: 'p2', namespace: ns, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid: 'other' } } }).catch((e: unknown) => e);
  t.ok(isConflict(wrong), 'precondition failed → 409');
  const uid = (await admin.core.readNamespacedPod({ name: 'p2', namespace: ns })).metadata!.uid!;
  await node.core.deleteNamespacedPod({ name: 'p2', namespace: ns, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid } } });
  await waitFor('p2 gone', async () => (await admin.core.readNamespacedPod({ name: 'p2', namespace: ns }).then(() => undefined, (e: unknown) => (isNotFound(e) ? true : undefined))));
});

t.test('watch: from a resourceVersion, resumed without replay; 410 for an expired one', async (t) => {
  const list = await admin.core.listNamespacedPod({ namespace: ns });
  const rv0 = list.metadata!.resourceVersion!;
  const events: WatchEvent[] = [];
  const ac = new AbortController();
  const query = { resourceVersion: rv0, allowWatchBookmarks: true, timeoutSeconds: 30 };
  const watching = node.rest.watch({ path: `/api/v1/namespaces/${ns}/pods`, query, signal: ac.signal }, (e) => events.push(e));
  await admin.core.createNamespacedPod({ namespace: ns, body: podBody('w1') });
  await waitFor('ADDED w1', async () => (events.some((e) => e.type === 'ADDED' && (e.object as V1Pod).metadata?.name === 'w1') ? true : undefined));
  const added = events.find((e) => e.type === 'ADDED')!.object as V1Pod;
  t.ok(added.metadata!.creationTimestamp instanceof Date, 'watch objects get their dates');
  ac.abort();
  await watching;
  t.pass('an aborted watch resolves');

  // Resume from the ADDED event: only what came after it.
  const resumed: WatchEvent[] = [];
  const ac2 = new AbortController();
  const watching2 = node.rest.watch({ path: `/api/v1/namespaces/${ns}/pods`, query: { ...query, resourceVersion: added.metadata!.resourceVersion! }, signal: ac2.signal }, (e) => resumed.push(e));
  await admin.core.deleteNamespacedPod({ name: 'w1', namespace: ns, gracePeriodSeconds: 0 });
  await waitFor('DELETED w1', async () => (resumed.some((e) => e.type === 'DELETED') ? true : undefined));
  t.notOk(resumed.some((e) => e.type === 'ADDED' && (e.object as V1Pod).metadata?.name === 'w1'), 'no replay of the ADDED before the resume point');
  ac2.abort();
  await watching2;

  // Push rv0 out of the server's window (20 events): the watch fails with 410 (as an HTTP status or an ERROR event).
  for (let i = 0; i < 30; i++) await admin.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: `filler-${i}` } } });
  const expired: WatchEvent[] = [];
  const ac3 = new AbortController();
  const outcome = await Promise.race([
    node.rest.watch({ path: `/api/v1/namespaces/${ns}/pods`, query, signal: ac3.signal }, (e) => {
      expired.push(e);
      if (e.type === 'ERROR') ac3.abort();
    }).then(() => 'ended', (e: unknown) => e),
    new Promise((r) => setTimeout(() => r('timeout'), 10_000)),
  ]);
  ac3.abort();
  const code = httpStatus(outcome) ?? (expired.find((e) => e.type === 'ERROR')?.object as { code?: number } | undefined)?.code;
  t.equal(code, 410, 'an expired resourceVersion → 410');
});

t.test('informer over restListWatch: list, live events, resume after server-side timeouts', async (t) => {
  const seen: string[] = [];
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const inf = startInformer<V1Pod>({
    listWatch: restListWatch<V1Pod>({ rest: node.rest, path: '/api/v1/pods' }),
    fieldSelector: `spec.nodeName=${nodeName}`,
    signal: ac.signal,
    logger,
    backoffInitialMs: 100,
    backoffMaxMs: 500,
    watchTimeoutSeconds: 2,
    onAdd: (p) => seen.push(`add ${p.metadata!.name}`),
    onDelete: (p) => seen.push(`delete ${p.metadata!.name}`),
  });
  await inf.synced;
  t.same(inf.list().map((p) => p.metadata!.name), ['p1']);
  await admin.core.createNamespacedPod({ namespace: ns, body: podBody('i1') });
  await waitFor('i1 seen', async () => (inf.get(`${ns}/i1`) ? true : undefined));
  // Server-side timeouts (2 s) end the watch; it resumes from the last resourceVersion without a relist.
  await waitFor('a resumed watch', async () => (inf.stats().watches >= 2 ? true : undefined), 15_000);
  t.equal(inf.stats().lists, 1, 'resumed, not relisted');
  t.same(seen, ['add p1', 'add i1']);
  ac.abort();
  await inf.done;
});

t.test('credential files are read when they appear (rotation needs no new client)', async (t) => {
  const kc = loadKubeconfig(await server.nodeKubeconfig(nodeName));
  t.ok(kc.user.certFile !== undefined || kc.user.certData !== undefined, 'the node kubeconfig has a client certificate');
  const certPem = kc.user.certFile !== undefined ? await readFile(kc.user.certFile) : Buffer.from(kc.user.certData!, 'base64');
  const keyPem = kc.user.keyFile !== undefined ? await readFile(kc.user.keyFile) : Buffer.from(kc.user.keyData!, 'base64');
  const certFile = join(env.tmp, 'rotating-client.pem');
  const client = createKubeClient({ ...kc, user: { name: 'rotating', certFile, keyFile: certFile } });
  t.teardown(() => client.rest.close());
  await t.rejects(client.core.readNode({ name: nodeName }), { code: 'KUBECONFIG_INVALID', message: /rotating-client\.pem/ }, 'missing file: a clear error');
  await writeFile(certFile, Buffer.concat([certPem, Buffer.from('\n'), keyPem]), { mode: 0o600 });
  const n = await waitFor('the new file is used', async () => client.core.readNode({ name: nodeName }).catch(() => undefined), 5000);
  t.equal(n.metadata!.name, nodeName);
});

/**
 * Semantics of the lab apiserver through real HTTPS: @kubernetes/client-node
 * with the generated admin kubeconfig for the usual calls, raw https for the
 * odd ones (patch types, oversized bodies, anonymous, watch errors).
 * Server in-process on 127.0.0.1:0 with a temp data dir.
 */
import t from 'tap';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpsServer, request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { AppsV1Api, CoreV1Api, EventsV1Api, KubeConfig, Watch, makeInformer } from '@kubernetes/client-node';
import type { V1ConfigMap, V1Pod } from '@kubernetes/client-node';
import { startApiServer } from '../../lab/apiserver/server.js';
import type { ApiServer } from '../../lab/apiserver/server.js';

interface RawResponse {
  code: number;
  text: string;
  json: Record<string, unknown>;
}

interface RawOptions {
  body?: string | Buffer;
  contentType?: string;
  accept?: string;
  auth?: 'admin' | 'none' | { token: string } | { cert: string; key: string };
}

function makeRaw(server: ApiServer, adminPair: { cert: string; key: string }) {
  const url = new URL(server.urls[0]!);
  return (method: string, path: string, opts: RawOptions = {}): Promise<RawResponse> =>
    new Promise((resolve, reject) => {
      const auth = opts.auth ?? 'admin';
      const headers: Record<string, string> = {};
      if (opts.contentType) headers['Content-Type'] = opts.contentType;
      if (opts.accept) headers.Accept = opts.accept;
      if (typeof auth === 'object' && 'token' in auth) headers.Authorization = `Bearer ${auth.token}`;
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          method,
          path,
          headers,
          ca: server.pki.ca.cert,
          ...(auth === 'admin' ? { cert: adminPair.cert, key: adminPair.key } : {}),
          ...(typeof auth === 'object' && 'cert' in auth ? { cert: auth.cert, key: auth.key } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: Record<string, unknown> = {};
            try {
              json = JSON.parse(text) as Record<string, unknown>;
            } catch {
              // not JSON (health checks, watch streams)
            }
            resolve({ code: res.statusCode ?? 0, text, json });
          });
        },
      );
      req.on('error', reject);
      req.end(opts.body);
    });
}


interface ErrorLike {
  code?: number;
  body?: unknown;
}

interface Asserts {
  equal(found: unknown, wanted: unknown, message: string): unknown;
  fail(message: string): unknown;
}

async function expectStatus(t: Asserts, p: Promise<unknown>, code: number, reason: string, msg: string): Promise<Record<string, unknown>> {
  try {
    await p;
    t.fail(`${msg}: expected ${code} ${reason}`);
    return {};
  } catch (err) {
    const e = err as ErrorLike;
    const body = typeof e.body === 'string' ? (JSON.parse(e.body) as Record<string, unknown>) : ((e.body ?? {}) as Record<string, unknown>);
    t.equal(e.code, code, `${msg}: code`);
    t.equal(body.reason, reason, `${msg}: reason`);
    t.equal(body.kind, 'Status', `${msg}: a Status object`);
    return body;
  }
}

interface WatchEvent {
  type: string;
  object: { kind?: string; metadata?: { name?: string; resourceVersion?: string }; code?: number; reason?: string };
}

/** Collects watch events until `until` is true or the timeout passes. */
async function collectWatch(
  kc: KubeConfig,
  path: string,
  params: Record<string, string | number | boolean | undefined>,
  action: () => Promise<void>,
  until: (events: WatchEvent[]) => boolean,
  timeoutMs = 5000,
): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  let wake: () => void = () => undefined;
  const woke = new Promise<void>((r) => (wake = r));
  const controller = await new Watch(kc).watch(
    path,
    params,
    (type, object: WatchEvent['object']) => {
      events.push({ type, object });
      if (until(events)) wake();
    },
    () => wake(),
  );
  await action();
  const timer = setTimeout(wake, timeoutMs);
  await woke;
  clearTimeout(timer);
  controller.abort();
  return events;
}

const dataDir = await mkdtemp(join(tmpdir(), 'knode-t-apiserver-'));
const server = await startApiServer({
  dataDir,
  listen: ['127.0.0.1:0'],
  bookmarkIntervalMs: 200,
  watchWindow: 200,
  tokens: new Map([['test-token', { name: 'proxy', groups: ['system:node-proxier'] }]]),
  nodes: ['n1'],
  persistPath: join(dataDir, 'store.json'),
});
let running: ApiServer = server;
t.teardown(async () => {
  await running.close();
  await rm(dataDir, { recursive: true, force: true });
});
const adminPair = {
  cert: await readFile(join(server.pki.dir, 'admin.crt'), 'utf8'),
  key: await readFile(join(server.pki.dir, 'admin.key'), 'utf8'),
};
const raw = makeRaw(server, adminPair);
const kc = new KubeConfig();
kc.loadFromFile(server.adminKubeconfig);
const core = kc.makeApiClient(CoreV1Api);
const apps = kc.makeApiClient(AppsV1Api);

const cm = (name: string, labels: Record<string, string> = {}, namespace = 'default'): V1ConfigMap => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace, labels },
  data: { k: 'v' },
});

t.test('discovery, health and version', async (t) => {
  t.equal((await raw('GET', '/healthz', { auth: 'none' })).text, 'ok');
  t.equal((await raw('GET', '/readyz', { auth: 'none' })).code, 200);
  t.match((await raw('GET', '/version', { auth: 'none' })).json, { major: '1', gitVersion: /^v1\./ });
  t.match((await raw('GET', '/api')).json, { kind: 'APIVersions', versions: ['v1'] });
  const v1 = (await raw('GET', '/api/v1')).json as { resources: { name: string; shortNames?: string[]; namespaced: boolean; kind: string; verbs: string[] }[] };
  const byName = new Map(v1.resources.map((r) => [r.name, r]));
  t.same(byName.get('pods')!.shortNames, ['po']);
  t.same(byName.get('services')!.shortNames, ['svc']);
  t.equal(byName.get('nodes')!.namespaced, false);
  t.ok(byName.has('pods/status') && byName.has('pods/binding') && byName.has('nodes/status'));
  t.ok(byName.get('pods')!.verbs.includes('watch'));
  const groups = (await raw('GET', '/apis')).json as { groups: { name: string }[] };
  t.same(groups.groups.map((g) => g.name).sort(), ['apps', 'authentication.k8s.io', 'authorization.k8s.io', 'certificates.k8s.io', 'coordination.k8s.io', 'discovery.k8s.io', 'events.k8s.io']);
  t.match((await raw('GET', '/apis/apps')).json, { kind: 'APIGroup', preferredVersion: { groupVersion: 'apps/v1' } });
  const appsList = (await raw('GET', '/apis/apps/v1')).json as { resources: { name: string; shortNames?: string[]; kind: string; group?: string }[] };
  t.match(appsList.resources.find((r) => r.name === 'deployments'), { shortNames: ['deploy'] });
  t.match(appsList.resources.find((r) => r.name === 'deployments/scale'), { kind: 'Scale', group: 'autoscaling' });
  t.equal((await raw('GET', '/apis/nope/v1')).code, 404);
  t.equal((await raw('GET', '/openapi/v2')).code, 404);
});

t.test('system objects exist', async (t) => {
  const names = (await core.listNamespace()).items.map((n) => n.metadata!.name);
  t.same(names.sort(), ['default', 'kube-node-lease', 'kube-public', 'kube-system']);
  const svc = await core.readNamespacedService({ name: 'kubernetes', namespace: 'default' });
  t.equal(svc.spec!.clusterIP, '10.96.0.1', '.1 is the kubernetes service');
});

t.test('resourceVersion: one global increasing counter; optimistic concurrency', async (t) => {
  const a = await core.createNamespacedConfigMap({ namespace: 'default', body: cm('rv-a') });
  const b = await core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'rv-b' }, stringData: { x: 'y' } } });
  t.ok(Number(b.metadata!.resourceVersion) > Number(a.metadata!.resourceVersion), 'shared counter across resources');
  t.equal(b.data!.x, Buffer.from('y').toString('base64'), 'stringData folded into data');
  const list = await core.listNamespacedConfigMap({ namespace: 'default' });
  t.ok(Number(list.metadata!.resourceVersion) >= Number(b.metadata!.resourceVersion), 'list resourceVersion is current');
  const updated = await core.replaceNamespacedConfigMap({ name: 'rv-a', namespace: 'default', body: { ...a, data: { k: 'v2' } } });
  t.ok(Number(updated.metadata!.resourceVersion) > Number(b.metadata!.resourceVersion), 'update bumps');
  t.equal(updated.metadata!.uid, a.metadata!.uid);
  await expectStatus(t, core.replaceNamespacedConfigMap({ name: 'rv-a', namespace: 'default', body: { ...a, data: { k: 'stale' } } }), 409, 'Conflict', 'stale resourceVersion');
  const unconditional = await core.replaceNamespacedConfigMap({
    name: 'rv-a',
    namespace: 'default',
    body: { ...a, metadata: { ...a.metadata, resourceVersion: undefined }, data: { k: 'v3' } },
  });
  t.equal(unconditional.data!.k, 'v3', 'update without resourceVersion is unconditional');
  await expectStatus(
    t,
    core.deleteNamespacedConfigMap({ name: 'rv-a', namespace: 'default', body: { preconditions: { uid: 'not-the-uid' } } }),
    409,
    'Conflict',
    'uid precondition',
  );
  await expectStatus(
    t,
    core.replaceNamespacedConfigMap({ name: 'rv-a', namespace: 'default', body: { ...unconditional, metadata: { ...unconditional.metadata, uid: 'other' } } }),
    409,
    'Conflict',
    'uid in an update must match',
  );
  const status = await core.deleteNamespacedConfigMap({ name: 'rv-a', namespace: 'default', body: { preconditions: { uid: a.metadata!.uid } } });
  t.match(status, { status: 'Success' });
  await expectStatus(t, core.readNamespacedConfigMap({ name: 'rv-a', namespace: 'default' }), 404, 'NotFound', 'gone');
});

t.test('create: generateName, uid, creationTimestamp, generation; errors', async (t) => {
  const p = await core.createNamespacedPod({
    namespace: 'default',
    body: { metadata: { generateName: 'gen-' }, spec: { containers: [{ name: 'c', image: 'img:1' }] } },
  });
  t.match(p.metadata!.name, /^gen-[a-z0-9]{5}$/);
  t.match(p.metadata!.uid, /^[0-9a-f-]{36}$/);
  t.ok(p.metadata!.creationTimestamp instanceof Date);
  t.equal(p.status!.phase, 'Pending');
  t.equal(p.spec!.restartPolicy, 'Always', 'defaults applied');
  const d = await apps.createNamespacedDeployment({
    namespace: 'default',
    body: {
      metadata: { name: 'gen-deploy' },
      spec: { selector: { matchLabels: { app: 'x' } }, template: { metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'c', image: 'i' }] } } },
    },
  });
  t.equal(d.metadata!.generation, 1);
  t.equal(d.spec!.replicas, 1);
  const relabeled = await apps.patchNamespacedDeployment({ name: 'gen-deploy', namespace: 'default', body: [{ op: 'add', path: '/metadata/labels', value: { a: 'b' } }] });
  t.equal(relabeled.metadata!.generation, 1, 'metadata changes keep generation');
  const rescaled = await apps.patchNamespacedDeployment({ name: 'gen-deploy', namespace: 'default', body: [{ op: 'replace', path: '/spec/replicas', value: 3 }] });
  t.equal(rescaled.metadata!.generation, 2, 'spec changes bump generation');
  const scale = await apps.readNamespacedDeploymentScale({ name: 'gen-deploy', namespace: 'default' });
  t.equal(scale.spec!.replicas, 3);
  t.equal(scale.status!.selector, 'app=x');
  const r = await raw('PATCH', '/apis/apps/v1/namespaces/default/deployments/gen-deploy/scale', {
    body: JSON.stringify({ spec: { replicas: 5 } }),
    contentType: 'application/merge-patch+json',
  });
  t.match(r.json, { kind: 'Scale', spec: { replicas: 5 } });
  t.equal((await apps.readNamespacedDeployment({ name: 'gen-deploy', namespace: 'default' })).spec!.replicas, 5);

  await expectStatus(t, core.createNamespacedConfigMap({ namespace: 'default', body: cm('dup') }).then(() => core.createNamespacedConfigMap({ namespace: 'default', body: cm('dup') })), 409, 'AlreadyExists', 'duplicate');
  const invalid = await expectStatus(t, core.createNamespacedConfigMap({ namespace: 'default', body: cm('Bad_Name') }), 422, 'Invalid', 'invalid name');
  t.match(invalid, { details: { causes: [{ field: 'metadata.name' }] } });
  await expectStatus(t, core.createNamespacedService({ namespace: 'default', body: { metadata: { name: '1svc' }, spec: { ports: [{ port: 80 }] } } }), 422, 'Invalid', 'service names are DNS-1035 labels');
  await expectStatus(t, core.createNamespace({ body: { metadata: { name: 'a.b' } } }), 422, 'Invalid', 'namespace names are DNS-1123 labels');
  await expectStatus(t, core.createNamespacedConfigMap({ namespace: 'nope', body: cm('x', {}, 'nope') }), 404, 'NotFound', 'namespace must exist');
  const wrongNs = await raw('POST', '/api/v1/namespaces/default/configmaps', { body: JSON.stringify(cm('x', {}, 'kube-system')), contentType: 'application/json' });
  t.equal(wrongNs.code, 400);
  await expectStatus(t, core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'nocontainers' }, spec: { containers: [] } } }), 422, 'Invalid', 'pod without containers');
});

t.test('list: label and field selectors, limit/continue', async (t) => {
  await core.createNamespace({ body: { metadata: { name: 'sel' } } });
  const labels: Record<string, string>[] = [
    { app: 'web', tier: 'front' },
    { app: 'web', tier: 'back' },
    { app: 'db' },
    { other: 'x' },
  ];
  for (const [i, l] of labels.entries()) await core.createNamespacedConfigMap({ namespace: 'sel', body: cm(`c${i}`, l, 'sel') });
  const names = async (labelSelector?: string, fieldSelector?: string): Promise<string[]> =>
    (await core.listNamespacedConfigMap({ namespace: 'sel', labelSelector, fieldSelector })).items.map((i) => i.metadata!.name!);
  t.same(await names('app=web'), ['c0', 'c1']);
  t.same(await names('app==web,tier=front'), ['c0']);
  t.same(await names('app!=web'), ['c2', 'c3']);
  t.same(await names('app in (db,web)'), ['c0', 'c1', 'c2']);
  t.same(await names('app notin (web)'), ['c2', 'c3']);
  t.same(await names('tier'), ['c0', 'c1']);
  t.same(await names('!app'), ['c3']);
  t.same(await names(undefined, 'metadata.name=c2'), ['c2']);
  t.same(await names(undefined, 'metadata.name!=c2,metadata.namespace=sel'), ['c0', 'c1', 'c3']);
  await expectStatus(t, core.listNamespacedConfigMap({ namespace: 'sel', labelSelector: 'app in web' }), 400, 'BadRequest', 'bad label selector');
  await expectStatus(t, core.listNamespacedConfigMap({ namespace: 'sel', fieldSelector: 'data.k=v' }), 400, 'BadRequest', 'unsupported field label');

  // Pods: spec.nodeName and status.phase, across namespaces.
  const pod = (name: string, nodeName?: string): V1Pod => ({ metadata: { name }, spec: { nodeName, containers: [{ name: 'c', image: 'i' }] } });
  await core.createNamespacedPod({ namespace: 'sel', body: pod('on-n1', 'n1') });
  await core.createNamespacedPod({ namespace: 'sel', body: pod('on-n2', 'n2') });
  await core.createNamespacedPod({ namespace: 'sel', body: pod('unbound') });
  await core.replaceNamespacedPodStatus({
    name: 'on-n1',
    namespace: 'sel',
    body: { ...(await core.readNamespacedPod({ name: 'on-n1', namespace: 'sel' })), status: { phase: 'Running', podIP: '10.244.1.2' } },
  });
  const onN1 = await core.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=n1' });
  t.same(onN1.items.map((p) => p.metadata!.name), ['on-n1']);
  const unscheduled = await core.listNamespacedPod({ namespace: 'sel', fieldSelector: 'spec.nodeName=' });
  t.same(unscheduled.items.map((p) => p.metadata!.name), ['unbound']);
  const running = await core.listNamespacedPod({ namespace: 'sel', fieldSelector: 'status.phase=Running' });
  t.same(running.items.map((p) => p.metadata!.name), ['on-n1']);
  const notRunning = await core.listNamespacedPod({ namespace: 'sel', fieldSelector: 'status.phase!=Running,spec.nodeName!=' });
  t.same(notRunning.items.map((p) => p.metadata!.name), ['on-n2']);

  // limit/continue: pages are a consistent snapshot.
  const page1 = await core.listNamespacedConfigMap({ namespace: 'sel', limit: 2 });
  t.same(page1.items.map((i) => i.metadata!.name), ['c0', 'c1']);
  t.equal(page1.metadata!.remainingItemCount, 2);
  t.ok(page1.metadata!._continue);
  await core.deleteNamespacedConfigMap({ name: 'c2', namespace: 'sel' });
  await core.createNamespacedConfigMap({ namespace: 'sel', body: cm('c4', {}, 'sel') });
  const page2 = await core.listNamespacedConfigMap({ namespace: 'sel', limit: 2, _continue: page1.metadata!._continue });
  t.same(page2.items.map((i) => i.metadata!.name), ['c2', 'c3'], 'second page as of the first page');
  t.equal(page2.metadata!.resourceVersion, page1.metadata!.resourceVersion);
  t.notOk(page2.metadata!._continue, 'last page');
  await expectStatus(t, core.listNamespacedConfigMap({ namespace: 'sel', _continue: 'garbage' }), 400, 'BadRequest', 'bad continue token');

  // deletecollection with a selector.
  await core.deleteCollectionNamespacedConfigMap({ namespace: 'sel', labelSelector: '!app' });
  t.same(await names(), ['c0', 'c1'], 'deletecollection removed the unlabeled ones');
});

t.test('watch: events, resume, bookmarks, selectors, timeout, 410', async (t) => {
  await core.createNamespace({ body: { metadata: { name: 'w' } } });
  const start = (await core.listNamespacedConfigMap({ namespace: 'w' })).metadata!.resourceVersion!;
  const events = await collectWatch(
    kc,
    '/api/v1/namespaces/w/configmaps',
    { resourceVersion: start, allowWatchBookmarks: true },
    async () => {
      await core.createNamespacedConfigMap({ namespace: 'w', body: cm('x', { app: 'a' }, 'w') });
      await core.patchNamespacedConfigMap({ name: 'x', namespace: 'w', body: [{ op: 'replace', path: '/data/k', value: 'v2' }] });
      await core.deleteNamespacedConfigMap({ name: 'x', namespace: 'w' });
    },
    (ev) => ev.some((e) => e.type === 'DELETED') && ev.some((e) => e.type === 'BOOKMARK'),
  );
  const types = events.filter((e) => e.type !== 'BOOKMARK').map((e) => e.type);
  t.same(types, ['ADDED', 'MODIFIED', 'DELETED']);
  const bookmark = events.find((e) => e.type === 'BOOKMARK');
  t.ok(bookmark, 'bookmark with allowWatchBookmarks');
  t.ok(Number(bookmark!.object.metadata!.resourceVersion) >= Number(events[2]!.object.metadata!.resourceVersion));
  const rvs = events.filter((e) => e.type !== 'BOOKMARK').map((e) => Number(e.object.metadata!.resourceVersion));
  t.ok(rvs[0]! < rvs[1]! && rvs[1]! < rvs[2]!, 'increasing resourceVersions');

  // Resume from the ADDED event: replays MODIFIED and DELETED.
  const resumed = await collectWatch(kc, '/api/v1/namespaces/w/configmaps', { resourceVersion: String(rvs[0]) }, async () => undefined, (ev) => ev.length >= 2);
  t.same(resumed.map((e) => e.type), ['MODIFIED', 'DELETED']);

  // No resourceVersion: current state as ADDED first.
  await core.createNamespacedConfigMap({ namespace: 'w', body: cm('y', {}, 'w') });
  const initial = await collectWatch(kc, '/api/v1/namespaces/w/configmaps', {}, async () => undefined, (ev) => ev.length >= 1);
  t.same(initial.map((e) => `${e.type}:${e.object.metadata!.name}`), ['ADDED:y']);

  // Selectors: leaving → DELETED, entering → ADDED.
  const sel = await collectWatch(
    kc,
    '/api/v1/namespaces/w/configmaps',
    { labelSelector: 'app=a', resourceVersion: (await core.listNamespacedConfigMap({ namespace: 'w' })).metadata!.resourceVersion },
    async () => {
      await core.patchNamespacedConfigMap({ name: 'y', namespace: 'w', body: [{ op: 'add', path: '/metadata/labels', value: { app: 'a' } }] });
      await core.patchNamespacedConfigMap({ name: 'y', namespace: 'w', body: [{ op: 'add', path: '/data/more', value: '1' }] });
      await core.patchNamespacedConfigMap({ name: 'y', namespace: 'w', body: [{ op: 'replace', path: '/metadata/labels/app', value: 'b' }] });
      await core.createNamespacedConfigMap({ namespace: 'w', body: cm('z', { app: 'other' }, 'w') });
    },
    (ev) => ev.length >= 3,
  );
  t.same(sel.map((e) => e.type), ['ADDED', 'MODIFIED', 'DELETED']);

  // Field selector watch on one name (how kubectl watches one object).
  const one = await collectWatch(
    kc,
    '/api/v1/namespaces/w/configmaps',
    { fieldSelector: 'metadata.name=z', resourceVersion: (await core.listNamespacedConfigMap({ namespace: 'w' })).metadata!.resourceVersion },
    async () => {
      await core.patchNamespacedConfigMap({ name: 'y', namespace: 'w', body: [{ op: 'add', path: '/data/ignored', value: '1' }] });
      await core.patchNamespacedConfigMap({ name: 'z', namespace: 'w', body: [{ op: 'add', path: '/data/seen', value: '1' }] });
    },
    (ev) => ev.length >= 1,
  );
  t.same(one.map((e) => `${e.type}:${e.object.metadata!.name}`), ['MODIFIED:z']);

  // timeoutSeconds ends the stream.
  const began = Date.now();
  const timed = await raw('GET', '/api/v1/namespaces/w/configmaps?watch=true&timeoutSeconds=1&resourceVersion=' + (await core.listNamespacedConfigMap({ namespace: 'w' })).metadata!.resourceVersion);
  t.equal(timed.code, 200);
  t.ok(Date.now() - began >= 900 && Date.now() - began < 5000, 'closed after about a second');

  // Too old: push the window (200 events) past resourceVersion 1.
  for (let i = 0; i < 210; i++) await core.patchNamespacedConfigMap({ name: 'z', namespace: 'w', body: [{ op: 'replace', path: '/data/k', value: String(i) }] });
  const gone = await raw('GET', '/api/v1/namespaces/w/configmaps?watch=1&resourceVersion=1');
  t.equal(gone.code, 200, 'upstream answers 200 and an ERROR event');
  const ev = JSON.parse(gone.text.trim().split('\n')[0]!) as WatchEvent;
  t.equal(ev.type, 'ERROR');
  t.match(ev.object, { kind: 'Status', code: 410, reason: 'Expired' });
  const badWatch = await raw('GET', '/api/v1/namespaces/w/configmaps?watch=1&labelSelector=a%20in%20b');
  t.match(badWatch, { code: 400, json: { kind: 'Status', reason: 'BadRequest' } }, 'a bad selector on a watch is a 400 Status');
  const expiredContinue = Buffer.from(JSON.stringify({ rv: 1, start: '' })).toString('base64url');
  await expectStatus(t, core.listNamespacedConfigMap({ namespace: 'w', _continue: expiredContinue }), 410, 'Expired', 'continue token too old');
});

t.test('a client-node informer (list + watch) sees adds, updates and deletes', async (t) => {
  await core.createNamespace({ body: { metadata: { name: 'inf' } } });
  const informer = makeInformer(kc, '/api/v1/namespaces/inf/pods', () => core.listNamespacedPod({ namespace: 'inf' }));
  const seen: string[] = [];
  let wake: () => void = () => undefined;
  const wait = (n: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, 5000);
      wake = () => {
        if (seen.length >= n) {
          clearTimeout(timer);
          resolve();
        }
      };
      wake();
    });
  informer.on('add', (p: V1Pod) => (seen.push(`add:${p.metadata!.name}`), wake()));
  informer.on('update', (p: V1Pod) => (seen.push(`update:${p.metadata!.name}`), wake()));
  informer.on('delete', (p: V1Pod) => (seen.push(`delete:${p.metadata!.name}`), wake()));
  await core.createNamespacedPod({ namespace: 'inf', body: { metadata: { name: 'before' }, spec: { containers: [{ name: 'c', image: 'i' }] } } });
  await informer.start();
  await wait(1);
  await core.createNamespacedPod({ namespace: 'inf', body: { metadata: { name: 'after' }, spec: { containers: [{ name: 'c', image: 'i' }] } } });
  await core.patchNamespacedPod({ name: 'before', namespace: 'inf', body: [{ op: 'add', path: '/metadata/labels', value: { x: 'y' } }] });
  await core.deleteNamespacedPod({ name: 'after', namespace: 'inf' });
  await wait(4);
  await informer.stop();
  t.same(seen, ['add:before', 'add:after', 'update:before', 'delete:after']);
  t.same(informer.list().map((p) => p.metadata!.name), ['before'], 'cache matches the server');
});

t.test('patch: merge, json, strategic', async (t) => {
  await core.createNamespacedPod({
    namespace: 'default',
    body: {
      metadata: { name: 'patchme', labels: { a: '1', b: '2' } },
      spec: {
        containers: [
          { name: 'app', image: 'i:1', ports: [{ containerPort: 80 }], env: [{ name: 'A', value: '1' }] },
          { name: 'side', image: 's:1' },
        ],
      },
    },
  });
  const path = '/api/v1/namespaces/default/pods/patchme';
  const merge = await raw('PATCH', path, { body: JSON.stringify({ metadata: { labels: { a: null, c: '3' } } }), contentType: 'application/merge-patch+json' });
  t.equal(merge.code, 200);
  t.same((merge.json.metadata as { labels: unknown }).labels, { b: '2', c: '3' });
  const json = await raw('PATCH', path, { body: JSON.stringify([{ op: 'replace', path: '/spec/containers/1/image', value: 's:2' }]), contentType: 'application/json-patch+json' });
  t.equal(((json.json.spec as { containers: { image: string }[] }).containers[1]!).image, 's:2');
  const smp = await raw('PATCH', path, {
    body: JSON.stringify({ spec: { containers: [{ name: 'app', image: 'i:2' }] } }),
    contentType: 'application/strategic-merge-patch+json',
  });
  t.equal(smp.code, 200, smp.text);
  const containers = (smp.json.spec as { containers: { name: string; image: string; env?: unknown }[] }).containers;
  t.same(containers.map((c) => `${c.name}:${c.image}`), ['app:i:2', 'side:s:2'], 'containers merged by name');
  t.same(containers[0]!.env, [{ name: 'A', value: '1' }]);
  const forbidden = await raw('PATCH', path, {
    body: JSON.stringify({ spec: { containers: [{ name: 'app', $patch: 'delete' }] } }),
    contentType: 'application/strategic-merge-patch+json',
  });
  t.equal(forbidden.code, 422, 'pod spec is immutable apart from images');
  const stale = await raw('PATCH', path, { body: JSON.stringify({ metadata: { resourceVersion: '1', labels: { x: 'y' } } }), contentType: 'application/merge-patch+json' });
  t.match(stale, { code: 409, json: { reason: 'Conflict' } });
  const bad = await raw('PATCH', path, { body: '{"metadata":', contentType: 'application/merge-patch+json' });
  t.match(bad, { code: 400, json: { reason: 'BadRequest' } });
  const unsupported = await raw('PATCH', path, { body: '{}', contentType: 'application/apply-patch+yaml' });
  t.match(unsupported, { code: 415, json: { reason: 'UnsupportedMediaType' } });
  const missing = await raw('PATCH', '/api/v1/namespaces/default/pods/nope', { body: '{}', contentType: 'application/merge-patch+json' });
  t.match(missing, { code: 404, json: { reason: 'NotFound' } });
  const svcPatch = await core.createNamespacedService({
    namespace: 'default',
    body: { metadata: { name: 'sp' }, spec: { ports: [{ name: 'a', port: 80 }, { name: 'b', port: 81 }] } },
  });
  t.ok(svcPatch);
  const sp = await raw('PATCH', '/api/v1/namespaces/default/services/sp', {
    body: JSON.stringify({ spec: { ports: [{ port: 81, targetPort: 9090 }] } }),
    contentType: 'application/strategic-merge-patch+json',
  });
  t.same((sp.json.spec as { ports: unknown[] }).ports, [
    { name: 'a', port: 80, protocol: 'TCP', targetPort: 80 },
    { name: 'b', port: 81, protocol: 'TCP', targetPort: 9090 },
  ], 'service ports merged by port');
});

t.test('status subresources', async (t) => {
  const pod = await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'st' }, spec: { containers: [{ name: 'c', image: 'i' }] } } });
  const viaStatus = await core.replaceNamespacedPodStatus({
    name: 'st',
    namespace: 'default',
    body: { ...pod, metadata: { ...pod.metadata, labels: { sneaky: 'yes' } }, spec: { ...pod.spec!, activeDeadlineSeconds: 5 }, status: { phase: 'Running' } },
  });
  t.equal(viaStatus.status!.phase, 'Running');
  t.equal(viaStatus.spec!.activeDeadlineSeconds, undefined, '/status ignores spec');
  t.equal(viaStatus.metadata!.labels, undefined, '/status ignores labels');
  const viaMain = await core.replaceNamespacedPod({ name: 'st', namespace: 'default', body: { ...viaStatus, metadata: { ...viaStatus.metadata, labels: { ok: '1' } }, status: { phase: 'Failed' } } });
  t.equal(viaMain.status!.phase, 'Running', 'main resource ignores status');
  t.same(viaMain.metadata!.labels, { ok: '1' });
  const patched = await raw('PATCH', '/api/v1/namespaces/default/pods/st/status', {
    body: JSON.stringify({ status: { conditions: [{ type: 'Ready', status: 'True' }] }, spec: { nodeName: 'x' } }),
    contentType: 'application/strategic-merge-patch+json',
  });
  t.match(patched.json, { status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] } });
  t.equal((patched.json.spec as { nodeName?: string }).nodeName, undefined);

  const node = await core.createNode({ body: { metadata: { name: 'n-status' }, status: { conditions: [{ type: 'Ready', status: 'True' }] } } });
  t.equal(node.status!.conditions![0]!.status, 'True', 'nodes keep status on create');
  const nodeMain = await core.patchNode({ name: 'n-status', body: [{ op: 'replace', path: '/status/conditions/0/status', value: 'False' }] });
  t.equal(nodeMain.status!.conditions![0]!.status, 'True', 'node main patch ignores status');
  const nodeStatus = await core.patchNodeStatus({ name: 'n-status', body: [{ op: 'replace', path: '/status/conditions/0/status', value: 'False' }] });
  t.equal(nodeStatus.status!.conditions![0]!.status, 'False');

  const svc = await core.readNamespacedService({ name: 'sp', namespace: 'default' });
  const svcStatus = await core.replaceNamespacedServiceStatus({
    name: 'sp',
    namespace: 'default',
    body: { ...svc, spec: { ...svc.spec!, type: 'NodePort' }, status: { loadBalancer: { ingress: [{ ip: '1.2.3.4' }] } } },
  });
  t.equal(svcStatus.spec!.type, 'ClusterIP');
  t.equal(svcStatus.status!.loadBalancer!.ingress![0]!.ip, '1.2.3.4');
});

t.test('deployment status subresource', async (t) => {
  const d = await apps.readNamespacedDeployment({ name: 'gen-deploy', namespace: 'default' });
  const st = await apps.replaceNamespacedDeploymentStatus({
    name: 'gen-deploy',
    namespace: 'default',
    body: { ...d, spec: { ...d.spec!, replicas: 9 }, status: { replicas: 5, readyReplicas: 4, observedGeneration: d.metadata!.generation } },
  });
  t.equal(st.spec!.replicas, 5, '/status ignores spec');
  t.equal(st.status!.readyReplicas, 4);
  t.equal(st.metadata!.generation, d.metadata!.generation, 'status writes keep generation');
  const main = await apps.replaceNamespacedDeployment({ name: 'gen-deploy', namespace: 'default', body: { ...st, status: { replicas: 0 } } });
  t.equal(main.status!.readyReplicas, 4, 'main resource ignores status');
  const scale = await apps.readNamespacedDeploymentScale({ name: 'gen-deploy', namespace: 'default' });
  t.equal(scale.status!.replicas, 5, 'scale reads status.replicas');
});

t.test('binding', async (t) => {
  await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'bindme' }, spec: { containers: [{ name: 'c', image: 'i' }] } } });
  const r = await raw('POST', '/api/v1/namespaces/default/pods/bindme/binding', {
    body: JSON.stringify({ apiVersion: 'v1', kind: 'Binding', metadata: { name: 'bindme' }, target: { kind: 'Node', name: 'n1' } }),
    contentType: 'application/json',
  });
  t.equal(r.code, 201);
  const p = await core.readNamespacedPod({ name: 'bindme', namespace: 'default' });
  t.equal(p.spec!.nodeName, 'n1');
  t.match(p.status!.conditions, [{ type: 'PodScheduled', status: 'True' }]);
  const again = await raw('POST', '/api/v1/namespaces/default/pods/bindme/binding', {
    body: JSON.stringify({ target: { kind: 'Node', name: 'n2' } }),
    contentType: 'application/json',
  });
  t.match(again, { code: 409, json: { reason: 'Conflict' } });
});

t.test('graceful pod deletion and finalizers', async (t) => {
  const spec = { containers: [{ name: 'c', image: 'i' }] };
  await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'unbound' }, spec } });
  const gone = await core.deleteNamespacedPod({ name: 'unbound', namespace: 'default' });
  t.equal(gone.metadata!.name, 'unbound', 'pods return the deleted object');
  await expectStatus(t, core.readNamespacedPod({ name: 'unbound', namespace: 'default' }), 404, 'NotFound', 'unbound pod goes at once');

  await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'bound' }, spec: { ...spec, nodeName: 'n1' } } });
  const terminating = await core.deleteNamespacedPod({ name: 'bound', namespace: 'default' });
  t.ok(terminating.metadata!.deletionTimestamp, 'deletionTimestamp set');
  t.equal(terminating.metadata!.deletionGracePeriodSeconds, 30, 'default terminationGracePeriodSeconds');
  const still = await core.readNamespacedPod({ name: 'bound', namespace: 'default' });
  t.ok(still.metadata!.deletionTimestamp, 'stays until the kubelet confirms');
  const shorter = await core.deleteNamespacedPod({ name: 'bound', namespace: 'default', body: { gracePeriodSeconds: 5 } });
  t.equal(shorter.metadata!.deletionGracePeriodSeconds, 5, 'grace period can be shortened');
  const longer = await core.deleteNamespacedPod({ name: 'bound', namespace: 'default', gracePeriodSeconds: 60 });
  t.equal(longer.metadata!.deletionGracePeriodSeconds, 5, 'but not extended');
  await core.deleteNamespacedPod({ name: 'bound', namespace: 'default', body: { gracePeriodSeconds: 0 } });
  await expectStatus(t, core.readNamespacedPod({ name: 'bound', namespace: 'default' }), 404, 'NotFound', 'gone with gracePeriodSeconds=0');

  await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'tgp' }, spec: { ...spec, nodeName: 'n1', terminationGracePeriodSeconds: 7 } } });
  t.equal((await core.deleteNamespacedPod({ name: 'tgp', namespace: 'default' })).metadata!.deletionGracePeriodSeconds, 7, "pod's terminationGracePeriodSeconds");
  await core.deleteNamespacedPod({ name: 'tgp', namespace: 'default', gracePeriodSeconds: 0 });

  await core.createNamespacedConfigMap({ namespace: 'default', body: { ...cm('fin'), metadata: { name: 'fin', finalizers: ['example.com/hold'] } } });
  const marked = (await raw('DELETE', '/api/v1/namespaces/default/configmaps/fin')).json as { metadata: { deletionTimestamp?: string } };
  t.ok(marked.metadata.deletionTimestamp, 'finalizers: marked, not removed');
  const held = await core.readNamespacedConfigMap({ name: 'fin', namespace: 'default' });
  t.ok(held.metadata!.deletionTimestamp);
  const addFinalizer = await raw('PATCH', '/api/v1/namespaces/default/configmaps/fin', {
    body: JSON.stringify({ metadata: { finalizers: ['example.com/hold', 'example.com/new'] } }),
    contentType: 'application/merge-patch+json',
  });
  t.equal(addFinalizer.code, 422, 'no new finalizers while deleting');
  const events = await collectWatch(
    kc,
    '/api/v1/namespaces/default/configmaps',
    { fieldSelector: 'metadata.name=fin', resourceVersion: held.metadata!.resourceVersion },
    async () => {
      await core.patchNamespacedConfigMap({ name: 'fin', namespace: 'default', body: [{ op: 'remove', path: '/metadata/finalizers' }] });
    },
    (ev) => ev.some((e) => e.type === 'DELETED'),
  );
  t.same(events.map((e) => e.type), ['DELETED'], 'removed when the last finalizer goes');
  await expectStatus(t, core.readNamespacedConfigMap({ name: 'fin', namespace: 'default' }), 404, 'NotFound', 'finalized');
});

t.test('services: ClusterIP and NodePort allocation', async (t) => {
  const a = await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'alloc-a' }, spec: { type: 'NodePort', selector: { app: 'a' }, ports: [{ port: 80, targetPort: 8080 }] } } });
  t.match(a.spec!.clusterIP, /^10\.96\.\d+\.\d+$/);
  t.not(a.spec!.clusterIP, '10.96.0.1');
  t.same(a.spec!.clusterIPs, [a.spec!.clusterIP]);
  const np = a.spec!.ports![0]!.nodePort!;
  t.ok(np >= 30000 && np <= 32767);
  await expectStatus(
    t,
    core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'alloc-b' }, spec: { type: 'NodePort', ports: [{ port: 80, nodePort: np }] } } }),
    422,
    'Invalid',
    'node port taken',
  );
  await expectStatus(
    t,
    core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'alloc-b' }, spec: { clusterIP: a.spec!.clusterIP, ports: [{ port: 80 }] } } }),
    422,
    'Invalid',
    'cluster IP taken',
  );
  await expectStatus(
    t,
    core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'alloc-b' }, spec: { ports: [{ port: 70000 }] } } }),
    422,
    'Invalid',
    'port out of range',
  );
  const kept = await core.patchNamespacedService({ name: 'alloc-a', namespace: 'default', body: [{ op: 'add', path: '/metadata/labels', value: { x: 'y' } }] });
  t.equal(kept.spec!.ports![0]!.nodePort, np, 'updates keep allocations');
  await expectStatus(
    t,
    core.patchNamespacedService({ name: 'alloc-a', namespace: 'default', body: [{ op: 'replace', path: '/spec/clusterIP', value: '10.96.9.9' }] }),
    422,
    'Invalid',
    'clusterIP is immutable',
  );
  const toClusterIP = await core.patchNamespacedService({ name: 'alloc-a', namespace: 'default', body: [{ op: 'replace', path: '/spec/type', value: 'ClusterIP' }] });
  t.equal(toClusterIP.spec!.ports![0]!.nodePort, undefined, 'node port released when the type changes');
  const b = await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'alloc-b' }, spec: { type: 'NodePort', ports: [{ port: 80, nodePort: np }] } } });
  t.equal(b.spec!.ports![0]!.nodePort, np, 'released port can be claimed');
  await core.deleteNamespacedService({ name: 'alloc-a', namespace: 'default' });
  const c = await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'alloc-c' }, spec: { clusterIP: a.spec!.clusterIP, ports: [{ port: 80 }] } } });
  t.equal(c.spec!.clusterIP, a.spec!.clusterIP, 'cluster IP released on delete');
  const headless = await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'headless' }, spec: { clusterIP: 'None', selector: { a: 'b' } } } });
  t.equal(headless.spec!.clusterIP, 'None');
});

t.test('other resources: events in two groups, endpoints, slices, leases, service accounts', async (t) => {
  const ev = await core.createNamespacedEvent({
    namespace: 'default',
    body: {
      metadata: { name: 'ev1' },
      involvedObject: { kind: 'Pod', name: 'p', namespace: 'default', uid: 'u1' },
      reason: 'Scheduled',
      message: 'hello',
      type: 'Normal',
      source: { component: 'test' },
    },
  });
  t.equal(ev.reason, 'Scheduled');
  const events = kc.makeApiClient(EventsV1Api);
  const ev2 = await events.readNamespacedEvent({ name: 'ev1', namespace: 'default' });
  t.equal(ev2.note, 'hello', 'events.k8s.io view of a core event');
  t.equal(ev2.regarding!.name, 'p');
  const byObject = await core.listNamespacedEvent({ namespace: 'default', fieldSelector: 'involvedObject.name=p,involvedObject.uid=u1' });
  t.same(byObject.items.map((e) => e.metadata!.name), ['ev1']);
  await events.createNamespacedEvent({
    namespace: 'default',
    body: { metadata: { name: 'ev2' }, eventTime: new Date(), reportingController: 'knode', reportingInstance: 'x', action: 'A', reason: 'R', note: 'n2', type: 'Normal', regarding: { kind: 'Node', name: 'n1' } },
  });
  t.equal((await core.readNamespacedEvent({ name: 'ev2', namespace: 'default' })).message, 'n2');
  await core.createNamespacedEndpoints({ namespace: 'default', body: { metadata: { name: 'ep' }, subsets: [{ addresses: [{ ip: '10.244.0.5' }], ports: [{ port: 80 }] }] } });
  const raw1 = await raw('POST', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', {
    body: JSON.stringify({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'ep-abc', labels: { 'kubernetes.io/service-name': 'ep' } }, addressType: 'IPv4', endpoints: [{ addresses: ['10.244.0.5'], conditions: { ready: true } }], ports: [{ port: 80 }] }),
    contentType: 'application/json',
  });
  t.equal(raw1.code, 201);
  const slices = await raw('GET', '/apis/discovery.k8s.io/v1/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dep');
  t.equal((slices.json.items as unknown[]).length, 1);
  const lease = await raw('POST', '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', {
    body: JSON.stringify({ metadata: { name: 'n1' }, spec: { holderIdentity: 'n1', leaseDurationSeconds: 40 } }),
    contentType: 'application/json',
  });
  t.equal(lease.code, 201);
  await core.createNamespacedServiceAccount({ namespace: 'default', body: { metadata: { name: 'default' } } });
  t.ok(await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' }));
});

t.test('tables for kubectl', async (t) => {
  const r = await raw('GET', '/api/v1/namespaces/default/pods', { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' });
  t.match(r.json, { kind: 'Table', apiVersion: 'meta.k8s.io/v1' });
  const cols = (r.json.columnDefinitions as { name: string }[]).map((c) => c.name);
  t.same(cols.slice(0, 5), ['Name', 'Ready', 'Status', 'Restarts', 'Age']);
  t.ok(cols.includes('IP') && cols.includes('Node'));
  const nodes = await raw('GET', '/api/v1/nodes/n-status', { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
  t.match(nodes.json, { kind: 'Table', rows: [{ cells: ['n-status', 'NotReady'] }] });
});

t.test('bad input and error codes; the server keeps serving', async (t) => {
  const post = (body: string | Buffer, contentType = 'application/json') => raw('POST', '/api/v1/namespaces/default/configmaps', { body, contentType });
  t.match(await post('{"metadata": {"name": '), { code: 400, json: { kind: 'Status', reason: 'BadRequest' } }, 'malformed JSON');
  t.match(await post('[1,2]'), { code: 400, json: { reason: 'BadRequest' } }, 'not an object');
  t.match(await post(JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'x' } })), { code: 400, json: { reason: 'BadRequest' } }, 'wrong kind');
  t.match(await post(JSON.stringify({ apiVersion: 'apps/v1', kind: 'ConfigMap', metadata: { name: 'x' } })), { code: 400, json: { reason: 'BadRequest' } }, 'wrong apiVersion');
  t.match(await post(JSON.stringify(cm('UPPER'))), { code: 422, json: { reason: 'Invalid', details: { causes: [{ field: 'metadata.name' }] } } });
  t.match(await post('x', 'application/vnd.kubernetes.protobuf'), { code: 415, json: { reason: 'UnsupportedMediaType' } });
  const big = Buffer.alloc(3 * 1024 * 1024 + 10, 'a');
  t.match(await post(big), { code: 413, json: { reason: 'RequestEntityTooLarge' } }, 'oversized body');
  t.match(await raw('PUT', '/api/v1/namespaces/default/configmaps', { body: '{}', contentType: 'application/json' }), { code: 405, json: { reason: 'MethodNotAllowed' } });
  t.match(await raw('GET', '/api/v1/namespaces/default/widgets'), { code: 404, json: { reason: 'NotFound' } });
  t.match(await raw('GET', '/api/v1/namespaces/default/pods', { auth: 'none' }), { code: 401, json: { reason: 'Unauthorized' } }, 'anonymous');
  t.match(await raw('GET', '/api/v1/pods', { auth: { token: 'wrong' } }), { code: 401, json: { reason: 'Unauthorized' } }, 'bad token');
  const yaml = await post('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n', 'application/yaml');
  t.equal(yaml.code, 201, 'YAML bodies are accepted');
  t.equal((await core.readNamespacedConfigMap({ name: 'from-yaml', namespace: 'default' })).data!.a, 'b', 'still serving');
});

t.test('authentication and authorization', async (t) => {
  const asProxy = await raw('GET', '/apis/discovery.k8s.io/v1/endpointslices', { auth: { token: 'test-token' } });
  t.equal(asProxy.code, 200, 'token user in system:node-proxier lists slices');
  const denied = await raw('POST', '/api/v1/namespaces/default/configmaps', { auth: { token: 'test-token' }, body: JSON.stringify(cm('nope')), contentType: 'application/json' });
  t.match(denied, { code: 403, json: { reason: 'Forbidden' } });
  const nodeKc = new KubeConfig();
  nodeKc.loadFromFile(await server.nodeKubeconfig('n1'));
  const nodeCore = nodeKc.makeApiClient(CoreV1Api);
  await nodeCore.createNode({ body: { metadata: { name: 'n1' } } });
  const st = await nodeCore.patchNodeStatus({ name: 'n1', body: [{ op: 'add', path: '/status', value: { conditions: [{ type: 'Ready', status: 'True' }] } }] });
  t.equal(st.status!.conditions![0]!.type, 'Ready', 'node writes its own status');
  await expectStatus(t, nodeCore.patchNodeStatus({ name: 'n-status', body: [{ op: 'add', path: '/metadata/labels', value: {} }] }), 403, 'Forbidden', 'not another node');
  t.ok((await nodeCore.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=n1' })).items);
  const tr = await raw('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
    body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: 'test-token' } }),
    contentType: 'application/json',
  });
  t.match(tr.json, { kind: 'TokenReview', status: { authenticated: true, user: { username: 'proxy', groups: ['system:node-proxier', 'system:authenticated'] } } });
  const trBad = await raw('POST', '/apis/authentication.k8s.io/v1/tokenreviews', { body: JSON.stringify({ spec: { token: 'x' } }), contentType: 'application/json' });
  t.match(trBad.json, { status: { authenticated: false } });
  const sar = async (user: string, groups: string[], verb: string, resource: string): Promise<boolean> => {
    const r = await raw('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
      body: JSON.stringify({ spec: { user, groups, resourceAttributes: { verb, resource, namespace: 'default' } } }),
      contentType: 'application/json',
    });
    return (r.json.status as { allowed: boolean }).allowed;
  };
  t.equal(await sar('admin', ['system:masters'], 'delete', 'pods'), true);
  t.equal(await sar('bob', [], 'get', 'pods'), false);
  t.equal(await sar('system:node:n1', ['system:nodes'], 'watch', 'pods'), true);
});

t.test('pods/log is proxied to the kubelet with the apiserver client certificate', async (t) => {
  const seen: { path: string; cn: unknown; authorized: boolean }[] = [];
  const kubelet = createHttpsServer(
    { key: server.pki.serving.key, cert: server.pki.serving.cert, ca: server.pki.ca.cert, requestCert: true, rejectUnauthorized: false },
    (req, res) => {
      const sock = req.socket as TLSSocket;
      seen.push({ path: req.url ?? '', cn: sock.getPeerCertificate().subject?.CN, authorized: sock.authorized });
      if ((req.url ?? '').includes('/missing')) {
        res.writeHead(404);
        res.end('container not found');
        return;
      }
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('line 1\nline 2\n');
    },
  );
  await new Promise<void>((resolve) => kubelet.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => kubelet.close(() => resolve())));
  const port = (kubelet.address() as AddressInfo).port;
  await core.createNode({
    body: { metadata: { name: 'logs-node' }, status: { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }], daemonEndpoints: { kubeletEndpoint: { Port: port } } } },
  });
  await core.createNamespacedPod({
    namespace: 'default',
    body: { metadata: { name: 'logpod' }, spec: { nodeName: 'logs-node', containers: [{ name: 'app', image: 'i' }, { name: 'side', image: 'i' }] } },
  });
  const text = await core.readNamespacedPodLog({ name: 'logpod', namespace: 'default', container: 'app', tailLines: 2 });
  t.equal(text, 'line 1\nline 2\n');
  t.same(seen[0], { path: '/containerLogs/default/logpod/app?tailLines=2', cn: 'kube-apiserver-kubelet-client', authorized: true });
  t.match(await raw('GET', '/api/v1/namespaces/default/pods/logpod/log'), { code: 400, json: { reason: 'BadRequest', message: /choose one of: \[app side\]/ } });
  t.match(await raw('GET', '/api/v1/namespaces/default/pods/logpod/log?container=nope'), { code: 400, json: { reason: 'BadRequest' } });
  const notBound = await raw('GET', '/api/v1/namespaces/default/pods/patchme/log?container=app');
  t.match(notBound, { code: 400, json: { message: /does not have a host assigned/ } });
  const fromKubelet = await raw('GET', '/api/v1/namespaces/default/pods/logpod/log?container=side&previous=true&x=ignored');
  t.equal(fromKubelet.text, 'line 1\nline 2\n');
  t.equal(seen[1]!.path, '/containerLogs/default/logpod/side?previous=true', 'only log options are passed on');
  await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'missing' }, spec: { nodeName: 'logs-node', containers: [{ name: 'app', image: 'i' }] } } });
  t.match(await raw('GET', '/api/v1/namespaces/default/pods/missing/log'), { code: 404, json: { kind: 'Status', reason: 'NotFound', message: 'container not found' } });
});

t.test('namespace deletion empties the namespace', async (t) => {
  await core.createNamespace({ body: { metadata: { name: 'doomed' } } });
  await core.createNamespacedConfigMap({ namespace: 'doomed', body: cm('c', {}, 'doomed') });
  const ns = await core.deleteNamespace({ name: 'doomed' });
  t.equal((ns as { status?: { phase?: string } }).status?.phase, 'Terminating');
  await expectStatus(t, core.createNamespacedConfigMap({ namespace: 'doomed', body: cm('d', {}, 'doomed') }), 403, 'Forbidden', 'no new content while terminating');
  for (let i = 0; i < 50; i++) {
    try {
      await core.readNamespace({ name: 'doomed' });
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await expectStatus(t, core.readNamespace({ name: 'doomed' }), 404, 'NotFound', 'namespace removed once empty');
});

t.test('persistence across a restart', async (t) => {
  await core.createNamespacedConfigMap({ namespace: 'default', body: cm('survivor') });
  const before = (await core.listNamespacedConfigMap({ namespace: 'default' })).metadata!.resourceVersion!;
  const svcBefore = await core.readNamespacedService({ name: 'alloc-b', namespace: 'default' });
  await running.close();
  running = await startApiServer({ dataDir, listen: ['127.0.0.1:0'], persistPath: join(dataDir, 'store.json') });
  const kc2 = new KubeConfig();
  kc2.loadFromFile(running.adminKubeconfig);
  const core2 = kc2.makeApiClient(CoreV1Api);
  const got = await core2.readNamespacedConfigMap({ name: 'survivor', namespace: 'default' });
  t.equal(got.data!.k, 'v');
  const after = (await core2.listNamespacedConfigMap({ namespace: 'default' })).metadata!.resourceVersion!;
  t.ok(Number(after) >= Number(before), 'the counter continues');
  const taken = core2.createNamespacedService({
    namespace: 'default',
    body: { metadata: { name: 'alloc-d' }, spec: { type: 'NodePort', ports: [{ port: 80, nodePort: svcBefore.spec!.ports![0]!.nodePort }] } },
  });
  await expectStatus(t, taken, 422, 'Invalid', 'allocations rebuilt from stored services');
});

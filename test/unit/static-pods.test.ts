/**
 * Static pods, the pure parts and the file source on a temp dir: manifest
 * parsing, validation and defaulting, naming, UID/hash stability, the diff of
 * two scans, mirror-pod rendering and decisions, and the file source's adds,
 * deletes, malformed files (reported once, last valid pod kept) and duplicates.
 */
import t from 'tap';
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import {
  configHashAnnotation,
  configMirrorAnnotation,
  configSeenAnnotation,
  configSourceAnnotation,
  diffStaticPods,
  isMirrorOf,
  isMirrorPod,
  isStaticPod,
  mirrorActions,
  parseManifest,
  renderMirrorPod,
  seenTimestamp,
  StaticPodFileSource,
  staticPodName,
  staticPodUid,
} from '../../agent/pods/static/index.js';
import { isKnodeError } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';

const ctx = { path: '/etc/kubernetes/manifests/web.yaml', nodeName: 'Node-1', seen: '2026-01-02T03:04:05.123456789Z' };
const yaml = (name = 'web', extra = ''): string => `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  labels: {app: ${name}}
spec:
  containers:
  - name: app
    image: knode.local/app:1.0
${extra}`;

t.test('parseManifest: naming, defaults, annotations, nodeName, toleration', async (t) => {
  const pod = parseManifest(yaml(), ctx);
  t.equal(pod.metadata?.name, 'web-node-1', '<name>-<node lowercased>');
  t.equal(staticPodName('web', 'Node-1'), 'web-node-1');
  t.equal(pod.metadata?.namespace, 'default', 'namespace defaults to default');
  t.equal(pod.spec?.nodeName, 'Node-1', 'bound to the node');
  t.match(pod.metadata?.uid, /^[0-9a-f]{32}$/, 'an MD5 hex UID');
  t.same(pod.metadata?.annotations, { [configHashAnnotation]: pod.metadata?.uid, [configSourceAnnotation]: 'file', [configSeenAnnotation]: ctx.seen });
  t.same(pod.metadata?.labels, { app: 'web' }, 'labels kept');
  t.equal(pod.spec?.restartPolicy, 'Always', 'pod defaults applied');
  t.equal(pod.spec?.terminationGracePeriodSeconds, 30);
  t.equal(pod.spec?.containers[0]?.imagePullPolicy, 'IfNotPresent', 'container defaults applied');
  t.same(pod.spec?.tolerations, [{ operator: 'Exists', effect: 'NoExecute' }], 'tolerates NoExecute taints');
  t.equal(pod.status?.phase, 'Pending');
  t.ok(isStaticPod(pod));
  t.notOk(isMirrorPod(pod));
  const json = parseManifest(JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'kube-system', labels: { app: 'web' } }, spec: { containers: [{ name: 'app', image: 'knode.local/app:1.0' }] } }), ctx);
  t.equal(json.metadata?.namespace, 'kube-system', 'JSON manifests, namespace kept');
});

t.test('UID: stable for the same content, node and file; changes with any of them', async (t) => {
  const a = parseManifest(yaml(), ctx).metadata?.uid;
  t.equal(parseManifest(yaml(), { ...ctx, seen: 'later' }).metadata?.uid, a, 'same content: same UID (seen does not count)');
  t.equal(parseManifest(`# a comment\n${yaml()}\n\n`, ctx).metadata?.uid, a, 'formatting does not count (the decoded object is hashed)');
  t.equal(parseManifest(JSON.stringify({ kind: 'Pod', apiVersion: 'v1', spec: { containers: [{ image: 'knode.local/app:1.0', name: 'app' }] }, metadata: { labels: { app: 'web' }, name: 'web' } }), ctx).metadata?.uid, a, 'key order does not count');
  t.not(parseManifest(yaml('web', '    args: [x]\n'), ctx).metadata?.uid, a, 'an edit changes it');
  t.not(parseManifest(yaml(), { ...ctx, nodeName: 'node-2' }).metadata?.uid, a, 'another node changes it');
  t.not(parseManifest(yaml(), { ...ctx, path: '/other.yaml' }).metadata?.uid, a, 'another file changes it');
  t.equal(staticPodUid({ a: 1 }, 'n', '/f'), staticPodUid({ a: 1 }, 'n', '/f'));
  const own = parseManifest(yaml('web').replace('  name: web', '  name: web\n  uid: my-uid'), ctx);
  t.equal(own.metadata?.uid, 'my-uid', 'a UID in the manifest is kept');
  t.equal(own.metadata?.annotations?.[configHashAnnotation], 'my-uid', 'and is the config hash');
});

t.test('parseManifest: malformed manifests are STATIC_POD_INVALID errors naming the file', async (t) => {
  const cases: [string, RegExp][] = [
    ['apiVersion: v1\nkind: Pod\nmetadata: {name: x\n', /not YAML or JSON/],
    ['- a\n- b\n', /not an object/],
    ['apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n', /expected apiVersion v1, kind Pod/],
    ['apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {containers: [{name: a, image: b}]}\n', /metadata.name: Required value/],
    ['apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {containers: [{name: a, image: b}]}\n', /metadata.name: Invalid value: "Bad_Name"/],
    ['apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n', /spec.containers: Required value/],
    ['apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: a}]}\n', /spec.containers\[0\].image: Required value/],
    ['', /not an object/],
  ];
  for (const [text, re] of cases) {
    try {
      parseManifest(text, ctx);
      t.fail(`accepted: ${JSON.stringify(text)}`);
    } catch (err) {
      t.ok(isKnodeError(err, 'STATIC_POD_INVALID'), 'typed error');
      t.match((err as Error).message, /^static pod manifest \/etc\/kubernetes\/manifests\/web\.yaml: /);
      t.match((err as Error).message, re);
    }
  }
});

t.test('seenTimestamp: RFC 3339 with nanoseconds, trailing zeros trimmed', async (t) => {
  t.equal(seenTimestamp(Date.UTC(2026, 0, 2, 3, 4, 5, 120)), '2026-01-02T03:04:05.12Z');
  t.equal(seenTimestamp(Date.UTC(2026, 0, 2, 3, 4, 5, 0)), '2026-01-02T03:04:05Z');
  t.equal(seenTimestamp(Date.UTC(2026, 0, 2, 3, 4, 5, 1), 234), '2026-01-02T03:04:05.001000234Z');
});

const pod = (name: string, uid: string): V1Pod => ({ metadata: { name, namespace: 'default', uid, annotations: { [configHashAnnotation]: uid, [configSourceAnnotation]: 'file' } }, spec: { nodeName: 'n1', containers: [{ name: 'a', image: 'i' }] } });
const mirror = (name: string, hash: string, uid = `m-${hash}`, deleting = false): V1Pod => ({
  metadata: { name, namespace: 'default', uid, annotations: { [configMirrorAnnotation]: hash }, ...(deleting ? { deletionTimestamp: new Date() } : {}) },
});

t.test('diffStaticPods: adds and removes by UID', async (t) => {
  const a = pod('a-n1', 'ua');
  const b = pod('b-n1', 'ub');
  const b2 = pod('b-n1', 'ub2');
  const d = diffStaticPods(new Map([['ua', a], ['ub', b]]), new Map([['ua', a], ['ub2', b2]]));
  t.same(d.added.map((p) => p.metadata?.uid), ['ub2'], 'an edited manifest is a new pod');
  t.same(d.removed.map((p) => p.metadata?.uid), ['ub'], 'and the old one goes');
  t.same(diffStaticPods(new Map([['ua', a]]), new Map([['ua', a]])), { added: [], removed: [] }, 'no change, nothing to do');
});

t.test('renderMirrorPod: the static pod with config.mirror and a Node owner, no UID', async (t) => {
  const s = parseManifest(yaml(), ctx);
  const m = renderMirrorPod(s, { name: 'Node-1', uid: 'node-uid' });
  t.equal(m.metadata?.name, 'web-node-1');
  t.equal(m.metadata?.uid, undefined, 'the apiserver assigns the UID');
  t.equal(m.metadata?.annotations?.[configMirrorAnnotation], s.metadata?.uid, 'config.mirror = the config hash');
  t.equal(m.metadata?.annotations?.[configHashAnnotation], s.metadata?.uid);
  t.equal(m.metadata?.annotations?.[configSourceAnnotation], 'file');
  t.same(m.metadata?.ownerReferences, [{ apiVersion: 'v1', kind: 'Node', name: 'Node-1', uid: 'node-uid', controller: true }]);
  t.same(m.spec, s.spec, 'same spec');
  t.equal(m.status, undefined);
  t.ok(isMirrorPod(m));
  t.ok(isMirrorOf({ ...m, metadata: { ...m.metadata, uid: 'x' } }, s));
});

t.test('mirrorActions', async (t) => {
  const a = pod('a-n1', 'ha');
  const b = pod('b-n1', 'hb');
  const names = (ps: V1Pod[]): string[] => ps.map((p) => p.metadata?.name ?? '');
  const del = (r: ReturnType<typeof mirrorActions>): [string, string][] => r.delete.map((d) => [d.mirror.metadata?.name ?? '', d.reason]);

  let r = mirrorActions([a, b], []);
  t.same(names(r.create), ['a-n1', 'b-n1'], 'no mirrors: create both');
  r = mirrorActions([a, b], [mirror('a-n1', 'ha'), mirror('b-n1', 'hb')]);
  t.same(r, { create: [], delete: [] }, 'all mirrored: nothing to do');
  r = mirrorActions([a], [mirror('a-n1', 'ha'), mirror('gone-n1', 'hg')]);
  t.same(del(r), [['gone-n1', 'orphaned']], 'a mirror without a static pod is deleted');
  r = mirrorActions([a], [mirror('a-n1', 'old')]);
  t.same(del(r), [['a-n1', 'stale']], 'a mirror of another hash is deleted');
  t.same(r.create, [], 'and recreated only once it is gone');
  r = mirrorActions([a], [mirror('a-n1', 'ha', 'm1', true)]);
  t.same(del(r), [['a-n1', 'deleting']], 'a mirror being deleted is force-deleted (to be recreated)');
  r = mirrorActions([], [mirror('x-n1', 'hx')]);
  t.same(del(r), [['x-n1', 'orphaned']], 'no static pods at all: every mirror is an orphan');
});

t.test('StaticPodFileSource on a directory', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'knode-static-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const invalid: string[] = [];
  const added: V1Pod[] = [];
  const removed: V1Pod[] = [];
  const src = new StaticPodFileSource({ dir: join(dir, 'manifests'), nodeName: 'n1', logger: createLogger({ component: 'test', level: 'error', write: () => undefined }), rescanMs: 3_600_000, watch: false, onInvalid: (path, message) => invalid.push(`${path}: ${message}`) });
  const unsubscribe = src.subscribe({ onUpdate: (p) => added.push(p), onDelete: (p) => removed.push(p) });
  t.teardown(unsubscribe);
  await src.ready;
  t.same(src.pods(), [], 'a missing directory is an empty set');

  const { mkdir } = await import('node:fs/promises');
  await mkdir(join(dir, 'manifests'));
  const m = (f: string): string => join(dir, 'manifests', f);
  await writeFile(m('a.yaml'), yaml('a'));
  await writeFile(m('b.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'b' }, spec: { containers: [{ name: 'c', image: 'i:1' }] } }));
  await writeFile(m('.hidden.yaml'), yaml('hidden'));
  await mkdir(m('subdir'));
  await writeFile(m('bad.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: bad\n');
  await src.scan();
  t.same(src.pods().map((p) => p.metadata?.name).sort(), ['a-n1', 'b-n1'], 'regular, non-hidden files only; the malformed one skipped');
  t.same(added.map((p) => p.metadata?.name).sort(), ['a-n1', 'b-n1'], 'adds reported');
  t.equal(invalid.length, 1, 'the malformed file reported');
  t.match(invalid[0], /bad\.yaml: static pod manifest .*bad\.yaml: not YAML or JSON/);

  await src.scan();
  t.equal(invalid.length, 1, 'reported once, not on every scan');
  t.equal(added.length, 2, 'no change: nothing new');

  // An edit: a new UID, the old pod removed.
  const oldA = src.pods().find((p) => p.metadata?.name === 'a-n1')!;
  await writeFile(m('a.yaml'), yaml('a', '    args: [x]\n'));
  await src.scan();
  t.same(removed.map((p) => p.metadata?.uid), [oldA.metadata?.uid], 'the old version removed');
  const newA = src.pods().find((p) => p.metadata?.name === 'a-n1')!;
  t.not(newA.metadata?.uid, oldA.metadata?.uid, 'the edited manifest is a new pod');

  // A valid file turning malformed keeps its last valid pod.
  await writeFile(m('a.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: [');
  await src.scan();
  t.ok(src.has(newA.metadata?.uid ?? ''), 'the last valid pod of a file that turned malformed is kept');
  t.equal(invalid.length, 2, 'and the problem reported');

  // Two files defining the same pod: the first by name wins.
  await writeFile(m('c-dup.yaml'), yaml('b'));
  await src.scan();
  t.equal(src.pods().filter((p) => p.metadata?.name === 'b-n1').length, 1, 'one pod per name');
  t.match(invalid[2], /c-dup\.yaml: .*pod default\/b-n1 is already defined by .*b\.json/);

  // Removing a manifest removes its pod.
  const b = src.pods().find((p) => p.metadata?.name === 'b-n1')!;
  await unlink(m('b.json'));
  await unlink(m('c-dup.yaml'));
  await src.scan();
  t.ok(removed.some((p) => p.metadata?.uid === b.metadata?.uid), 'a removed manifest removes its pod');
  t.notOk(src.pods().some((p) => p.metadata?.name === 'b-n1'));
});

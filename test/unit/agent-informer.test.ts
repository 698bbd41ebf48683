/**
 * The informer: its pure state transitions (cache, events, relist diff,
 * back-off) and its loop against a scripted fake ListWatch (resume from the
 * last resourceVersion, bookmarks, 410 → relist, dropped connections, stop).
 */
import t from 'tap';
import { applyWatchEvent, backoffDelay, keyOf, replaceAll } from '../../agent/kube/informer-state.js';
import type { Change } from '../../agent/kube/informer-state.js';
import { startInformer } from '../../agent/kube/informer.js';
import type { ListWatch, WatchOptions } from '../../agent/kube/informer.js';
import { createLogger } from '../../lib/log.js';

interface Obj {
  metadata: { name: string; namespace?: string; resourceVersion: string };
  v?: number;
}

const o = (name: string, rv: string, ns = 'default', v = 0): Obj => ({ metadata: { name, namespace: ns, resourceVersion: rv }, v });
const quiet = createLogger({ component: 'informer-test', level: 'error' });

t.test('keys', async (t) => {
  t.equal(keyOf(o('a', '1', 'ns1')), 'ns1/a');
  t.equal(keyOf({ metadata: { name: 'node-1' } }), 'node-1');
});

t.test('watch events', async (t) => {
  const cache = new Map<string, Obj>();
  t.match(applyWatchEvent(cache, 'ADDED', o('a', '2')), { kind: 'changes', changes: [{ type: 'add' }], resourceVersion: '2' });
  t.match(applyWatchEvent(cache, 'MODIFIED', o('a', '3', 'default', 1)), { kind: 'changes', changes: [{ type: 'update', old: { v: 0 }, obj: { v: 1 } }], resourceVersion: '3' });
  t.match(applyWatchEvent(cache, 'MODIFIED', o('b', '4')), { changes: [{ type: 'add' }] }, 'MODIFIED of an unknown key is an add');
  t.equal(cache.size, 2);
  t.match(applyWatchEvent(cache, 'DELETED', o('a', '5')), { changes: [{ type: 'delete', obj: { metadata: { resourceVersion: '5' } } }], resourceVersion: '5' });
  t.same([...cache.keys()], ['default/b']);
  t.same(applyWatchEvent(cache, 'BOOKMARK', { metadata: { resourceVersion: '9' } }), { kind: 'bookmark', resourceVersion: '9' });
  t.equal(cache.size, 1, 'bookmark leaves the cache alone');
  t.match(applyWatchEvent(cache, 'ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' }), { kind: 'expired' });
  t.match(applyWatchEvent(cache, 'ERROR', { kind: 'Status', reason: 'Gone' }), { kind: 'expired' });
  t.match(applyWatchEvent(cache, 'ERROR', { kind: 'Status', code: 500, reason: 'InternalError' }), { kind: 'error', status: { code: 500 } });
  t.same(applyWatchEvent(cache, 'WHATEVER', {}), { kind: 'ignored' });
});

t.test('relist diff', async (t) => {
  const cache = new Map<string, Obj>([
    ['default/keep', o('keep', '1')],
    ['default/moved', o('moved', '1')],
    ['default/gone', o('gone', '1')],
  ]);
  const changes = replaceAll(cache, [o('keep', '1'), o('moved', '7'), o('new', '8')]);
  t.same(
    changes.map((c) => `${c.type}:${c.obj.metadata.name}`),
    ['update:moved', 'add:new', 'delete:gone'],
    'unchanged objects are silent; only what moved, appeared or vanished',
  );
  t.same([...cache.keys()].sort(), ['default/keep', 'default/moved', 'default/new']);
});

t.test('back-off', async (t) => {
  t.same([0, 1, 2, 3, 10].map((a) => backoffDelay(a, 500, 30_000)), [500, 1000, 2000, 4000, 30_000]);
});

/** A scripted apiserver: lists return `state`, each watch call runs the next script step. */
function fakeListWatch(script: ((opts: WatchOptions, emit: (type: string, obj: unknown) => void) => Promise<void>)[], lists: (() => { items: Obj[]; resourceVersion: string })[]) {
  const watchCalls: WatchOptions[] = [];
  let listCalls = 0;
  const lw: ListWatch<Obj> = {
    async list() {
      const f = lists[Math.min(listCalls, lists.length - 1)]!;
      listCalls++;
      return f();
    },
    async watch(opts, onEvent) {
      watchCalls.push(opts);
      const step = script.shift();
      if (step === undefined) {
        await new Promise<void>((resolve) => opts.signal.addEventListener('abort', () => resolve(), { once: true }));
        return;
      }
      await step(opts, onEvent);
    },
  };
  return { lw, watchCalls, listCalls: () => listCalls };
}

t.test('informer loop: resume, bookmark, drop, 410 relist, stop', async (t) => {
  const seen: string[] = [];
  const record = (c: Change<Obj>): void => void seen.push(`${c.type}:${c.obj.metadata.name}@${c.obj.metadata.resourceVersion}`);
  const fake = fakeListWatch(
    [
      // 1: two events then the server closes the stream (timeout).
      async (_o, emit) => {
        emit('ADDED', o('b', '11'));
        emit('MODIFIED', o('a', '12', 'default', 1));
      },
      // 2: a bookmark, then the connection drops.
      async (_o, emit) => {
        emit('BOOKMARK', { metadata: { resourceVersion: '20' } });
        throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
      },
      // 3: the window moved on: 410 as an ERROR event.
      async (_o, emit) => {
        emit('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version: 20 (30)' });
      },
      // 4: after the relist, an HTTP 410 on the request itself.
      async () => {
        throw Object.assign(new Error('Gone'), { statusCode: 410 });
      },
    ],
    [() => ({ items: [o('a', '10')], resourceVersion: '10' }), () => ({ items: [o('a', '12', 'default', 1), o('c', '31')], resourceVersion: '35' }), () => ({ items: [o('c', '31')], resourceVersion: '40' })],
  );
  const ac = new AbortController();
  const inf = startInformer<Obj>({
    listWatch: fake.lw,
    logger: quiet,
    fieldSelector: 'spec.nodeName=n1',
    signal: ac.signal,
    backoffInitialMs: 5,
    backoffMaxMs: 20,
    watchTimeoutSeconds: 60,
    onAdd: (obj) => record({ type: 'add', obj }),
    onUpdate: (old, obj) => record({ type: 'update', old, obj }),
    onDelete: (obj) => record({ type: 'delete', obj }),
  });
  await inf.synced;
  t.ok(inf.hasSynced());
  const deadline = Date.now() + 3000;
  while (fake.watchCalls.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  t.same(
    fake.watchCalls.map((w) => w.resourceVersion),
    ['10', '12', '20', '35', '40'],
    'each watch resumes from the last event/bookmark; relists after 410 restart from the list',
  );
  t.ok(fake.watchCalls.every((w) => w.fieldSelector === 'spec.nodeName=n1' && w.timeoutSeconds === 60), 'selector and timeout on every watch');
  t.equal(fake.listCalls(), 3, 'one list plus one per 410');
  t.same(seen, ['add:a@10', 'add:b@11', 'update:a@12', 'add:c@31', 'delete:b@11', 'delete:a@12'], 'handlers saw exactly what changed, c not re-added by the second relist');
  t.same(inf.list().map((x) => x.metadata.name), ['c']);
  t.match(inf.stats(), { lists: 3, relistsAfterExpired: 2, watchErrors: 1 });
  t.equal(inf.get('default/c')?.metadata.resourceVersion, '31');
  ac.abort();
  await inf.done;
  t.pass('stopped with the signal');
});

t.test('a throwing handler does not stop the informer; list errors back off', async (t) => {
  let fail = 2;
  const lw: ListWatch<Obj> = {
    async list() {
      if (fail-- > 0) throw Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
      return { items: [o('x', '1'), o('y', '1')], resourceVersion: '1' };
    },
    async watch(opts) {
      await new Promise<void>((resolve) => opts.signal.addEventListener('abort', () => resolve(), { once: true }));
    },
  };
  const ac = new AbortController();
  const added: string[] = [];
  const inf = startInformer<Obj>({
    listWatch: lw,
    logger: quiet,
    signal: ac.signal,
    backoffInitialMs: 5,
    onAdd: (obj) => {
      added.push(obj.metadata.name);
      if (obj.metadata.name === 'x') throw new Error('handler bug');
    },
  });
  await inf.synced;
  t.same(added, ['x', 'y']);
  t.equal(inf.list().length, 2);
  ac.abort();
  await inf.done;
});

import t from 'tap';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { MemoryStore } from '../../lab/apiserver/store.js';
import type { StoreEvent } from '../../lab/apiserver/store.js';
import type { KubeObject } from '../../lab/apiserver/object.js';

const cm = (name: string, data: string, namespace = 'default'): KubeObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data: { v: data } });
const key = (name: string, namespace = 'default') => ({ storage: 'configmaps', namespace, name });

t.test('one global resourceVersion, list snapshot, no-op updates', async (t) => {
  const s = await MemoryStore.open();
  const a = await s.create(key('a'), cm('a', '1'));
  const b = await s.create({ storage: 'secrets', namespace: 'default', name: 'b' }, cm('b', '1'));
  t.equal(a.metadata.resourceVersion, '1');
  t.equal(b.metadata.resourceVersion, '2', 'counter is shared across resources');
  const same = await s.update(key('a'), (cur) => cur);
  t.equal(same.changed, false);
  t.equal(s.resourceVersion(), 2, 'a no-op update does not bump');
  const upd = await s.update(key('a'), (cur) => ({ ...cur, data: { v: '2' } }));
  t.equal(upd.object.metadata.resourceVersion, '3');
  const list = await s.list('configmaps', undefined);
  t.equal(list.resourceVersion, 3);
  t.same(list.items.map((o) => o.metadata.name), ['a']);
  await t.rejects(s.create(key('a'), cm('a', '1')), { code: 'STORE_EXISTS' });
  await t.rejects(s.update(key('zz'), (c) => c), { code: 'STORE_NOT_FOUND' });
  const del = await s.delete(key('a'));
  t.equal(del.metadata.resourceVersion, '4', 'DELETED carries the deletion resourceVersion');
  await s.close();
});

t.test('watch replay, window eviction and snapshots at an older resourceVersion', async (t) => {
  const s = await MemoryStore.open({ windowSize: 5 });
  for (let i = 0; i < 3; i++) await s.create(key(`o${i}`), cm(`o${i}`, '0'));
  const seen: StoreEvent[] = [];
  const w = s.watch({ storage: 'configmaps', fromResourceVersion: 1, onEvent: (e) => seen.push(e) });
  t.same(seen.map((e) => `${e.type}:${e.name}:${e.resourceVersion}`), ['ADDED:o1:2', 'ADDED:o2:3'], 'replays after the given rv');
  await s.update(key('o1'), (c) => ({ ...c, data: { v: '1' } }));
  await s.delete(key('o2'));
  t.same(seen.slice(2).map((e) => `${e.type}:${e.name}:${e.resourceVersion}`), ['MODIFIED:o1:4', 'DELETED:o2:5']);
  t.equal((seen[2]!.prev!.data as { v: string }).v, '0', 'MODIFIED carries the previous object');
  const old = await s.list('configmaps', 'default', 3);
  t.same(old.items.map((o) => `${o.metadata.name}:${(o.data as { v: string }).v}`), ['o0:0', 'o1:0', 'o2:0'], 'rolled back to rv 3');
  t.equal(old.resourceVersion, 3);
  w.stop();
  for (let i = 0; i < 5; i++) await s.update(key('o0'), (c) => ({ ...c, data: { v: String(10 + i) } }));
  t.equal(s.oldestResourceVersion(), 5);
  t.throws(() => s.watch({ storage: 'configmaps', fromResourceVersion: 4, onEvent: () => undefined }), { code: 'STORE_EXPIRED' });
  await t.rejects(s.list('configmaps', undefined, 2), { code: 'STORE_EXPIRED' });
  const ok = s.watch({ storage: 'configmaps', fromResourceVersion: 5, onEvent: () => undefined });
  ok.stop();
  const nsOnly: string[] = [];
  const w2 = s.watch({ storage: 'configmaps', namespace: 'other', fromResourceVersion: s.resourceVersion(), onEvent: (e) => nsOnly.push(e.name) });
  await s.create(key('x', 'other'), cm('x', '1', 'other'));
  await s.create(key('y'), cm('y', '1'));
  t.same(nsOnly, ['x'], 'namespace-scoped watch');
  w2.stop();
  await s.close();
});

t.test('persistence keeps objects and the counter across a restart', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'knode-t-store-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'store.json');
  const s = await MemoryStore.open({ persistPath: path, persistDebounceMs: 10 });
  await s.create(key('a'), cm('a', '1'));
  await s.create(key('b'), cm('b', '2'));
  await s.close();
  t.match(JSON.parse(await readFile(path, 'utf8')), { resourceVersion: 2 });
  const s2 = await MemoryStore.open({ persistPath: path });
  t.same((await s2.list('configmaps', undefined)).items.map((o) => o.metadata.name), ['a', 'b']);
  t.equal(s2.resourceVersion(), 2);
  t.throws(() => s2.watch({ storage: 'configmaps', fromResourceVersion: 1, onEvent: () => undefined }), { code: 'STORE_EXPIRED' }, 'window starts empty after a restart');
  const c = await s2.create(key('c'), cm('c', '3'));
  t.equal(c.metadata.resourceVersion, '3');
  await s2.close();
});

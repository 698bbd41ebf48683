import t from 'tap';
import { KnodeError } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { Informer } from '../../lab/controllers/informer.js';
import type { ListWatchClient } from '../../lab/controllers/informer.js';
import type { ListResult, WatchEvent } from '../../lab/controllers/client.js';
import type { KubeObject } from '../../lab/controllers/types.js';

const obj = (name: string, rv: string): KubeObject => ({ metadata: { name, namespace: 'ns', resourceVersion: rv } });

type Step = { list: KubeObject[]; rv: string } | { events: WatchEvent<KubeObject>[] } | { fail: unknown };

/** Plays a script: each list/watch call takes the next step of its kind. */
function fakeClient(steps: Step[], calls: string[]): ListWatchClient {
  const next = (): Step | undefined => steps.shift();
  return {
    list: (async (path: string) => {
      calls.push(`list ${path}`);
      const s = next();
      if (!s) throw new KnodeError('DONE', 'script over');
      if ('fail' in s) throw s.fail;
      if (!('list' in s)) throw new Error('expected a list step');
      return { metadata: { resourceVersion: s.rv }, items: s.list } satisfies ListResult<KubeObject>;
    }) as ListWatchClient['list'],
    watch: (async (_path: string, params: Record<string, unknown>, onEvent: (e: WatchEvent<KubeObject>) => void, signal: AbortSignal) => {
      calls.push(`watch rv=${String(params.resourceVersion)} bookmarks=${String(params.allowWatchBookmarks)}`);
      const s = next();
      if (!s) {
        await new Promise<void>((r) => signal.addEventListener('abort', () => r()));
        return;
      }
      if ('fail' in s) throw s.fail;
      if (!('events' in s)) throw new Error('expected a watch step');
      for (const e of s.events) onEvent(e);
    }) as ListWatchClient['watch'],
  };
}

t.test('list, watch from the list RV, bookmarks, resume, relist on 410 with a diff', async (t) => {
  const calls: string[] = [];
  const seen: string[] = [];
  const client = fakeClient(
    [
      { list: [obj('a', '1'), obj('b', '2')], rv: '5' },
      {
        events: [
          { type: 'ADDED', object: obj('c', '6') },
          { type: 'MODIFIED', object: obj('a', '7') },
          { type: 'BOOKMARK', object: obj('', '9') },
        ],
      },
      { events: [{ type: 'ERROR', object: { metadata: {}, code: 410, reason: 'Expired' } as unknown as KubeObject }] },
      // The relist: b is gone, c changed, d is new.
      { list: [obj('a', '7'), obj('c', '12'), obj('d', '13')], rv: '14' },
    ],
    calls,
  );
  const inf = new Informer<KubeObject>({ client, path: '/api/v1/things', apiVersion: 'v1', kind: 'Thing', logger: createLogger({ component: 't', level: 'error' }) });
  inf.on({
    add: (o) => seen.push(`add ${o.metadata.name ?? ''}`),
    update: (_o, n) => seen.push(`update ${n.metadata.name ?? ''}@${n.metadata.resourceVersion ?? ''}`),
    delete: (o) => seen.push(`delete ${o.metadata.name ?? ''}`),
  });
  const ac = new AbortController();
  const running = inf.run(ac.signal);
  await inf.synced;
  // (a watch that ends at once is followed by a short pause: no hot loop)
  for (let i = 0; i < 100 && calls.length < 5; i++) await new Promise((r) => setTimeout(r, 20));
  ac.abort();
  await running;
  t.same(calls, [
    'list /api/v1/things',
    'watch rv=5 bookmarks=true',
    'watch rv=9 bookmarks=true',
    'list /api/v1/things',
    'watch rv=14 bookmarks=true',
  ]);
  t.same(seen, ['add a', 'add b', 'add c', 'update a@7', 'update c@12', 'add d', 'delete b']);
  t.same(inf.list().map((o) => o.metadata.name).sort(), ['a', 'c', 'd']);
  t.equal(inf.get('ns/a')?.kind, 'Thing', 'type meta set on cached objects');
});

t.test('a failed watch relists after a back-off', async (t) => {
  const calls: string[] = [];
  const client = fakeClient(
    [
      { list: [obj('a', '1')], rv: '1' },
      { fail: new KnodeError('API_UNREACHABLE', 'connection reset') },
      { list: [], rv: '3' },
    ],
    calls,
  );
  const deleted: string[] = [];
  const inf = new Informer<KubeObject>({ client, path: '/p', apiVersion: 'v1', kind: 'X', logger: createLogger({ component: 't', level: 'error' }) });
  inf.on({ delete: (o) => deleted.push(o.metadata.name ?? '') });
  const ac = new AbortController();
  const running = inf.run(ac.signal);
  await new Promise((r) => setTimeout(r, 400));
  ac.abort();
  await running;
  t.same(calls, ['list /p', 'watch rv=1 bookmarks=true', 'list /p', 'watch rv=3 bookmarks=true']);
  t.same(deleted, ['a'], 'what vanished while disconnected is reported deleted');
});

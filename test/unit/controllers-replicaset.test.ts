import t from 'tap';
import { claim, deletionOrder, isAvailable, podFromTemplate, podsToDelete, replicaDiff, replicaSetStatus, statusDiffers } from '../../lab/controllers/replicaset-logic.js';
import { ownersGone } from '../../lab/controllers/gc.js';
import { WorkQueue } from '../../lab/controllers/queue.js';
import { createLogger } from '../../lib/log.js';
import type { Pod, ReplicaSet } from '../../lab/controllers/types.js';

const rs: ReplicaSet = {
  metadata: { name: 'rs', namespace: 'ns', uid: 'rs-uid', generation: 4 },
  spec: { replicas: 3, minReadySeconds: 10, selector: { matchLabels: { app: 'x' } }, template: { metadata: { labels: { app: 'x', extra: 'y' }, annotations: { a: 'b' } }, spec: { containers: [{ name: 'c' }] } } },
};

function pod(name: string, o: { labels?: Record<string, string>; owner?: string; node?: string; phase?: string; readySince?: string; created?: string; deleting?: boolean; restarts?: number } = {}): Pod {
  return {
    metadata: {
      name,
      namespace: 'ns',
      labels: o.labels ?? { app: 'x', extra: 'y' },
      creationTimestamp: o.created ?? '2026-01-01T00:00:00Z',
      ownerReferences: o.owner ? [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'rs', uid: o.owner, controller: true }] : undefined,
      ...(o.deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
    },
    spec: { nodeName: o.node, containers: [{ name: 'c' }] },
    status: {
      phase: o.phase ?? 'Running',
      conditions: o.readySince ? [{ type: 'Ready', status: 'True', lastTransitionTime: o.readySince }] : [{ type: 'Ready', status: 'False' }],
      containerStatuses: [{ name: 'c', restartCount: o.restarts ?? 0 }],
    },
  };
}

t.test('claim: owned, adopted, released, others ignored', async (t) => {
  const c = claim('rs-uid', rs.spec.selector, [
    pod('mine', { owner: 'rs-uid' }),
    pod('orphan'),
    pod('theirs', { owner: 'other' }),
    pod('strayed', { owner: 'rs-uid', labels: { app: 'z' } }),
    pod('unrelated', { labels: { app: 'z' } }),
    pod('dying-orphan', { deleting: true }),
  ], false);
  t.same(c.owned.map((p) => p.metadata.name), ['mine', 'orphan']);
  t.same(c.adopt.map((p) => p.metadata.name), ['orphan']);
  t.same(c.release.map((p) => p.metadata.name), ['strayed']);
  t.same(claim('rs-uid', rs.spec.selector, [pod('orphan')], true).adopt, [], 'a deleting owner adopts nothing');
});

t.test('surplus pods: unscheduled, then pending, not ready, ready most recently, restarts, newest', async (t) => {
  const pods = [
    pod('old-ready', { node: 'n', readySince: '2026-01-01T00:00:00Z' }),
    pod('new-ready', { node: 'n', readySince: '2026-01-01T00:05:00Z' }),
    pod('unscheduled', { phase: 'Pending' }),
    pod('pending', { node: 'n', phase: 'Pending' }),
    pod('not-ready', { node: 'n' }),
  ];
  t.same(podsToDelete(pods, 5).map((p) => p.metadata.name), ['unscheduled', 'pending', 'not-ready', 'new-ready', 'old-ready']);
  t.same(podsToDelete(pods, 2).map((p) => p.metadata.name), ['unscheduled', 'pending']);
  const a = pod('a', { node: 'n', restarts: 5 });
  const b = pod('b', { node: 'n', created: '2026-02-01T00:00:00Z' });
  t.ok(deletionOrder(a, b) < 0, 'more restarts first');
  t.ok(deletionOrder(pod('x', { node: 'n', created: '2026-02-01T00:00:00Z' }), pod('y', { node: 'n' })) < 0, 'newer first');
});

t.test('status: counts, fully labeled, available after minReadySeconds', async (t) => {
  const now = Date.parse('2026-01-01T00:01:00Z');
  const owned = [
    pod('a', { readySince: '2026-01-01T00:00:00Z' }),
    pod('b', { readySince: '2026-01-01T00:00:55Z' }),
    pod('c', { labels: { app: 'x' } }),
    pod('d', { deleting: true, readySince: '2026-01-01T00:00:00Z' }),
  ];
  const { status, recheckAfterMs } = replicaSetStatus(rs, owned, now);
  t.same(status, { replicas: 3, fullyLabeledReplicas: 2, readyReplicas: 2, availableReplicas: 1, observedGeneration: 4 });
  t.equal(recheckAfterMs, 5000, 'checks again when b becomes available');
  t.ok(isAvailable(owned[1]!, 0, now), 'no minReadySeconds: ready is available');
  t.ok(statusDiffers({ replicas: 3 }, status));
  t.notOk(statusDiffers({ ...status }, status));
  t.notOk(statusDiffers({ replicas: 0 }, { replicas: 0, readyReplicas: 0 }), 'absent counts as 0');
});

t.test('pods from the template and the replica diff', async (t) => {
  const p = podFromTemplate(rs);
  t.equal(p.metadata.generateName, 'rs-');
  t.same(p.metadata.labels, { app: 'x', extra: 'y' });
  t.same(p.metadata.annotations, { a: 'b' });
  t.same(p.metadata.ownerReferences, [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'rs', uid: 'rs-uid', controller: true, blockOwnerDeletion: true }]);
  t.equal(replicaDiff(rs, 1), 2);
  t.equal(replicaDiff(rs, 5), -2);
  t.equal(replicaDiff({ ...rs, spec: { ...rs.spec, replicas: 1000 } }, 0), 500, 'burst cap');
});

t.test('garbage collection decision', async (t) => {
  const ref = { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'rs', uid: 'u' };
  t.notOk(ownersGone(undefined, () => false), 'no owners: never collected');
  t.ok(ownersGone([ref], () => false));
  t.notOk(ownersGone([ref, { ...ref, uid: 'v' }], (r) => r.uid === 'v'), 'one owner left');
  t.notOk(ownersGone([ref], () => undefined), 'unknown owner kind: kept');
});

t.test('work queue: dedupes, never runs a key twice at once, retries with back-off', async (t) => {
  const q = new WorkQueue({ name: 't', logger: createLogger({ component: 't', level: 'error' }), baseDelayMs: 5 });
  const ac = new AbortController();
  const seen: string[] = [];
  let failOnce = true;
  let running = 0;
  let maxRunning = 0;
  q.add('a');
  q.add('a');
  q.add('b');
  const done = q.run(async (key) => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    seen.push(key);
    if (key === 'a' && seen.length === 1) q.add('a'); // re-added while processing
    await new Promise((r) => setTimeout(r, 2));
    running--;
    if (key === 'b' && failOnce) {
      failOnce = false;
      throw new Error('boom');
    }
  }, ac.signal);
  await new Promise((r) => setTimeout(r, 100));
  ac.abort();
  await done;
  t.same(seen, ['a', 'b', 'a', 'b'], 'a once, b, a again (dirty), b retried');
  t.equal(maxRunning, 1);
});

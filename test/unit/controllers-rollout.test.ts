import t from 'tap';
import {
  computeTemplateHash,
  deploymentStatus,
  fenceposts,
  fnv32a,
  isScalingEvent,
  proportionalScale,
  rollingStep,
  safeEncode,
  sameTemplate,
  scaledValue,
} from '../../lab/controllers/rollout.js';
import type { RsState } from '../../lab/controllers/rollout.js';
import { newReplicaSetFor } from '../../lab/controllers/deployment.js';
import type { Deployment, PodTemplateSpec, ReplicaSet } from '../../lab/controllers/types.js';

const template: PodTemplateSpec = { metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'c', image: 'busybox:1' }] } };

function deploy(replicas: number, maxSurge?: number | string, maxUnavailable?: number | string): Deployment {
  return {
    metadata: { name: 'd', namespace: 'ns', uid: 'd-uid', generation: 2 },
    spec: { replicas, selector: { matchLabels: { app: 'x' } }, template, strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge, maxUnavailable } } },
  };
}

t.test('fnv32a and safe encoding', async (t) => {
  t.equal(fnv32a(Buffer.from('')), 0x811c9dc5);
  t.equal(fnv32a(Buffer.from('a')), 0xe40c292c);
  t.equal(fnv32a(Buffer.from('foobar')), 0xbf9cf968);
  t.equal(safeEncode('01'), '45');
});

t.test('template hash: stable, key-order independent, ignores its own label, changes with content and collisions', async (t) => {
  const h = computeTemplateHash(template);
  t.match(h, /^[bcdfghjklmnpqrstvwxz2456789]+$/);
  t.equal(computeTemplateHash(structuredClone(template)), h, 'same input, same hash');
  const reordered: PodTemplateSpec = { spec: { containers: [{ image: 'busybox:1', name: 'c' }] }, metadata: { labels: { app: 'x' } } };
  t.equal(computeTemplateHash(reordered), h, 'key order does not matter');
  t.equal(computeTemplateHash({ ...template, metadata: { labels: { app: 'x', 'pod-template-hash': 'zzz' } } }), h, 'the hash label is ignored');
  t.not(computeTemplateHash({ ...template, spec: { containers: [{ name: 'c', image: 'busybox:2' }] } }), h, 'a new image, a new hash');
  t.not(computeTemplateHash(template, 1), h, 'collisionCount changes it');
  t.equal(computeTemplateHash(template, 0), h, 'collisionCount 0 is no collision');
  t.ok(sameTemplate(template, reordered));
  const undone: PodTemplateSpec = { metadata: { labels: { app: 'x' }, creationTimestamp: null } as PodTemplateSpec['metadata'], spec: { containers: [{ name: 'c', image: 'busybox:1', ports: [] }] } };
  t.ok(sameTemplate(template, undone), 'nulls and empty lists do not count (kubectl rollout undo)');
  t.equal(computeTemplateHash(undone), h);
});

t.test('the new ReplicaSet of a deployment', async (t) => {
  const d = deploy(3);
  const rs = newReplicaSetFor(d, 'abc', 1, 2);
  t.equal(rs.metadata.name, 'd-abc');
  t.same(rs.metadata.labels, { app: 'x', 'pod-template-hash': 'abc' });
  t.same(rs.spec.selector.matchLabels, { app: 'x', 'pod-template-hash': 'abc' });
  t.same(rs.spec.template.metadata?.labels, { app: 'x', 'pod-template-hash': 'abc' });
  t.equal(rs.metadata.annotations?.['deployment.kubernetes.io/revision'], '2');
  t.equal(rs.metadata.annotations?.['deployment.kubernetes.io/max-replicas'], '4');
  t.match(rs.metadata.ownerReferences, [{ kind: 'Deployment', name: 'd', uid: 'd-uid', controller: true }]);
  t.ok(sameTemplate(rs.spec.template, d.spec.template));
  t.same(d.spec.template.metadata?.labels, { app: 'x' }, 'the deployment is not modified');
});

t.test('surge rounds up, unavailable rounds down', async (t) => {
  t.equal(scaledValue('25%', 10, true), 3);
  t.equal(scaledValue('25%', 10, false), 2);
  t.equal(scaledValue(4, 10, true), 4);
  t.equal(scaledValue('4', 10, true), 4);
  t.same(fenceposts(deploy(10)), { maxSurge: 3, maxUnavailable: 2 }, 'defaults 25%/25%');
  t.same(fenceposts(deploy(5)), { maxSurge: 2, maxUnavailable: 1 });
  t.same(fenceposts(deploy(1)), { maxSurge: 1, maxUnavailable: 0 });
  t.same(fenceposts(deploy(3, 0, 0)), { maxSurge: 0, maxUnavailable: 1 }, 'both zero → one unavailable');
  t.same(fenceposts(deploy(4, '0%', '50%')), { maxSurge: 0, maxUnavailable: 2 });
});

t.test('rolling steps: 10 replicas, 25%/25%', async (t) => {
  const fence = fenceposts(deploy(10));
  // Scale up the new RS within the surge budget first.
  t.same(rollingStep(10, fence, { name: 'new', replicas: 0, available: 0 }, [{ name: 'old', replicas: 10, available: 10 }]), new Map([['new', 3]]));
  // At the surge cap with nothing new available: old scales down by what availability allows.
  t.same(rollingStep(10, fence, { name: 'new', replicas: 3, available: 0 }, [{ name: 'old', replicas: 10, available: 10 }]), new Map([['old', 8]]));
  // Then new grows again.
  t.same(rollingStep(10, fence, { name: 'new', replicas: 3, available: 0 }, [{ name: 'old', replicas: 8, available: 8 }]), new Map([['new', 5]]));
  // Unhealthy old replicas go first.
  t.same(rollingStep(10, fence, { name: 'new', replicas: 3, available: 3 }, [{ name: 'old', replicas: 10, available: 7 }]), new Map([['old', 5]]));
  // Old replicas that are not available anyway are cleaned up within the budget.
  t.same(rollingStep(10, fence, { name: 'new', replicas: 3, available: 0 }, [{ name: 'old', replicas: 10, available: 8 }]), new Map([['old', 8]]));
  // Both: 2 unavailable old ones cleaned up, then 1 more as 9 available > 8 minimum.
  t.same(rollingStep(10, fence, { name: 'new', replicas: 3, available: 1 }, [{ name: 'old', replicas: 10, available: 8 }]), new Map([['old', 7]]));
  t.same(rollingStep(10, fence, { name: 'new', replicas: 3, available: 0 }, [{ name: 'old', replicas: 8, available: 6 }]), new Map([['new', 5]]));
  t.same(rollingStep(10, fence, { name: 'new', replicas: 5, available: 0 }, [{ name: 'old', replicas: 8, available: 8 }]), new Map(), 'at the surge cap and the availability floor');
  // Scaling down the new RS is immediate.
  t.same(rollingStep(4, fenceposts(deploy(4)), { name: 'new', replicas: 6, available: 6 }, []), new Map([['new', 4]]));
  // Oldest first when several old RSs.
  t.same(
    rollingStep(4, { maxSurge: 1, maxUnavailable: 1 }, { name: 'new', replicas: 1, available: 1 }, [
      { name: 'a', replicas: 2, available: 2 },
      { name: 'b', replicas: 2, available: 2 },
    ]),
    new Map([['a', 0]]),
  );
});

t.test('a whole rollout converges within the bounds', async (t) => {
  for (const [replicas, surge, unavail] of [
    [10, '25%', '25%'],
    [5, '25%', '25%'],
    [3, 0, 1],
    [3, 1, 0],
    [1, '25%', '25%'],
  ] as [number, number | string, number | string][]) {
    const fence = fenceposts(deploy(replicas, surge, unavail));
    let nw: RsState = { name: 'new', replicas: 0, available: 0 };
    let old: RsState = { name: 'old', replicas, available: replicas };
    let steps = 0;
    while ((nw.replicas !== replicas || old.replicas !== 0) && steps < 100) {
      const plan = rollingStep(replicas, fence, nw, [old]);
      t.ok(plan.size > 0, `${replicas} ${surge}/${unavail}: step ${steps} makes progress`);
      if (plan.size === 0) break;
      nw = { ...nw, replicas: plan.get('new') ?? nw.replicas };
      old = { ...old, replicas: plan.get('old') ?? old.replicas };
      t.ok(nw.replicas + old.replicas <= replicas + fence.maxSurge, 'never above replicas + maxSurge');
      // The kubelet: every pod becomes available at once.
      nw.available = nw.replicas;
      old.available = old.replicas;
      t.ok(nw.available + old.available >= replicas - fence.maxUnavailable, 'never below replicas - maxUnavailable');
      steps++;
    }
    t.equal(nw.replicas, replicas, 'all new');
    t.equal(old.replicas, 0, 'no old');
  }
});

t.test('status and conditions', async (t) => {
  const d = deploy(3);
  const rs = (name: string, spec: number, replicas: number, available: number): ReplicaSet => ({
    metadata: { name },
    spec: { replicas: spec, selector: {}, template },
    status: { replicas, readyReplicas: available, availableReplicas: available },
  });
  const newRS = rs('d-new', 3, 3, 3);
  const done = deploymentStatus(d, newRS, [newRS, rs('d-old', 0, 0, 0)], '2026-01-01T00:00:00Z', Date.now(), false);
  t.match(done, { observedGeneration: 2, replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 3, unavailableReplicas: 0 });
  t.match(done.conditions, [
    { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.' },
    { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable', message: 'ReplicaSet "d-new" has successfully progressed.' },
  ]);
  const mid = rs('d-new', 2, 2, 0);
  const rolling = deploymentStatus(d, mid, [mid, rs('d-old', 2, 2, 2)], '2026-01-01T00:00:00Z', Date.now(), true);
  t.match(rolling, { replicas: 4, updatedReplicas: 2, availableReplicas: 2, unavailableReplicas: 2 });
  t.match(rolling.conditions, [
    { type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable' },
    { type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated', message: 'ReplicaSet "d-new" is progressing.' },
  ]);
  const down = rs('d-new', 3, 3, 1);
  const low = deploymentStatus({ ...d, status: { availableReplicas: 1, updatedReplicas: 3, replicas: 3, readyReplicas: 1 } }, down, [down], 'x', Date.now(), false);
  t.match(low.conditions, [{ type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable' }]);
});

t.test('scaling events and proportional scaling', async (t) => {
  const rs = (name: string, spec: number, desired: number, max: number, created: string, available = spec): ReplicaSet => ({
    metadata: {
      name,
      creationTimestamp: created,
      annotations: { 'deployment.kubernetes.io/desired-replicas': String(desired), 'deployment.kubernetes.io/max-replicas': String(max) },
    },
    spec: { replicas: spec, selector: {}, template },
    status: { replicas: spec, availableReplicas: available },
  });
  const newer = '2026-01-02T00:00:00Z';
  const older = '2026-01-01T00:00:00Z';
  t.ok(isScalingEvent(deploy(10), [rs('new', 4, 5, 7, newer)]), 'sized for 5, wanted 10');
  t.notOk(isScalingEvent(deploy(5), [rs('new', 4, 5, 7, newer), rs('old', 0, 3, 4, older)]), 'inactive ones do not count');
  // One active ReplicaSet takes it all.
  t.same(proportionalScale(deploy(10), rs('new', 5, 5, 7, newer), [rs('old', 0, 5, 7, older)]), new Map([['new', 10]]));
  // 5 → 10 mid-rollout: 13 allowed (10 + 25% surge) shared by size.
  t.same(proportionalScale(deploy(10), rs('new', 4, 5, 7, newer, 0), [rs('old', 3, 5, 7, older)]), new Map([['new', 7], ['old', 6]]));
  // 10 → 5: 7 allowed.
  t.same(proportionalScale(deploy(5), rs('new', 7, 10, 13, newer, 0), [rs('old', 6, 10, 13, older)]), new Map([['new', 4], ['old', 3]]));
  // A saturated new ReplicaSet: old ones go to 0.
  t.same(proportionalScale(deploy(5), rs('new', 5, 5, 7, newer), [rs('old', 2, 5, 7, older)]), new Map([['old', 0]]));
  // To zero.
  t.same(proportionalScale(deploy(0), rs('new', 3, 5, 7, newer, 0), [rs('old', 2, 5, 7, older)]), new Map([['new', 0], ['old', 0]]));
});

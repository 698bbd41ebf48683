import t from 'tap';
import { applyPatch, jsonPatch, mergePatch, strategicMerge } from '../../lab/apiserver/patch.js';
import type { Json } from '../../lab/apiserver/object.js';

const pod: Json = {
  metadata: { name: 'p', labels: { a: '1', b: '2' }, finalizers: ['x'] },
  spec: {
    containers: [
      { name: 'app', image: 'i:1', ports: [{ containerPort: 80 }, { containerPort: 81 }], env: [{ name: 'A', value: '1' }] },
      { name: 'side', image: 's:1' },
    ],
    volumes: [{ name: 'v1', emptyDir: {} }],
    tolerations: [{ key: 'k', operator: 'Exists' }],
  },
  status: { conditions: [{ type: 'Ready', status: 'False' }, { type: 'PodScheduled', status: 'True' }] },
};

t.test('merge patch (RFC 7386)', async (t) => {
  const out = mergePatch(pod, { metadata: { labels: { a: null, c: '3' } }, spec: { tolerations: [] } }) as Record<string, Json>;
  t.same((out.metadata as Record<string, Json>).labels, { b: '2', c: '3' });
  t.same((out.spec as Record<string, Json>).tolerations, []);
  t.same((out.spec as Record<string, Json>).containers, (pod as Record<string, Record<string, Json>>).spec!.containers, 'untouched lists stay');
});

t.test('json patch (RFC 6902)', async (t) => {
  const out = jsonPatch(pod, [
    { op: 'add', path: '/metadata/labels/c', value: '3' },
    { op: 'remove', path: '/metadata/labels/a' },
    { op: 'replace', path: '/spec/containers/0/image', value: 'i:2' },
    { op: 'add', path: '/spec/volumes/-', value: { name: 'v2' } },
    { op: 'copy', from: '/metadata/labels/b', path: '/metadata/labels/d' },
    { op: 'move', from: '/metadata/labels/d', path: '/metadata/labels/e' },
    { op: 'test', path: '/metadata/name', value: 'p' },
    { op: 'add', path: '/metadata/annotations', value: { 'x~y/z': 'w' } },
    { op: 'replace', path: '/metadata/annotations/x~0y~1z', value: 'v' },
  ]) as { metadata: { labels: Json; annotations: Json }; spec: { containers: { image: string }[]; volumes: Json[] } };
  t.same(out.metadata.labels, { b: '2', c: '3', e: '2' });
  t.same(out.metadata.annotations, { 'x~y/z': 'v' });
  t.equal(out.spec.containers[0]!.image, 'i:2');
  t.equal(out.spec.volumes.length, 2);
  t.throws(() => jsonPatch(pod, [{ op: 'test', path: '/metadata/name', value: 'q' }]), { code: 'API_Invalid' });
  t.throws(() => jsonPatch(pod, [{ op: 'remove', path: '/nope' }]), { code: 'API_Invalid' });
  t.throws(() => jsonPatch(pod, { op: 'add' }), { code: 'API_BadRequest' });
  t.same((pod as { metadata: { labels: Json } }).metadata.labels, { a: '1', b: '2' }, 'input not mutated');
});

t.test('strategic merge patch: lists by merge key', async (t) => {
  const out = strategicMerge(pod, {
    metadata: { labels: { a: null }, finalizers: ['y'] },
    spec: {
      containers: [
        { name: 'app', image: 'i:2', ports: [{ containerPort: 81, name: 'alt' }, { containerPort: 82 }], env: [{ name: 'B', value: '2' }] },
        { name: 'side', $patch: 'delete' },
        { name: 'new', image: 'n:1' },
      ],
      volumes: [{ name: 'v2', emptyDir: {} }],
      tolerations: [{ key: 'other', operator: 'Exists' }],
    },
    status: { conditions: [{ type: 'Ready', status: 'True' }] },
  }) as {
    metadata: { labels: Json; finalizers: Json };
    spec: { containers: { name: string; image: string; ports?: Json[]; env?: Json[] }[]; volumes: Json[]; tolerations: Json[] };
    status: { conditions: { type: string; status: string }[] };
  };
  t.same(out.metadata.labels, { b: '2' });
  t.same(out.metadata.finalizers, ['x', 'y'], 'finalizers merge as a set');
  t.same(out.spec.containers.map((c) => c.name), ['app', 'new'], 'side deleted, new appended');
  t.equal(out.spec.containers[0]!.image, 'i:2');
  t.same(out.spec.containers[0]!.ports, [{ containerPort: 80 }, { containerPort: 81, name: 'alt' }, { containerPort: 82 }]);
  t.same(out.spec.containers[0]!.env, [{ name: 'A', value: '1' }, { name: 'B', value: '2' }]);
  t.same(out.spec.volumes.map((v) => (v as { name: string }).name), ['v1', 'v2']);
  t.same(out.spec.tolerations, [{ key: 'other', operator: 'Exists' }], 'lists without merge key are replaced');
  t.same(out.status.conditions, [{ type: 'Ready', status: 'True' }, { type: 'PodScheduled', status: 'True' }]);
});

t.test('strategic merge patch: directives', async (t) => {
  const svc: Json = { spec: { ports: [{ port: 80, targetPort: 8080 }, { port: 443 }], selector: { app: 'a', x: 'y' } } };
  const out = strategicMerge(svc, { spec: { ports: [{ port: 80, $patch: 'delete' }], selector: { $patch: 'replace', app: 'b' } } });
  t.same(out, { spec: { ports: [{ port: 443 }], selector: { app: 'b' } } }, 'service ports by port; $patch replace on a map');
  t.same(strategicMerge(pod, { metadata: { $patch: 'delete' } }) as Record<string, Json>, { spec: (pod as Record<string, Json>).spec, status: (pod as Record<string, Json>).status });
  t.same(
    strategicMerge({ metadata: { finalizers: ['a', 'b', 'c'] } }, { metadata: { '$deleteFromPrimitiveList/finalizers': ['b'] } }),
    { metadata: { finalizers: ['a', 'c'] } },
  );
  const ordered = strategicMerge(pod, {
    spec: { '$setElementOrder/containers': [{ name: 'side' }, { name: 'app' }], containers: [{ name: 'app', image: 'i:3' }] },
  }) as { spec: { containers: { name: string; image: string }[] } };
  t.same(ordered.spec.containers.map((c) => `${c.name}:${c.image}`), ['side:s:1', 'app:i:3']);
  t.same(strategicMerge({ spec: { a: 1, b: 2, c: 3 } }, { spec: { $retainKeys: ['a', 'd'], d: 4 } }), { spec: { a: 1, d: 4 } });
  t.same(
    strategicMerge(pod, { spec: { volumes: [{ $patch: 'replace' }, { name: 'only' }] } }) as unknown as { spec: { volumes: Json } },
    { ...(pod as object), spec: { ...((pod as Record<string, object>).spec), volumes: [{ name: 'only' }] } },
  );
});

t.test('applyPatch rejects non-object merge patches', async (t) => {
  t.throws(() => applyPatch('merge', pod, [1]), { code: 'API_BadRequest' });
  t.throws(() => applyPatch('strategic', pod, 'x'), { code: 'API_BadRequest' });
});

import t from 'tap';
import { filterNode, podRequests, schedule, tolerates, unschedulableMessage } from '../../lab/controllers/scheduling.js';
import type { NodeInfo } from '../../lab/controllers/scheduling.js';
import { parseQuantity } from '../../lab/controllers/selectors.js';
import type { Node, Pod, Taint, Toleration } from '../../lab/controllers/types.js';

function node(name: string, opts: { labels?: Record<string, string>; taints?: Taint[]; ready?: boolean; unschedulable?: boolean; cpu?: string; memory?: string; pods?: string } = {}): Node {
  return {
    metadata: { name, labels: opts.labels ?? {} },
    spec: { taints: opts.taints, unschedulable: opts.unschedulable },
    status: {
      allocatable: { cpu: opts.cpu ?? '2', memory: opts.memory ?? '4Gi', pods: opts.pods ?? '110' },
      conditions: [{ type: 'Ready', status: opts.ready === false ? 'False' : 'True' }],
    },
  };
}

function pod(name: string, spec: Partial<Pod['spec']> = {}, requests: Record<string, string> = {}): Pod {
  return { metadata: { name, namespace: 'default' }, spec: { containers: [{ name: 'c', resources: { requests } }], ...spec } };
}

const info = (n: Node, pods: Pod[] = []): NodeInfo => ({ node: n, pods });

t.test('quantities', async (t) => {
  t.equal(parseQuantity('100m'), 0.1);
  t.equal(parseQuantity('2'), 2);
  t.equal(parseQuantity('1.5'), 1.5);
  t.equal(parseQuantity('128Mi'), 128 * 2 ** 20);
  t.equal(parseQuantity('1G'), 1e9);
  t.equal(parseQuantity('1e3'), 1000);
  t.equal(parseQuantity(3), 3);
  t.throws(() => parseQuantity('lots'), { code: 'INVALID_QUANTITY' });
});

t.test('requests: containers summed, init containers as a max, overhead added', async (t) => {
  const p: Pod = {
    metadata: { name: 'p' },
    spec: {
      containers: [
        { name: 'a', resources: { requests: { cpu: '100m', memory: '64Mi' } } },
        { name: 'b', resources: { requests: { cpu: '200m' } } },
      ],
      initContainers: [{ name: 'i', resources: { requests: { cpu: '500m', memory: '32Mi' } } }],
      overhead: { cpu: '10m' },
    },
  };
  t.same(podRequests(p), { cpu: 510, memory: 64 * 2 ** 20 });
});

t.test('requests: sidecars add to the apps; a later init container runs beside the sidecars started before it', async (t) => {
  const p: Pod = {
    metadata: { name: 'p' },
    spec: {
      containers: [{ name: 'a', resources: { requests: { cpu: '100m', memory: '64Mi' } } }],
      initContainers: [
        { name: 'side', restartPolicy: 'Always', resources: { requests: { cpu: '50m', memory: '16Mi' } } },
        { name: 'i', resources: { requests: { cpu: '300m' } } },
      ],
    },
  };
  // apps + sidecar = 150m / 80Mi; init "i" beside the sidecar = 350m: the max is taken per resource.
  t.same(podRequests(p), { cpu: 350, memory: 80 * 2 ** 20 });
});

t.test('fit on cpu, memory and pod count', async (t) => {
  const n = node('n', { cpu: '1', memory: '1Gi', pods: '2' });
  t.same(filterNode(pod('a', {}, { cpu: '500m' }), info(n)), []);
  t.same(filterNode(pod('a', {}, { cpu: '1500m' }), info(n)), ['Insufficient cpu']);
  const used = [pod('u', {}, { cpu: '600m', memory: '900Mi' })];
  t.same(filterNode(pod('a', {}, { cpu: '500m', memory: '200Mi' }), info(n, used)), ['Insufficient cpu', 'Insufficient memory']);
  t.same(filterNode(pod('a'), info(n, [pod('x'), pod('y')])), ['Too many pods']);
  t.same(filterNode(pod('a'), info(n, [pod('x')])), [], 'no requests fit anywhere with room for a pod');
});

t.test('nodeSelector and required node affinity', async (t) => {
  const n = node('n', { labels: { disktype: 'ssd', zone: 'a' } });
  t.same(filterNode(pod('a', { nodeSelector: { disktype: 'ssd' } }), info(n)), []);
  t.same(filterNode(pod('a', { nodeSelector: { disktype: 'hdd' } }), info(n)), ["node(s) didn't match Pod's node affinity/selector"]);
  const affinity = (values: string[]) => ({
    nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'zone', operator: 'In', values }] }] } },
  });
  t.same(filterNode(pod('a', { affinity: affinity(['a', 'b']) }), info(n)), []);
  t.same(filterNode(pod('a', { affinity: affinity(['c']) }), info(n)), ["node(s) didn't match Pod's node affinity/selector"]);
  const byName = { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['n'] }] }] } } };
  t.same(filterNode(pod('a', { affinity: byName }), info(n)), [], 'matchFields metadata.name');
});

t.test('taints and tolerations', async (t) => {
  const taint: Taint = { key: 'dedicated', value: 'infra', effect: 'NoSchedule' };
  const cases: [Toleration, boolean][] = [
    [{ key: 'dedicated', operator: 'Equal', value: 'infra', effect: 'NoSchedule' }, true],
    [{ key: 'dedicated', value: 'infra' }, true],
    [{ key: 'dedicated', operator: 'Equal', value: 'other' }, false],
    [{ key: 'dedicated', operator: 'Exists' }, true],
    [{ key: 'dedicated', operator: 'Exists', effect: 'NoExecute' }, false],
    [{ operator: 'Exists' }, true],
    [{ key: 'other', operator: 'Exists' }, false],
  ];
  for (const [tol, want] of cases) t.equal(tolerates(tol, taint), want, JSON.stringify(tol));
  const n = node('n', { taints: [taint] });
  t.same(filterNode(pod('a'), info(n)), ['node(s) had untolerated taint {dedicated: infra}']);
  t.same(filterNode(pod('a', { tolerations: [{ key: 'dedicated', operator: 'Exists' }] }), info(n)), []);
  const soft = node('n', { taints: [{ key: 'x', effect: 'PreferNoSchedule' }] });
  t.same(filterNode(pod('a'), info(soft)), [], 'PreferNoSchedule does not filter');
  const exec = node('n', { taints: [{ key: 'x', effect: 'NoExecute' }] });
  t.same(filterNode(pod('a'), info(exec)), ['node(s) had untolerated taint {x: }']);
});

t.test('not ready and unschedulable nodes', async (t) => {
  t.same(filterNode(pod('a'), info(node('n', { ready: false }))), ['node(s) had untolerated taint {node.kubernetes.io/not-ready: }']);
  t.same(filterNode(pod('a', { tolerations: [{ key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoSchedule' }] }), info(node('n', { ready: false }))), []);
  t.same(filterNode(pod('a'), info(node('n', { unschedulable: true }))), ['node(s) were unschedulable']);
});

t.test('host ports', async (t) => {
  const withPort = (name: string, hostPort: number, hostIP?: string, protocol = 'TCP'): Pod => ({
    metadata: { name },
    spec: { containers: [{ name: 'c', ports: [{ containerPort: 80, hostPort, hostIP, protocol }] }] },
  });
  const n = node('n');
  const msg = ["node(s) didn't have free ports for the requested pod ports"];
  t.same(filterNode(withPort('a', 8080), info(n, [withPort('b', 8080)])), msg);
  t.same(filterNode(withPort('a', 8080), info(n, [withPort('b', 8081)])), []);
  t.same(filterNode(withPort('a', 8080, undefined, 'UDP'), info(n, [withPort('b', 8080)])), [], 'other protocol');
  t.same(filterNode(withPort('a', 8080, '10.0.0.1'), info(n, [withPort('b', 8080, '10.0.0.2')])), [], 'different host IPs');
  t.same(filterNode(withPort('a', 8080, '10.0.0.1'), info(n, [withPort('b', 8080)])), msg, '0.0.0.0 takes every address');
});

t.test('spread: fewest pods, then name', async (t) => {
  const a = node('a');
  const b = node('b');
  const c = node('c');
  t.same(schedule(pod('p'), [info(b), info(a)]), { node: 'a' }, 'ties by name');
  t.same(schedule(pod('p'), [info(a, [pod('x')]), info(b)]), { node: 'b' });
  t.same(schedule(pod('p', { nodeSelector: { k: 'v' } }), [info(a), info(b)]), {
    unschedulable: "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
  });
  const tainted = node('c', { taints: [{ key: 'k', value: 'v', effect: 'NoSchedule' }] });
  t.same(schedule(pod('p', {}, { cpu: '3' }), [info(a), info(tainted)]), {
    unschedulable: '0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {k: v}.',
  });
  t.same(schedule(pod('p'), []), { unschedulable: 'no nodes available to schedule pods' });
  t.same(schedule(pod('p'), [info(a, [pod('1'), pod('2')]), info(b, [pod('3')]), info(c, [pod('4')])]), { node: 'b' });
  t.equal(unschedulableMessage(3, new Map([['Too many pods', 1], ['Insufficient cpu', 2]])), '0/3 nodes are available: 1 Too many pods, 2 Insufficient cpu.');
});

/** /stats/summary from CRI answers; /proc/stat CPU time; /metrics path labels. */
import t from 'tap';
import { parseProcStatCpu, summarize } from '../../agent/server/stats.js';
import { metricPath } from '../../agent/server/metrics.js';
import type { ContainerStats, PodSandbox } from '../../agent/runtime/types.js';

const sandbox = (uid: string, state: 'ready' | 'notready'): PodSandbox => ({
  id: `sb-${uid}`,
  metadata: { name: `pod-${uid}`, namespace: 'ns', uid, attempt: 0 },
  state,
  createdAt: 1_700_000_000_000_000_000n,
  labels: {},
  annotations: {},
  runtimeHandler: '',
});

const stats = (uid: string, name: string, cpu: bigint, ws: number): ContainerStats => ({
  id: `c-${name}`,
  metadata: { name, attempt: 0 },
  labels: { 'io.kubernetes.pod.uid': uid },
  annotations: {},
  cpu: { timestamp: 1_700_000_001_000_000_000n, usageCoreNanoSeconds: cpu, usageNanoCores: undefined },
  memory: { timestamp: 1_700_000_001_000_000_000n, workingSetBytes: ws, availableBytes: undefined, usageBytes: ws + 10, rssBytes: undefined, pageFaults: undefined, majorPageFaults: undefined },
  writableLayer: undefined,
});

t.test('pods sum their containers; not-ready sandboxes are left out; unknown fields are absent', async (t) => {
  const node = { nodeName: 'n1', startTime: '2026-01-01T00:00:00.000Z', time: '2026-01-01T00:01:00.000Z', cpuUsageCoreNanoSeconds: 5e9, memoryTotal: 1000, memoryAvailable: 400 };
  const s = summarize(node, [sandbox('a', 'ready'), sandbox('b', 'notready')], [stats('a', 'x', 100n, 1), stats('a', 'y', 50n, 2), stats('b', 'z', 1n, 1)]) as {
    node: { memory: Record<string, unknown>; cpu: Record<string, unknown> };
    pods: { podRef: { uid: string }; containers: { name: string; memory: Record<string, unknown> }[]; cpu: Record<string, unknown>; memory: Record<string, unknown>; startTime: string }[];
  };
  t.same(s.node.memory, { time: node.time, availableBytes: 400, usageBytes: 600, workingSetBytes: 600 });
  t.same(s.node.cpu, { time: node.time, usageCoreNanoSeconds: 5e9 });
  t.equal(s.pods.length, 1);
  const p = s.pods[0]!;
  t.equal(p.podRef.uid, 'a');
  t.equal(p.startTime, new Date(1_700_000_000_000).toISOString());
  t.same(p.containers.map((c) => c.name), ['x', 'y']);
  t.same(p.cpu, { time: node.time, usageCoreNanoSeconds: 150 });
  t.same(p.memory, { time: node.time, workingSetBytes: 3, usageBytes: 23 });
  t.notOk('rssBytes' in p.containers[0]!.memory, 'what the runtime did not report is absent');
});

t.test('/proc/stat: non-idle CPU time in ns at USER_HZ 100', async (t) => {
  t.equal(parseProcStatCpu('cpu  100 0 50 1000 20 0 10 0 0 0\ncpu0 1 2 3 4\n'), (100 + 50 + 10) * 10_000_000);
  t.equal(parseProcStatCpu('intr 1 2\n'), undefined);
});

t.test('metric path labels', async (t) => {
  t.equal(metricPath('/containerLogs/a/b/c'), 'containerLogs');
  t.equal(metricPath('/exec/a/b/c'), 'exec');
  t.equal(metricPath('/secret/../x'), 'other');
});

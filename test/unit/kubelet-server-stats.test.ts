/** /stats/summary from CRI answers; /proc/stat CPU time; /metrics path labels. */
import t from 'tap';
import { fsStats, networkStats, parseNetDev, parseProcStatCpu, sandboxPid, summarize, type SummaryExtras } from '../../agent/server/stats.js';
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

const netDev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    5000      40    2    0    0     0          0         0     7000      50    3    0    0     0       0          0
 flannel.1: 10 1 0 0 0 0 0 0 20 2 0 0 0 0 0 0
`;

t.test('/proc/<pid>/net/dev: interfaces without lo; eth0 is the default', async (t) => {
  const ifs = parseNetDev(netDev);
  t.same(ifs, [
    { name: 'eth0', rxBytes: 5000, rxErrors: 2, txBytes: 7000, txErrors: 3 },
    { name: 'flannel.1', rxBytes: 10, rxErrors: 0, txBytes: 20, txErrors: 0 },
  ]);
  t.same(networkStats('T', ifs), { time: 'T', name: 'eth0', rxBytes: 5000, rxErrors: 2, txBytes: 7000, txErrors: 3, interfaces: ifs });
  t.equal(networkStats('T', []), undefined);
  t.same(parseNetDev('garbage\nx: 1 2\n'), [], 'malformed lines are skipped');
});

t.test('FsStats from statfs, with or without a usage inside the filesystem', async (t) => {
  const cap = { capacityBytes: 1000, availableBytes: 300, usedBytes: 600, inodes: 50, inodesFree: 20 };
  t.same(fsStats('T', cap), { time: 'T', availableBytes: 300, capacityBytes: 1000, usedBytes: 600, inodesFree: 20, inodes: 50, inodesUsed: 30 });
  t.same(fsStats('T', cap, { usedBytes: 7, inodesUsed: 2 }), { time: 'T', availableBytes: 300, capacityBytes: 1000, usedBytes: 7, inodesFree: 20, inodes: 50, inodesUsed: 2 });
  t.same(fsStats('T', undefined, { usedBytes: 7, inodesUsed: undefined }), { time: 'T', usedBytes: 7 });
});

t.test('the sandbox pid from a verbose status', async (t) => {
  t.equal(sandboxPid({ info: '{"pid":1234,"processStatus":"running"}' }), 1234);
  t.equal(sandboxPid({ info: '{"pid":0}' }), undefined);
  t.equal(sandboxPid({ info: 'not json' }), undefined);
  t.equal(sandboxPid({}), undefined);
});

t.test('fs, network, volumes, rootfs, logs and ephemeral-storage in the Summary', async (t) => {
  const node = { nodeName: 'n1', startTime: 'S', time: 'T', cpuUsageCoreNanoSeconds: 1, memoryTotal: 10, memoryAvailable: 5 };
  const cap = { capacityBytes: 1000, availableBytes: 300, usedBytes: 600, inodes: 50, inodesFree: 20 };
  const c = { ...stats('a', 'x', 1n, 1), writableLayer: { timestamp: 1n, mountpoint: '', usedBytes: 40, inodesUsed: 4 } };
  const extra: SummaryExtras = {
    nodeFs: cap,
    imageFs: { usage: { timestamp: 1n, mountpoint: '/var/lib/containerd', usedBytes: 100, inodesUsed: 10 }, capacity: cap },
    nodeInterfaces: parseNetDev(netDev),
    podInterfaces: new Map([['a', parseNetDev(netDev).slice(0, 1)]]),
    podVolumes: new Map([['a', new Map([['scratch', { usedBytes: 8192, inodesUsed: 3 }]])]]),
    containerLogs: new Map([['c-x', { usedBytes: 4096, inodesUsed: 2 }]]),
    logsFs: cap,
  };
  const s = summarize(node, [sandbox('a', 'ready')], [c], extra) as {
    node: { fs: Record<string, unknown>; runtime: { imageFs: Record<string, unknown>; containerFs?: unknown }; network: { name: string } };
    pods: { network: { rxBytes: number }; volume: Record<string, unknown>[]; 'ephemeral-storage': Record<string, unknown>; containers: { rootfs: Record<string, unknown>; logs: Record<string, unknown> }[] }[];
  };
  t.same(s.node.fs, fsStats('T', cap));
  t.same(s.node.runtime.imageFs, { time: 'T', availableBytes: 300, capacityBytes: 1000, usedBytes: 100, inodesFree: 20, inodes: 50, inodesUsed: 10 });
  t.notOk('containerFs' in s.node.runtime, 'no containerFs when the runtime reported none');
  t.equal(s.node.network.name, 'eth0');
  const p = s.pods[0]!;
  t.equal(p.network.rxBytes, 5000);
  t.same(p.volume, [{ ...fsStats('T', cap, { usedBytes: 8192, inodesUsed: 3 }), name: 'scratch' }]);
  t.same(p.containers[0]!.rootfs, fsStats('T', cap, { usedBytes: 40, inodesUsed: 4 }), 'rootfs: the writable layer, on the image filesystem');
  t.same(p.containers[0]!.logs, fsStats('T', cap, { usedBytes: 4096, inodesUsed: 2 }));
  t.same(p['ephemeral-storage'], fsStats('T', cap, { usedBytes: 40 + 4096 + 8192, inodesUsed: 4 + 2 + 3 }), 'rootfs + logs + emptyDir');
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

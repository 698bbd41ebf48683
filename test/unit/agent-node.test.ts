/**
 * The node agent's pure parts: machine parsers, pressure thresholds and
 * hysteresis, conditions and transitions, status-write decisions (changed vs
 * report frequency), Node rendering, Lease rendering, the event recorder's
 * de-duplication and rate limit, and the status loop against a fake apiserver.
 */
import t from 'tap';
import type { CoreV1Event, V1Lease, V1Node, V1NodeStatus } from '@kubernetes/client-node';
import type { CoordinationV1, CoreV1 } from '../../agent/kube/client.js';
import { reviveDates } from '../../agent/kube/wire.js';
import { bucketRefilled, createEventRecorder, takeToken } from '../../agent/kube/events.js';
import type { InvolvedObject } from '../../agent/kube/events.js';
import { defaultRouteInterface, defaultRouteInterface6, pickNodeIPs } from '../../agent/node/addresses.js';
import { desiredConditions, readyCondition, shouldWriteStatus, stampConditions, statusDiffers, transitionEvent, transitions } from '../../agent/node/conditions.js';
import type { RuntimeHealth } from '../../agent/node/conditions.js';
import { renderLease, startLeaseLoop } from '../../agent/node/lease.js';
import { cpuCapacity, goArch, parseCpuMax, parseMeminfo, parseOsRelease } from '../../agent/node/machine.js';
import type { MachineInfo } from '../../agent/node/machine.js';
import { parseLoadavgThreads, pressureSignals, withTransitionPeriod } from '../../agent/node/pressure.js';
import { kubeletVersion, reconcileLabelsPatch, renderAllocatable, renderCapacity, renderNode, renderStatusFields } from '../../agent/node/render.js';
import type { NodeFacts } from '../../agent/node/render.js';
import { startStatusLoop, statusPatchBody } from '../../agent/node/status.js';
import { nodeReference } from '../../agent/node/index.js';
import { createLogger } from '../../lib/log.js';

const Mi = 1024 * 1024;
const Gi = 1024 * Mi;
const quiet = createLogger({ component: 'node-test', level: 'error' });

const machine: MachineInfo = {
  hostname: 'n1',
  cpuCores: 2,
  memoryBytes: 4 * Gi,
  ephemeralStorageBytes: 20 * Gi,
  kernelVersion: '6.1.0-18-amd64',
  osImage: 'Debian GNU/Linux 12 (bookworm)',
  machineID: 'm-id',
  systemUUID: 's-uuid',
  bootID: 'b-id',
  architecture: 'amd64',
  operatingSystem: 'linux',
};

const facts = (over: Partial<NodeFacts> = {}): NodeFacts => ({
  nodeName: 'n1',
  machine,
  maxPods: 110,
  nodeLabels: { role: 'worker' },
  taints: [{ key: 'dedicated', value: 'x', effect: 'NoSchedule' }],
  internalIPs: ['10.0.0.5'],
  runtimeVersion: { version: '0.1.0', runtimeName: 'containerd', runtimeVersion: '1.6.20', runtimeApiVersion: 'v1' },
  ...over,
});

const runtimeOk: RuntimeHealth = {
  reachable: true,
  conditions: [
    { type: 'RuntimeReady', status: true, reason: '', message: '' },
    { type: 'NetworkReady', status: true, reason: '', message: '' },
  ],
};
const networkNotReady: RuntimeHealth = {
  reachable: true,
  conditions: [
    { type: 'RuntimeReady', status: true, reason: '', message: '' },
    { type: 'NetworkReady', status: false, reason: 'NetworkPluginNotReady', message: 'Network plugin returns error: cni plugin not initialized' },
  ],
};
const noPressure = { memory: false, disk: false, pid: false };

t.test('machine parsers', async (t) => {
  const mem = parseMeminfo('MemTotal:        8026876 kB\nMemFree:  100 kB\nMemAvailable:    5000000 kB\nHugePages_Total:       0\n');
  t.equal(mem.MemTotal, 8026876 * 1024);
  t.equal(mem.MemAvailable, 5000000 * 1024);
  t.equal(mem.HugePages_Total, 0);
  t.equal(parseOsRelease('NAME="Debian GNU/Linux"\nVERSION="12 (bookworm)"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'), 'Debian GNU/Linux 12 (bookworm)');
  t.equal(parseOsRelease('NAME=Alpine\nVERSION=3.19\n'), 'Alpine 3.19');
  t.equal(parseCpuMax('max 100000\n'), undefined);
  t.equal(parseCpuMax('150000 100000\n'), 1.5);
  t.equal(cpuCapacity(8, undefined), 8);
  t.equal(cpuCapacity(8, 1.5), 2, 'cgroup limit rounded up');
  t.equal(cpuCapacity(2, 16), 2);
  t.equal(goArch('x64'), 'amd64');
  t.equal(goArch('arm64'), 'arm64');
  t.equal(parseLoadavgThreads('0.08 0.03 0.01 1/245 12345\n'), 245);
});

t.test('addresses', async (t) => {
  const route = 'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\neth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\neth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\neth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n';
  t.equal(defaultRouteInterface(route), 'eth0', 'lowest metric default route');
  t.equal(defaultRouteInterface('Iface\tDestination\n'), undefined);
  const r6 = `${'0'.repeat(32)} 00 ${'0'.repeat(32)} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n`;
  t.equal(defaultRouteInterface6(r6), 'eth0');
  const interfaces = {
    lo: [{ address: '127.0.0.1', family: 'IPv4' as const, internal: true, netmask: '255.0.0.0', mac: '', cidr: null }],
    eth0: [
      { address: 'fe80::1', family: 'IPv6' as const, internal: false, netmask: '', mac: '', cidr: null, scopeid: 2 },
      { address: '10.0.0.5', family: 'IPv4' as const, internal: false, netmask: '255.255.255.0', mac: '', cidr: null },
      { address: 'fd00::5', family: 'IPv6' as const, internal: false, netmask: '', mac: '', cidr: null, scopeid: 0 },
    ],
    eth1: [{ address: '192.168.1.7', family: 'IPv4' as const, internal: false, netmask: '255.255.255.0', mac: '', cidr: null }],
  };
  t.same(pickNodeIPs({ configured: ['1.2.3.4'], interfaces }), ['1.2.3.4'], '--node-ip wins');
  t.same(pickNodeIPs({ configured: [], interfaces, defaultIface4: 'eth1' }), ['192.168.1.7'], 'default-route interface');
  t.same(pickNodeIPs({ configured: [], interfaces, defaultIface4: 'eth0', defaultIface6: 'eth0' }), ['10.0.0.5', 'fd00::5'], 'dual stack, link-local skipped');
  t.same(pickNodeIPs({ configured: [], interfaces }), ['10.0.0.5'], 'no default route: first global IPv4');
});

t.test('pressure thresholds', async (t) => {
  const base = { memoryAvailableBytes: 2 * Gi, nodefsAvailableBytes: 50 * Gi, nodefsCapacityBytes: 100 * Gi, nodefsInodesFree: 500_000, nodefsInodes: 1_000_000, pidLimit: 4_194_304, pidsInUse: 300 };
  t.same(pressureSignals(base), noPressure);
  t.same(pressureSignals({ ...base, memoryAvailableBytes: 100 * Mi }), noPressure, 'memory.available<100Mi is strict');
  t.same(pressureSignals({ ...base, memoryAvailableBytes: 100 * Mi - 1 }), { ...noPressure, memory: true });
  t.same(pressureSignals({ ...base, nodefsAvailableBytes: 10 * Gi }), noPressure, 'nodefs.available<10% is strict');
  t.same(pressureSignals({ ...base, nodefsAvailableBytes: 10 * Gi - 1 }), { ...noPressure, disk: true });
  t.same(pressureSignals({ ...base, nodefsInodesFree: 49_999 }), { ...noPressure, disk: true }, 'nodefs.inodesFree<5%');
  t.same(pressureSignals({ ...base, nodefsInodesFree: 50_000 }), noPressure);
  t.same(pressureSignals({ ...base, pidLimit: 1000, pidsInUse: 901 }), { ...noPressure, pid: true }, 'pid.available<10%');
  t.same(pressureSignals({ ...base, pidLimit: 1000, pidsInUse: 900 }), noPressure);
  t.same(pressureSignals({}), noPressure, 'unknown values never signal pressure');
});

t.test('pressure transition period', async (t) => {
  let s = withTransitionPeriod({}, { ...noPressure, memory: true }, 1000, 300_000);
  t.same(s.pressure, { ...noPressure, memory: true });
  s = withTransitionPeriod(s.memory, noPressure, 1000 + 299_999, 300_000);
  t.equal(s.pressure.memory, true, 'still under pressure inside the period');
  s = withTransitionPeriod(s.memory, noPressure, 1000 + 300_000, 300_000);
  t.equal(s.pressure.memory, false, 'clears after 5 min without the signal');
});

t.test('Ready condition messages', async (t) => {
  t.same(readyCondition(runtimeOk), { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' });
  t.same(readyCondition(networkNotReady), {
    type: 'Ready',
    status: 'False',
    reason: 'KubeletNotReady',
    message: 'container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized',
  });
  t.same(readyCondition({ reachable: false, error: 'connect ENOENT' }), { type: 'Ready', status: 'False', reason: 'KubeletNotReady', message: 'container runtime is down' });
  t.equal(
    readyCondition({ reachable: true, conditions: [{ type: 'RuntimeReady', status: false, reason: 'R', message: 'm' }, { type: 'NetworkReady', status: false, reason: 'N', message: 'n' }] }).message,
    '[container runtime not ready: RuntimeReady=false reason:R message:m, container runtime network not ready: NetworkReady=false reason:N message:n]',
  );
  t.same(
    desiredConditions(runtimeOk, { memory: true, disk: false, pid: true }).map((c) => `${c.type}=${c.status}/${c.reason}`),
    ['MemoryPressure=True/KubeletHasInsufficientMemory', 'DiskPressure=False/KubeletHasNoDiskPressure', 'PIDPressure=True/KubeletHasInsufficientPID', 'Ready=True/KubeletReady'],
  );
  t.same(
    desiredConditions(runtimeOk, noPressure).map((c) => c.reason),
    ['KubeletHasSufficientMemory', 'KubeletHasNoDiskPressure', 'KubeletHasSufficientPID', 'KubeletReady'],
  );
});

t.test('heartbeat and transition times', async (t) => {
  const t0 = new Date('2026-01-01T00:00:00Z');
  const t1 = new Date('2026-01-01T00:05:00Z');
  const first = stampConditions(undefined, desiredConditions(networkNotReady, noPressure), t0);
  t.ok(first.every((c) => c.lastHeartbeatTime === t0 && c.lastTransitionTime === t0));
  const second = stampConditions(first, desiredConditions(runtimeOk, noPressure), t1);
  const ready = second.find((c) => c.type === 'Ready')!;
  t.equal(ready.lastTransitionTime, t1, 'Ready flipped: transition now');
  t.equal(ready.lastHeartbeatTime, t1);
  const mem = second.find((c) => c.type === 'MemoryPressure')!;
  t.same(mem.lastTransitionTime, t0, 'unchanged status keeps its transition time');
  t.equal(mem.lastHeartbeatTime, t1);
  const fromStrings = stampConditions([{ type: 'DiskPressure', status: 'False', lastTransitionTime: '2025-12-31T00:00:00Z' as unknown as Date }], desiredConditions(runtimeOk, noPressure), t1);
  t.same(fromStrings.find((c) => c.type === 'DiskPressure')!.lastTransitionTime, new Date('2025-12-31T00:00:00Z'));

  const tr = transitions(first, desiredConditions(runtimeOk, noPressure));
  t.same(tr, [{ type: 'Ready', from: 'False', to: 'True' }]);
  t.same(transitionEvent(tr[0]!, 'n1'), { reason: 'NodeReady', message: 'Node n1 status is now: NodeReady' });
  t.same(transitionEvent({ type: 'Ready', from: 'True', to: 'False' }, 'n1')?.reason, 'NodeNotReady');
  t.equal(transitions(undefined, desiredConditions(runtimeOk, noPressure)).length, 4, 'a fresh Node: every condition is new');
  t.same(transitionEvent({ type: 'MemoryPressure', from: undefined, to: 'False' }, 'n1')?.reason, 'NodeHasSufficientMemory');
});

t.test('status write decisions', async (t) => {
  const fields = renderStatusFields(facts());
  const desired = desiredConditions(runtimeOk, noPressure);
  const written: V1NodeStatus = { ...fields, conditions: stampConditions(undefined, desired, new Date(0)) };
  t.equal(statusDiffers(undefined, fields, desired), true, 'no status yet');
  t.equal(statusDiffers(written, fields, desired), false, 'same status, heartbeats aside');
  // The Node as read back from the apiserver (JSON round trip) still compares equal.
  const sent = JSON.parse(JSON.stringify(statusPatchBody(written).status)) as { addresses: unknown[] };
  sent.addresses = sent.addresses.slice(1); // the server applies the $patch directive
  const roundTrip = reviveDates(sent) as V1NodeStatus;
  t.equal(statusDiffers(roundTrip, fields, desired), false, 'equal after a JSON round trip');
  t.equal(statusDiffers(written, fields, desiredConditions(networkNotReady, noPressure)), true, 'Ready changed');
  t.equal(statusDiffers(written, renderStatusFields(facts({ internalIPs: ['10.0.0.6'] })), desired), true, 'address changed');
  t.equal(statusDiffers(written, renderStatusFields(facts({ maxPods: 10 })), desired), true, 'capacity changed');
  t.equal(statusDiffers(written, renderStatusFields(facts({ runtimeVersion: undefined })), desired), true, 'runtime version changed');
  t.same(shouldWriteStatus({ differs: true, lastWriteMs: 1000, nowMs: 2000, reportFrequencyMs: 300_000 }), { write: true, why: 'changed' });
  t.same(shouldWriteStatus({ differs: false, lastWriteMs: undefined, nowMs: 2000, reportFrequencyMs: 300_000 }), { write: true, why: 'report' }, 'first write after start');
  t.same(shouldWriteStatus({ differs: false, lastWriteMs: 0, nowMs: 299_999, reportFrequencyMs: 300_000 }), { write: false, why: 'none' });
  t.same(shouldWriteStatus({ differs: false, lastWriteMs: 0, nowMs: 300_000, reportFrequencyMs: 300_000 }), { write: true, why: 'report' }, 'at least every 5 min');
  const body = statusPatchBody(written).status;
  t.same((body.addresses as unknown[])[0], { $patch: 'replace' }, 'addresses replaced as a whole');
  t.same(body.daemonEndpoints, { kubeletEndpoint: { Port: 10250 } });
  t.type((body.conditions as { lastHeartbeatTime: unknown }[])[0]!.lastHeartbeatTime, 'string');
});

t.test('Node rendering', async (t) => {
  const node = renderNode(facts());
  t.same(node.metadata!.labels, {
    'beta.kubernetes.io/arch': 'amd64',
    'beta.kubernetes.io/os': 'linux',
    'kubernetes.io/arch': 'amd64',
    'kubernetes.io/hostname': 'n1',
    'kubernetes.io/os': 'linux',
    role: 'worker',
  });
  t.same(node.spec!.taints, [{ key: 'dedicated', value: 'x', effect: 'NoSchedule' }]);
  t.same(node.status!.addresses, [
    { type: 'InternalIP', address: '10.0.0.5' },
    { type: 'Hostname', address: 'n1' },
  ]);
  t.same(renderCapacity(machine, 110), { cpu: '2', 'ephemeral-storage': `${20 * 1024 * 1024}Ki`, memory: `${4 * 1024 * 1024}Ki`, pods: '110' });
  t.same(renderAllocatable(machine, 110), { cpu: '1900m', 'ephemeral-storage': String(Math.floor(20 * Gi * 0.9)), memory: `${4 * 1024 * 1024 - 200 * 1024}Ki`, pods: '110' });
  t.same(node.status!.nodeInfo, {
    architecture: 'amd64',
    bootID: 'b-id',
    containerRuntimeVersion: 'containerd://1.6.20',
    kernelVersion: '6.1.0-18-amd64',
    kubeProxyVersion: '',
    kubeletVersion: 'v1.32.0-knode',
    machineID: 'm-id',
    operatingSystem: 'linux',
    osImage: 'Debian GNU/Linux 12 (bookworm)',
    systemUUID: 's-uuid',
  });
  t.equal(kubeletVersion, 'v1.32.0-knode');
  t.equal(node.status!.daemonEndpoints!.kubeletEndpoint!.Port, 10250);
  t.equal(renderNode(facts({ taints: [] })).spec!.taints, undefined);
  const existing: V1Node = { metadata: { name: 'n1', labels: { 'kubernetes.io/hostname': 'n1', 'kubernetes.io/os': 'linux', custom: 'keep', role: 'old' } } };
  t.same(reconcileLabelsPatch(existing, node), { metadata: { labels: { 'beta.kubernetes.io/arch': 'amd64', 'beta.kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', role: 'worker' } } });
  t.equal(reconcileLabelsPatch(node, node), undefined);
});

t.test('Lease rendering', async (t) => {
  const now = new Date('2026-01-01T00:00:01.234Z');
  const lease = renderLease({ nodeName: 'n1', nodeUid: 'uid-1', durationSeconds: 40, now });
  t.match(lease, {
    metadata: { name: 'n1', namespace: 'kube-node-lease', ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: 'n1', uid: 'uid-1' }] },
    spec: { holderIdentity: 'n1', leaseDurationSeconds: 40 },
  });
  t.equal(JSON.parse(JSON.stringify(lease)).spec.renewTime, '2026-01-01T00:00:01.234000Z', 'MicroTime: six fractional digits');
  const again = renderLease({ nodeName: 'n1', nodeUid: undefined, durationSeconds: 40, now, base: { metadata: { name: 'n1', resourceVersion: '7', ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: 'n1', uid: 'old' }] }, spec: { acquireTime: now } } });
  t.equal(again.metadata!.resourceVersion, '7', 'update keeps the resourceVersion');
  t.equal(again.metadata!.ownerReferences![0]!.uid, 'old');
  t.ok(again.spec!.acquireTime);
});

t.test('event recorder: shape, de-duplication, rate limit, never throws', async (t) => {
  const created: CoreV1Event[] = [];
  const patched: { name: string; body: unknown }[] = [];
  let failCreate = false;
  const core = {
    async createNamespacedEvent({ body }: { namespace: string; body: CoreV1Event }) {
      if (failCreate) throw Object.assign(new Error('boom'), { code: 500 });
      created.push(body);
      return body;
    },
    async patchNamespacedEvent({ name, body }: { name: string; namespace: string; body: unknown }) {
      patched.push({ name, body });
      return {} as CoreV1Event;
    },
  } as unknown as Pick<CoreV1, 'createNamespacedEvent' | 'patchNamespacedEvent'>;
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const rec = createEventRecorder({ core, component: 'kubelet', host: 'n1', logger: quiet, now: () => new Date(clock), burst: 3, refillMs: 600_000 });
  const node: InvolvedObject = nodeReference('n1');
  rec.event(node, 'Normal', 'Starting', 'Starting kubelet.');
  await rec.flush();
  t.equal(created.length, 1);
  t.match(created[0], {
    metadata: { namespace: 'default', name: /^n1\.[0-9a-f]+$/ },
    involvedObject: { kind: 'Node', name: 'n1', uid: 'n1' },
    reason: 'Starting',
    message: 'Starting kubelet.',
    type: 'Normal',
    source: { component: 'kubelet', host: 'n1' },
    count: 1,
  });
  clock += 60_000;
  rec.event(node, 'Normal', 'Starting', 'Starting kubelet.');
  await rec.flush();
  t.equal(created.length, 1, 'same event within 10 min: no new object');
  t.same(patched, [{ name: created[0]!.metadata!.name!, body: { count: 2, lastTimestamp: new Date(clock).toISOString() } }], 'count++ by PATCH');
  rec.event(node, 'Normal', 'NodeReady', 'Node n1 status is now: NodeReady');
  rec.event(node, 'Warning', 'Spam', 'dropped by the rate limit');
  await rec.flush();
  t.equal(created.length, 2, 'burst of 3 used up; the fourth is dropped');
  clock += 11 * 60_000;
  rec.event(node, 'Normal', 'Starting', 'Starting kubelet.');
  await rec.flush();
  t.equal(created.length, 3, 'after 10 min the same event is created anew');
  failCreate = true;
  clock += 60_000;
  t.doesNotThrow(() => rec.event({ kind: 'Pod', name: 'p', namespace: 'ns1', uid: 'u' }, 'Warning', 'Failed', 'x'));
  await rec.flush();
  t.pass('a failing apiserver does not throw into the caller');
  t.same(takeToken(undefined, 0, 2, 100), { state: { tokens: 1, at: 0 }, ok: true });
  t.same(takeToken({ tokens: 0, at: 0 }, 99, 2, 100).ok, false);
  t.same(takeToken({ tokens: 0, at: 0 }, 100, 2, 100), { state: { tokens: 0, at: 100 }, ok: true });
  t.equal(bucketRefilled({ tokens: 0, at: 0 }, 199, 2, 100), false, 'one token back of two');
  t.equal(bucketRefilled({ tokens: 0, at: 0 }, 200, 2, 100), true, 'full again: the same as no bucket');
  t.equal(bucketRefilled({ tokens: 2, at: 50 }, 50, 2, 100), true);
});

t.test('status loop against a fake apiserver: writes only when needed, re-registers', async (t) => {
  let stored: V1Node | undefined = { metadata: { name: 'n1', uid: 'u1' }, status: {} };
  let patches = 0;
  let reregistered = 0;
  const core = {
    async readNode() {
      if (stored === undefined) throw Object.assign(new Error('not found'), { code: 404 });
      return reviveDates(JSON.parse(JSON.stringify(stored)) as V1Node);
    },
    async patchNodeStatus({ body }: { name: string; body: { status: Record<string, unknown> } }) {
      patches++;
      const s = { ...body.status };
      s.addresses = (s.addresses as unknown[]).slice(1);
      stored = { ...stored!, status: reviveDates(s) as V1NodeStatus };
      return stored;
    },
  } as unknown as CoreV1;
  let health: 'ok' | 'net' = 'net';
  const runtime = {
    async status() {
      const h = health === 'ok' ? runtimeOk : networkNotReady;
      return { conditions: h.reachable ? [...h.conditions] : [], info: {} };
    },
    async version() {
      return facts().runtimeVersion!;
    },
  };
  const events: string[] = [];
  const recorder = { event: (_o: InvolvedObject, _t: string, reason: string) => void events.push(reason), flush: async () => undefined };
  const ac = new AbortController();
  let clock = 0;
  const loop = startStatusLoop({
    client: { core },
    nodeName: 'n1',
    nodeRef: nodeReference('n1'),
    runtime,
    facts: facts(),
    readPressure: async () => ({}),
    reregister: async () => {
      reregistered++;
      stored = { metadata: { name: 'n1', uid: 'u2' }, status: {} };
      return stored;
    },
    recorder,
    updateFrequencyMs: 10,
    reportFrequencyMs: 1000,
    signal: ac.signal,
    logger: quiet,
    now: () => new Date(clock),
  });
  const waitTicks = async (n: number): Promise<void> => {
    const target = loop.stats().ticks + n;
    while (loop.stats().ticks < target) await new Promise((r) => setTimeout(r, 2));
  };
  await waitTicks(5);
  t.equal(patches, 1, 'one write, then nothing while nothing changes');
  t.equal(stored!.status!.conditions!.find((c) => c.type === 'Ready')!.status, 'False');
  t.ok(events.includes('NodeNotReady'));
  health = 'ok';
  await waitTicks(5);
  t.equal(patches, 2, 'Ready flipped: one more write');
  t.ok(events.includes('NodeReady'));
  clock += 1000;
  await waitTicks(5);
  t.equal(patches, 3, 'report frequency reached: one heartbeat write');
  t.equal(stored!.status!.conditions![0]!.lastHeartbeatTime!.getTime(), 1000);
  stored = undefined;
  await waitTicks(5);
  t.equal(reregistered, 1, 'deleted Node registered again');
  t.equal(patches, 4, 'and its status written');
  ac.abort();
  await loop.done;
});

t.test('lease loop: create, update, conflict → re-read, errors back off', async (t) => {
  let stored: V1Lease | undefined;
  let rv = 0;
  const calls: string[] = [];
  let conflictNext = false;
  let failNext = 0;
  const coordination = {
    async readNamespacedLease() {
      calls.push('read');
      if (stored === undefined) throw Object.assign(new Error('nf'), { code: 404 });
      return structuredClone(stored);
    },
    async createNamespacedLease({ body }: { body: V1Lease }) {
      calls.push('create');
      stored = { ...body, metadata: { ...body.metadata, resourceVersion: String(++rv) } };
      return structuredClone(stored);
    },
    async replaceNamespacedLease({ body }: { body: V1Lease }) {
      calls.push('replace');
      if (failNext > 0) {
        failNext--;
        throw Object.assign(new Error('unavailable'), { code: 503 });
      }
      if (conflictNext || body.metadata?.resourceVersion !== stored?.metadata?.resourceVersion) {
        conflictNext = false;
        throw Object.assign(new Error('conflict'), { code: 409 });
      }
      stored = { ...body, metadata: { ...body.metadata, resourceVersion: String(++rv) } };
      return structuredClone(stored);
    },
  } as unknown as Pick<CoordinationV1, 'readNamespacedLease' | 'createNamespacedLease' | 'replaceNamespacedLease'>;
  const ac = new AbortController();
  let uid = 'u1';
  const loop = startLeaseLoop({ coordination, nodeName: 'n1', nodeUid: () => uid, durationSeconds: 40, renewIntervalMs: 5, signal: ac.signal, logger: quiet });
  const waitRenewals = async (n: number): Promise<void> => {
    while (loop.renewals() < n) await new Promise((r) => setTimeout(r, 1));
  };
  await waitRenewals(3);
  t.same(calls.slice(0, 4), ['read', 'create', 'replace', 'replace'], 'created once, then updated from the cached lease');
  t.equal(stored!.spec!.holderIdentity, 'n1');
  t.equal(stored!.metadata!.ownerReferences![0]!.uid, 'u1');
  conflictNext = true;
  uid = 'u2';
  calls.length = 0;
  await waitRenewals(loop.renewals() + 1);
  t.same(calls.slice(0, 3), ['replace', 'read', 'replace'], 'conflict: read again, then update');
  t.equal(stored!.metadata!.ownerReferences![0]!.uid, 'u2', 'owner follows a re-registered Node');
  failNext = 2;
  const before = loop.renewals();
  await waitRenewals(before + 1);
  t.ok(loop.renewals() > before, 'recovered after errors');
  ac.abort();
  await loop.done;
});

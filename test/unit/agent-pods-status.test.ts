/** computePodStatus: phases (upstream getPhase), the five conditions, waiting reasons, container statuses. */
import t from 'tap';
import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { computePodStatus, qosClass, type StatusInputs, type WaitingReason } from '../../agent/pods/status.js';
import type { ContainerInfo, PodRuntimeState, SandboxInfo } from '../../agent/pods/types.js';

const NOW = new Date('2026-11-23T10:00:00Z');
const ns = (iso: string): bigint => BigInt(Date.parse(iso)) * 1_000_000n;

function pod(opts: { restartPolicy?: string; inits?: string[]; apps?: string[] } = {}): V1Pod {
  return {
    metadata: { name: 'web', namespace: 'default', uid: 'uid-1' },
    spec: {
      restartPolicy: opts.restartPolicy ?? 'Always',
      containers: (opts.apps ?? ['app']).map((name) => ({ name, image: 'knode.local/app:1.0' })),
      ...(opts.inits !== undefined ? { initContainers: opts.inits.map((name) => ({ name, image: 'knode.local/app:1.0' })) } : {}),
    },
  };
}

const sb: SandboxInfo = { id: 'sb1', attempt: 0, state: 'ready', createdAt: ns('2026-11-23T09:59:00Z'), ip: '10.250.0.7', additionalIps: ['fd00::7'], network: 'pod' };
let seq = 0;
function ctr(name: string, state: ContainerInfo['state'], opts: { exitCode?: number; restartCount?: number; reason?: string } = {}): ContainerInfo {
  seq++;
  return {
    id: `id${seq}`,
    name,
    sandboxId: 'sb1',
    attempt: opts.restartCount ?? 0,
    state,
    createdAt: ns('2026-11-23T09:59:10Z') + BigInt(seq),
    startedAt: ns('2026-11-23T09:59:11Z'),
    finishedAt: state === 'exited' ? ns('2026-11-23T09:59:20Z') : 0n,
    exitCode: opts.exitCode ?? 0,
    reason: opts.reason ?? (state === 'exited' ? (opts.exitCode ?? 0) === 0 ? 'Completed' : 'Error' : ''),
    message: '',
    image: 'knode.local/app:1.0',
    imageRef: 'sha256:1234',
    hash: 'h',
    restartCount: opts.restartCount ?? 0,
  };
}
/** Containers given oldest first. */
function st(containers: ContainerInfo[], sandboxes: SandboxInfo[] = [sb]): PodRuntimeState {
  return { sandboxes, containers: [...containers].reverse() };
}

function status(p: V1Pod, s: PodRuntimeState, extra: Partial<StatusInputs> = {}): V1PodStatus {
  return computePodStatus(p, s, { hostIPs: ['172.31.0.11'], now: NOW, ...extra });
}

function conds(s: V1PodStatus): string[] {
  return (s.conditions ?? []).map((c) => `${c.type}=${c.status}${c.reason !== undefined ? `/${c.reason}` : ''}`);
}

t.test('running pod: phase, IPs, conditions in order, container status', async (t) => {
  const s = status(pod(), st([ctr('app', 'running', { restartCount: 2 })]));
  t.equal(s.phase, 'Running');
  t.equal(s.podIP, '10.250.0.7');
  t.same(s.podIPs, [{ ip: '10.250.0.7' }, { ip: 'fd00::7' }]);
  t.equal(s.hostIP, '172.31.0.11');
  t.same(s.hostIPs, [{ ip: '172.31.0.11' }]);
  t.same(s.startTime, NOW);
  t.same(conds(s), ['PodScheduled=True', 'PodReadyToStartContainers=True', 'Initialized=True', 'ContainersReady=True', 'Ready=True']);
  const cs = s.containerStatuses![0]!;
  t.match(cs, { name: 'app', ready: true, started: true, restartCount: 2, image: 'knode.local/app:1.0', imageID: 'sha256:1234', containerID: `containerd://id${seq}` });
  t.same(cs.state, { running: { startedAt: new Date('2026-11-23T09:59:11Z') } });
  t.equal(s.initContainerStatuses, undefined);
  t.equal(s.qosClass, 'BestEffort');
});

t.test('fresh pod: Pending, ContainerCreating, not ready', async (t) => {
  const s = status(pod(), st([], []));
  t.equal(s.phase, 'Pending');
  t.same(s.containerStatuses![0]!.state, { waiting: { reason: 'ContainerCreating' } });
  t.same(conds(s), ['PodScheduled=True', 'PodReadyToStartContainers=False', 'Initialized=True', 'ContainersReady=False/ContainersNotReady', 'Ready=False/ContainersNotReady']);
  t.equal(s.conditions![4]!.message, 'containers with unready status: [app]');
  t.equal(s.podIP, undefined);
});

t.test('initializing: PodInitializing, ContainersNotInitialized', async (t) => {
  const p = pod({ inits: ['i1', 'i2'] });
  const s = status(p, st([ctr('i1', 'exited'), ctr('i2', 'running')]));
  t.equal(s.phase, 'Pending');
  t.same(conds(s).slice(2), ['Initialized=False/ContainersNotInitialized', 'ContainersReady=False/ContainersNotReady', 'Ready=False/ContainersNotReady']);
  t.equal(s.conditions![2]!.message, 'containers with incomplete status: [i2]');
  t.same(s.containerStatuses![0]!.state, { waiting: { reason: 'PodInitializing' } });
  t.match(s.initContainerStatuses![0]!, { name: 'i1', ready: true, state: { terminated: { exitCode: 0, reason: 'Completed' } } });
  t.match(s.initContainerStatuses![1]!, { name: 'i2', ready: false, started: true, state: { running: {} } });
  const done = status(p, st([ctr('i1', 'exited'), ctr('i2', 'exited'), ctr('app', 'running')]));
  t.equal(done.phase, 'Running');
  t.same(conds(done).slice(2), ['Initialized=True', 'ContainersReady=True', 'Ready=True']);
});

t.test('init failed: Never → Failed; Always → Pending with lastState', async (t) => {
  const failed = status(pod({ inits: ['i1'], restartPolicy: 'Never' }), st([ctr('i1', 'exited', { exitCode: 3 })]));
  t.equal(failed.phase, 'Failed');
  t.same(
    (failed.conditions ?? []).filter((c) => c.type === 'ContainersReady' || c.type === 'Ready').map((c) => `${c.type}=${c.status}/${c.reason}`),
    ['ContainersReady=False/PodFailed', 'Ready=False/PodFailed'],
    'a Failed pod: ContainersReady and Ready False with reason PodFailed (upstream)',
  );
  const reasons = new Map<string, WaitingReason>([['i1', { reason: 'CrashLoopBackOff', message: 'back-off 10s ...' }]]);
  const looping = status(pod({ inits: ['i1'] }), st([ctr('i1', 'exited', { exitCode: 3, restartCount: 1 })]), { reasons });
  t.equal(looping.phase, 'Pending');
  t.same(looping.initContainerStatuses![0]!.state, { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 10s ...' } });
  t.match(looping.initContainerStatuses![0]!.lastState, { terminated: { exitCode: 3, reason: 'Error' } });
});

t.test('crash loop: waiting CrashLoopBackOff, lastState terminated, Running phase (Always)', async (t) => {
  const reasons = new Map<string, WaitingReason>([['app', { reason: 'CrashLoopBackOff', message: 'back-off 20s restarting failed container=app pod=web_default(uid-1)' }]]);
  const s = status(pod(), st([ctr('app', 'exited', { exitCode: 1, restartCount: 1 }), ctr('app', 'exited', { exitCode: 1, restartCount: 2 })]), { reasons });
  const cs = s.containerStatuses![0]!;
  t.same(cs.state, { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 20s restarting failed container=app pod=web_default(uid-1)' } });
  t.match(cs.lastState, { terminated: { exitCode: 1, reason: 'Error', finishedAt: new Date('2026-11-23T09:59:20Z') } });
  t.equal(cs.restartCount, 2);
  t.equal(cs.ready, false);
  t.equal(s.phase, 'Running');
  // Without a recorded reason the exit itself shows (it restarts at once), previous instance as lastState.
  const plain = status(pod(), st([ctr('app', 'exited', { exitCode: 1 }), ctr('app', 'exited', { exitCode: 2, restartCount: 1 })]));
  t.match(plain.containerStatuses![0]!, { state: { terminated: { exitCode: 2 } }, lastState: { terminated: { exitCode: 1 } } });
});

t.test('phases with OnFailure and Never', async (t) => {
  t.equal(status(pod({ restartPolicy: 'Never' }), st([ctr('app', 'exited', { exitCode: 1 })])).phase, 'Failed');
  t.equal(status(pod({ restartPolicy: 'Never' }), st([ctr('app', 'exited', { exitCode: 0 })])).phase, 'Succeeded');
  t.equal(status(pod({ restartPolicy: 'OnFailure' }), st([ctr('app', 'exited', { exitCode: 0 })])).phase, 'Succeeded');
  t.equal(status(pod({ restartPolicy: 'OnFailure' }), st([ctr('app', 'exited', { exitCode: 1 })])).phase, 'Running', 'OnFailure, failed: restarting');
  t.equal(status(pod({ restartPolicy: 'Never', apps: ['a', 'b'] }), st([ctr('a', 'exited'), ctr('b', 'running')])).phase, 'Running');
  t.equal(status(pod({ apps: ['a', 'b'] }), st([ctr('a', 'running')])).phase, 'Pending', 'one container not created yet');
  t.equal(status(pod(), st([ctr('app', 'exited', { exitCode: 1 })]), { terminal: true }).phase, 'Failed', 'terminated by the agent');
  const done = status(pod({ restartPolicy: 'Never' }), st([ctr('app', 'exited')]));
  t.same(conds(done).slice(3), ['ContainersReady=False/PodCompleted', 'Ready=False/PodCompleted']);
});

t.test('waiting reasons from the worker', async (t) => {
  for (const reason of ['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'CreateContainerConfigError']) {
    const s = status(pod(), st([]), { reasons: new Map([['app', { reason, message: 'why' }]]) });
    t.same(s.containerStatuses![0]!.state, { waiting: { reason, message: 'why' } }, reason);
    t.equal(s.phase, 'Pending');
  }
});

t.test('transition times kept while a condition holds; startTime and IPs carried over', async (t) => {
  const first = status(pod(), st([ctr('app', 'running')]));
  const later = new Date(NOW.getTime() + 60_000);
  const second = status(pod(), st([ctr('app', 'running')], [{ ...sb, state: 'notready', ip: '' }]), { previous: first, now: later });
  t.same(second.startTime, NOW);
  const byType = (s: V1PodStatus, type: string) => s.conditions!.find((c) => c.type === type)!;
  t.same(byType(second, 'Ready').lastTransitionTime, NOW, 'Ready still True: same time');
  t.same(byType(second, 'PodReadyToStartContainers').lastTransitionTime, later, 'flipped: new time');
  t.equal(second.podIP, '10.250.0.7', 'pod IP kept once the sandbox lost it');
});

t.test('readiness input and QoS', async (t) => {
  const p = pod();
  p.spec!.containers[0]!.readinessProbe = { exec: { command: ['true'] } };
  const c = ctr('app', 'running');
  t.equal(status(p, st([c])).containerStatuses![0]!.ready, false, 'a readiness probe not yet succeeded');
  t.equal(status(p, st([c]), { readiness: new Map([[c.id, true]]) }).containerStatuses![0]!.ready, true);
  const g = pod();
  g.spec!.containers[0]!.resources = { limits: { cpu: '1', memory: '64Mi' } };
  t.equal(qosClass(g), 'Guaranteed');
  g.spec!.containers[0]!.resources = { requests: { cpu: '100m' } };
  t.equal(qosClass(g), 'Burstable');
});

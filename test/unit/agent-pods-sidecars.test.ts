/**
 * Sidecar containers (init containers with restartPolicy Always, KEP-753) in the
 * pure decisions: computePodActions as upstream's computeInitContainerActions
 * (table of pod + runtime state → actions), the pod status (getPhase, the
 * Initialized/ContainersReady/Ready conditions, the sidecars' statuses), the
 * termination order, and the probe manager's view of sidecars.
 */
import t from 'tap';
import type { V1Container, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { BackOff, backOffKey } from '../../agent/pods/backoff.js';
import { containerHash } from '../../agent/pods/hash.js';
import { computePodActions, type PlanInputs, type PodActions } from '../../agent/pods/plan.js';
import { probeView, probedContainers, PodProbes } from '../../agent/pods/probes/manager.js';
import { directDialer } from '../../agent/pods/probes/dial.js';
import { computePodStatus, type StatusInputs } from '../../agent/pods/status.js';
import { terminationPrereqs, TerminationOrdering } from '../../agent/pods/termination-order.js';
import type { ContainerInfo, PodRuntimeState, SandboxInfo } from '../../agent/pods/types.js';
import { createLogger } from '../../lib/log.js';

const NOW = 1_700_000_000_000;
const ns = (ms: number): bigint => BigInt(ms) * 1_000_000n;
const image = 'knode.local/app:1.0';

/** An init container: `sc:` prefix makes it a sidecar; `+startup`, `+ready`, `+live` add probes. */
function initSpec(desc: string): V1Container {
  const [head, ...flags] = desc.split('+');
  const sidecar = head!.startsWith('sc:');
  const c: V1Container = { name: sidecar ? head!.slice(3) : head!, image };
  if (sidecar) c.restartPolicy = 'Always';
  if (flags.includes('startup')) c.startupProbe = { exec: { command: ['started'] }, periodSeconds: 1 };
  if (flags.includes('ready')) c.readinessProbe = { exec: { command: ['ready'] }, periodSeconds: 1 };
  if (flags.includes('live')) c.livenessProbe = { exec: { command: ['live'] }, periodSeconds: 1 };
  return c;
}

function pod(opts: { restartPolicy?: string; inits: string[]; apps?: string[]; deleting?: boolean }): V1Pod {
  const p: V1Pod = {
    metadata: { name: 'job', namespace: 'default', uid: 'uid-1' },
    spec: {
      restartPolicy: opts.restartPolicy ?? 'Always',
      initContainers: opts.inits.map(initSpec),
      containers: (opts.apps ?? ['app']).map((name) => ({ name, image })),
    },
  };
  if (opts.deleting === true) p.metadata!.deletionTimestamp = new Date(NOW);
  return p;
}

let seq = 0;
function sandbox(state: 'ready' | 'notready' = 'ready', attempt = 0): SandboxInfo {
  seq++;
  return { id: `sb${seq}`, attempt, state, createdAt: ns(NOW - 100_000 + seq), ip: '10.0.0.5', additionalIps: [], network: 'pod' };
}

function ctr(p: V1Pod, name: string, state: ContainerInfo['state'], opts: { exitCode?: number; restartCount?: number; finishedAgoMs?: number; hash?: string } = {}): ContainerInfo {
  seq++;
  const spec = [...(p.spec!.containers ?? []), ...(p.spec!.initContainers ?? [])].find((c) => c.name === name)!;
  return {
    id: `c${seq}`,
    name,
    sandboxId: 'sb',
    attempt: opts.restartCount ?? 0,
    state,
    createdAt: ns(NOW - 50_000 + seq),
    startedAt: ns(NOW - 40_000),
    finishedAt: state === 'exited' ? ns(NOW - (opts.finishedAgoMs ?? 30_000)) : 0n,
    exitCode: opts.exitCode ?? 0,
    reason: state === 'exited' ? ((opts.exitCode ?? 0) === 0 ? 'Completed' : 'Error') : '',
    message: '',
    image,
    imageRef: 'sha256:abc',
    hash: opts.hash ?? containerHash(spec),
    restartCount: opts.restartCount ?? 0,
  };
}

/** Containers given oldest first. */
function state(sandboxes: SandboxInfo[], containers: ContainerInfo[]): PodRuntimeState {
  return { sandboxes: [...sandboxes].reverse(), containers: [...containers].reverse() };
}

interface Summary {
  killPod: boolean;
  createSandbox: boolean;
  init: string[];
  start: string[];
  kill: string[];
  backOff: string[];
}

function summary(a: PodActions): Summary {
  return {
    killPod: a.killPod,
    createSandbox: a.createSandbox,
    init: a.initContainersToStart.map((c) => `${c.name}#${c.restartCount}`),
    start: a.containersToStart.map((c) => `${c.name}#${c.restartCount}`),
    kill: a.containersToKill.map((c) => `${c.name}:${c.reason}`),
    backOff: a.backOff.map((b) => b.name),
  };
}

const none: Summary = { killPod: false, createSandbox: false, init: [], start: [], kill: [], backOff: [] };

interface Case {
  name: string;
  pod: V1Pod;
  /** The runtime state, and probe results keyed by container name. */
  state: (p: V1Pod) => PodRuntimeState;
  probes?: { started?: string[]; startupFailed?: string[]; livenessFailed?: string[] };
  backoff?: (b: BackOff) => void;
  want: Partial<Summary>;
}

function inputsFor(s: PodRuntimeState, probes: Case['probes']): PlanInputs {
  const ids = (names: string[] | undefined): string[] => (names ?? []).map((n) => s.containers.find((c) => c.name === n)!.id);
  return {
    started: new Map(ids(probes?.started).map((id) => [id, true])),
    startupFailed: new Set(ids(probes?.startupFailed)),
    livenessFailed: new Set(ids(probes?.livenessFailed)),
  };
}

const scApp = pod({ inits: ['sc:log'] });
const scStartup = pod({ inits: ['sc:log+startup+ready'] });
const chain = pod({ inits: ['sc:s1', 'setup', 'sc:s2+startup'] });
const job = pod({ restartPolicy: 'Never', inits: ['sc:log'] });

const cases: Case[] = [
  { name: 'fresh pod: sandbox, then the sidecar first', pod: scApp, state: () => state([], []), want: { killPod: true, createSandbox: true, init: ['log#0'] } },
  { name: 'sidecar running without a startup probe: started, the apps start', pod: scApp, state: (p) => state([sandbox()], [ctr(p, 'log', 'running')]), want: { start: ['app#0'] } },
  { name: 'sidecar running, startup probe not passed yet: wait', pod: scStartup, state: (p) => state([sandbox()], [ctr(p, 'log', 'running')]), want: {} },
  {
    name: 'sidecar startup probe passed: the apps start',
    pod: scStartup,
    state: (p) => state([sandbox()], [ctr(p, 'log', 'running')]),
    probes: { started: ['log'] },
    want: { start: ['app#0'] },
  },
  {
    name: 'sidecar startup probe failed: kill and restart it at once',
    pod: scStartup,
    state: (p) => state([sandbox()], [ctr(p, 'log', 'running', { restartCount: 2 })]),
    probes: { startupFailed: ['log'] },
    want: { kill: ['log:StartupFailed'], init: ['log#3'] },
  },
  { name: 'chain: s1 started, the regular init container next', pod: chain, state: (p) => state([sandbox()], [ctr(p, 's1', 'running')]), want: { init: ['setup#0'] } },
  { name: 'chain: setup running: wait', pod: chain, state: (p) => state([sandbox()], [ctr(p, 's1', 'running'), ctr(p, 'setup', 'running')]), want: {} },
  {
    name: 'chain: setup done: s2 next',
    pod: chain,
    state: (p) => state([sandbox()], [ctr(p, 's1', 'running'), ctr(p, 'setup', 'exited')]),
    want: { init: ['s2#0'] },
  },
  {
    name: 'chain: s2 running, startup pending: wait',
    pod: chain,
    state: (p) => state([sandbox()], [ctr(p, 's1', 'running'), ctr(p, 'setup', 'exited'), ctr(p, 's2', 'running')]),
    want: {},
  },
  {
    name: 'chain: s2 started: the apps',
    pod: chain,
    state: (p) => state([sandbox()], [ctr(p, 's1', 'running'), ctr(p, 'setup', 'exited'), ctr(p, 's2', 'running')]),
    probes: { started: ['s2'] },
    want: { start: ['app#0'] },
  },
  {
    name: 'chain: s1 crashed during initialization: restart s1 (back-off over), keep waiting for setup',
    pod: chain,
    state: (p) => state([sandbox()], [ctr(p, 's1', 'exited', { exitCode: 1 }), ctr(p, 'setup', 'running')]),
    want: { init: ['s1#1'] },
  },
  {
    name: 'chain: regular init failed, Never: kill the pod',
    pod: pod({ restartPolicy: 'Never', inits: ['sc:s1', 'setup'] }),
    state: (p) => state([sandbox()], [ctr(p, 's1', 'running'), ctr(p, 'setup', 'exited', { exitCode: 1 })]),
    want: { killPod: true },
  },
  {
    name: 'chain: regular init failed, OnFailure: restart it',
    pod: pod({ restartPolicy: 'OnFailure', inits: ['sc:s1', 'setup'] }),
    state: (p) => state([sandbox()], [ctr(p, 's1', 'running'), ctr(p, 'setup', 'exited', { exitCode: 1 })]),
    want: { init: ['setup#1'] },
  },
  {
    name: 'app running, sidecar exited, Never: the sidecar restarts anyway',
    pod: job,
    state: (p) => state([sandbox()], [ctr(p, 'log', 'exited', { exitCode: 2, restartCount: 1 }), ctr(p, 'app', 'running')]),
    want: { init: ['log#2'] },
  },
  {
    name: 'app running, sidecar exited recently: CrashLoopBackOff, the pod is kept',
    pod: job,
    state: (p) => state([sandbox()], [ctr(p, 'log', 'exited', { exitCode: 2, restartCount: 1, finishedAgoMs: 3000 }), ctr(p, 'app', 'running')]),
    backoff: (b) => b.next(backOffKey('uid-1', 'log'), NOW - 20_000),
    want: { backOff: ['log'] },
  },
  {
    name: 'app running, sidecar liveness failed: kill and restart it',
    pod: pod({ inits: ['sc:log+live'] }),
    state: (p) => state([sandbox()], [ctr(p, 'log', 'running'), ctr(p, 'app', 'running')]),
    probes: { livenessFailed: ['log'] },
    want: { kill: ['log:LivenessFailed'], init: ['log#1'] },
  },
  {
    name: 'app running, sidecar spec changed: kill and restart it',
    pod: scApp,
    state: (p) => state([sandbox()], [ctr(p, 'log', 'running', { hash: 'deadbeef' }), ctr(p, 'app', 'running')]),
    want: { kill: ['log:SpecChanged'], init: ['log#1'] },
  },
  {
    name: 'app running, sidecar gone from the runtime: start it again; the regular init container is not rerun',
    pod: pod({ inits: ['setup', 'sc:log'] }),
    state: (p) => state([sandbox()], [ctr(p, 'app', 'running')]),
    want: { init: ['log#0'] },
  },
  { name: 'sidecar left in created: start another', pod: scApp, state: (p) => state([sandbox()], [ctr(p, 'log', 'created')]), want: { init: ['log#1'] } },
  {
    name: 'sidecar in unknown state: kill it and start again',
    pod: scApp,
    state: (p) => state([sandbox()], [ctr(p, 'log', 'unknown'), ctr(p, 'app', 'running')]),
    want: { kill: ['log:UnknownState'], init: ['log#1'] },
  },
  {
    name: 'Always: app exited, restart it; the sidecar keeps running',
    pod: scApp,
    state: (p) => state([sandbox()], [ctr(p, 'log', 'running'), ctr(p, 'app', 'exited', { exitCode: 0 })]),
    want: { start: ['app#1'] },
  },
  {
    name: 'OnFailure: app failed, restart it',
    pod: pod({ restartPolicy: 'OnFailure', inits: ['sc:log'] }),
    state: (p) => state([sandbox()], [ctr(p, 'log', 'running'), ctr(p, 'app', 'exited', { exitCode: 1 })]),
    want: { start: ['app#1'] },
  },
  {
    name: 'Never: app done, sidecar running: kill the pod (the sidecar stops)',
    pod: job,
    state: (p) => state([sandbox()], [ctr(p, 'log', 'running'), ctr(p, 'app', 'exited', { exitCode: 0 })]),
    want: { killPod: true },
  },
  {
    name: 'OnFailure: app succeeded, sidecar running: kill the pod',
    pod: pod({ restartPolicy: 'OnFailure', inits: ['sc:log'] }),
    state: (p) => state([sandbox()], [ctr(p, 'log', 'running'), ctr(p, 'app', 'exited', { exitCode: 0 })]),
    want: { killPod: true },
  },
  {
    name: 'Never: app done and the sidecar exited too: no restart of the sidecar',
    pod: job,
    state: (p) => state([sandbox()], [ctr(p, 'log', 'exited', { exitCode: 1 }), ctr(p, 'app', 'exited', { exitCode: 0 })]),
    want: { killPod: true },
  },
  {
    name: 'Never: one app done, another running: keep going',
    pod: pod({ restartPolicy: 'Never', inits: ['sc:log'], apps: ['a', 'b'] }),
    state: (p) => state([sandbox()], [ctr(p, 'log', 'running'), ctr(p, 'a', 'exited'), ctr(p, 'b', 'running')]),
    want: {},
  },
  {
    name: 'Never: pod done, sandbox stopped: nothing to recreate',
    pod: job,
    state: (p) => state([sandbox('notready')], [ctr(p, 'log', 'exited', { exitCode: 137 }), ctr(p, 'app', 'exited')]),
    want: { killPod: true },
  },
  {
    name: 'sandbox died: new sandbox, the first init container again',
    pod: scApp,
    state: (p) => state([sandbox('notready')], [ctr(p, 'log', 'exited', { exitCode: 137 }), ctr(p, 'app', 'exited', { exitCode: 137 })]),
    want: { killPod: true, createSandbox: true, init: ['log#1'] },
  },
  {
    name: 'pod deleted: kill everything',
    pod: pod({ inits: ['sc:log'], deleting: true }),
    state: (p) => state([sandbox()], [ctr(p, 'log', 'running'), ctr(p, 'app', 'running')]),
    want: { killPod: true, kill: ['app:PodDeleted', 'log:PodDeleted'] },
  },
];

for (const c of cases) {
  t.test(`plan: ${c.name}`, async (t) => {
    const b = new BackOff();
    c.backoff?.(b);
    const s = c.state(c.pod);
    const got = summary(computePodActions(c.pod, s, NOW, b, inputsFor(s, c.probes)));
    t.same(got, { ...none, ...c.want });
  });
}

t.test('plan: kill messages name the init container', async (t) => {
  const s = state([sandbox()], [ctr(scStartup, 'log', 'running')]);
  const a = computePodActions(scStartup, s, NOW, new BackOff(), inputsFor(s, { startupFailed: ['log'] }));
  t.equal(a.containersToKill[0]!.message, 'Init container log failed startup probe');
});

// ---- status ----

const NOW_DATE = new Date(NOW);
function status(p: V1Pod, s: PodRuntimeState, extra: Partial<StatusInputs> = {}): V1PodStatus {
  return computePodStatus(p, s, { hostIPs: ['172.31.0.11'], now: NOW_DATE, ...extra });
}
function conds(s: V1PodStatus): string[] {
  return (s.conditions ?? []).map((c) => `${c.type}=${c.status}${c.reason !== undefined ? `/${c.reason}` : ''}`);
}
function cond(s: V1PodStatus, type: string): { status: string; reason?: string; message?: string } | undefined {
  return s.conditions?.find((c) => c.type === type);
}

t.test('status: sidecar running and started, app running: Running, Initialized, Ready', async (t) => {
  const log = ctr(scApp, 'log', 'running', { restartCount: 2 });
  const s = status(scApp, state([sandbox()], [log, ctr(scApp, 'app', 'running')]));
  t.equal(s.phase, 'Running');
  t.same(conds(s), ['PodScheduled=True', 'PodReadyToStartContainers=True', 'Initialized=True', 'ContainersReady=True', 'Ready=True']);
  t.match(s.initContainerStatuses![0], { name: 'log', ready: true, started: true, restartCount: 2, containerID: `containerd://${log.id}`, state: { running: {} } });
});

t.test('status: sidecar startup probe pending: Pending, not initialized, app PodInitializing', async (t) => {
  const log = ctr(scStartup, 'log', 'running');
  const s = status(scStartup, state([sandbox()], [log]), { started: new Map([[log.id, false]]), readiness: new Map([[log.id, false]]) });
  t.equal(s.phase, 'Pending');
  t.match(s.initContainerStatuses![0], { name: 'log', ready: false, started: false, state: { running: {} } });
  t.match(cond(s, 'Initialized'), { status: 'False', reason: 'ContainersNotInitialized', message: 'containers with incomplete status: [log]' });
  t.same(s.containerStatuses![0]!.state, { waiting: { reason: 'PodInitializing' } });
  // Started, not ready yet: initialized; not ready, and the sidecar is named.
  const s2 = status(scStartup, state([sandbox()], [log, ctr(scStartup, 'app', 'running')]), { started: new Map([[log.id, true]]), readiness: new Map([[log.id, false]]) });
  t.equal(s2.phase, 'Running');
  t.match(s2.initContainerStatuses![0], { ready: false, started: true });
  t.equal(cond(s2, 'Initialized')?.status, 'True');
  t.match(cond(s2, 'ContainersReady'), { status: 'False', reason: 'ContainersNotReady', message: 'containers with unready status: [log]' });
  t.match(cond(s2, 'Ready'), { status: 'False', message: 'containers with unready status: [log]' });
  // Ready: the readiness probe passed.
  const s3 = status(scStartup, state([sandbox()], [log, ctr(scStartup, 'app', 'running')]), { started: new Map([[log.id, true]]), readiness: new Map([[log.id, true]]) });
  t.same(conds(s3).slice(2), ['Initialized=True', 'ContainersReady=True', 'Ready=True']);
});

t.test('status: chain initializing: the regular init container is incomplete until it succeeded', async (t) => {
  const s = status(chain, state([sandbox()], [ctr(chain, 's1', 'running'), ctr(chain, 'setup', 'running')]));
  t.equal(s.phase, 'Pending');
  t.match(cond(s, 'Initialized'), { status: 'False', message: 'containers with incomplete status: [setup s2]' });
  t.match(s.initContainerStatuses![1], { name: 'setup', ready: false, started: true });
});

t.test('status: Job-like pod: Running while the sidecar runs, Succeeded once it stopped', async (t) => {
  const running = status(job, state([sandbox()], [ctr(job, 'log', 'running'), ctr(job, 'app', 'exited')]));
  t.equal(running.phase, 'Running', 'the sidecar still runs');
  const done = status(job, state([sandbox('notready')], [ctr(job, 'log', 'exited', { exitCode: 137 }), ctr(job, 'app', 'exited')]));
  t.equal(done.phase, 'Succeeded', 'a stopped sidecar does not count');
  t.same(conds(done).slice(2), ['Initialized=True/PodCompleted', 'ContainersReady=False/PodCompleted', 'Ready=False/PodCompleted']);
  t.match(done.initContainerStatuses![0], { name: 'log', ready: false, state: { terminated: { exitCode: 137 } } });
  const failed = status(job, state([sandbox('notready')], [ctr(job, 'log', 'exited', { exitCode: 0 }), ctr(job, 'app', 'exited', { exitCode: 3 })]));
  t.equal(failed.phase, 'Failed');
  const onFailure = pod({ restartPolicy: 'OnFailure', inits: ['sc:log'] });
  t.equal(status(onFailure, state([sandbox('notready')], [ctr(onFailure, 'log', 'exited', { exitCode: 143 }), ctr(onFailure, 'app', 'exited')])).phase, 'Succeeded');
});

t.test('status: a sidecar restarting after the apps ran: Running, not Pending; CrashLoopBackOff shown whatever the policy', async (t) => {
  const reasons = new Map([['log', { reason: 'CrashLoopBackOff', message: 'back-off 10s restarting failed container=log pod=job_default(uid-1)' }]]);
  const s = status(job, state([sandbox()], [ctr(job, 'log', 'exited', { exitCode: 1, restartCount: 3 }), ctr(job, 'app', 'running')]), { reasons });
  t.equal(s.phase, 'Running');
  t.match(s.initContainerStatuses![0], { name: 'log', ready: false, restartCount: 3, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 1 } } });
  t.equal(cond(s, 'Initialized')?.status, 'True', 'initialized before');
  t.match(cond(s, 'ContainersReady'), { status: 'False', message: 'containers with unready status: [log]' });
  // The pod is done: a stale reason is not shown, the sidecar stays terminated.
  const done = status(job, state([sandbox('notready')], [ctr(job, 'log', 'exited', { exitCode: 137 }), ctr(job, 'app', 'exited')]), { reasons });
  t.match(done.initContainerStatuses![0]!.state, { terminated: { exitCode: 137 } });
  t.equal(done.phase, 'Succeeded');
  // A sidecar that never started yet (image pull failing) while nothing ran: Pending.
  const pulling = status(scApp, state([sandbox()], []), { reasons: new Map([['log', { reason: 'ErrImagePull', message: 'no' }]]) });
  t.equal(pulling.phase, 'Pending');
  t.same(pulling.initContainerStatuses![0]!.state, { waiting: { reason: 'ErrImagePull', message: 'no' } });
});

// ---- termination order ----

t.test('termination: sidecars wait for the apps and for the next later sidecar', async (t) => {
  const p = pod({ inits: ['sc:s1', 'setup', 'sc:s2', 'sc:s3'], apps: ['a', 'b'] });
  const all = new Set(['a', 'b', 's1', 's2', 's3']);
  t.same(Object.fromEntries(terminationPrereqs(p, all)), { s3: ['a', 'b'], s2: ['a', 'b', 's3'], s1: ['a', 'b', 's2'] });
  t.same(Object.fromEntries(terminationPrereqs(p, new Set(['b', 's1', 's3']))), { s3: ['b'], s1: ['b', 's3'] }, 'only running containers are waited for');
  t.same(Object.fromEntries(terminationPrereqs(pod({ inits: ['setup'] }), new Set(['app']))), {}, 'no sidecars: no ordering');
});

t.test('termination: everything stops at once, the apps first, then the sidecars in reverse order', async (t) => {
  const p = pod({ inits: ['sc:s1', 'sc:s2', 'sc:s3'], apps: ['a', 'b'] });
  const names = ['s1', 's3', 'a', 's2', 'b'];
  const ordering = new TerminationOrdering(p, names);
  const stopped: string[] = [];
  // Each stop takes a different while; the order must still hold.
  const delays: Record<string, number> = { a: 30, b: 5, s1: 1, s2: 1, s3: 20 };
  await Promise.all(
    names.map(async (name) => {
      await ordering.waitForTurn(name, 30);
      await new Promise((r) => setTimeout(r, delays[name]));
      stopped.push(name);
      ordering.terminated(name);
    }),
  );
  t.same(stopped.slice(2), ['s3', 's2', 's1']);
  t.same([...stopped.slice(0, 2)].sort(), ['a', 'b']);
});

t.test('termination: the grace period bounds the wait', async (t) => {
  const p = pod({ inits: ['sc:log'] });
  const ordering = new TerminationOrdering(p, ['app', 'log']);
  // The app never reports: the sidecar's turn comes when its grace runs out.
  const waited = await ordering.waitForTurn('log', 0.05);
  t.ok(waited > 0, 'waited for the grace period, then went on');
  t.equal(await ordering.waitForTurn('log', 0), 0, 'no grace: no wait');
  t.equal(await ordering.waitForTurn('app', 30), 0, 'a regular container never waits');
});

// ---- probes ----

t.test('probes: sidecars are probed, regular init containers are not; the view reads initContainerStatuses', async (t) => {
  const p = pod({ restartPolicy: 'Never', inits: ['setup', 'sc:log+startup+ready'] });
  t.same(probedContainers(p).map((c) => c.name), ['app', 'log']);
  const st: V1PodStatus = {
    phase: 'Running',
    initContainerStatuses: [
      { name: 'setup', image, imageID: '', ready: true, restartCount: 0, containerID: 'containerd://i1', state: { terminated: { exitCode: 0 } } },
      { name: 'log', image, imageID: '', ready: false, restartCount: 0, started: false, containerID: 'containerd://i2', state: { terminated: { exitCode: 1 } } },
    ],
    containerStatuses: [{ name: 'app', image, imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'PodInitializing' } } }],
  };
  const v = probeView(p, st, 'log', NOW);
  t.match(v.container, { id: 'i2', running: false, terminated: true });
  t.equal(v.restartPolicy, 'Always', 'a sidecar comes back whatever the pod policy: its probes keep going');
  t.equal(probeView(p, st, 'app', NOW).restartPolicy, 'Never');
});

t.test('probes: a sidecar startup probe feeds started (and the plan), then readiness runs', async (t) => {
  const p = pod({ inits: ['sc:log+startup+ready'] });
  const execs: string[] = [];
  let changes = 0;
  const probes = new PodProbes(p, {
    runtime: {
      execSync: async (id, cmd) => {
        execs.push(`${id} ${cmd[0]}`);
        return { stdout: Buffer.from(''), stderr: Buffer.from(''), exitCode: 0 };
      },
    },
    dial: directDialer,
    userAgent: 'kube-probe/1.32',
    event: () => undefined,
    onChange: () => changes++,
    now: Date.now,
    logger: createLogger({ component: 'test', level: 'error' }),
  });
  t.teardown(() => probes.stop());
  const st = (started: boolean): V1PodStatus => ({
    phase: 'Pending',
    podIP: '10.0.0.5',
    initContainerStatuses: [{ name: 'log', image, imageID: '', ready: false, restartCount: 0, started, containerID: 'containerd://sc1', state: { running: { startedAt: new Date(0) } } }],
    containerStatuses: [{ name: 'app', image, imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'PodInitializing' } } }],
  });
  probes.update(p, st(false));
  await until('started', () => probes.started().get('sc1') === true);
  t.equal(probes.planInputs().started?.get('sc1'), true, 'the plan sees the sidecar started');
  t.ok(changes > 0, 'a changed result syncs the pod');
  probes.update(p, st(true));
  await until('ready', () => probes.readiness().get('sc1') === true);
  t.same([...new Set(execs)], ['sc1 started', 'sc1 ready']);
});

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** computePodActions, table-driven, as upstream's kuberuntime_manager tests. */
import t from 'tap';
import type { V1Pod } from '@kubernetes/client-node';
import { BackOff, backOffKey } from '../../agent/pods/backoff.js';
import { containerHash } from '../../agent/pods/hash.js';
import { computePodActions, type PodActions } from '../../agent/pods/plan.js';
import type { ContainerInfo, PodRuntimeState, SandboxInfo } from '../../agent/pods/types.js';

const NOW = 1_700_000_000_000;
const ns = (ms: number): bigint => BigInt(ms) * 1_000_000n;

function pod(opts: { restartPolicy?: string; inits?: string[]; apps?: string[]; hostNetwork?: boolean; deleting?: boolean } = {}): V1Pod {
  const p: V1Pod = {
    metadata: { name: 'web', namespace: 'default', uid: 'uid-1' },
    spec: {
      restartPolicy: opts.restartPolicy ?? 'Always',
      containers: (opts.apps ?? ['app']).map((name) => ({ name, image: 'knode.local/app:1.0' })),
      ...(opts.inits !== undefined ? { initContainers: opts.inits.map((name) => ({ name, image: 'knode.local/app:1.0' })) } : {}),
      ...(opts.hostNetwork === true ? { hostNetwork: true } : {}),
    },
  };
  if (opts.deleting === true) p.metadata!.deletionTimestamp = new Date(NOW);
  return p;
}

let seq = 0;
function sandbox(state: 'ready' | 'notready' = 'ready', attempt = 0, ip = '10.0.0.5'): SandboxInfo {
  seq++;
  return { id: `sb${seq}`, attempt, state, createdAt: ns(NOW - 100_000 + seq), ip, additionalIps: [], network: 'pod' };
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
    reason: '',
    message: '',
    image: 'knode.local/app:1.0',
    imageRef: 'sha256:abc',
    hash: opts.hash ?? containerHash(spec),
    restartCount: opts.restartCount ?? 0,
  };
}

function state(sandboxes: SandboxInfo[], containers: ContainerInfo[]): PodRuntimeState {
  return { sandboxes: [...sandboxes].reverse(), containers: [...containers].reverse() };
}

interface Summary {
  killPod: boolean;
  createSandbox: boolean;
  attempt: number;
  init: string[];
  start: string[];
  kill: string[];
  backOff: string[];
}

function summary(a: PodActions): Summary {
  return {
    killPod: a.killPod,
    createSandbox: a.createSandbox,
    attempt: a.attempt,
    init: a.initContainersToStart.map((c) => `${c.name}#${c.restartCount}`),
    start: a.containersToStart.map((c) => `${c.name}#${c.restartCount}`),
    kill: a.containersToKill.map((c) => `${c.name}:${c.reason}`),
    backOff: a.backOff.map((b) => b.name),
  };
}

const none = { killPod: false, createSandbox: false, attempt: 0, init: [], start: [], kill: [], backOff: [] };

interface Case {
  name: string;
  pod: V1Pod;
  state: (p: V1Pod) => PodRuntimeState;
  want: Partial<Summary>;
  backoff?: (b: BackOff) => void;
}

const always = pod();
const cases: Case[] = [
  { name: 'fresh pod: create the sandbox, start the app', pod: always, state: () => state([], []), want: { killPod: true, createSandbox: true, start: ['app#0'] } },
  { name: 'fresh pod with init containers: sandbox + first init', pod: pod({ inits: ['i1', 'i2'] }), state: () => state([], []), want: { killPod: true, createSandbox: true, init: ['i1#0'] } },
  { name: 'steady state: nothing to do', pod: always, state: (p) => state([sandbox()], [ctr(p, 'app', 'running')]), want: {} },
  { name: 'sandbox ready, container never created: start it', pod: always, state: () => state([sandbox()], []), want: { start: ['app#0'] } },
  { name: 'init 1 running: wait', pod: pod({ inits: ['i1', 'i2'] }), state: (p) => state([sandbox()], [ctr(p, 'i1', 'running')]), want: {} },
  { name: 'init 1 done: start init 2', pod: pod({ inits: ['i1', 'i2'] }), state: (p) => state([sandbox()], [ctr(p, 'i1', 'exited')]), want: { init: ['i2#0'] } },
  {
    name: 'inits done: start the apps',
    pod: pod({ inits: ['i1', 'i2'], apps: ['a', 'b'] }),
    state: (p) => state([sandbox()], [ctr(p, 'i1', 'exited'), ctr(p, 'i2', 'exited')]),
    want: { start: ['a#0', 'b#0'] },
  },
  {
    name: 'init failed, Always: restart it',
    pod: pod({ inits: ['i1', 'i2'] }),
    state: (p) => state([sandbox()], [ctr(p, 'i1', 'exited'), ctr(p, 'i2', 'exited', { exitCode: 1 })]),
    want: { init: ['i2#1'] },
  },
  {
    name: 'init failed, Never: kill the pod',
    pod: pod({ inits: ['i1'], restartPolicy: 'Never' }),
    state: (p) => state([sandbox()], [ctr(p, 'i1', 'exited', { exitCode: 1 })]),
    want: { killPod: true },
  },
  {
    name: 'app running: init containers are done even when gone',
    pod: pod({ inits: ['i1'] }),
    state: (p) => state([sandbox()], [ctr(p, 'app', 'running')]),
    want: {},
  },
  { name: 'crash, Always: restart (count + 1)', pod: always, state: (p) => state([sandbox()], [ctr(p, 'app', 'exited', { exitCode: 1, restartCount: 3 })]), want: { start: ['app#4'] } },
  { name: 'success, Always: restart too', pod: always, state: (p) => state([sandbox()], [ctr(p, 'app', 'exited', { exitCode: 0 })]), want: { start: ['app#1'] } },
  {
    name: 'crash, OnFailure: restart',
    pod: pod({ restartPolicy: 'OnFailure' }),
    state: (p) => state([sandbox()], [ctr(p, 'app', 'exited', { exitCode: 2 })]),
    want: { start: ['app#1'] },
  },
  {
    name: 'success, OnFailure: done, kill the pod',
    pod: pod({ restartPolicy: 'OnFailure' }),
    state: (p) => state([sandbox()], [ctr(p, 'app', 'exited', { exitCode: 0 })]),
    want: { killPod: true },
  },
  {
    name: 'crash, Never: kill the pod, no restart',
    pod: pod({ restartPolicy: 'Never' }),
    state: (p) => state([sandbox()], [ctr(p, 'app', 'exited', { exitCode: 1 })]),
    want: { killPod: true },
  },
  {
    name: 'crash, Never, one app still running: keep it',
    pod: pod({ restartPolicy: 'Never', apps: ['a', 'b'] }),
    state: (p) => state([sandbox()], [ctr(p, 'a', 'exited', { exitCode: 1 }), ctr(p, 'b', 'running')]),
    want: {},
  },
  {
    name: 'crash while backing off: CrashLoopBackOff, no start, pod kept',
    pod: always,
    state: (p) => state([sandbox()], [ctr(p, 'app', 'exited', { exitCode: 1, restartCount: 1, finishedAgoMs: 3000 })]),
    backoff: (b) => b.next(backOffKey('uid-1', 'app'), NOW - 20_000),
    want: { backOff: ['app'] },
  },
  {
    name: 'back-off over: restart',
    pod: always,
    state: (p) => state([sandbox()], [ctr(p, 'app', 'exited', { exitCode: 1, restartCount: 1, finishedAgoMs: 11_000 })]),
    backoff: (b) => b.next(backOffKey('uid-1', 'app'), NOW - 20_000),
    want: { start: ['app#2'] },
  },
  {
    name: 'sandbox died: kill and recreate (attempt + 1), start again',
    pod: always,
    state: (p) => state([sandbox('notready', 0)], [ctr(p, 'app', 'exited', { exitCode: 137, restartCount: 2 })]),
    want: { killPod: true, createSandbox: true, attempt: 1, start: ['app#3'] },
  },
  {
    name: 'sandbox without IP: recreate',
    pod: always,
    state: (p) => state([sandbox('ready', 2, '')], [ctr(p, 'app', 'running')]),
    want: { killPod: true, createSandbox: true, attempt: 3, start: ['app#1'] },
  },
  {
    name: 'host network sandbox without IP is fine',
    pod: pod({ hostNetwork: true }),
    state: (p) => state([{ ...sandbox('ready', 0, ''), network: 'node' }], [ctr(p, 'app', 'running')]),
    want: {},
  },
  {
    name: 'two ready sandboxes: recreate',
    pod: always,
    state: (p) => state([sandbox('ready', 0), sandbox('ready', 1)], [ctr(p, 'app', 'running')]),
    want: { killPod: true, createSandbox: true, attempt: 2, start: ['app#1'] },
  },
  {
    name: 'sandbox died, Never, containers ran: only kill',
    pod: pod({ restartPolicy: 'Never' }),
    state: (p) => state([sandbox('notready')], [ctr(p, 'app', 'exited', { exitCode: 0 })]),
    want: { killPod: true, attempt: 1 },
  },
  {
    name: 'all done, OnFailure, sandbox stopped: nothing to recreate',
    pod: pod({ restartPolicy: 'OnFailure' }),
    state: (p) => state([sandbox('notready')], [ctr(p, 'app', 'exited', { exitCode: 0 })]),
    want: { killPod: true, attempt: 1 },
  },
  {
    name: 'spec changed: kill and restart regardless of policy',
    pod: pod({ restartPolicy: 'Never' }),
    state: (p) => state([sandbox()], [ctr(p, 'app', 'running', { hash: 'deadbeef', restartCount: 1 })]),
    want: { start: ['app#2'], kill: ['app:SpecChanged'] },
  },
  {
    name: 'created but never started: start a new one',
    pod: always,
    state: (p) => state([sandbox()], [ctr(p, 'app', 'created')]),
    want: { start: ['app#1'] },
  },
  {
    name: 'unknown state: kill it and start again',
    pod: always,
    state: (p) => state([sandbox()], [ctr(p, 'app', 'unknown')]),
    want: { start: ['app#1'], kill: ['app:UnknownState'] },
  },
  {
    name: 'pod being deleted: kill everything',
    pod: pod({ deleting: true, apps: ['a', 'b'] }),
    state: (p) => state([sandbox()], [ctr(p, 'a', 'running'), ctr(p, 'b', 'exited')]),
    want: { killPod: true, kill: ['a:PodDeleted'] },
  },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    const b = new BackOff();
    c.backoff?.(b);
    const got = summary(computePodActions(c.pod, c.state(c.pod), NOW, b));
    t.same(got, { ...none, ...c.want });
  });
}

t.test('liveness failure: kill, restart per policy', async (t) => {
  const p = pod();
  const running = ctr(p, 'app', 'running', { restartCount: 4 });
  const a = computePodActions(p, state([sandbox()], [running]), NOW, new BackOff(), { livenessFailed: new Set([running.id]) });
  t.same(summary(a), { ...none, start: ['app#5'], kill: ['app:LivenessFailed'] });
  t.equal(a.containersToKill[0]!.message, 'Container app failed liveness probe, will be restarted');
  const never = pod({ restartPolicy: 'Never' });
  const r2 = ctr(never, 'app', 'running');
  t.same(summary(computePodActions(never, state([sandbox()], [r2]), NOW, new BackOff(), { livenessFailed: new Set([r2.id]) })), { ...none, killPod: true, kill: ['app:LivenessFailed'] });
});

t.test('the back-off message', async (t) => {
  const b = new BackOff();
  b.next(backOffKey('uid-1', 'app'), NOW - 60_000);
  b.next(backOffKey('uid-1', 'app'), NOW - 30_000);
  const p = pod();
  const a = computePodActions(p, state([sandbox()], [ctr(p, 'app', 'exited', { exitCode: 1, finishedAgoMs: 1000 })]), NOW, b);
  t.same(a.backOff, [{ name: 'app', init: false, delayMs: 20_000, retryInMs: 19_000, message: 'back-off 20s restarting failed container=app pod=web_default(uid-1)' }]);
});

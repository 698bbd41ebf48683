/**
 * The pod worker's executor logic against an in-memory fake of the runtime port
 * (the real thing is test/integration/agent-pods.test.ts): errors stay inside the
 * worker as events and waiting reasons, a dead sandbox is replaced, a changed
 * spec restarts the container, a pod source drives updates and deletions.
 */
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';
import type { Container, ContainerConfig, ContainerStatus, PodSandbox, PodSandboxConfig } from '../../agent/runtime/types.js';
import { KnodeError } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { BackOff } from '../../agent/pods/backoff.js';
import type { EventType, InvolvedObject, PodSource } from '../../agent/pods/types.js';
import type { WorkerRuntime } from '../../agent/pods/worker.js';
import { PodWorkers } from '../../agent/pods/workers.js';

const dir = await mkdtemp(join(tmpdir(), 'knode-agent-worker-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

const nowNs = (): bigint => BigInt(Date.now()) * 1_000_000n + BigInt(++tick);
let tick = 0;
const matches = (labels: Record<string, string>, sel: Record<string, string> | undefined): boolean => Object.entries(sel ?? {}).every(([k, v]) => labels[k] === v);

/** Sandboxes and containers in maps; `failRunSandbox` makes RunPodSandbox fail. */
class FakeRuntime implements WorkerRuntime {
  sandboxes = new Map<string, PodSandbox & { ip: string; config: PodSandboxConfig }>();
  containers = new Map<string, ContainerStatus & { podSandboxId: string }>();
  failRunSandbox = 0;
  calls: string[] = [];
  private seq = 0;

  async listPodSandbox(filter?: { labelSelector?: Record<string, string> }): Promise<PodSandbox[]> {
    return [...this.sandboxes.values()].filter((s) => matches(s.labels, filter?.labelSelector));
  }
  async podSandboxStatus(id: string) {
    const s = this.sandboxes.get(id);
    if (s === undefined) throw new KnodeError('NOT_FOUND', id);
    return { status: { ...s, network: { ip: s.state === 'ready' ? s.ip : '', additionalIps: [] }, namespaceOptions: { network: 'pod' as const } }, info: {} };
  }
  async runPodSandbox(config: PodSandboxConfig): Promise<string> {
    this.calls.push('runPodSandbox');
    if (this.failRunSandbox > 0) {
      this.failRunSandbox--;
      throw new KnodeError('UNKNOWN', 'failed to setup network for sandbox: plugin type="bridge" failed');
    }
    const id = `sb${++this.seq}`;
    this.sandboxes.set(id, { id, metadata: config.metadata, state: 'ready', createdAt: nowNs(), labels: config.labels ?? {}, annotations: config.annotations ?? {}, runtimeHandler: '', ip: `10.0.0.${this.seq}`, config });
    return id;
  }
  async stopPodSandbox(id: string): Promise<void> {
    this.calls.push('stopPodSandbox');
    const s = this.sandboxes.get(id);
    if (s !== undefined) s.state = 'notready';
    for (const c of this.containers.values()) if (c.podSandboxId === id && c.state === 'running') this.exit(c.id, 137);
  }
  async removePodSandbox(id: string): Promise<void> {
    this.sandboxes.delete(id);
    for (const c of [...this.containers.values()]) if (c.podSandboxId === id) this.containers.delete(c.id);
  }
  async listContainers(filter?: { labelSelector?: Record<string, string> }): Promise<Container[]> {
    return [...this.containers.values()].filter((c) => matches(c.labels, filter?.labelSelector)).map((c) => ({ ...c, podSandboxId: c.podSandboxId }));
  }
  async containerStatus(id: string) {
    const c = this.containers.get(id);
    if (c === undefined) throw new KnodeError('NOT_FOUND', id);
    return { status: { ...c }, info: {} };
  }
  async createContainer(sandboxId: string, config: ContainerConfig): Promise<string> {
    this.calls.push(`create ${config.metadata.name}#${config.metadata.attempt}`);
    const id = `c${++this.seq}`;
    this.containers.set(id, {
      id, podSandboxId: sandboxId, metadata: config.metadata, state: 'created', createdAt: nowNs(), startedAt: 0n, finishedAt: 0n, exitCode: 0,
      image: config.image, imageRef: config.image.image, imageId: config.image.image, reason: '', message: '', labels: config.labels ?? {}, annotations: config.annotations ?? {}, mounts: [], logPath: '', resources: undefined,
    });
    return id;
  }
  async startContainer(id: string): Promise<void> {
    const c = this.containers.get(id)!;
    c.state = 'running';
    c.startedAt = nowNs();
  }
  async stopContainer(id: string): Promise<void> {
    this.calls.push(`stop ${this.containers.get(id)?.metadata.name}`);
    if (this.containers.get(id)?.state === 'running') this.exit(id, 143);
  }
  async removeContainer(id: string): Promise<void> {
    this.containers.delete(id);
  }
  async execSync() {
    return { stdout: Buffer.from(''), stderr: Buffer.from(''), exitCode: 0 };
  }
  async imageStatus(spec: { image: string }) {
    return { id: `sha256:${spec.image.length}`, repoTags: [spec.image], repoDigests: [], size: 1, uid: undefined, username: '', spec: undefined, pinned: false };
  }
  async pullImage(spec: { image: string }): Promise<string> {
    return `sha256:${spec.image.length}`;
  }
  exit(id: string, code: number): void {
    const c = this.containers.get(id)!;
    c.state = 'exited';
    c.exitCode = code;
    c.finishedAt = nowNs();
    c.reason = code === 0 ? 'Completed' : 'Error';
  }
  running(name: string): (ContainerStatus & { podSandboxId: string }) | undefined {
    return [...this.containers.values()].find((c) => c.metadata.name === name && c.state === 'running');
  }
}

function setup(runtime: FakeRuntime) {
  const events: { obj: InvolvedObject; type: EventType; reason: string; message: string }[] = [];
  const statuses: V1PodStatus[] = [];
  const workers = new PodWorkers({
    runtime,
    rootDir: join(dir, 'root'),
    podLogsRoot: join(dir, 'logs'),
    hostIPs: ['192.0.2.10'],
    nodeAllocatable: { cpu: '1', memory: '1Gi' },
    memoryCapacity: 1024 ** 3,
    lookup: { getConfigMap: async () => undefined, getSecret: async () => undefined, listServices: async () => [] },
    recorder: { event: (obj, type, reason, message) => void events.push({ obj, type, reason, message }) },
    statusSink: { setStatus: (_pod, s) => void statuses.push(structuredClone(s)) },
    backoff: new BackOff({ baseMs: 50, maxMs: 200 }),
    resyncMs: 20,
    logger: createLogger({ component: 'agent-worker-test', level: 'error' }),
  });
  t.teardown(() => workers.stop());
  return { workers, events, statuses };
}

let n = 0;
function pod(image = 'knode.local/app:1.0'): V1Pod {
  n++;
  return { metadata: { name: `p${n}`, namespace: 'default', uid: `uid-${n}` }, spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'app', image }] } };
}

async function until<T>(what: string, fn: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('a failing RunPodSandbox: event, Pending, retried; nothing thrown', async (t) => {
  const rt = new FakeRuntime();
  rt.failRunSandbox = 2;
  const { workers, events, statuses } = setup(rt);
  const p = pod();
  workers.updatePod(p);
  const s = await until('Running', () => statuses.find((x) => x.phase === 'Running'));
  t.equal(s.podIP, '10.0.0.1');
  const failed = events.filter((e) => e.reason === 'FailedCreatePodSandBox');
  t.equal(rt.calls.filter((c) => c === 'runPodSandbox').length, 3, 'retried on the next syncs');
  t.equal(failed.length, 1, 'the same warning is not repeated within a minute');
  t.equal(failed[0]!.message, 'Failed to create pod sandbox: failed to setup network for sandbox: plugin type="bridge" failed');
  t.match(failed[0], { type: 'Warning', obj: { kind: 'Pod', name: p.metadata!.name, uid: p.metadata!.uid } });
  t.equal(statuses[0]!.phase, 'Pending');
  t.same(statuses[0]!.containerStatuses![0]!.state, { waiting: { reason: 'ContainerCreating' } });
  await workers.terminatePod(p, 0);
});

t.test('the sandbox dies: SandboxChanged, new sandbox (attempt 1), container restarted', async (t) => {
  const rt = new FakeRuntime();
  const { workers, events, statuses } = setup(rt);
  const p = pod();
  workers.updatePod(p);
  await until('running', () => rt.running('app'));
  const [sb] = [...rt.sandboxes.values()];
  sb!.state = 'notready';
  for (const c of rt.containers.values()) if (c.state === 'running') rt.exit(c.id, 137);
  const s = await until('restarted in a new sandbox', () => statuses.find((x) => x.phase === 'Running' && x.containerStatuses?.[0]?.restartCount === 1 && x.containerStatuses[0].state?.running !== undefined));
  t.ok(events.some((e) => e.reason === 'SandboxChanged'));
  const sandboxes = [...rt.sandboxes.values()];
  t.same(sandboxes.map((x) => x.metadata.attempt), [1], 'old sandbox removed once the new one has containers');
  t.equal(s.podIP, sandboxes[0]!.ip);
  t.ok(rt.calls.includes('create app#1'));
  await workers.terminatePod(p, 0);
});

t.test('a changed spec: Killing, recreated with restartCount + 1', async (t) => {
  const rt = new FakeRuntime();
  const { workers, events } = setup(rt);
  const p = pod();
  workers.updatePod(p);
  const first = await until('running', () => rt.running('app'));
  const changed: V1Pod = { ...p, spec: { ...p.spec!, containers: [{ name: 'app', image: 'knode.local/app:2.0' }] } };
  workers.updatePod(changed);
  const second = await until('new container', () => {
    const c = rt.running('app');
    return c !== undefined && c.id !== first.id ? c : undefined;
  });
  t.equal(second.metadata.attempt, 1);
  t.equal(second.annotations['io.kubernetes.container.restartCount'], '1');
  t.equal(second.image.userSpecifiedImage, 'knode.local/app:2.0');
  t.ok(events.some((e) => e.reason === 'Killing' && e.message === 'Container app definition changed, will be restarted'));
  await workers.terminatePod(changed, 0);
});

t.test('a pod source: updates start pods, deletionTimestamp terminates them', async (t) => {
  const rt = new FakeRuntime();
  const { workers, statuses } = setup(rt);
  let handlers: Parameters<PodSource['subscribe']>[0] | undefined;
  const source: PodSource = {
    subscribe(h) {
      handlers = h;
      return () => (handlers = undefined);
    },
  };
  const unsubscribe = workers.attach(source);
  const p = pod();
  handlers!.onUpdate(p);
  await until('running', () => rt.running('app'));
  handlers!.onUpdate({ ...p, metadata: { ...p.metadata!, deletionTimestamp: new Date(), deletionGracePeriodSeconds: 0 } });
  await until('gone', () => (rt.sandboxes.size === 0 && rt.containers.size === 0 ? true : undefined));
  // The worker is dropped once its termination has finished (final status published), just after the runtime is empty.
  await until('worker forgotten', () => (workers.get(p.metadata!.uid!) === undefined ? true : undefined));
  t.pass('worker forgotten');
  t.equal(statuses.at(-1)?.containerStatuses?.[0]?.state?.terminated?.exitCode, 143, 'final status published');
  unsubscribe();
  t.equal(handlers, undefined);
});

t.test('crash loop with a short back-off: CrashLoopBackOff reason, BackOff event once per delay', async (t) => {
  const rt = new FakeRuntime();
  const { workers, events, statuses } = setup(rt);
  const p = pod();
  workers.updatePod(p);
  // Every instance exits with 1 right after it starts.
  const stop = setInterval(() => {
    for (const c of rt.containers.values()) if (c.state === 'running') rt.exit(c.id, 1);
  }, 5);
  t.teardown(() => clearInterval(stop));
  await until('restartCount 3', () => statuses.find((x) => (x.containerStatuses?.[0]?.restartCount ?? 0) >= 3));
  clearInterval(stop);
  const waits = statuses.map((x) => x.containerStatuses?.[0]?.state?.waiting).filter((w) => w?.reason === 'CrashLoopBackOff');
  t.ok(waits.length > 0, 'CrashLoopBackOff seen');
  t.match(waits[0]!.message, /^back-off 50ms restarting failed container=app pod=p\d+_default\(uid-\d+\)$/);
  const backOffs = events.filter((e) => e.reason === 'BackOff');
  t.ok(backOffs.length >= 1 && backOffs.length <= 4, `${backOffs.length} BackOff events`);
  t.equal(backOffs[0]!.obj.fieldPath, 'spec.containers{app}');
  await workers.terminatePod(p, 0);
});

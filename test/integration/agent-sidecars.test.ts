/**
 * Sidecar containers (init containers with restartPolicy Always) through the
 * agent's pod workers against real runtimes, one suite run for each:
 * containerd (CRI v1) and dockerd (the agent's Docker backend), set up as in
 * agent-pods.test.ts (one throw-away `knode-t-<random>` namespace, the
 * reference CNI bridge + host-local on knode-tbr1 / 10.251.0.0/24 only in that
 * namespace, the lab images imported).
 *
 * What is checked: the sidecar starts first and the app only after the
 * sidecar's startup probe passed; readiness and started show in
 * initContainerStatuses and the conditions; killing the sidecar's process
 * restarts it (even with restartPolicy Never) while the app keeps running;
 * deleting the pod stops the app before the sidecar; a Job-like pod
 * (restartPolicy Never) becomes Succeeded when its app exits 0 and its sidecar
 * is stopped, not restarted.
 *
 * Teardown: worker loops stop first, then test/helpers/containerd.ts removes
 * processes, mounts, the pods' cgroup parent, the CNI result cache, the
 * namespace and the temp dir.
 */
import t from 'tap';
import { join } from 'node:path';
import type { V1Container, V1PodStatus } from '@kubernetes/client-node';
import { podUidLabel } from '../../agent/pods/labels.js';
import type { ObjectLookup } from '../../agent/pods/types.js';
import { createDockerRuntime } from '../../agent/runtime/docker/client.js';
import type { Runtime } from '../../agent/runtime/types.js';
import { errorMessage } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { imageRefs } from '../../lab/paths.js';
import { cond, cs, latest, podMaker, podWorld, reasonsOf, startCriContainerd, waitStatus, writeTestConflist, type World } from '../helpers/agent-pods.js';
import { createTestEnv, waitFor } from '../helpers/containerd.js';
import { startDockerd } from '../helpers/dockerd.js';
import { requireLabImages } from '../helpers/lab-images.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}
requireLabImages(['oci', 'docker']);

type RuntimeName = 'containerd' | 'docker';

const env = await createTestEnv(t, 'agent-sidecars');
const { rand, tmp } = env;
const network = `knode-t-${rand}`;
const cgroupParent = `/knode-t-${rand}`;
env.cleanupCgroup(cgroupParent);
env.cleanupCniCache(network);
const quiet = createLogger({ component: 'agent-sidecars-test', level: 'warn' });
const lookup: ObjectLookup = { getConfigMap: async () => undefined, getSecret: async () => undefined, listServices: async () => [] };
const newPod = podMaker(rand);

async function setUpDocker(): Promise<Runtime> {
  const cniConfDir = await writeTestConflist(env, network);
  const dockerd = await startDockerd(env, { cgroupParent });
  await dockerd.loadImages(['pause', 'app']);
  const docker = createDockerRuntime({
    endpoint: dockerd.endpoint,
    requestTimeoutMs: 30_000,
    network: { confDir: cniConfDir, binDir: '/usr/lib/cni', hostNetns: env.netnsPath },
    stateDir: join(tmp, 'docker-state'),
    sandboxImage: imageRefs.pause,
    logger: quiet,
  });
  t.teardown(() => docker.close());
  await docker.waitReady({ timeoutMs: 20_000 });
  return docker;
}

const setUps: Record<RuntimeName, () => Promise<Runtime>> = { containerd: () => startCriContainerd(t, env, { network, logger: quiet }), docker: setUpDocker };
const runtimes: [RuntimeName, Runtime][] = [];
for (const name of ['containerd', 'docker'] as const) {
  const rt = await setUps[name]().catch((err: unknown) => {
    t.fail(`${name} setup failed: ${errorMessage(err)}`);
    return undefined;
  });
  if (rt !== undefined) runtimes.push([name, rt]);
}

/** A shell loop as PID 1 that exits with `code` on SIGTERM (within a second: the trap runs between sleeps). */
function loop(setup: string, code: number): string[] {
  return ['sh', '-c', `trap "exit ${code}" TERM; ${setup} while true; do sleep 1; done`];
}

/** The sidecar: up (and /tmp/up there for both probes) a second after it starts. */
function sidecar(): V1Container {
  return {
    name: 'proxy',
    image: imageRefs.app,
    restartPolicy: 'Always',
    command: loop('sleep 1; touch /tmp/up;', 3),
    startupProbe: { exec: { command: ['cat', '/tmp/up'] }, periodSeconds: 1, failureThreshold: 30 },
    readinessProbe: { exec: { command: ['test', '-f', '/tmp/up'] }, periodSeconds: 1 },
  };
}

function finishedMs(s: V1PodStatus, name: string): number {
  const at = cs(s, name)?.state?.terminated?.finishedAt;
  if (at === undefined) throw new Error(`${name} has not terminated`);
  return new Date(at).getTime();
}

for (const [name, rt] of runtimes) registerTests(rt, name);

function registerTests(runtime: Runtime, runtimeName: RuntimeName): void {
  const w: World = podWorld(t, { runtime, runtimeName, tmp, cgroupParent, lookup, logger: quiet });
  const idOf = (s: V1PodStatus, c: string): string => (cs(s, c)?.containerID ?? '').replace(`${runtimeName}://`, '');

  t.test(`${runtimeName}: sidecar with startup + readiness probes: starts first, the app after its startup probe; a killed sidecar restarts, the app keeps running`, async (t) => {
    // restartPolicy Never: the sidecar still comes back, as upstream.
    const pod = newPod('sidecar', {
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 10,
      initContainers: [sidecar()],
      // The app takes a while to stop on SIGTERM: the sidecar must still stop after it.
      containers: [{ name: 'app', image: imageRefs.app, command: ['sh', '-c', 'trap "sleep 2; exit 0" TERM; while true; do sleep 1; done'] }],
    });
    const uid = pod.metadata!.uid!;
    w.workers.updatePod(pod);
    const s = await waitStatus(w, uid, 'Running and Ready', (s) => s.phase === 'Running' && cond(s, 'Ready') === 'True');
    t.same(s.conditions!.map((c) => `${c.type}=${c.status}`), ['PodScheduled=True', 'PodReadyToStartContainers=True', 'Initialized=True', 'ContainersReady=True', 'Ready=True']);
    t.match(s.initContainerStatuses![0], { name: 'proxy', ready: true, started: true, restartCount: 0, state: { running: {} } });
    t.match(cs(s, 'app'), { ready: true, started: true, restartCount: 0, state: { running: {} } });

    // Order: statuses showed the sidecar running but not started (Pending, no app), and the app
    // appeared only together with or after the sidecar's startup probe success.
    const history = w.statuses.get(uid)!;
    const appCreated = history.findIndex((x) => idOf(x, 'app') !== '');
    const waitingForStartup = history.findIndex((x) => x.phase === 'Pending' && cs(x, 'proxy')?.state?.running !== undefined && cs(x, 'proxy')?.started === false);
    t.ok(waitingForStartup >= 0 && waitingForStartup < appCreated, `sidecar running, not started, no app: status #${waitingForStartup}; app created: #${appCreated}`);
    t.equal(cs(history[appCreated]!, 'proxy')?.started, true, 'when the app appeared the sidecar was started');
    t.ok(history.some((x) => cond(x, 'Initialized') === 'False'), 'not Initialized before');
    const events = w.events.filter((e) => e.involvedObject.uid === uid && e.reason === 'Started').map((e) => e.involvedObject.fieldPath);
    t.same(events, ['spec.initContainers{proxy}', 'spec.containers{app}'], 'Started events: sidecar, then app');

    // Kill the sidecar's process: it restarts, the app keeps its container.
    const appId = idOf(s, 'app');
    const proxyId = idOf(s, 'proxy');
    await runtime.execSync(proxyId, ['kill', '1'], 10);
    const r = await waitStatus(w, uid, 'sidecar restarted and ready', (x) => cs(x, 'proxy')?.restartCount === 1 && cs(x, 'proxy')?.ready === true, 40_000).catch((err: unknown) => {
      t.comment(JSON.stringify({ status: latest(w, uid), events: w.events.filter((e) => e.involvedObject.uid === uid).map((e) => `${e.reason} ${e.involvedObject.fieldPath ?? ''}: ${e.message}`) }));
      throw err;
    });
    t.match(cs(r, 'proxy'), { started: true, state: { running: {} }, lastState: { terminated: { exitCode: 3 } } });
    t.not(idOf(r, 'proxy'), proxyId, 'a new sidecar container');
    t.equal(idOf(r, 'app'), appId, 'the app container is the same');
    t.equal(cs(r, 'app')!.restartCount, 0);
    const since = w.statuses.get(uid)!.slice(w.statuses.get(uid)!.indexOf(s));
    t.ok(
      since.every((x) => x.phase === 'Running' && cs(x, 'app')?.state?.running !== undefined),
      'the pod stayed Running and the app kept running while the sidecar restarted',
    );
    t.ok(since.some((x) => cond(x, 'Ready') === 'False'), 'not Ready while the sidecar was down');
    t.equal(cond(r, 'Ready'), 'True', 'Ready again');

    // Delete: the app stops first (it takes ~2 s on SIGTERM), then the sidecar (at once on SIGTERM).
    t.equal(await w.workers.terminatePod(pod), true, 'terminated');
    const final = latest(w, uid)!;
    t.ok(finishedMs(final, 'app') <= finishedMs(final, 'proxy'), `app finished at ${finishedMs(final, 'app')}, sidecar at ${finishedMs(final, 'proxy')}`);
    t.match(cs(final, 'app')!.state!.terminated, { exitCode: 0 }, 'the app stopped on SIGTERM');
    t.match(cs(final, 'proxy')!.state!.terminated, { exitCode: 3 }, 'the sidecar stopped on SIGTERM');
    t.same(await runtime.listContainers({ labelSelector: { [podUidLabel]: uid } }), [], 'containers removed');
  });

  t.test(`${runtimeName}: Job-like pod with a sidecar: Succeeded when the app exits 0, the sidecar stopped and not restarted`, async (t) => {
    const pod = newPod('job', {
      restartPolicy: 'Never',
      initContainers: [{ name: 'logger', image: imageRefs.app, restartPolicy: 'Always', command: loop('', 0) }],
      containers: [{ name: 'work', image: imageRefs.app, command: ['sh', '-c', 'sleep 2; echo done'] }],
    });
    const uid = pod.metadata!.uid!;
    w.workers.updatePod(pod);
    const s = await waitStatus(w, uid, 'Succeeded', (x) => x.phase === 'Succeeded', 40_000);
    t.match(cs(s, 'work'), { restartCount: 0, state: { terminated: { exitCode: 0, reason: 'Completed' } } });
    t.match(cs(s, 'logger'), { restartCount: 0, ready: false, state: { terminated: {} } });
    t.ok(finishedMs(s, 'work') <= finishedMs(s, 'logger'), 'the sidecar was stopped after the app finished');
    const history = w.statuses.get(uid)!;
    t.ok(history.some((x) => x.phase === 'Running' && cs(x, 'work')?.state?.running !== undefined), 'Running while the app ran');
    t.same(s.conditions!.filter((c) => c.type === 'Ready').map((c) => c.reason), ['PodCompleted']);
    await waitFor('sandbox stopped', async () => ((await runtime.listPodSandbox({ labelSelector: { [podUidLabel]: uid }, state: 'ready' })).length === 0 ? true : undefined));
    t.ok(reasonsOf(w, uid).includes('Killing'), 'Killing event for the sidecar');
    // It stays done: no restart of the sidecar.
    await new Promise((r) => setTimeout(r, 1500));
    const after = latest(w, uid)!;
    t.equal(after.phase, 'Succeeded');
    t.equal(cs(after, 'logger')?.restartCount, 0, 'sidecar not restarted');
    t.equal((await runtime.listContainers({ labelSelector: { [podUidLabel]: uid }, state: 'running' })).length, 0, 'nothing runs');
    await w.workers.terminatePod(pod, 1);
  });
}

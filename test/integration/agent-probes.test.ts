/**
 * Probes and graceful termination of the agent's pod workers against a real
 * containerd (test/helpers/agent-pods.ts: a throw-away containerd in a
 * `knode-t-<random>` namespace, reference CNI bridge, the lab app image).
 *
 * Network probes connect to the pod IPs from inside the test's namespace
 * (test/helpers/netns-dialer.ts): the root namespace gets no route to them.
 * The tests flip the app's state with CRI ExecSync (remove /tmp/www/healthz,
 * touch a file) and wait, bounded, for the status and events to follow.
 */
import t from 'tap';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Container, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { podUidLabel } from '../../agent/pods/labels.js';
import type { ObjectLookup } from '../../agent/pods/types.js';
import type { CriRuntime } from '../../agent/runtime/cri/client.js';
import { errorMessage } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { imageRefs } from '../../lab/paths.js';
import { cond, cs, latest, podMaker, podWorld, startCriContainerd, waitStatus, type World } from '../helpers/agent-pods.js';
import { createTestEnv, waitFor } from '../helpers/containerd.js';
import { netnsDialer } from '../helpers/netns-dialer.js';
import { requireLabImages } from '../helpers/lab-images.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}
requireLabImages(['oci']);

const env = await createTestEnv(t, 'agent-probes');
const { rand, tmp } = env;
const network = `knode-t-${rand}`;
const cgroupParent = `/knode-t-${rand}`;
env.cleanupCgroup(cgroupParent);
env.cleanupCniCache(network);
const quiet = createLogger({ component: 'agent-probes-test', level: 'warn' });
const lookup: ObjectLookup = { getConfigMap: async () => undefined, getSecret: async () => undefined, listServices: async () => [] };
const newPod = podMaker(rand);

const cri = await startCriContainerd(t, env, { network, logger: quiet }).catch((err: unknown) => {
  t.fail(`setup failed: ${errorMessage(err)}`);
  return undefined;
});
function containerId(s: V1PodStatus, name: string): string {
  return (cs(s, name)?.containerID ?? '').replace('containerd://', '');
}

function eventsOf(w: World, pod: V1Pod, reason?: string): { reason: string; message: string; fieldPath: string | undefined }[] {
  return w.events
    .filter((e) => e.involvedObject.uid === pod.metadata!.uid && (reason === undefined || e.reason === reason))
    .map((e) => ({ reason: e.reason, message: e.message, fieldPath: e.involvedObject.fieldPath }));
}

const app = (extra: Partial<V1Container> = {}): V1Container => ({
  name: 'app',
  image: imageRefs.app,
  ports: [{ name: 'http', containerPort: 8080 }],
  ...extra,
});

function registerTests(cri: CriRuntime): void {
  const w = world();
  function world(): World {
    return podWorld(t, { runtime: cri, tmp, cgroupParent, lookup, logger: quiet }, { probeDialer: netnsDialer(t, env.netnsPath) });
  }
  const sh = async (id: string, cmd: string): Promise<void> => {
    const r = await cri.execSync(id, ['sh', '-c', cmd], 10);
    if (r.exitCode !== 0) throw new Error(`${cmd}: exit ${r.exitCode}: ${r.stderr.toString()}`);
  };

  t.test('exec liveness probe: failures restart the container (Unhealthy, Killing, restartCount, lastState)', async (t) => {
    const pod = newPod('live-exec', {
      terminationGracePeriodSeconds: 30,
      containers: [
        app({
          command: ['sh', '-c', 'touch /tmp/healthy; exec /bin/knode-app'],
          livenessProbe: { exec: { command: ['cat', '/tmp/healthy'] }, periodSeconds: 1, failureThreshold: 2, terminationGracePeriodSeconds: 1 },
        }),
      ],
    });
    const uid = pod.metadata!.uid!;
    w.workers.updatePod(pod);
    const running = await waitStatus(w, uid, 'Running and Ready', (s) => s.phase === 'Running' && cond(s, 'Ready') === 'True');
    const first = containerId(running, 'app');
    t.equal(cs(running, 'app')!.restartCount, 0);
    const removedAt = Date.now();
    await sh(first, 'rm /tmp/healthy');
    const s = await waitStatus(w, uid, 'restarted and running again', (s) => (cs(s, 'app')?.restartCount ?? 0) >= 1 && cs(s, 'app')?.state?.running !== undefined, 40_000);
    t.not(containerId(s, 'app'), first, 'a new container');
    t.match(cs(s, 'app')!.lastState, { terminated: { exitCode: 137, containerID: `containerd://${first}` } }, 'lastState: the killed one (httpd ignores TERM: KILL after the probe grace period)');
    const killedAfter = cs(s, 'app')!.lastState!.terminated!.finishedAt!.getTime() - removedAt;
    t.ok(killedAfter < 20_000, `killed ${killedAfter} ms after the file went: the probe's grace period (1 s, raised to the 2 s minimum), not the pod's 30 s`);
    const unhealthy = eventsOf(w, pod, 'Unhealthy');
    t.ok(unhealthy.length >= 2, `${unhealthy.length} Unhealthy events (failureThreshold 2)`);
    t.match(unhealthy[0], { message: /^Liveness probe failed: cat: can't open '\/tmp\/healthy': No such file or directory/, fieldPath: 'spec.containers{app}' });
    t.ok(w.events.some((e) => e.involvedObject.uid === uid && e.type === 'Warning' && e.reason === 'Unhealthy'), 'type Warning');
    t.ok(eventsOf(w, pod, 'Killing').some((e) => e.message === 'Container app failed liveness probe, will be restarted'), 'Killing with upstream message');
    // The new container creates /tmp/healthy again and keeps passing.
    const again = await waitStatus(w, uid, 'Ready again', (s) => cond(s, 'Ready') === 'True' && containerId(s, 'app') !== first);
    t.equal(cs(again, 'app')!.restartCount, 1);
    t.equal(await w.workers.terminatePod(pod, 1), true);
  });

  t.test('httpGet liveness probe on a named port: 404 restarts the container', async (t) => {
    const pod = newPod('live-http', {
      // initialDelaySeconds: httpd may not listen yet at the first tick.
      containers: [app({ livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 2, terminationGracePeriodSeconds: 1 } })],
    });
    const uid = pod.metadata!.uid!;
    w.workers.updatePod(pod);
    const running = await waitStatus(w, uid, 'Running', (s) => s.phase === 'Running' && cs(s, 'app')?.ready === true);
    const first = containerId(running, 'app');
    await sh(first, 'rm /tmp/www/healthz');
    const s = await waitStatus(w, uid, 'restarted', (s) => (cs(s, 'app')?.restartCount ?? 0) >= 1 && cs(s, 'app')?.state?.running !== undefined, 40_000);
    t.not(containerId(s, 'app'), first);
    const unhealthy = eventsOf(w, pod, 'Unhealthy').map((e) => e.message);
    t.same([...new Set(unhealthy)], ['Liveness probe failed: HTTP probe failed with statuscode: 404'], 'Unhealthy: statuscode 404');
    t.equal(await w.workers.terminatePod(pod, 1), true);
  });

  t.test('readiness (exec and httpGet) drives ready and the Ready/ContainersReady conditions both ways', async (t) => {
    const pod = newPod('ready', {
      containers: [
        app({ name: 'by-exec', readinessProbe: { exec: { command: ['test', '-f', '/tmp/ready'] }, periodSeconds: 1 } }),
        app({ name: 'by-http', env: [{ name: 'PORT', value: '8081' }], ports: [{ name: 'alt', containerPort: 8081 }], readinessProbe: { httpGet: { path: '/ready.txt', port: 'alt' }, periodSeconds: 1, failureThreshold: 1 } }),
      ],
    });
    const uid = pod.metadata!.uid!;
    w.workers.updatePod(pod);
    const s0 = await waitStatus(w, uid, 'both running, not ready', (s) => cs(s, 'by-exec')?.state?.running !== undefined && cs(s, 'by-http')?.state?.running !== undefined);
    t.equal(cond(s0, 'Ready'), 'False');
    t.equal(cs(s0, 'by-exec')!.ready, false, 'not ready before the first success');
    t.equal(cs(s0, 'by-exec')!.started, true, 'started: no startup probe');
    await sh(containerId(s0, 'by-exec'), 'touch /tmp/ready');
    const s1 = await waitStatus(w, uid, 'by-exec ready', (s) => cs(s, 'by-exec')?.ready === true);
    t.equal(cond(s1, 'ContainersReady'), 'False', 'by-http still unready');
    t.match(s1.conditions!.find((c) => c.type === 'Ready')?.message, 'containers with unready status: [by-http]');
    await sh(containerId(s0, 'by-http'), 'echo yes > /tmp/www/ready.txt');
    const s2 = await waitStatus(w, uid, 'pod Ready', (s) => cond(s, 'Ready') === 'True');
    t.equal(cond(s2, 'ContainersReady'), 'True');
    await sh(containerId(s0, 'by-exec'), 'rm /tmp/ready');
    const s3 = await waitStatus(w, uid, 'Ready False again', (s) => cond(s, 'Ready') === 'False');
    t.equal(cs(s3, 'by-exec')!.ready, false);
    t.equal(cs(s3, 'by-http')!.ready, true);
    t.equal(cs(s3, 'by-exec')!.restartCount, 0, 'readiness never restarts');
    t.ok(eventsOf(w, pod, 'Unhealthy').some((e) => e.message.startsWith('Readiness probe failed: ') && e.fieldPath === 'spec.containers{by-http}'), 'Unhealthy for the 404');
    t.equal(await w.workers.terminatePod(pod, 1), true);
  });

  t.test('a startup probe holds liveness back until it succeeds', async (t) => {
    const pod = newPod('startup', {
      containers: [
        app({
          startupProbe: { exec: { command: ['test', '-f', '/tmp/started'] }, periodSeconds: 1, failureThreshold: 60 },
          // Always fails: would restart the container at its first run.
          livenessProbe: { exec: { command: ['false'] }, periodSeconds: 1, failureThreshold: 1, terminationGracePeriodSeconds: 1 },
          readinessProbe: { exec: { command: ['true'] }, periodSeconds: 1 },
        }),
      ],
    });
    const uid = pod.metadata!.uid!;
    w.workers.updatePod(pod);
    const s0 = await waitStatus(w, uid, 'running', (s) => cs(s, 'app')?.state?.running !== undefined);
    await waitFor('three failed startup probes', async () => (eventsOf(w, pod, 'Unhealthy').filter((e) => e.message.startsWith('Startup probe failed')).length >= 3 ? true : undefined));
    const before = latest(w, uid)!;
    t.equal(cs(before, 'app')!.started, false, 'not started');
    t.equal(cs(before, 'app')!.ready, false, 'not ready while not started');
    t.equal(cs(before, 'app')!.restartCount, 0, 'liveness has not killed it');
    t.notOk(eventsOf(w, pod, 'Unhealthy').some((e) => e.message.startsWith('Liveness')), 'no liveness run before the start');
    t.notOk(w.statuses.get(uid)!.some((s) => cs(s, 'app')?.started === true), 'started never true so far');
    await sh(containerId(s0, 'app'), 'touch /tmp/started');
    await waitStatus(w, uid, 'started', (s) => cs(s, 'app')?.started === true);
    await waitStatus(w, uid, 'killed by liveness once started', (s) => (cs(s, 'app')?.restartCount ?? 0) >= 1, 40_000);
    const unhealthy = eventsOf(w, pod, 'Unhealthy').map((e) => e.message);
    const firstLiveness = unhealthy.findIndex((m) => m.startsWith('Liveness probe failed'));
    t.ok(firstLiveness > 0 && unhealthy.slice(0, firstLiveness).every((m) => m.startsWith('Startup probe failed')), 'liveness failures only after the startup failures');
    t.equal(await w.workers.terminatePod(pod, 1), true);
  });

  t.test('tcpSocket probes: an open port is ready, a closed one fails liveness', async (t) => {
    const ok = newPod('tcp-ok', { containers: [app({ readinessProbe: { tcpSocket: { port: 'http' }, periodSeconds: 1 } })] });
    const bad = newPod('tcp-bad', { containers: [app({ livenessProbe: { tcpSocket: { port: 9999 }, periodSeconds: 1, failureThreshold: 2, terminationGracePeriodSeconds: 1 } })] });
    w.workers.updatePod(ok);
    w.workers.updatePod(bad);
    await waitStatus(w, ok.metadata!.uid!, 'tcp-ok Ready', (s) => cond(s, 'Ready') === 'True');
    const s = await waitStatus(w, bad.metadata!.uid!, 'tcp-bad restarted', (s) => (cs(s, 'app')?.restartCount ?? 0) >= 1, 40_000);
    const ip = s.podIP!;
    t.ok(eventsOf(w, bad, 'Unhealthy').some((e) => e.message === `Liveness probe failed: dial tcp ${ip}:9999: connect: connection refused`), 'Unhealthy with the dial error');
    t.equal(await w.workers.terminatePod(ok, 1), true);
    t.equal(await w.workers.terminatePod(bad, 1), true);
  });

  t.test('grpc probe against a port with no server: Unhealthy, not ready', async (t) => {
    const pod = newPod('grpc', { containers: [app({ readinessProbe: { grpc: { port: 9000 }, periodSeconds: 1 } })] });
    const uid = pod.metadata!.uid!;
    w.workers.updatePod(pod);
    await waitFor('grpc Unhealthy', async () => (eventsOf(w, pod, 'Unhealthy').length > 0 ? true : undefined));
    const s = latest(w, uid)!;
    t.equal(eventsOf(w, pod, 'Unhealthy')[0]!.message, `Readiness probe failed: error: failed to connect service at "${s.podIP}:9000": dial tcp ${s.podIP}:9000: connect: connection refused`);
    t.equal(cs(s, 'app')!.ready, false);
    t.equal(cond(s, 'Ready'), 'False');
    t.equal(await w.workers.terminatePod(pod, 1), true);
  });

  t.test('an exec probe that outlives its timeoutSeconds fails with upstream\'s message', async (t) => {
    const pod = newPod('exec-timeout', { containers: [app({ readinessProbe: { exec: { command: ['sleep', '5'] }, timeoutSeconds: 1, periodSeconds: 1 } })] });
    w.workers.updatePod(pod);
    await waitFor('timed-out Unhealthy', async () => (eventsOf(w, pod, 'Unhealthy').length > 0 ? true : undefined), 30_000);
    t.equal(eventsOf(w, pod, 'Unhealthy')[0]!.message, 'Readiness probe failed: command "sleep 5" timed out');
    t.equal(cs(latest(w, pod.metadata!.uid!)!, 'app')!.ready, false);
    t.equal(await w.workers.terminatePod(pod, 1), true);
  });

  t.test('termination messages: the termination-log file, a custom path, FallbackToLogsOnError', async (t) => {
    const pod = newPod('tmsg', {
      restartPolicy: 'Never',
      containers: [
        { name: 'file', image: imageRefs.app, command: ['sh', '-c', 'printf goodbye > /dev/termination-log; exit 1'] },
        { name: 'custom', image: imageRefs.app, terminationMessagePath: '/tmp/why', command: ['sh', '-c', 'echo done > /tmp/why'] },
        { name: 'logs', image: imageRefs.app, terminationMessagePolicy: 'FallbackToLogsOnError', command: ['sh', '-c', 'echo starting; echo it broke >&2; exit 2'] },
        { name: 'quiet', image: imageRefs.app, command: ['sh', '-c', 'echo not a message; exit 3'] },
      ],
    });
    const uid = pod.metadata!.uid!;
    w.workers.updatePod(pod);
    const s = await waitStatus(w, uid, 'Failed', (s) => s.phase === 'Failed');
    t.match(cs(s, 'file')!.state!.terminated, { exitCode: 1, message: 'goodbye' }, '/dev/termination-log');
    t.match(cs(s, 'custom')!.state!.terminated, { exitCode: 0, message: 'done\n' }, 'terminationMessagePath');
    // stdout and stderr reach the log through two pipes: their relative order is not defined.
    const logs = cs(s, 'logs')!.state!.terminated!;
    t.equal(logs.exitCode, 2);
    t.same((logs.message ?? '').split('\n').sort(), ['', 'it broke', 'starting'], 'FallbackToLogsOnError: the log tail, stdout and stderr');
    t.equal(cs(s, 'quiet')!.state!.terminated!.message, undefined, 'policy File with an empty file: no message');
    t.equal(await w.workers.terminatePod(pod, 1), true);
  });

  t.test('lifecycle hooks: postStart exec runs; a failing postStart httpGet kills the container; a failing preStop httpGet is reported', async (t) => {
    const ok = newPod('hooks-ok', {
      containers: [app({ lifecycle: { postStart: { exec: { command: ['sh', '-c', 'echo started > /tmp/poststart'] } }, preStop: { httpGet: { path: '/missing', port: 'http' } } } })],
    });
    w.workers.updatePod(ok);
    const running = await waitStatus(w, ok.metadata!.uid!, 'hooks-ok Running', (s) => s.phase === 'Running' && cs(s, 'app')?.state?.running !== undefined);
    await sh(containerId(running, 'app'), 'test "$(cat /tmp/poststart)" = started');
    t.pass('postStart exec ran in the container');
    t.same(eventsOf(w, ok, 'FailedPostStartHook'), [], 'no FailedPostStartHook');
    t.equal(await w.workers.terminatePod(ok, 5), true);
    const preStop = eventsOf(w, ok, 'FailedPreStopHook').map((e) => e.message);
    t.equal(preStop.length, 1, 'one FailedPreStopHook event');
    t.match(preStop[0], /^PreStopHook failed: HTTP lifecycle hook \(\/missing\) for Container "app" in Pod "[^"]+" failed - error: HTTP probe failed with statuscode: 404$/, 'the GET reached httpd in the pod (404)');

    const bad = newPod('hooks-bad', {
      restartPolicy: 'Never',
      containers: [app({ lifecycle: { postStart: { httpGet: { path: '/nope', port: 8080 } } } })],
    });
    w.workers.updatePod(bad);
    const failed = await waitStatus(w, bad.metadata!.uid!, 'hooks-bad Failed', (s) => s.phase === 'Failed', 40_000);
    t.ok(cs(failed, 'app')?.state?.terminated !== undefined, 'the container was killed');
    t.same(eventsOf(w, bad, 'FailedPostStartHook').map((e) => e.message), ['PostStartHook failed'], 'FailedPostStartHook, without the hook\'s output');
    t.ok(eventsOf(w, bad, 'Killing').length >= 1, 'Killing event');
    t.equal(await w.workers.terminatePod(bad, 1), true);
  });

  t.test('graceful delete: preStop runs first, TERM then KILL at the end of the deletion grace period', async (t) => {
    const hooks = join(tmp, 'grace-hooks');
    const pod = newPod('grace', {
      terminationGracePeriodSeconds: 30,
      containers: [
        app({
          readinessProbe: { exec: { command: ['true'] }, periodSeconds: 1 },
          lifecycle: { preStop: { exec: { command: ['sh', '-c', 'touch /hooks/start; sleep 2; touch /hooks/end'] } } },
          volumeMounts: [{ name: 'hooks', mountPath: '/hooks' }],
        }),
        { name: 'polite', image: imageRefs.app, command: ['sh', '-c', "trap 'exit 0' TERM; while true; do sleep 1; done"] },
      ],
      volumes: [{ name: 'hooks', hostPath: { path: hooks, type: 'DirectoryOrCreate' } }],
    });
    const uid = pod.metadata!.uid!;
    w.workers.updatePod(pod);
    await waitStatus(w, uid, 'Ready', (s) => cond(s, 'Ready') === 'True');
    const deleting: V1Pod = { ...pod, metadata: { ...pod.metadata, deletionTimestamp: new Date(), deletionGracePeriodSeconds: 4 } };
    t.equal(await w.workers.terminatePod(deleting), true, 'terminated, everything removed');
    // When the hook ran: the files' mtimes (the kernel's clock, as the runtime's finishedAt).
    const hookStart = (await stat(join(hooks, 'start'))).mtimeMs;
    const hookEnd = (await stat(join(hooks, 'end'))).mtimeMs;
    const final = latest(w, uid)!;
    const appEnd = cs(final, 'app')!.state!.terminated!;
    const politeEnd = cs(final, 'polite')!.state!.terminated!;
    t.comment(`hook ${hookEnd - hookStart} ms; app stopped ${appEnd.finishedAt!.getTime() - hookStart} ms and polite ${politeEnd.finishedAt!.getTime() - hookStart} ms after the hook started`);
    t.ok(appEnd.finishedAt!.getTime() >= hookEnd, 'the app stopped no earlier than its preStop hook ended');
    t.equal(appEnd.exitCode, 137, 'httpd ignores TERM: KILLed');
    t.ok(appEnd.finishedAt!.getTime() - hookStart >= 3500, 'not before the 4 s deletion grace period (counted from the hook start) ran out');
    t.ok(appEnd.finishedAt!.getTime() - hookStart < 25_000, 'long before the spec grace period of 30 s: the deletion grace period wins');
    t.equal(politeEnd.exitCode, 0, 'the container that handles TERM exits by itself');
    t.ok(politeEnd.finishedAt!.getTime() < appEnd.finishedAt!.getTime(), 'and before the KILL');
    t.same(await cri.listPodSandbox({ labelSelector: { [podUidLabel]: uid } }), [], 'sandbox removed');
    t.same(await cri.listContainers({ labelSelector: { [podUidLabel]: uid } }), [], 'containers removed');
    t.ok(eventsOf(w, pod, 'Killing').length >= 2, 'Killing events');
  });
}

if (cri !== undefined) registerTests(cri);

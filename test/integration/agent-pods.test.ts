/**
 * The agent's pod workers against real runtimes, one suite run for each:
 * containerd (CRI v1) and dockerd (the agent's Docker backend). Both daemons
 * run in one throw-away `knode-t-<random>` namespace with the reference CNI
 * bridge + host-local (bridge knode-tbr1, 10.251.0.0/24, only in that
 * namespace; one conflist and one IPAM store, which containerd's CRI and the
 * Docker backend both use) and the lab images imported. The suites run one
 * after the other. Pods are fed to the workers as V1Pod objects; statuses and
 * events are collected from the sink and recorder ports.
 *
 * Teardown: worker loops stop first, then test/helpers/containerd.ts removes
 * processes, mounts, the pods' cgroup parent, the CNI result cache, the
 * namespace and the temp dir.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1ConfigMap, V1Pod, V1Secret } from '@kubernetes/client-node';
import { podUidLabel } from '../../agent/pods/labels.js';
import type { ObjectLookup } from '../../agent/pods/types.js';
import { systemMounter } from '../../agent/pods/volumes.js';
import type { PodWorkerOptions } from '../../agent/pods/worker.js';
import { createDockerRuntime } from '../../agent/runtime/docker/client.js';
import type { Runtime } from '../../agent/runtime/types.js';
import { errorMessage } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { imageRefs } from '../../lab/paths.js';
import { pushImages } from '../../lab/images/push.js';
import { startRegistry, stopRegistry } from '../../lab/images/registry.js';
import { cond, cs, latest, podMaker, podWorld, reasonsOf, startCriContainerd, waitStatus, writeTestConflist, type World } from '../helpers/agent-pods.js';
import { createTestEnv, waitFor } from '../helpers/containerd.js';
import { startDockerd } from '../helpers/dockerd.js';
import { requireLabImages } from '../helpers/lab-images.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}
requireLabImages(['oci', 'docker']);

/** The runtimes the suite runs against; the name is also the containerID prefix. */
type RuntimeName = 'containerd' | 'docker';

const env = await createTestEnv(t, 'agent-pods');
const { rand, tmp } = env;
const network = `knode-t-${rand}`;
const cgroupParent = `/knode-t-${rand}`;
env.cleanupCgroup(cgroupParent);
env.cleanupCniCache(network);
const quiet = createLogger({ component: 'agent-pods-test', level: 'warn' });
const registryRunDir = join(tmp, 'registry-run');
const registryHost = '127.0.0.1:5001';
const registryAuth = { user: 'knode', password: `pw-${rand}` };
env.onTeardown(() => stopRegistry('auth', { runDir: registryRunDir }).catch(() => false));

async function setUp(): Promise<Runtime> {
  return startCriContainerd(t, env, { network, logger: quiet, plainHttpRegistries: [registryHost] });
}

async function setUpDocker(): Promise<Runtime> {
  // The same conflist and IPAM store as containerd's (written again: the order of set-ups does not matter).
  const cniConfDir = await writeTestConflist(env, network);
  const dockerd = await startDockerd(env, { cgroupParent });
  await dockerd.loadImages(['pause', 'app']);
  const docker = createDockerRuntime({
    endpoint: dockerd.endpoint,
    requestTimeoutMs: 30_000,
    // The agent runs in the node's namespace; here the plugins are sent into the test's.
    network: { confDir: cniConfDir, binDir: '/usr/lib/cni', hostNetns: env.netnsPath },
    stateDir: join(tmp, 'docker-state'),
    sandboxImage: imageRefs.pause,
    logger: quiet,
  });
  t.teardown(() => docker.close());
  await docker.waitReady({ timeoutMs: 20_000 });
  return docker;
}

const setUps: Record<RuntimeName, () => Promise<Runtime>> = { containerd: setUp, docker: setUpDocker };
const runtimes: [RuntimeName, Runtime][] = [];
for (const name of ['containerd', 'docker'] as const) {
  const rt = await setUps[name]().catch((err: unknown) => {
    t.fail(`${name} setup failed: ${errorMessage(err)}`);
    return undefined;
  });
  if (rt !== undefined) runtimes.push([name, rt]);
}

/** A world of collected statuses and events for one PodWorkers instance. */
const configMaps = new Map<string, V1ConfigMap>([['default/web-config', { metadata: { name: 'web-config', namespace: 'default' }, data: { GREETING: 'hello from a configMap' } }]]);
const secrets = new Map<string, V1Secret>();
const lookup: ObjectLookup = {
  getConfigMap: async (ns, name) => configMaps.get(`${ns}/${name}`),
  getSecret: async (ns, name) => secrets.get(`${ns}/${name}`),
  listServices: async () => [{ metadata: { name: 'kubernetes', namespace: 'default' }, spec: { clusterIP: '10.96.0.1', ports: [{ name: 'https', port: 443 }] } }],
};

function world(runtime: Runtime, runtimeName: RuntimeName, extra: Partial<PodWorkerOptions> = {}): World {
  return podWorld(t, { runtime, runtimeName, tmp, cgroupParent, lookup, logger: quiet }, extra);
}

const newPod = podMaker(rand);

function webPod(): V1Pod {
  return newPod('web', {
    initContainers: [{ name: 'init', image: imageRefs.app, command: ['sh', '-c', 'echo written-by-init > /site/init.txt'], volumeMounts: [{ name: 'site', mountPath: '/site' }] }],
    containers: [
      {
        name: 'app',
        image: imageRefs.app,
        env: [
          { name: 'WWW_ROOT', value: '/site' },
          { name: 'GREETING', valueFrom: { configMapKeyRef: { name: 'web-config', key: 'GREETING' } } },
          { name: 'MY_POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
          { name: 'MY_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
          { name: 'ECHO', value: '$(GREETING)!' },
        ],
        ports: [{ containerPort: 8080 }],
        volumeMounts: [{ name: 'site', mountPath: '/site' }],
        resources: { requests: { cpu: '100m', memory: '16Mi' }, limits: { memory: '64Mi' } },
      },
    ],
    volumes: [{ name: 'site', emptyDir: {} }],
  });
}

for (const [name, rt] of runtimes) registerTests(rt, name);

function registerTests(cri: Runtime, runtimeName: RuntimeName): void {
  const w = world(cri, runtimeName);
  const idPrefix = `${runtimeName}://`;
  const web = webPod();
  const webUid = web.metadata!.uid!;

  t.test(`${runtimeName}: init container + app: Running, pod IP, Ready, serves HTTP, env from a configMap`, async (t) => {
    const t0 = Date.now();
    w.workers.updatePod(web);
    const s = await waitStatus(w, webUid, 'web Running and Ready', (s) => s.phase === 'Running' && cond(s, 'Ready') === 'True');
    t.comment(`web: Running and Ready after ${Date.now() - t0} ms`);
    t.match(s.podIP, /^10\.251\.0\.\d+$/, `pod IP ${s.podIP}`);
    t.same(s.podIPs, [{ ip: s.podIP }]);
    t.equal(s.hostIP, '10.251.0.1');
    t.same(s.conditions!.map((c) => `${c.type}=${c.status}`), ['PodScheduled=True', 'PodReadyToStartContainers=True', 'Initialized=True', 'ContainersReady=True', 'Ready=True']);
    const init = s.initContainerStatuses![0]!;
    t.match(init, { name: 'init', ready: true, restartCount: 0, state: { terminated: { exitCode: 0, reason: 'Completed' } } });
    const app = cs(s, 'app')!;
    t.match(app, { name: 'app', ready: true, started: true, restartCount: 0, image: imageRefs.app });
    t.match(app.containerID, new RegExp(`^${idPrefix}[0-9a-f]{64}$`));
    t.match(app.imageID, /sha256:[0-9a-f]{64}/);
    t.ok(app.state?.running?.startedAt instanceof Date, 'running since');
    t.ok(s.startTime instanceof Date);
    // History: Pending (PodInitializing) before Running.
    const phases = w.statuses.get(webUid)!.map((x) => x.phase);
    t.equal(phases[0], 'Pending', `phases: ${phases.join(' ')}`);
    t.ok(w.statuses.get(webUid)!.some((x) => cs(x, 'app')?.state?.waiting?.reason === 'PodInitializing'), 'app waited with PodInitializing');

    const page = await waitFor('the app on the pod IP', async () => {
      const r = await env.curl(`http://${s.podIP}:8080/init.txt`);
      return r.code === 0 && r.stdout !== '' ? r.stdout : undefined;
    });
    t.equal(page, 'written-by-init\n', 'the init container wrote into the emptyDir the app serves');
    t.match((await env.curl(`http://${s.podIP}:8080/`)).stdout, `Hello from pod ${web.metadata!.name}`, 'hostname = pod name');

    const id = app.containerID!.replace(idPrefix, '');
    const out = (await cri.execSync(id, ['env'], 10)).stdout.toString();
    t.match(out, /^GREETING=hello from a configMap$/m, 'configMapKeyRef');
    t.match(out, new RegExp(`^MY_POD=${web.metadata!.name}$`, 'm'), 'fieldRef metadata.name');
    t.match(out, new RegExp(`^MY_IP=${s.podIP!.replaceAll('.', '\\.')}$`, 'm'), 'fieldRef status.podIP');
    t.match(out, /^ECHO=hello from a configMap!$/m, '$(VAR) expansion');
    t.match(out, /^KUBERNETES_SERVICE_HOST=10\.96\.0\.1$/m, 'service env vars');
    const hosts = (await cri.execSync(id, ['cat', '/etc/hosts'], 10)).stdout.toString();
    t.match(hosts, new RegExp(`^# Kubernetes-managed hosts file\\.\n[^]*\n${s.podIP!.replaceAll('.', '\\.')}\t${web.metadata!.name}\n$`), 'kubelet-managed /etc/hosts');
    const resolv = (await cri.execSync(id, ['cat', '/etc/resolv.conf'], 10)).stdout.toString();
    t.match(resolv, /search default\.svc\.cluster\.local svc\.cluster\.local cluster\.local/);
    t.match(resolv, /options ndots:5/);

    const reasons = reasonsOf(w, webUid);
    t.same(reasons.filter((r) => r === 'Created' || r === 'Started'), ['Created', 'Started', 'Created', 'Started'], `events: ${reasons.join(' ')}`);
    t.ok(reasons.includes('Pulled'), 'Pulled (already present)');
    const started = w.events.find((e) => e.reason === 'Started' && e.involvedObject.fieldPath === 'spec.containers{app}');
    t.equal(started?.message, 'Started container app');
    t.ok(existsSync(join(tmp, 'pod-logs', `default_${web.metadata!.name}_${webUid}`, 'app', '0.log')), 'log under <root>/<ns>_<name>_<uid>/app/0.log');
  });

  t.test(`${runtimeName}: crash loop with restartPolicy Always: restarts with doubling back-off, CrashLoopBackOff`, async (t) => {
    const pod = newPod('crash', { containers: [{ name: 'crasher', image: imageRefs.app, command: ['sh', '-c', 'exit 1'] }] });
    const uid = pod.metadata!.uid!;
    w.workers.updatePod(pod);
    const s = await waitStatus(w, uid, 'restartCount 4 and backing off', (s) => (cs(s, 'crasher')?.restartCount ?? 0) >= 4 && cs(s, 'crasher')?.state?.waiting !== undefined, 40_000);
    const history = w.statuses.get(uid)!;
    const messages = [...new Set(history.map((x) => cs(x, 'crasher')?.state?.waiting).filter((x) => x?.reason === 'CrashLoopBackOff').map((x) => x!.message))];
    t.same(messages.slice(0, 3), [1, 2, 4].map((n) => `back-off ${n}s restarting failed container=crasher pod=${pod.metadata!.name}_default(${uid})`), 'upstream message, doubling delays');
    // Start times of every instance (current state or lastState carries them). Upper bounds leave
    // room for sync latency and create/start time on a busy machine.
    const starts = new Map<string, number>();
    for (const x of history) {
      const c = cs(x, 'crasher');
      for (const term of [c?.state?.terminated, c?.lastState?.terminated]) {
        if (term?.containerID !== undefined && term.startedAt !== undefined) starts.set(term.containerID, term.startedAt.getTime());
      }
      if (c?.state?.running?.startedAt !== undefined && c.containerID !== undefined) starts.set(c.containerID, c.state.running.startedAt.getTime());
    }
    const times = [...starts.values()].sort((a, b) => a - b);
    const gaps = times.slice(1).map((v, i) => v - times[i]!);
    t.comment(`instances started at +${times.map((v) => v - times[0]!).join(', +')} ms; gaps ${gaps.join(', ')} ms`);
    t.ok(times.length >= 4, `${times.length} instances seen`);
    t.ok(gaps[1]! >= 1000 && gaps[1]! < 2500, `second restart after the 1 s back-off (${gaps[1]} ms)`);
    t.ok(gaps[2]! >= 2000 && gaps[2]! < 3500, `third after 2 s (${gaps[2]} ms)`);
    t.ok(gaps[3] === undefined || (gaps[3] >= 4000 && gaps[3] < 5500), `fourth after 4 s (${gaps[3]} ms)`);
    t.equal(s.phase, 'Running', 'Always: Running while restarting');
    const looping = history.filter((x) => cs(x, 'crasher')?.state?.waiting?.reason === 'CrashLoopBackOff');
    t.ok(looping.length > 0 && looping.every((x) => x.phase === 'Running' && cond(x, 'Ready') === 'False'), 'in CrashLoopBackOff: Running, not Ready');
    const c = cs(s, 'crasher')!;
    t.match(c.lastState, { terminated: { exitCode: 1, reason: 'Error' } });
    t.ok(reasonsOf(w, uid).includes('BackOff'), 'BackOff event');
    const live = await cri.listContainers({ labelSelector: { [podUidLabel]: uid } });
    t.ok(live.length <= 3, `old instances garbage-collected (${live.length} left)`);
    await w.workers.terminatePod(pod, 1);
  });

  t.test(`${runtimeName}: restartPolicy Never: Failed; OnFailure + exit 0: Succeeded`, async (t) => {
    const never = newPod('never', { restartPolicy: 'Never', containers: [{ name: 'once', image: imageRefs.app, command: ['sh', '-c', 'exit 3'] }] });
    const ok = newPod('onfailure', { restartPolicy: 'OnFailure', containers: [{ name: 'once', image: imageRefs.app, command: ['true'] }] });
    w.workers.updatePod(never);
    w.workers.updatePod(ok);
    const f = await waitStatus(w, never.metadata!.uid!, 'Failed', (s) => s.phase === 'Failed');
    t.match(cs(f, 'once'), { restartCount: 0, state: { terminated: { exitCode: 3, reason: 'Error' } } });
    const su = await waitStatus(w, ok.metadata!.uid!, 'Succeeded', (s) => s.phase === 'Succeeded');
    t.same(su.conditions!.filter((c) => c.type === 'Ready').map((c) => c.reason), ['PodCompleted']);
    // Done pods get their sandbox stopped (IP released), and stay done.
    await waitFor('sandbox stopped', async () => ((await cri.listPodSandbox({ labelSelector: { [podUidLabel]: never.metadata!.uid! }, state: 'ready' })).length === 0 ? true : undefined));
    await new Promise((r) => setTimeout(r, 1500));
    t.equal(latest(w, never.metadata!.uid!)?.phase, 'Failed');
    t.equal(cs(latest(w, never.metadata!.uid!)!, 'once')?.restartCount, 0, 'never restarted');
    await w.workers.terminatePod(never, 1);
    await w.workers.terminatePod(ok, 1);
  });

  t.test(`${runtimeName}: bad specs: InvalidImageName and CreateContainerConfigError, while the other pod runs`, async (t) => {
    const bad = newPod('badimage', { containers: [{ name: 'app', image: 'knode.local/App:1.0!' }] });
    const missing = `missing-${runtimeName}`; // one per suite: the suites share the lookup
    const noCm = newPod('nocm', { containers: [{ name: 'app', image: imageRefs.app, env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: missing, key: 'k' } } }] }] });
    w.workers.updatePod(bad);
    w.workers.updatePod(noCm);
    const s = await waitStatus(w, bad.metadata!.uid!, 'InvalidImageName', (s) => cs(s, 'app')?.state?.waiting?.reason === 'InvalidImageName');
    t.equal(s.phase, 'Pending');
    t.equal(cs(s, 'app')!.state!.waiting!.message, 'Failed to apply default image tag "knode.local/App:1.0!": couldn\'t parse image name "knode.local/App:1.0!": invalid reference format');
    const ev = w.events.find((e) => e.involvedObject.uid === bad.metadata!.uid && e.reason === 'InspectFailed');
    t.match(ev, { type: 'Warning', involvedObject: { kind: 'Pod', fieldPath: 'spec.containers{app}' } }, 'InspectFailed event');
    const n = await waitStatus(w, noCm.metadata!.uid!, 'CreateContainerConfigError', (s) => cs(s, 'app')?.state?.waiting?.reason === 'CreateContainerConfigError');
    t.equal(cs(n, 'app')!.state!.waiting!.message, `configmap "${missing}" not found`);
    t.ok(w.events.some((e) => e.involvedObject.uid === noCm.metadata!.uid && e.reason === 'Failed' && e.message === `Error: configmap "${missing}" not found`), 'Failed event');
    // The configMap appears: the next sync starts the container.
    configMaps.set(`default/${missing}`, { metadata: { name: missing, namespace: 'default' }, data: { k: 'v' } });
    await waitStatus(w, noCm.metadata!.uid!, 'running once the configMap exists', (s) => s.phase === 'Running');
    const webStatus = latest(w, webUid)!;
    t.equal(webStatus.phase, 'Running', 'the web pod is unaffected');
    t.equal((await env.curl(`http://${webStatus.podIP}:8080/healthz`)).stdout, 'ok\n', 'and still serves');
    await w.workers.terminatePod(bad, 1);
    await w.workers.terminatePod(noCm, 1);
  });

  t.test(`${runtimeName}: image pulls from a registry with basic auth: imagePullSecrets, ErrImagePull, ImagePullBackOff`, async (t) => {
    await startRegistry({ name: 'auth', listen: registryHost, storageDir: join(tmp, 'registry-storage'), runDir: registryRunDir, netnsPath: env.netnsPath, auth: registryAuth, logger: quiet });
    await pushImages({ target: { address: registryHost, auth: registryAuth }, images: ['app'], netnsPath: env.netnsPath, logger: quiet });
    const image = `${registryHost}/knode/app:1.0`;
    const denied = newPod('nosecret', { containers: [{ name: 'app', image }] });
    w.workers.updatePod(denied);
    const d = await waitStatus(w, denied.metadata!.uid!, 'ImagePullBackOff', (s) => cs(s, 'app')?.state?.waiting?.reason === 'ImagePullBackOff');
    t.ok(w.statuses.get(denied.metadata!.uid!)!.some((x) => cs(x, 'app')?.state?.waiting?.reason === 'ErrImagePull'), 'ErrImagePull first');
    t.equal(cs(d, 'app')!.state!.waiting!.message, `Back-off pulling image "${image}"`);
    const failed = w.events.find((e) => e.involvedObject.uid === denied.metadata!.uid && e.reason === 'Failed');
    t.match(failed?.message, `Failed to pull image "${image}": `, 'Failed event');
    await w.workers.terminatePod(denied, 1);

    const dockerConfig = { auths: { [registryHost]: { auth: Buffer.from(`${registryAuth.user}:${registryAuth.password}`).toString('base64') } } };
    secrets.set('default/regcred', { metadata: { name: 'regcred', namespace: 'default' }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': Buffer.from(JSON.stringify(dockerConfig)).toString('base64') } });
    const pod = newPod('withsecret', { imagePullSecrets: [{ name: 'regcred' }], containers: [{ name: 'app', image }] });
    w.workers.updatePod(pod);
    const s = await waitStatus(w, pod.metadata!.uid!, 'Running with the pulled image', (s) => s.phase === 'Running').catch((err: unknown) => {
      t.comment(JSON.stringify(w.events.filter((e) => e.involvedObject.uid === pod.metadata!.uid).map((e) => `${e.reason}: ${e.message}`)));
      throw err;
    });
    t.equal(cs(s, 'app')!.image, image);
    const events = w.events.filter((e) => e.involvedObject.uid === pod.metadata!.uid);
    t.match(events.find((e) => e.reason === 'Pulling')?.message, `Pulling image "${image}"`);
    t.match(events.find((e) => e.reason === 'Pulled')?.message, new RegExp(`^Successfully pulled image "${image.replaceAll('.', '\\.')}" in [\\d.]+s`));
    await w.workers.terminatePod(pod, 1);
  });

  t.test(`${runtimeName}: a restarted agent adopts running pods: same containers, no restart`, async (t) => {
    const before = latest(w, webUid)!;
    const ids = [cs(before, 'app')!.containerID, cs(before, 'init')!.containerID];
    const sandboxes = await cri.listPodSandbox({ labelSelector: { [podUidLabel]: webUid } });
    await w.workers.stop(); // the old agent goes away; pods keep running
    const w2 = world(cri, runtimeName);
    w2.workers.updatePod(web);
    const s = await waitStatus(w2, webUid, 'adopted web Running and Ready', (s) => s.phase === 'Running' && cond(s, 'Ready') === 'True');
    t.same([cs(s, 'app')!.containerID, cs(s, 'init')!.containerID], ids, 'same container ids');
    t.equal(cs(s, 'app')!.restartCount, 0, 'restartCount unchanged');
    t.equal(s.podIP, before.podIP, 'same pod IP');
    t.same((await cri.listPodSandbox({ labelSelector: { [podUidLabel]: webUid } })).map((x) => x.id), sandboxes.map((x) => x.id), 'same sandbox');
    await new Promise((r) => setTimeout(r, 1500));
    t.same(reasonsOf(w2, webUid).filter((r) => r === 'Created' || r === 'Started' || r === 'Killing'), [], 'nothing created, started or killed');
    t.equal(cs(latest(w2, webUid)!, 'app')!.containerID, ids[0]);

    // terminatePod with a preStop hook, on the new agent.
    const hooks = join(tmp, `hooks-${runtimeName}`);
    const pod = newPod('stopper', {
      terminationGracePeriodSeconds: 5,
      containers: [
        {
          name: 'app',
          image: imageRefs.app,
          lifecycle: { preStop: { exec: { command: ['sh', '-c', 'echo prestop-ran > /hooks/prestop; sleep 1'] } } },
          volumeMounts: [
            { name: 'hooks', mountPath: '/hooks' },
            { name: 'scratch', mountPath: '/scratch' },
            { name: 'mem', mountPath: '/mem' },
            { name: 'cfg', mountPath: '/cfg', readOnly: true },
            { name: 'info', mountPath: '/info' },
          ],
        },
      ],
      volumes: [
        { name: 'hooks', hostPath: { path: hooks, type: 'DirectoryOrCreate' } },
        { name: 'scratch', emptyDir: {} },
        { name: 'mem', emptyDir: { medium: 'Memory', sizeLimit: '8Mi' } },
        { name: 'cfg', configMap: { name: 'web-config', items: [{ key: 'GREETING', path: 'greeting.txt' }] } },
        { name: 'info', downwardAPI: { items: [{ path: 'name', fieldRef: { fieldPath: 'metadata.name' } }] } },
      ],
    });
    const uid = pod.metadata!.uid!;
    w2.workers.updatePod(pod);
    await waitStatus(w2, uid, 'stopper Running', (s) => s.phase === 'Running');
    const podDir = join(tmp, 'kubelet', 'pods', uid);
    t.ok(existsSync(join(podDir, 'volumes', 'kubernetes.io~empty-dir', 'scratch')), 'emptyDir created');
    const appId = cs(latest(w2, uid)!, 'app')!.containerID!.replace(idPrefix, '');
    const sh = async (cmd: string): Promise<string> => (await cri.execSync(appId, ['sh', '-c', cmd], 10)).stdout.toString();
    t.match(await sh('grep " /mem " /proc/mounts'), /^tmpfs \/mem tmpfs .*size=8192k/, 'medium Memory: a tmpfs with the size limit');
    t.equal(await sh('cat /cfg/greeting.txt'), 'hello from a configMap', 'configMap volume with items');
    t.equal(await sh('readlink /cfg/greeting.txt; readlink /cfg/..data | cut -c1-2'), '..data/greeting.txt\n..\n', 'the ..data layout');
    t.equal(await sh('cat /info/name'), pod.metadata!.name, 'downwardAPI volume');
    t.equal(await sh('touch /cfg/x 2>/dev/null; echo $?'), '1\n', 'read-only mount');
    const memDir = join(podDir, 'volumes', 'kubernetes.io~empty-dir', 'mem');
    const t0 = Date.now();
    t.equal(await w2.workers.terminatePod(pod), true, 'terminatePod: everything removed');
    const took = Date.now() - t0;
    t.equal(await readFile(join(hooks, 'prestop'), 'utf8'), 'prestop-ran\n', 'preStop hook ran (wrote into the hostPath)');
    // httpd is PID 1 of its own PID namespace (upstream's default without shareProcessNamespace) and
    // has no SIGTERM handler, so only the KILL at the end of the grace period stops it.
    t.ok(took >= 4500 && took < 8000, `termination took ${took} ms: preStop (1 s) counted against the 5 s grace, then KILL`);
    t.same(await cri.listPodSandbox({ labelSelector: { [podUidLabel]: uid } }), [], 'sandbox removed');
    t.same(await cri.listContainers({ labelSelector: { [podUidLabel]: uid } }), [], 'containers removed');
    t.notOk(existsSync(podDir), 'pod volume dirs removed');
    t.notOk(await systemMounter.isMountPoint(memDir), 'tmpfs unmounted');
    const reasons = reasonsOf(w2, uid);
    t.ok(reasons.includes('Killing'), `Killing event (${reasons.join(' ')})`);
    const final = latest(w2, uid)!;
    t.match(cs(final, 'app'), { state: { terminated: { exitCode: 137 } } }, 'final status: killed at the end of the grace period');
    t.equal(final.phase, 'Failed', 'a terminated pod with a killed container: Failed');

    await w2.workers.terminatePod(web, 2);
    t.same(await cri.listPodSandbox({ labelSelector: { [podUidLabel]: webUid } }), []);
    t.same(await w2.workers.removeOrphans(new Set()), [], 'nothing left over');
  });
}

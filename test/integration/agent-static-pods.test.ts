/**
 * Static pods for real (root): the agent's static-pod part (agent/pods/static)
 * wired as agent/main.ts wires it — the manifest dir as a pod source of the pod
 * workers, the apiserver pod informer handing mirror pods to it, the statuses
 * of static pods written to their mirror pods — against the lab apiserver
 * in-process (127.0.0.1:0) and a throw-away containerd in a `knode-t-<random>`
 * namespace with the reference CNI bridge (10.252.0.0/24, only in that
 * namespace) and the lab images imported.
 *
 * Checks: a manifest's pod runs and its mirror pod appears (name, annotations,
 * Node owner, status Running from the static pod); deleting the mirror pod
 * recreates it without touching the container; a malformed manifest is an
 * event on the Node and hurts nobody; a restarted agent adopts the pod and
 * keeps the mirror pod (deterministic UID); removing the manifest stops the pod and
 * removes its mirror pod.
 */
import t from 'tap';
import { mkdir, unlink, writeFile } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { createEventRecorder } from '../../agent/kube/events.js';
import { apiErrorSummary, createKubeClient, isNotFound, mergePatch } from '../../agent/kube/client.js';
import { startInformer } from '../../agent/kube/informer.js';
import { podListWatch } from '../../agent/kube/resources.js';
import { podUidLabel } from '../../agent/pods/labels.js';
import { configHashAnnotation, configMirrorAnnotation, configSourceAnnotation, startStaticPods } from '../../agent/pods/static/index.js';
import type { ObjectLookup, PodStatusSink } from '../../agent/pods/types.js';
import { systemMounter } from '../../agent/pods/volumes.js';
import { PodWorkers } from '../../agent/pods/workers.js';
import { createCriRuntime } from '../../agent/runtime/cri/client.js';
import { createLogger } from '../../lib/log.js';
import { startApiServer } from '../../lab/apiserver/server.js';
import { imageRefs } from '../../lab/paths.js';
import { createTestEnv, startContainerd, waitFor } from '../helpers/containerd.js';
import { requireLabImages } from '../helpers/lab-images.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}
requireLabImages(['oci']);

const env = await createTestEnv(t, 'agent-static');
const { rand, tmp } = env;
const nodeName = `knode-t-${rand}`;
const network = `knode-t-${rand}`;
const cgroupParent = `/knode-t-${rand}`;
env.cleanupCgroup(cgroupParent);
env.cleanupCniCache(network);
const log = createLogger({ component: 'agent-static-test', level: process.env.KNODE_TEST_DEBUG ? 'debug' : 'warn' });
const manifests = join(tmp, 'manifests');
await mkdir(manifests, { recursive: true });

const server = await startApiServer({ dataDir: join(tmp, 'apiserver'), listen: ['127.0.0.1:0'], nodes: [nodeName] });
const admin = createKubeClient(server.adminKubeconfig);
const kube = createKubeClient(await server.nodeKubeconfig(nodeName));
const node = await kube.core.createNode({ body: { metadata: { name: nodeName } } });

const cniConfDir = join(tmp, 'cni', 'net.d');
await mkdir(cniConfDir, { recursive: true });
await writeFile(
  join(cniConfDir, '10-knode-test.conflist'),
  JSON.stringify({
    cniVersion: '1.0.0',
    name: network,
    plugins: [{ type: 'bridge', bridge: 'knode-tbr2', isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: '10.252.0.0/24' }]], dataDir: join(tmp, 'cni', 'ipam') } }],
  }),
);
const containerd = await startContainerd(env, { cri: { cniConfDir } });
await containerd.importImages(['pause', 'app']);
const cri = createCriRuntime({ endpoint: `unix://${containerd.socket}`, requestTimeoutMs: 30_000, logger: log });
await cri.waitReady({ timeoutMs: 20_000 });
await waitFor('NetworkReady', async () => ((await cri.status()).conditions.some((c) => c.type === 'NetworkReady' && c.status) ? true : undefined));

const recorder = createEventRecorder({ core: kube.core, component: 'kubelet', host: nodeName, logger: log });
const apiSink: PodStatusSink = {
  async setStatus(pod, status) {
    try {
      await kube.core.patchNamespacedPodStatus({ name: pod.metadata!.name!, namespace: pod.metadata!.namespace!, body: { metadata: { uid: pod.metadata!.uid }, status } }, mergePatch);
    } catch (err) {
      if (!isNotFound(err)) throw new Error(`status of ${pod.metadata!.name}: ${apiErrorSummary(err)}`);
    }
  },
};
const lookup: ObjectLookup = { getConfigMap: async () => undefined, getSecret: async () => undefined, listServices: async () => [] };
/** Pods of the apiserver the workers would have run (mirror pods must never be among them). */
const apiPodsRun: string[] = [];

/** The pod part of an agent, wired as agent/main.ts wires it; stop() is the agent's shutdown (pods keep running). */
function startAgentPods(): { stop(): Promise<void> } {
  const controller = new AbortController();
  const staticPods = startStaticPods({
    manifestDir: manifests,
    nodeName,
    core: kube.core,
    statusSink: apiSink,
    recorder,
    nodeUid: () => node.metadata?.uid,
    signal: controller.signal,
    logger: log,
    rescanMs: 600_000, // fs.watch must notice the changes
    resyncMs: 1000,
  });
  const workers = new PodWorkers({
    runtime: cri,
    rootDir: join(tmp, 'kubelet'),
    podLogsRoot: join(tmp, 'pod-logs'),
    cgroupParent,
    hostIPs: ['10.252.0.1'],
    nodeAllocatable: { cpu: '2', memory: '4Gi' },
    memoryCapacity: totalmem(),
    lookup,
    recorder,
    statusSink: staticPods.statusSink,
    resyncMs: 500,
    mounter: systemMounter,
    logger: log,
  });
  const informer = startInformer<V1Pod>({
    listWatch: podListWatch(kube),
    fieldSelector: `spec.nodeName=${nodeName}`,
    signal: controller.signal,
    logger: log,
    onAdd: (pod) => void (staticPods.observeApiPod(pod, false) || apiPodsRun.push(pod.metadata!.name!)),
    onUpdate: (_old, pod) => void (staticPods.observeApiPod(pod, false) || apiPodsRun.push(pod.metadata!.name!)),
    onDelete: (pod) => void staticPods.observeApiPod(pod, true),
  });
  void informer.synced.then(() => staticPods.apiSynced());
  const detach = workers.attach(staticPods.source);
  return {
    async stop() {
      detach();
      controller.abort();
      await Promise.all([informer.done, staticPods.done]);
      await workers.stop();
    },
  };
}
let agent = startAgentPods();
// One hook, in order: the agent's loops, the event writes, the runtime client, the apiserver.
env.onTeardown(async () => {
  await agent.stop();
  await recorder.flush();
  cri.close();
  await server.close();
});

const manifest = (name: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, labels: { app: name } }, spec: { terminationGracePeriodSeconds: 2, containers: [{ name: 'app', image: imageRefs.app, ...extra }] } });
const mirrorName = (name: string): string => `${name}-${nodeName}`;
const readMirror = async (name: string): Promise<V1Pod | undefined> => {
  try {
    return await admin.core.readNamespacedPod({ name: mirrorName(name), namespace: 'default' });
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
};
const sandboxesOf = async (uid: string): Promise<string[]> => (await cri.listPodSandbox({ labelSelector: { [podUidLabel]: uid } })).map((s) => s.id);
const runningContainers = async (): Promise<string[]> => (await cri.listContainers({ state: 'running' })).map((c) => c.id).sort();

t.test('a static pod runs, with a mirror pod carrying its status', async (t) => {
  await writeFile(join(manifests, 'web.yaml'), manifest('web'));
  const mirror = await waitFor('the mirror pod Running with a container status', async () => {
    const m = await readMirror('web');
    return m?.status?.phase === 'Running' && m.status.containerStatuses?.[0]?.state?.running !== undefined ? m : undefined;
  }, 60_000);
  const hash = mirror.metadata?.annotations?.[configMirrorAnnotation];
  t.match(hash, /^[0-9a-f]{32}$/, 'kubernetes.io/config.mirror = the config hash');
  t.equal(mirror.metadata?.annotations?.[configHashAnnotation], hash, 'kubernetes.io/config.hash');
  t.equal(mirror.metadata?.annotations?.[configSourceAnnotation], 'file', 'kubernetes.io/config.source=file');
  t.not(mirror.metadata?.uid, hash, 'the mirror has its own UID');
  t.match(mirror.metadata?.ownerReferences, [{ apiVersion: 'v1', kind: 'Node', name: nodeName, uid: node.metadata?.uid, controller: true }], 'owned by the Node');
  t.equal(mirror.spec?.nodeName, nodeName, 'bound to the node');
  t.match(mirror.status?.podIP, /^10\.252\.0\.\d+$/, 'the static pod\'s IP');
  t.match(mirror.status?.containerStatuses?.[0]?.containerID, /^containerd:\/\/[0-9a-f]{64}$/);
  t.equal((await sandboxesOf(hash!)).length, 1, 'one sandbox, labelled with the static UID');
  t.same(apiPodsRun, [], 'the mirror pod was never handed to the workers');
});

t.test('a deleted mirror pod is recreated; the container keeps running', async (t) => {
  const before = (await readMirror('web'))!;
  const containerID = before.status!.containerStatuses![0]!.containerID!;
  const running = await runningContainers();
  await admin.core.deleteNamespacedPod({ name: mirrorName('web'), namespace: 'default' });
  const after = await waitFor('a new mirror pod with the status', async () => {
    const m = await readMirror('web');
    return m !== undefined && m.metadata?.uid !== before.metadata?.uid && m.metadata?.deletionTimestamp == null && m.status?.phase === 'Running' ? m : undefined;
  }, 30_000);
  t.equal(after.metadata?.annotations?.[configMirrorAnnotation], before.metadata?.annotations?.[configMirrorAnnotation], 'same config hash');
  t.equal(after.status?.containerStatuses?.[0]?.containerID, containerID, 'same container');
  t.equal(after.status?.containerStatuses?.[0]?.restartCount, 0, 'restartCount 0');
  t.same(await runningContainers(), running, 'no container stopped or started');
});

t.test('a malformed manifest: an event on the Node, the static pod keeps running', async (t) => {
  const running = await runningContainers();
  await writeFile(join(manifests, 'broken.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: broken\n');
  await writeFile(join(manifests, 'nocontainers.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: empty}\nspec: {containers: []}\n');
  const events = await waitFor('FailedStaticPodManifest events', async () => {
    await recorder.flush();
    const list = await admin.core.listNamespacedEvent({ namespace: 'default' });
    const ours = list.items.filter((e) => e.involvedObject.kind === 'Node' && e.involvedObject.name === nodeName && e.reason === 'FailedStaticPodManifest');
    return ours.length >= 2 ? ours : undefined;
  });
  t.ok(events.some((e) => /broken\.yaml: not YAML or JSON/.test(e.message ?? '')), 'the YAML error, naming the file');
  t.ok(events.some((e) => /nocontainers\.yaml: invalid pod: spec\.containers: Required value/.test(e.message ?? '')), 'the validation error');
  t.ok(events.every((e) => e.type === 'Warning'));
  t.equal(await readMirror('broken'), undefined, 'no mirror pod for it');
  t.same(await runningContainers(), running, 'nothing else touched');
  await unlink(join(manifests, 'broken.yaml'));
  await unlink(join(manifests, 'nocontainers.yaml'));
});

t.test('an agent restart adopts the static pod and keeps its mirror pod', async (t) => {
  const before = (await readMirror('web'))!;
  const running = await runningContainers();
  await agent.stop();
  agent = startAgentPods();
  await new Promise((r) => setTimeout(r, 3000)); // several sync periods of the workers and the mirror loop
  const after = (await readMirror('web'))!;
  t.equal(after.metadata?.uid, before.metadata?.uid, 'the same mirror pod (not recreated)');
  t.equal(after.status?.containerStatuses?.[0]?.containerID, before.status?.containerStatuses?.[0]?.containerID, 'same container');
  t.equal(after.status?.containerStatuses?.[0]?.restartCount, 0, 'restartCount 0');
  t.same(await runningContainers(), running, 'no container stopped or started');
});

t.test('removing the manifest stops the pod and removes its mirror pod', async (t) => {
  const mirror = (await readMirror('web'))!;
  const staticUid = mirror.metadata!.annotations![configMirrorAnnotation]!;
  await unlink(join(manifests, 'web.yaml'));
  await waitFor('the mirror pod gone', async () => ((await readMirror('web')) === undefined ? true : undefined), 30_000);
  t.pass('the mirror pod is deleted');
  await waitFor('the sandbox removed', async () => ((await sandboxesOf(staticUid)).length === 0 ? true : undefined), 30_000);
  t.pass('the static pod\'s sandbox and containers are removed');
  t.same(await runningContainers(), [], 'nothing runs');
});

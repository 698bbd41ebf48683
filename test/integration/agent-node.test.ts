/**
 * The node agent for real: the lab apiserver in-process (127.0.0.1:0, a small
 * watch window) and a throw-away containerd with CRI whose CNI config dir
 * starts empty. The agent runs with the node's kubeconfig and short loop
 * intervals. Checks registration, the Lease, Ready False (network) → True
 * (CNI config written), events, status-write economy, re-registration after a
 * delete, and a pod informer (spec.nodeName) through a TCP proxy the test can
 * cut: a dropped watch resumes, a 410 after the window moved on relists.
 * Root (containerd); everything lives under the test env's temp dir.
 */
import t from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { join } from 'node:path';
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { resolveConfig } from '../../agent/config/index.js';
import { createKubeClient } from '../../agent/kube/client.js';
import { loadKubeconfig } from '../../agent/kube/kubeconfig.js';
import { startInformer } from '../../agent/kube/informer.js';
import { podListWatch } from '../../agent/kube/resources.js';
import { startNodeAgent } from '../../agent/node/index.js';
import { createRuntime } from '../../agent/runtime/index.js';
import { createLogger } from '../../lib/log.js';
import { startApiServer } from '../../lab/apiserver/server.js';
import { createTestEnv, sleep, startContainerd, waitFor } from '../helpers/containerd.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const env = await createTestEnv(t, 'agent-node');
const nodeName = `knode-t-${env.rand}`;
const logger = createLogger({ component: 'agent-node-test', level: process.env.KNODE_TEST_DEBUG ? 'debug' : 'warn' });

const server = await startApiServer({ dataDir: join(env.tmp, 'apiserver'), listen: ['127.0.0.1:0'], watchWindow: 40, bookmarkIntervalMs: 200, nodes: [nodeName] });
// One hook, in the right order: the agent first, then the runtime client, then the apiserver.
let stopAgent: () => Promise<void> = async () => undefined;
let closeRuntime: () => void = () => undefined;
env.onTeardown(async () => {
  await stopAgent();
  closeRuntime();
  await server.close();
});
const admin = createKubeClient(server.adminKubeconfig);
const nodeKc = await server.nodeKubeconfig(nodeName);
const kube = createKubeClient(nodeKc);

const cniConfDir = join(env.tmp, 'cni', 'net.d');
await mkdir(cniConfDir, { recursive: true });
const containerd = await startContainerd(env, { cri: { cniConfDir } });
const runtime = await createRuntime('cri', { endpoint: `unix://${containerd.socket}`, requestTimeoutMs: 10_000 });
closeRuntime = () => runtime.close();

const resolved = resolveConfig({
  argv: [`--hostname-override=${nodeName}`, `--root-dir=${join(env.tmp, 'root')}`, '--node-labels=knode.test/role=worker', '--register-with-taints=knode.test/t=v:PreferNoSchedule', '--max-pods=42', '--node-ip=10.123.0.7'],
  hostname: 'unused',
});
if (resolved.help) throw new Error('help');
const agent = startNodeAgent({ config: resolved.config, kube, runtime, logger, timing: { statusUpdateMs: 300, leaseRenewMs: 300 } });
stopAgent = () => agent.stop();

const readNode = (): Promise<V1Node> => admin.core.readNode({ name: nodeName });
const ready = (n: V1Node) => n.status?.conditions?.find((c) => c.type === 'Ready');

t.test('registers the Node', async (t) => {
  await agent.ready;
  const node = await readNode();
  t.match(node.metadata!.labels, {
    'kubernetes.io/hostname': nodeName,
    'kubernetes.io/os': 'linux',
    'kubernetes.io/arch': /^(amd64|arm64)$/,
    'beta.kubernetes.io/os': 'linux',
    'beta.kubernetes.io/arch': /^(amd64|arm64)$/,
    'knode.test/role': 'worker',
  });
  t.same(node.spec!.taints, [{ key: 'knode.test/t', value: 'v', effect: 'PreferNoSchedule' }]);
  const withStatus = await waitFor('node status', async () => {
    const n = await readNode();
    return n.status?.nodeInfo?.containerRuntimeVersion ? n : undefined;
  });
  const s = withStatus.status!;
  t.same(s.addresses, [
    { type: 'InternalIP', address: '10.123.0.7' },
    { type: 'Hostname', address: nodeName },
  ]);
  t.match(s.capacity, { cpu: /^\d+$/, memory: /^\d+Ki$/, pods: '42', 'ephemeral-storage': /^\d+Ki$/ });
  t.match(s.allocatable, { cpu: /^\d+m?$/, memory: /^\d+Ki$/, pods: '42', 'ephemeral-storage': /^\d+$/ });
  t.match(s.nodeInfo!.containerRuntimeVersion, /^containerd:\/\/1\.6\.20/, 'runtime version from CRI Version');
  t.equal(s.nodeInfo!.kubeletVersion, 'v1.32.0-knode');
  t.equal(s.nodeInfo!.operatingSystem, 'linux');
  t.match(s.nodeInfo!.kernelVersion, /\S/);
  t.match(s.nodeInfo!.osImage, /\S/);
  t.match(s.nodeInfo!.bootID, /^[0-9a-f-]{36}$/);
  t.equal(s.daemonEndpoints!.kubeletEndpoint!.Port, 10250);
});

t.test('Ready is False while the runtime has no CNI config, True once it has', async (t) => {
  const notReady = await waitFor('Ready=False', async () => {
    const c = ready(await readNode());
    return c?.status === 'False' ? c : undefined;
  });
  t.equal(notReady.reason, 'KubeletNotReady');
  t.match(notReady.message, /^container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized/);
  for (const type of ['MemoryPressure', 'DiskPressure', 'PIDPressure']) {
    t.ok((await readNode()).status!.conditions!.some((c) => c.type === type), `${type} reported`);
  }
  await writeFile(
    join(cniConfDir, '10-knode-test.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: nodeName,
      plugins: [{ type: 'bridge', bridge: `kt${env.rand}`, isGateway: true, ipam: { type: 'host-local', ranges: [[{ subnet: '10.251.0.0/24' }]], dataDir: join(env.tmp, 'cni', 'ipam') } }],
    }),
  );
  const isReady = await waitFor(
    'Ready=True',
    async () => {
      const c = ready(await readNode());
      return c?.status === 'True' ? c : undefined;
    },
    30_000,
  );
  t.equal(isReady.reason, 'KubeletReady');
  t.equal(isReady.message, 'kubelet is posting ready status');
  t.ok(isReady.lastTransitionTime!.getTime() > notReady.lastTransitionTime!.getTime(), 'transition time moved');
});

t.test('events: Starting, NodeNotReady, NodeReady', async (t) => {
  await agent.recorder.flush();
  const events = await waitFor('NodeReady event', async () => {
    const list = await admin.core.listNamespacedEvent({ namespace: 'default' });
    const ours = list.items.filter((e) => e.involvedObject.kind === 'Node' && e.involvedObject.name === nodeName);
    return ours.some((e) => e.reason === 'NodeReady') ? ours : undefined;
  });
  const reasons = events.map((e) => e.reason);
  t.ok(reasons.includes('Starting'), 'Starting');
  t.ok(reasons.includes('NodeNotReady'), 'NodeNotReady');
  const nr = events.find((e) => e.reason === 'NodeReady')!;
  t.match(nr, { type: 'Normal', source: { component: 'kubelet', host: nodeName }, count: 1, message: `Node ${nodeName} status is now: NodeReady` });
});

t.test('Lease in kube-node-lease is renewed', async (t) => {
  const lease = await admin.coordination.readNamespacedLease({ name: nodeName, namespace: 'kube-node-lease' });
  const node = await readNode();
  t.equal(lease.spec!.holderIdentity, nodeName);
  t.equal(lease.spec!.leaseDurationSeconds, 40);
  t.match(lease.metadata!.ownerReferences, [{ kind: 'Node', name: nodeName, uid: node.metadata!.uid }]);
  const first = new Date(lease.spec!.renewTime!).getTime();
  const later = await waitFor('renewTime to advance', async () => {
    const l = await admin.coordination.readNamespacedLease({ name: nodeName, namespace: 'kube-node-lease' });
    const v = new Date(l.spec!.renewTime!).getTime();
    return v > first ? v : undefined;
  });
  t.ok(later > first, 'renewTime advanced');
});

t.test('status is not written when nothing changes', async (t) => {
  const before = await readNode();
  const writes = agent.stats().status!.writes;
  await sleep(1200); // ~4 loops of 300 ms
  const after = await readNode();
  t.equal(after.metadata!.resourceVersion, before.metadata!.resourceVersion, 'no write to the Node');
  t.equal(agent.stats().status!.writes, writes);
  t.ok(agent.stats().status!.ticks >= 4, 'the loop kept running');
});

t.test('a deleted Node is registered again', async (t) => {
  const old = await readNode();
  await admin.core.deleteNode({ name: nodeName });
  const again = await waitFor('re-registration', async () => {
    const n = await readNode().catch(() => undefined);
    return n && n.metadata!.uid !== old.metadata!.uid && ready(n)?.status === 'True' ? n : undefined;
  });
  t.match(again.metadata!.labels, { 'knode.test/role': 'worker' });
  const lease = await waitFor('lease owned by the new Node', async () => {
    const l = await admin.coordination.readNamespacedLease({ name: nodeName, namespace: 'kube-node-lease' });
    return l.metadata?.ownerReferences?.[0]?.uid === again.metadata!.uid ? l : undefined;
  });
  t.ok(lease);
});

/** A TCP proxy to the apiserver the test can cut and restore on the same port. */
async function startProxy(target: URL): Promise<{ port: number; cut(): Promise<void>; restore(): Promise<void>; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let srv: Server;
  let port = 0;
  const listen = (): Promise<void> =>
    new Promise((resolve) => {
      srv = createServer((client) => {
        const upstream = connect(Number(target.port), target.hostname);
        sockets.add(client).add(upstream);
        client.pipe(upstream).pipe(client);
        const drop = (): void => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        client.on('error', drop).on('close', drop);
        upstream.on('error', drop).on('close', drop);
      });
      srv.listen(port, '127.0.0.1', () => {
        port = (srv.address() as AddressInfo).port;
        resolve();
      });
    });
  const cut = async (): Promise<void> => {
    await new Promise<void>((resolve) => {
      srv.close(() => resolve());
      for (const s of sockets) s.destroy();
      sockets.clear();
    });
  };
  await listen();
  return { port, cut, restore: listen, close: cut };
}

t.test('pod informer (spec.nodeName) survives a dropped watch and a 410', async (t) => {
  const proxy = await startProxy(new URL(server.urls[0]!));
  t.teardown(() => proxy.close());
  const base = loadKubeconfig(nodeKc);
  const client = createKubeClient({ ...base, cluster: { ...base.cluster, server: `https://127.0.0.1:${proxy.port}` } });
  const ns = `knode-t-${env.rand}`;
  await admin.core.createNamespace({ body: { metadata: { name: ns } } });
  const pod = (name: string, node: string): V1Pod => ({ metadata: { name, namespace: ns }, spec: { nodeName: node, containers: [{ name: 'c', image: 'busybox' }] } });
  await admin.core.createNamespacedPod({ namespace: ns, body: pod('mine-1', nodeName) });
  await admin.core.createNamespacedPod({ namespace: ns, body: pod('other-1', 'someone-else') });

  const log: string[] = [];
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const inf = startInformer<V1Pod>({
    listWatch: podListWatch(client),
    fieldSelector: `spec.nodeName=${nodeName}`,
    signal: ac.signal,
    logger,
    backoffInitialMs: 100,
    backoffMaxMs: 500,
    onAdd: (p) => log.push(`add ${p.metadata!.name}`),
    onUpdate: (_o, p) => log.push(`update ${p.metadata!.name}`),
    onDelete: (p) => log.push(`delete ${p.metadata!.name}`),
  });
  await inf.synced;
  t.same(inf.list().map((p) => p.metadata!.name), ['mine-1'], 'only pods bound to this node');
  t.ok(inf.list()[0]!.metadata!.creationTimestamp instanceof Date, 'typed objects');

  // A live event, then a dropped connection: the watch resumes without a relist.
  await admin.core.createNamespacedPod({ namespace: ns, body: pod('mine-2', nodeName) });
  await waitFor('mine-2 seen', async () => (inf.get(`${ns}/mine-2`) ? true : undefined));
  t.ok(inf.get(`${ns}/mine-2`)!.metadata!.creationTimestamp instanceof Date, 'watch objects decoded into the typed model');
  const listsBefore = inf.stats().lists;
  await proxy.cut();
  await proxy.restore();
  await admin.core.createNamespacedPod({ namespace: ns, body: pod('mine-3', nodeName) });
  await waitFor('mine-3 seen after the drop', async () => (inf.get(`${ns}/mine-3`) ? true : undefined));
  t.equal(inf.stats().lists, listsBefore, 'resumed from the resourceVersion, no relist');

  // Down long enough for the window (40 events) to move past our resourceVersion.
  await proxy.cut();
  await admin.core.deleteNamespacedPod({ name: 'mine-1', namespace: ns, gracePeriodSeconds: 0 });
  await admin.core.createNamespacedPod({ namespace: ns, body: pod('mine-4', nodeName) });
  for (let i = 0; i < 60; i++) await admin.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: `filler-${i}` } } });
  const relists = inf.stats().relistsAfterExpired;
  await proxy.restore();
  await waitFor('relist after 410', async () => (inf.get(`${ns}/mine-4`) && !inf.get(`${ns}/mine-1`) ? true : undefined));
  t.ok(inf.stats().relistsAfterExpired > relists, '410 Expired → relist');
  t.same(inf.list().map((p) => p.metadata!.name).sort(), ['mine-2', 'mine-3', 'mine-4']);
  t.ok(log.includes('delete mine-1') && log.includes('add mine-4'), 'the relist diff gave the missed delete and add');
  t.notOk(log.includes('delete mine-2') || log.includes('delete mine-3'), 'no spurious deletes of pods that still exist');
  ac.abort();
  await inf.done;
});

t.test('runtime down → Ready False "container runtime is down"; back → Ready True; events de-duplicated', async (t) => {
  const daemon = env.children.find((c) => c.exitCode === null && c.spawnargs.some((a) => a.includes(containerd.dir)));
  t.ok(daemon?.pid, 'the containerd process');
  const exited = new Promise<void>((resolve) => daemon!.once('exit', () => resolve()));
  daemon!.kill('SIGTERM');
  await exited;
  const down = await waitFor(
    'Ready=False (runtime down)',
    async () => {
      const c = ready(await readNode());
      return c?.status === 'False' ? c : undefined;
    },
    30_000,
  );
  t.equal(down.message, 'container runtime is down');
  await startContainerd(env, { cri: { cniConfDir } });
  await waitFor(
    'Ready=True again',
    async () => (ready(await readNode())?.status === 'True' ? true : undefined),
    60_000,
  );
  await agent.recorder.flush();
  const list = await admin.core.listNamespacedEvent({ namespace: 'default' });
  const notReady = list.items.filter((e) => e.involvedObject.name === nodeName && e.reason === 'NodeNotReady');
  t.equal(notReady.length, 1, 'one NodeNotReady Event object');
  t.equal(notReady[0]!.count, 2, 'seen twice within 10 min: count 2 (PATCHed)');
  t.ok(notReady[0]!.lastTimestamp!.getTime() > notReady[0]!.firstTimestamp!.getTime(), 'lastTimestamp moved');
});

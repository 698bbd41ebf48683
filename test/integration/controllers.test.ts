/**
 * The lab controllers against the lab apiserver, both in-process (127.0.0.1:0,
 * temp data dir), through real HTTPS. No kubelet: the test plays its part
 * (a small "fake kubelet" marks bound pods Running/Ready with an IP and
 * finishes the graceful deletion of pods owned by ReplicaSets).
 * kubectl (scale, rollout status) runs when installed.
 */
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { execFile } from '../../lib/exec.js';
import { createLogger } from '../../lib/log.js';
import { startApiServer } from '../../lab/apiserver/server.js';
import { ApiClient, apiReason } from '../../lab/controllers/client.js';
import { Informer } from '../../lab/controllers/informer.js';
import { startControllers } from '../../lab/controllers/index.js';
import type { Deployment, EndpointSlice, Endpoints, Node, Pod, ReplicaSet } from '../../lab/controllers/types.js';

const dir = await mkdtemp(join(tmpdir(), 'knode-t-controllers-'));
const server = await startApiServer({ dataDir: join(dir, 'data'), listen: ['127.0.0.1:0'], bookmarkIntervalMs: 1000 });
const logger = createLogger({ component: 'controllers-test', level: process.env.KNODE_LOG_LEVEL === 'debug' ? 'debug' : 'warn' });
const controllers = await startControllers({ kubeconfigPath: server.adminKubeconfig, logger });
const api = await ApiClient.fromKubeconfig(server.adminKubeconfig);
const kubeletStop = new AbortController();

t.teardown(async () => {
  kubeletStop.abort();
  await controllers.stop();
  api.close();
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

const kubectlFound = (await execFile('kubectl', ['version', '--client'], { allowFailure: true }).catch(() => undefined)) !== undefined;
const kubectlEnv = { ...process.env, KUBECONFIG: server.adminKubeconfig, HOME: dir };
const kubectl = (args: string[], timeoutMs = 70_000) => execFile('kubectl', args, { env: kubectlEnv, timeoutMs, allowFailure: true });

/** Polls `fn` until it returns a value that is not undefined/false. */
async function eventually<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const pods = (ns = 'default') => `/api/v1/namespaces/${ns}/pods`;
const getPod = (name: string) => api.get<Pod>(`${pods()}/${name}`);
const cond = (p: Pod, type: string) => (p.status?.conditions ?? []).find((c) => c.type === type);

// ---- the fake kubelet -----------------------------------------------------------
let ipCounter = 10;
const podInformer = new Informer<Pod>({ client: api, path: '/api/v1/pods', apiVersion: 'v1', kind: 'Pod', logger });
const kubelet = (p: Pod): void => {
  const name = p.metadata.name ?? '';
  const ns = p.metadata.namespace ?? '';
  if (!p.spec.nodeName) return;
  if (p.metadata.deletionTimestamp) {
    if (p.metadata.ownerReferences?.length) {
      api.delete(`${pods(ns)}/${name}`, { gracePeriodSeconds: 0 }).catch(() => undefined);
    }
    return;
  }
  if (p.status?.podIP || p.metadata.labels?.manual === 'true') return;
  const ts = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const ip = `10.244.${p.spec.nodeName === 'n1' ? 0 : 1}.${ipCounter++}`;
  const conditions = [
    ...(p.status?.conditions ?? []).filter((c) => c.type === 'PodScheduled'),
    { type: 'Initialized', status: 'True', lastTransitionTime: ts },
    { type: 'ContainersReady', status: 'True', lastTransitionTime: ts },
    { type: 'Ready', status: 'True', lastTransitionTime: ts },
  ];
  api.patch(`${pods(ns)}/${name}/status`, { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions } }).catch(() => undefined);
};
podInformer.on({ add: kubelet, update: (_o, p) => kubelet(p) });
void podInformer.run(kubeletStop.signal);

// ---- nodes and node-ipam ----------------------------------------------------------
const node = (name: string): Node => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux' } },
  status: {
    allocatable: { cpu: '2', memory: '4Gi', pods: '110' },
    capacity: { cpu: '2', memory: '4Gi', pods: '110' },
    conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' }],
  },
});

async function createNode(name: string): Promise<void> {
  await api.create('/api/v1/nodes', node(name));
  // Status may be dropped on create (status subresource): make sure it is there.
  const cur = await api.get<Node>(`/api/v1/nodes/${name}`);
  if (!cur.status?.conditions?.length) await api.patch(`/api/v1/nodes/${name}/status`, { status: node(name).status });
}

const cidrOf = (name: string) =>
  eventually(`podCIDR of ${name}`, async () => {
    const n = await api.get<Node>(`/api/v1/nodes/${name}`);
    return n.spec?.podCIDR ? { podCIDR: n.spec.podCIDR, podCIDRs: n.spec.podCIDRs } : undefined;
  });

await t.test('node-ipam gives each node a /24 of the cluster CIDR', async (t) => {
  await createNode('n1');
  t.same(await cidrOf('n1'), { podCIDR: '10.244.0.0/24', podCIDRs: ['10.244.0.0/24'] }, 'n1 gets the first /24');
  await createNode('n2');
  t.same(await cidrOf('n2'), { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] }, 'n2 gets the next');
});

// ---- scheduler --------------------------------------------------------------------
const simplePod = (name: string, extra: Partial<Pod['spec']> = {}, labels: Record<string, string> = {}): Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, labels },
  spec: { containers: [{ name: 'c', image: 'busybox:1', resources: { requests: { cpu: '100m', memory: '64Mi' } } }], ...extra },
});

await t.test('scheduler binds a pod, sets PodScheduled and records Scheduled', async (t) => {
  await api.create(pods(), simplePod('p1'));
  const p = await eventually('p1 bound', async () => {
    const p = await getPod('p1');
    return p.spec.nodeName ? p : undefined;
  });
  t.ok(['n1', 'n2'].includes(p.spec.nodeName!), `bound to ${p.spec.nodeName}`);
  t.equal(cond(p, 'PodScheduled')?.status, 'True', 'PodScheduled True');
  const ev = await eventually('Scheduled event', async () => {
    const list = await api.list<{ reason: string; message: string; source?: { component?: string } }>('/api/v1/namespaces/default/events', {
      fieldSelector: 'involvedObject.name=p1',
    });
    return list.items.find((e) => e.reason === 'Scheduled');
  });
  t.equal(ev.message, `Successfully assigned default/p1 to ${p.spec.nodeName}`);
  t.equal(ev.source?.component, 'default-scheduler');
  // Spread: the next pod goes to the other node (fewest pods).
  await api.create(pods(), simplePod('p2'));
  const p2 = await eventually('p2 bound', async () => (await getPod('p2')).spec.nodeName);
  t.not(p2, p.spec.nodeName, 'the second pod lands on the emptier node');
});

await t.test('an unsatisfiable nodeSelector leaves the pod Pending and Unschedulable', async (t) => {
  await api.create(pods(), simplePod('nosuch', { nodeSelector: { disktype: 'ssd' } }));
  const c = await eventually('PodScheduled False', async () => {
    const c = cond(await getPod('nosuch'), 'PodScheduled');
    return c?.status === 'False' ? c : undefined;
  });
  t.equal(c.reason, 'Unschedulable');
  t.equal(c.message, "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.");
  const p = await getPod('nosuch');
  t.equal(p.spec.nodeName, undefined, 'not bound');
  t.equal(p.status?.phase, 'Pending');
  const ev = await eventually('FailedScheduling event', async () => {
    const list = await api.list<{ reason: string; type: string }>('/api/v1/namespaces/default/events', { fieldSelector: 'involvedObject.name=nosuch' });
    return list.items.find((e) => e.reason === 'FailedScheduling');
  });
  t.equal(ev.type, 'Warning');
  // Retried when a node changes: label n1 and the pod gets bound there.
  await api.patch('/api/v1/nodes/n1', { metadata: { labels: { disktype: 'ssd' } } });
  t.equal(await eventually('nosuch bound after relabel', async () => (await getPod('nosuch')).spec.nodeName), 'n1');
});

await t.test('NoSchedule taints are respected unless tolerated', async (t) => {
  await api.patch('/api/v1/nodes/n2', { spec: { taints: [{ key: 'dedicated', value: 'infra', effect: 'NoSchedule' }] } });
  await eventually('taint in place', async () => (await api.get<Node>('/api/v1/nodes/n2')).spec?.taints?.length === 1);
  const onN2 = { nodeSelector: { 'kubernetes.io/hostname': 'n2' } };
  await api.create(pods(), simplePod('taint-no', onN2));
  const c = await eventually('taint-no unschedulable', async () => {
    const c = cond(await getPod('taint-no'), 'PodScheduled');
    return c?.status === 'False' ? c : undefined;
  });
  t.equal(c.message, "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: infra}.");
  await api.create(pods(), simplePod('taint-yes', { ...onN2, tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'infra', effect: 'NoSchedule' }] }));
  t.equal(await eventually('taint-yes bound', async () => (await getPod('taint-yes')).spec.nodeName), 'n2', 'the tolerating pod is bound to n2');
  t.equal((await getPod('taint-no')).spec.nodeName, undefined, 'the other one is not');
  await api.patch('/api/v1/nodes/n2', { spec: { taints: null } });
  t.equal(await eventually('taint-no bound once untainted', async () => (await getPod('taint-no')).spec.nodeName), 'n2');
});

// ---- endpointslices and endpoints ---------------------------------------------------
await t.test('a Service gets EndpointSlices and Endpoints of its pods', async (t) => {
  await api.create('/api/v1/namespaces/default/services', {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', labels: { tier: 'front' } },
    spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'metrics', port: 9090, targetPort: 9100 }] },
  });
  const webPod = (name: string): Pod => ({
    ...simplePod(name, {}, { app: 'web' }),
    spec: { containers: [{ name: 'c', image: 'busybox:1', ports: [{ name: 'http', containerPort: 8080 }] }] },
  });
  await api.create(pods(), webPod('web-1'));
  await api.create(pods(), webPod('web-2'));
  const slicesOf = async (): Promise<EndpointSlice[]> =>
    (await api.list<EndpointSlice>('/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', { labelSelector: 'kubernetes.io/service-name=web' })).items;
  const ready = (s: EndpointSlice) => (s.endpoints ?? []).filter((e) => e.conditions.ready).length;
  const slice = await eventually('a slice with 2 ready endpoints', async () => {
    const s = await slicesOf();
    return s.length === 1 && ready(s[0]!) === 2 ? s[0]! : undefined;
  });
  const pod1 = await getPod('web-1');
  t.match(slice.metadata.name, /^web-/, 'generateName <svc>-');
  t.equal(slice.addressType, 'IPv4');
  t.equal(slice.metadata.labels?.['endpointslice.kubernetes.io/managed-by'], 'endpointslice-controller.k8s.io');
  t.equal(slice.metadata.labels?.tier, 'front', 'service labels are copied');
  t.match(slice.metadata.ownerReferences, [{ kind: 'Service', name: 'web', controller: true }]);
  t.same(
    [...(slice.ports ?? [])].sort((a, b) => a.port - b.port),
    [
      { name: 'http', port: 8080, protocol: 'TCP' },
      { name: 'metrics', port: 9100, protocol: 'TCP' },
    ],
    'named targetPort resolved to the container port',
  );
  const ep1 = (slice.endpoints ?? []).find((e) => e.targetRef?.name === 'web-1')!;
  t.same(ep1.addresses, [pod1.status!.podIP], 'address is the pod IP');
  t.equal(ep1.nodeName, pod1.spec.nodeName);
  t.same(ep1.conditions, { ready: true, serving: true, terminating: false });
  t.match(ep1.targetRef, { kind: 'Pod', namespace: 'default', name: 'web-1', uid: pod1.metadata.uid });

  const eps = await eventually('Endpoints with 2 addresses', async () => {
    const e = await api.get<Endpoints>('/api/v1/namespaces/default/endpoints/web');
    return e.subsets?.[0]?.addresses?.length === 2 ? e : undefined;
  });
  t.equal(eps.subsets?.length, 1);
  t.same(new Set(eps.subsets![0]!.ports!.map((p) => p.port)), new Set([8080, 9100]));

  // web-1 stops being ready.
  await api.patch(`${pods()}/web-1/status`, { status: { conditions: [{ type: 'Ready', status: 'False' }] } });
  const s2 = await eventually('web-1 not ready in the slice', async () => {
    const s = (await slicesOf())[0];
    const e = s?.endpoints?.find((x) => x.targetRef?.name === 'web-1');
    return e && !e.conditions.ready ? e : undefined;
  });
  t.same(s2.conditions, { ready: false, serving: false, terminating: false });
  const eps2 = await eventually('web-1 in notReadyAddresses', async () => {
    const e = await api.get<Endpoints>('/api/v1/namespaces/default/endpoints/web');
    return e.subsets?.[0]?.notReadyAddresses?.length === 1 ? e : undefined;
  });
  t.equal(eps2.subsets![0]!.notReadyAddresses![0]!.targetRef?.name, 'web-1');
  t.equal(eps2.subsets![0]!.addresses?.length, 1);

  // web-2 terminating (bound, so graceful): ready=false, serving=true, terminating=true; gone from Endpoints.
  await api.delete(`${pods()}/web-2`);
  const s3 = await eventually('web-2 terminating in the slice', async () => {
    const e = (await slicesOf())[0]?.endpoints?.find((x) => x.targetRef?.name === 'web-2');
    return e?.conditions.terminating ? e : undefined;
  });
  t.same(s3.conditions, { ready: false, serving: true, terminating: true });
  await eventually('web-2 left out of Endpoints', async () => {
    const e = await api.get<Endpoints>('/api/v1/namespaces/default/endpoints/web');
    return (e.subsets ?? []).every((s) => ![...(s.addresses ?? []), ...(s.notReadyAddresses ?? [])].some((a) => a.targetRef?.name === 'web-2'));
  });

  // A selector-less service is left alone.
  await api.create('/api/v1/namespaces/default/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'manual' }, spec: { ports: [{ port: 80 }] } });
  await new Promise((r) => setTimeout(r, 500));
  t.equal((await api.list<EndpointSlice>('/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', { labelSelector: 'kubernetes.io/service-name=manual' })).items.length, 0, 'no slice for a selector-less service');
  await t.rejects(api.get('/api/v1/namespaces/default/endpoints/manual'), 'no Endpoints either');

  // Deleting the service garbage-collects its slices and removes its Endpoints.
  await api.delete('/api/v1/namespaces/default/services/web');
  await eventually('slices gone', async () => (await slicesOf()).length === 0);
  await eventually('endpoints gone', async () => {
    try {
      await api.get('/api/v1/namespaces/default/endpoints/web');
      return false;
    } catch (err) {
      return apiReason(err) === 'NotFound';
    }
  });
});

// ---- deployments, replicasets, rollouts, GC ---------------------------------------
const depPath = '/apis/apps/v1/namespaces/default/deployments';
const rsList = async () => (await api.list<ReplicaSet>('/apis/apps/v1/namespaces/default/replicasets', { labelSelector: 'app=dep' })).items;
const depPods = async () => (await api.list<Pod>(pods(), { labelSelector: 'app=dep' })).items;
const getDep = () => api.get<Deployment>(`${depPath}/dep`);

await t.test('Deployment → ReplicaSet → pods, scale, rolling update, GC', async (t) => {
  await api.create(depPath, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'dep' },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: 'dep' } },
      template: { metadata: { labels: { app: 'dep' } }, spec: { containers: [{ name: 'app', image: 'busybox:1' }] } },
    },
  });
  const rs = await eventually('one ReplicaSet', async () => {
    const l = await rsList();
    return l.length === 1 ? l[0]! : undefined;
  });
  const hash = rs.metadata.labels?.['pod-template-hash'];
  t.ok(hash, 'pod-template-hash label');
  t.equal(rs.metadata.name, `dep-${hash!}`, 'named <deployment>-<hash>');
  t.equal(rs.spec.selector.matchLabels?.['pod-template-hash'], hash);
  t.equal(rs.metadata.annotations?.['deployment.kubernetes.io/revision'], '1');
  t.match(rs.metadata.ownerReferences, [{ kind: 'Deployment', name: 'dep', controller: true }]);
  const three = await eventually('3 pods bound and ready', async () => {
    const p = await depPods();
    return p.length === 3 && p.every((x) => x.spec.nodeName && cond(x, 'Ready')?.status === 'True') ? p : undefined;
  });
  t.ok(three.every((p) => p.metadata.name?.startsWith(`${rs.metadata.name!}-`)), 'pods named <rs>-xxxxx');
  t.match(three[0]!.metadata.ownerReferences, [{ kind: 'ReplicaSet', name: rs.metadata.name, controller: true }]);
  const d = await eventually('deployment available', async () => {
    const d = await getDep();
    return d.status?.availableReplicas === 3 && d.status.observedGeneration === d.metadata.generation ? d : undefined;
  });
  t.match(d.status?.conditions, [
    { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable' },
    { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' },
  ]);
  t.equal(d.metadata.annotations?.['deployment.kubernetes.io/revision'], '1');
  const rsStatus = (await rsList())[0]!.status;
  t.match(rsStatus, { replicas: 3, fullyLabeledReplicas: 3, readyReplicas: 3, availableReplicas: 3 });

  // Scale to 5.
  if (kubectlFound) {
    const r = await kubectl(['scale', 'deployment/dep', '--replicas=5']);
    t.equal(r.code, 0, `kubectl scale: ${r.stderr}`);
  } else await api.patch(`${depPath}/dep/scale`, { spec: { replicas: 5 } });
  await eventually('5 pods ready', async () => {
    const d = await getDep();
    return d.status?.readyReplicas === 5 && d.status.availableReplicas === 5;
  });
  t.equal((await depPods()).filter((p) => !p.metadata.deletionTimestamp).length, 5, '5 pods');

  // Rolling update to a new image.
  await api.patch(`${depPath}/dep`, { spec: { template: { spec: { containers: [{ name: 'app', image: 'busybox:2' }] } } } }, 'strategic');
  const maxSeen = { total: 0 };
  const watchSurge = setInterval(() => {
    void depPods().then((p) => {
      maxSeen.total = Math.max(maxSeen.total, p.filter((x) => !x.metadata.deletionTimestamp).length);
    });
  }, 50);
  if (kubectlFound) {
    const r = await kubectl(['rollout', 'status', 'deployment/dep', '--timeout=60s']);
    t.equal(r.code, 0, `kubectl rollout status exits 0: ${r.stdout}${r.stderr}`);
    t.match(r.stdout, /successfully rolled out/);
  }
  const done = await eventually(
    'rollout complete',
    async () => {
      const d = await getDep();
      const s = d.status;
      return s?.updatedReplicas === 5 && s.replicas === 5 && s.availableReplicas === 5 && s.observedGeneration === d.metadata.generation ? d : undefined;
    },
    60_000,
  );
  clearInterval(watchSurge);
  t.ok(maxSeen.total <= 5 + 2, `never more than replicas + maxSurge (25% of 5 → 2) active pods: saw ${maxSeen.total}`);
  t.equal(done.metadata.annotations?.['deployment.kubernetes.io/revision'], '2', 'revision 2');
  const sets = await rsList();
  t.equal(sets.length, 2, 'old and new ReplicaSets');
  const newRS = sets.find((s) => s.spec.template.spec.containers[0]!.image === 'busybox:2')!;
  const oldRS = sets.find((s) => s !== newRS)!;
  t.equal(newRS.spec.replicas, 5);
  t.equal(oldRS.spec.replicas, 0);
  t.not(newRS.metadata.labels?.['pod-template-hash'], hash, 'a new hash');
  t.equal(newRS.metadata.annotations?.['deployment.kubernetes.io/revision'], '2');
  const live = (await depPods()).filter((p) => !p.metadata.deletionTimestamp);
  t.ok(live.every((p) => p.spec.containers[0]!.image === 'busybox:2'), 'every pod runs the new image');

  // Deleting the Deployment garbage-collects its ReplicaSets and their pods.
  await api.delete(`${depPath}/dep`);
  await eventually('ReplicaSets gone', async () => (await rsList()).length === 0, 20_000);
  await eventually('pods gone', async () => (await depPods()).length === 0, 20_000);
  t.pass('ReplicaSets and pods garbage-collected');
});

await t.test('Recreate: old pods are gone before new ones are created', async (t) => {
  const path = '/apis/apps/v1/namespaces/default/deployments';
  await api.create(path, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'rec' },
    spec: {
      replicas: 2,
      strategy: { type: 'Recreate' },
      selector: { matchLabels: { app: 'rec' } },
      template: { metadata: { labels: { app: 'rec' } }, spec: { containers: [{ name: 'app', image: 'busybox:1' }] } },
    },
  });
  const recPods = async () => (await api.list<Pod>(pods(), { labelSelector: 'app=rec' })).items;
  await eventually('2 rec pods ready', async () => {
    const d = await api.get<Deployment>(`${path}/rec`);
    return d.status?.availableReplicas === 2;
  });
  let mixed = false;
  const watcher = setInterval(() => {
    void recPods().then((p) => {
      const images = new Set(p.map((x) => x.spec.containers[0]!.image));
      if (images.size > 1) mixed = true;
    });
  }, 20);
  await api.patch(`${path}/rec`, { spec: { template: { spec: { containers: [{ name: 'app', image: 'busybox:2' }] } } } }, 'strategic');
  await eventually('recreated', async () => {
    const d = await api.get<Deployment>(`${path}/rec`);
    const p = await recPods();
    return d.status?.updatedReplicas === 2 && d.status.availableReplicas === 2 && p.length === 2 && p.every((x) => x.spec.containers[0]!.image === 'busybox:2');
  }, 20_000);
  clearInterval(watcher);
  t.notOk(mixed, 'never old and new pods at the same time');
  await api.delete(`${path}/rec`);
  await eventually('rec pods gone', async () => (await recPods()).length === 0, 20_000);
});

await t.test('a ReplicaSet adopts matching orphans and deletes the surplus', async (t) => {
  const orphan = simplePod('orphan', {}, { app: 'rs' });
  await api.create(pods(), orphan);
  await api.create('/apis/apps/v1/namespaces/default/replicasets', {
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: { name: 'rs' },
    spec: { replicas: 2, selector: { matchLabels: { app: 'rs' } }, template: { metadata: { labels: { app: 'rs' } }, spec: { containers: [{ name: 'c', image: 'busybox:1' }] } } },
  });
  const rsPods = async () => (await api.list<Pod>(pods(), { labelSelector: 'app=rs' })).items.filter((p) => !p.metadata.deletionTimestamp);
  await eventually('2 pods, orphan adopted', async () => {
    const p = await rsPods();
    return p.length === 2 && p.some((x) => x.metadata.name === 'orphan' && x.metadata.ownerReferences?.[0]?.name === 'rs');
  });
  await api.patch('/apis/apps/v1/namespaces/default/replicasets/rs', { spec: { replicas: 1 } });
  await eventually('1 pod left', async () => (await rsPods()).length === 1);
  const rs = await eventually('status replicas 1', async () => {
    const r = await api.get<ReplicaSet>('/apis/apps/v1/namespaces/default/replicasets/rs');
    return r.status?.replicas === 1 && r.status.observedGeneration === r.metadata.generation ? r : undefined;
  });
  t.equal(rs.status?.replicas, 1);
  await api.delete('/apis/apps/v1/namespaces/default/replicasets/rs');
  await eventually('rs pods gone', async () => (await api.list<Pod>(pods(), { labelSelector: 'app=rs' })).items.length === 0, 20_000);
});

await t.test('deleting a namespace with a Deployment in it converges', async (t) => {
  await api.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'doomed' } });
  await api.create('/apis/apps/v1/namespaces/doomed/deployments', {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'd' },
    spec: { replicas: 2, selector: { matchLabels: { app: 'd' } }, template: { metadata: { labels: { app: 'd' } }, spec: { containers: [{ name: 'c', image: 'busybox:1' }] } } },
  });
  await eventually('2 pods in doomed', async () => (await api.list<Pod>(pods('doomed'))).items.filter((p) => p.status?.podIP).length === 2);
  await api.delete('/api/v1/namespaces/doomed');
  await eventually(
    'namespace gone',
    async () => {
      try {
        await api.get('/api/v1/namespaces/doomed');
        return false;
      } catch (err) {
        return apiReason(err) === 'NotFound';
      }
    },
    30_000,
  );
  t.pass('namespace removed with everything in it');
});

await t.test('a deleted node releases its CIDR', async (t) => {
  await api.delete('/api/v1/nodes/n2');
  await new Promise((r) => setTimeout(r, 300));
  await createNode('n3');
  t.same(await cidrOf('n3'), { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] }, "n3 reuses n2's /24");
});

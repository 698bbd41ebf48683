// Static pods with the whole knode-agent program, in the lab (root, under the lab lock):
// `scripts/lab up --nodes 1` starts the agent with --pod-manifest-path <node data>/manifests.
// A manifest dropped there runs and gets a mirror pod (annotations, Node owner, status);
// `kubectl delete` of the mirror pod recreates it without restarting the container; a
// malformed manifest is a Warning event on the Node and the agent keeps running; kill -9 +
// restart of the agent keeps the container and the mirror pod; removing the manifest stops
// the pod and deletes the mirror pod; `down` leaves nothing.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CoreV1Event, V1Pod } from '@kubernetes/client-node';
import { execFile, type ExecResult } from '../../lib/exec.js';
import { repoRoot } from '../../lab/paths.js';
import { containerdPaths } from '../../lab/machines/containerd.js';
import { controlPlanePaths } from '../../lab/machines/control-plane.js';
import { agentPaths } from '../../lab/machines/agent.js';
import { labNode } from '../../lab/machines/layout.js';

const node = labNode(1);
const manifests = agentPaths(node).manifestsDir;

function lab(args: string[]): Promise<ExecResult> {
  return execFile(join(repoRoot, 'scripts/lab'), args, { allowFailure: true, timeoutMs: 180_000 });
}

async function kubectlJson<T>(args: string[]): Promise<T | undefined> {
  const r = await execFile('kubectl', [...args, '-o', 'json'], { allowFailure: true, timeoutMs: 30_000, env: { ...process.env, KUBECONFIG: controlPlanePaths.adminKubeconfig } });
  if (r.code !== 0) {
    if (/NotFound/.test(r.stderr)) return undefined;
    throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  }
  return JSON.parse(r.stdout) as T;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

const mirror = (): Promise<V1Pod | undefined> => kubectlJson<V1Pod>(['get', 'pod', `web-${node.name}`]);
const containerId = (p: V1Pod | undefined): string => p?.status?.containerStatuses?.[0]?.containerID ?? '';
const agentPid = (): number => Number(readFileSync(agentPaths(node).pidFile, 'utf8').trim());
async function ctrContainers(): Promise<string[]> {
  const r = await execFile('ctr', ['--address', containerdPaths(node).socket, '-n', 'k8s.io', 'containers', 'ls', '-q']);
  return r.stdout.split('\n').filter((s) => s !== '').sort();
}
const manifest = JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', labels: { app: 'static-web' } }, spec: { terminationGracePeriodSeconds: 2, containers: [{ name: 'app', image: 'knode.local/app:1.0' }] } });

t.before(async () => {
  await lab(['down']);
});
t.teardown(async () => {
  await lab(['down']);
});

t.test('static pods and mirror pods with the agent program', async (t) => {
  const up = await lab(['up', '--nodes', '1', '--runtime', 'containerd']);
  t.equal(up.code, 0, 'scripts/lab up --nodes 1', { stderr: up.stderr.slice(-3000) });
  t.match(readFileSync(join('/proc', String(agentPid()), 'cmdline'), 'utf8'), `--pod-manifest-path\0${manifests}`, 'the lab agent watches the node\'s manifest dir');

  await writeFile(join(manifests, 'web.json'), manifest);
  const m1 = await until('the mirror pod Running', async () => {
    const m = await mirror();
    return m?.status?.phase === 'Running' && containerId(m) !== '' ? m : undefined;
  });
  t.match(m1.metadata?.annotations, { 'kubernetes.io/config.source': 'file', 'kubernetes.io/config.mirror': /^[0-9a-f]{32}$/ }, 'mirror annotations');
  t.equal(m1.metadata?.annotations?.['kubernetes.io/config.hash'], m1.metadata?.annotations?.['kubernetes.io/config.mirror']);
  t.match(m1.metadata?.ownerReferences, [{ kind: 'Node', name: node.name, controller: true }], 'owned by the Node');
  t.match(m1.status?.podIP, /^10\.244\.\d+\.\d+$/, 'a pod IP from the node\'s podCIDR');
  const running = await ctrContainers();

  // kubectl delete: a new mirror pod, the same container.
  const del = await execFile('kubectl', ['delete', 'pod', `web-${node.name}`, '--wait=false'], { allowFailure: true, env: { ...process.env, KUBECONFIG: controlPlanePaths.adminKubeconfig } });
  t.equal(del.code, 0, 'kubectl delete of the mirror pod');
  const m2 = await until('a new mirror pod', async () => {
    const m = await mirror();
    return m !== undefined && m.metadata?.uid !== m1.metadata?.uid && m.metadata?.deletionTimestamp == null && m.status?.phase === 'Running' ? m : undefined;
  });
  t.equal(containerId(m2), containerId(m1), 'same container');
  t.equal(m2.status?.containerStatuses?.[0]?.restartCount, 0, 'restartCount 0');
  t.same(await ctrContainers(), running, 'no container created or removed');

  // A malformed manifest: an event on the Node, nothing else.
  const pid = agentPid();
  await writeFile(join(manifests, 'broken.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: broken\n');
  const ev = await until('a FailedStaticPodManifest event', async () => {
    const list = await kubectlJson<{ items: CoreV1Event[] }>(['get', 'events', '-n', 'default', '--field-selector', `involvedObject.kind=Node,involvedObject.name=${node.name}`]);
    return list?.items.find((e) => e.reason === 'FailedStaticPodManifest');
  }, 30_000);
  t.match(ev.message, /broken\.yaml: not YAML or JSON/, 'the event names the file and the problem');
  t.equal(ev.type, 'Warning');
  t.equal(agentPid(), pid, 'the agent did not restart');
  t.same(await ctrContainers(), running, 'the static pod untouched');

  // kill -9 + restart: the same container and the same mirror pod.
  process.kill(pid, 'SIGKILL');
  await until('the agent gone', async () => {
    try {
      process.kill(pid, 0);
      return undefined;
    } catch {
      return true;
    }
  }, 10_000);
  const again = await lab(['up', '--nodes', '1', '--runtime', 'containerd']);
  t.equal(again.code, 0, 'lab up starts a new agent');
  t.not(agentPid(), pid, 'a new agent');
  await until('the new agent registered', async () => (readFileSync(agentPaths(node).log, 'utf8').split('\n').filter((l) => l.includes('"node registered"')).length >= 2 ? true : undefined), 30_000);
  await new Promise((r) => setTimeout(r, 5000)); // several relist periods and a mirror sync
  const m3 = await mirror();
  t.equal(m3?.metadata?.uid, m2.metadata?.uid, 'the same mirror pod');
  t.equal(containerId(m3), containerId(m1), 'the same container');
  t.same(await ctrContainers(), running, 'nothing restarted, nothing leaked');

  // Removing the manifest: the pod stops, the mirror pod goes.
  await unlink(join(manifests, 'web.json'));
  await until('the mirror pod gone', async () => ((await mirror()) === undefined ? true : undefined), 30_000);
  t.pass('the mirror pod is deleted');
  await until('the container removed', async () => ((await ctrContainers()).includes(containerId(m1).replace('containerd://', '')) ? undefined : true), 30_000);
  t.pass('the static pod\'s container is removed');
});

t.test('down leaves nothing', async (t) => {
  const r = await lab(['down']);
  t.equal(r.code, 0, 'scripts/lab down');
});

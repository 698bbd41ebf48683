// knode-agent's probes and graceful delete in the lab, for real (root; run under
// `flock /run/knode-lab.lock`): one node with containerd; a pod with a startup
// (tcpSocket), a readiness (exec) and a liveness (httpGet on a named port)
// probe and a preStop hook. The test flips the app's files with `ctr task exec`
// and watches the pod through the API: Ready False → True → False, a liveness
// failure restarts the container with Unhealthy and Killing events, and
// `kubectl delete` runs the preStop hook before the agent's final delete.
import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { CoreV1Event, V1Pod } from '@kubernetes/client-node';
import { execFile } from '../../lib/exec.js';
import { containerdPaths } from '../../lab/machines/containerd.js';
import { labNode } from '../../lab/machines/layout.js';
import { getJson, kubectl, lab, until } from '../helpers/lab.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const hooks = await mkdtemp(join(tmpdir(), 'knode-t-e2e-probes-'));
t.before(async () => {
  await lab(['down']);
});
t.teardown(async () => {
  await kubectl(['delete', 'pod', 'probes', '--grace-period=0', '--force', '--wait=false']);
  await lab(['down']);
  await rm(hooks, { recursive: true, force: true });
});

const manifest = JSON.stringify({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'probes' },
  spec: {
    terminationGracePeriodSeconds: 5,
    containers: [
      {
        name: 'app',
        image: 'knode.local/app:1.0',
        ports: [{ name: 'http', containerPort: 8080 }],
        startupProbe: { tcpSocket: { port: 'http' }, periodSeconds: 1 },
        readinessProbe: { exec: { command: ['test', '-f', '/tmp/ready'] }, periodSeconds: 1 },
        livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1, failureThreshold: 2 },
        lifecycle: { preStop: { exec: { command: ['sh', '-c', 'touch /hooks/prestop; sleep 2'] } } },
        volumeMounts: [{ name: 'hooks', mountPath: '/hooks' }],
      },
    ],
    volumes: [{ name: 'hooks', hostPath: { path: hooks, type: 'Directory' } }],
  },
});

const pod = (): Promise<V1Pod> => getJson<V1Pod>(['get', 'pod', 'probes']);
const ready = (p: V1Pod): string | undefined => p.status?.conditions?.find((c) => c.type === 'Ready')?.status;
const app = (p: V1Pod) => p.status?.containerStatuses?.find((c) => c.name === 'app');

async function inContainer(p: V1Pod, cmd: string[]): Promise<void> {
  const id = (app(p)?.containerID ?? '').replace('containerd://', '');
  await execFile('ctr', ['--address', containerdPaths(labNode(1)).socket, '-n', 'k8s.io', 'task', 'exec', '--exec-id', `t-${randomBytes(3).toString('hex')}`, id, ...cmd]);
}

async function events(): Promise<CoreV1Event[]> {
  return (await getJson<{ items: CoreV1Event[] }>(['get', 'events', '--field-selector', 'involvedObject.name=probes'])).items;
}

t.test('probes and graceful delete through the agent', async (t) => {
  const up = await lab(['up', '--nodes', '1', '--runtime', 'containerd']);
  t.equal(up.code, 0, 'scripts/lab up --nodes 1', { stderr: up.stderr.slice(-3000) });
  const created = await kubectl(['apply', '--validate=false', '-f', '-'], manifest);
  t.equal(created.code, 0, 'pod created', { stderr: created.stderr });

  const running = await until('Running and started, not Ready', async () => {
    const p = await pod();
    return p.status?.phase === 'Running' && app(p)?.started === true ? p : undefined;
  }, 90_000);
  t.equal(ready(running), 'False', 'not Ready before the readiness probe succeeded');

  await inContainer(running, ['touch', '/tmp/ready']);
  await until('Ready True', async () => (ready(await pod()) === 'True' ? true : undefined), 20_000);
  t.pass('Ready turned True');
  await inContainer(running, ['rm', '/tmp/ready']);
  const unready = await until('Ready False again', async () => {
    const p = await pod();
    return ready(p) === 'False' ? p : undefined;
  }, 20_000);
  t.equal(app(unready)?.restartCount, 0, 'readiness does not restart');

  await inContainer(running, ['rm', '/tmp/www/healthz']);
  const restarted = await until('restarted by liveness', async () => {
    const p = await pod();
    return (app(p)?.restartCount ?? 0) >= 1 && app(p)?.state?.running !== undefined ? p : undefined;
  }, 40_000);
  t.not(app(restarted)?.containerID, app(running)?.containerID, 'a new container');
  t.ok(app(restarted)?.lastState?.terminated !== undefined, 'lastState terminated');
  const evs = await until('Unhealthy and Killing events', async () => {
    const e = await events();
    return e.some((x) => x.reason === 'Killing') && e.some((x) => x.reason === 'Unhealthy' && x.message?.startsWith('Liveness')) ? e : undefined;
  }, 20_000);
  t.ok(evs.some((e) => e.type === 'Warning' && e.reason === 'Unhealthy' && e.message === 'Liveness probe failed: HTTP probe failed with statuscode: 404'), 'Unhealthy: Liveness probe failed with 404');
  t.ok(evs.some((e) => e.reason === 'Killing' && e.message === 'Container app failed liveness probe, will be restarted'), 'Killing: failed liveness probe');
  t.ok(evs.some((e) => e.reason === 'Unhealthy' && e.message === 'Readiness probe failed: '), 'Unhealthy: Readiness probe failed');

  const uid = restarted.metadata!.uid!;
  const del = await kubectl(['delete', 'pod', 'probes', '--wait=false']);
  t.equal(del.code, 0, 'kubectl delete pod');
  await until('the pod gone from the API', async () => {
    const r = await kubectl(['get', 'pod', 'probes', '-o', 'jsonpath={.metadata.uid}']);
    return r.code !== 0 || r.stdout !== uid ? true : undefined;
  }, 40_000);
  t.ok(existsSync(join(hooks, 'prestop')), 'the preStop hook ran before the final delete');
});

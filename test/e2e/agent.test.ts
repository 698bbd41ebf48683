// knode-agent in the lab, for real (root), once per runtime: `scripts/lab up
// --runtime containerd|docker` starts an agent per node (on docker with its
// Docker backend); Nodes become Ready once the agent wrote the CNI
// config; a Deployment's pods run with pod IPs from the nodes' podCIDRs and
// serve HTTP within and across nodes (VXLAN overlay); a deleted pod is
// terminated and finally deleted by the agent; kill -9 + restart of an agent
// restarts no container; a pod force-deleted while its agent was down is
// cleaned up on start; an invalid image name shows InvalidImageName; SIGTERM
// stops the agent but not the pods; bad flags exit 2; `down` leaves nothing.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { execFile, type ExecResult } from '../../lib/exec.js';
import { labDataDir, labRunDir, repoRoot } from '../../lab/paths.js';
import Docker from 'dockerode';
import { containerdPaths } from '../../lab/machines/containerd.js';
import { dockerdPaths } from '../../lab/machines/dockerd.js';
import { agentPaths } from '../../lab/machines/agent.js';
import { labNode, type RuntimeKind } from '../../lab/machines/layout.js';
import { getJson, kubectl, lab, until } from '../helpers/lab.js';

const agentBundle = join(repoRoot, 'dist', 'knode-agent.mjs');

const pods = async (selector = 'app=web'): Promise<V1Pod[]> => (await getJson<{ items: V1Pod[] }>(['get', 'pods', '-l', selector])).items;
const nodes = async (): Promise<V1Node[]> => (await getJson<{ items: V1Node[] }>(['get', 'nodes'])).items;

const isReady = (p: V1Pod): boolean => p.status?.phase === 'Running' && (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
const live = (ps: V1Pod[]): V1Pod[] => ps.filter((p) => p.metadata?.deletionTimestamp === undefined);

/** The Deployment's pods once `n` of them run and are Ready. */
function readyWebPods(n: number, timeoutMs = 60_000): Promise<V1Pod[]> {
  return until(`${n} Ready web pods`, async () => {
    const ps = live(await pods());
    return ps.length === n && ps.every(isReady) ? ps : undefined;
  }, timeoutMs);
}

function inNode(node: string, cmd: string[]): Promise<ExecResult> {
  return lab(['exec', node, '--', ...cmd], 30_000);
}

function agentPid(node: string): number {
  return Number(readFileSync(agentPaths(labNode(Number(node.replace('node-', '')))).pidFile, 'utf8').trim());
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function appContainerId(p: V1Pod): string {
  return (p.status?.containerStatuses?.[0]?.containerID ?? '').replace(/^(containerd|docker):\/\//, '');
}

/** Ids of the containers the node's runtime holds (sandboxes included). */
async function runtimeContainers(runtime: RuntimeKind, node: string): Promise<string[]> {
  const n = labNode(Number(node.replace('node-', '')));
  if (runtime === 'docker') return (await new Docker({ socketPath: dockerdPaths(n).socket }).listContainers({ all: true })).map((c) => c.Id);
  const r = await execFile('ctr', ['--address', containerdPaths(n).socket, '-n', 'k8s.io', 'containers', 'ls', '-q']);
  return r.stdout.split('\n').filter((s) => s !== '');
}

function labCniResults(): string[] {
  const dir = '/var/lib/cni/results';
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => {
    const text = readFileSync(join(dir, f), 'utf8');
    return text.includes(labRunDir + '/') || text.includes(labDataDir + '/');
  });
}

async function up(t: Test, runtime: RuntimeKind): Promise<void> {
  const r = await lab(['up', '--nodes', '2', '--runtime', runtime]);
  t.equal(r.code, 0, `scripts/lab up --nodes 2 --runtime ${runtime}`, { stderr: r.stderr.slice(-3000) });
}

t.before(async () => {
  await lab(['down']);
});

t.teardown(async () => {
  await kubectl(['delete', 'deployment', 'web', '--wait=false']);
  await lab(['down']);
});

t.test('bad flags exit 2, --help exits 0', async (t) => {
  if (!existsSync(agentBundle)) await execFile('node', [join(repoRoot, 'scripts/build.mjs')]);
  const bad = await execFile(process.execPath, [agentBundle, '--no-such-flag'], { allowFailure: true, timeoutMs: 10_000 });
  t.equal(bad.code, 2, 'exit code 2');
  t.match(bad.stderr, /unknown flag --no-such-flag/);
  const help = await execFile(process.execPath, [agentBundle, '--help'], { allowFailure: true, timeoutMs: 10_000 });
  t.equal(help.code, 0);
  t.match(help.stdout, /--cni-conf-dir/);
});

t.test('an unreachable runtime at start: retries, does not crash; SIGTERM exits 0', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'knode-agent-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(kubeconfig, [
    'apiVersion: v1', 'kind: Config',
    'clusters: [{name: x, cluster: {server: "https://127.0.0.1:1"}}]',
    'users: [{name: u, user: {token: t}}]',
    'contexts: [{name: c, context: {cluster: x, user: u}}]',
    'current-context: c', '',
  ].join('\n'));
  const child = spawn(process.execPath, [agentBundle, '--kubeconfig', kubeconfig, '--hostname-override', 't1', '--container-runtime-endpoint', `unix://${join(dir, 'none.sock')}`, '--root-dir', join(dir, 'root'), '--cni-conf-dir', join(dir, 'net.d')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  // Two retries logged (however long the machine takes to get there), and the process still runs.
  await until('two runtime retries logged', async () => ((stderr.match(/runtime not ready, retrying/g) ?? []).length >= 2 || child.exitCode !== null ? true : undefined), 60_000);
  t.equal(child.exitCode, null, 'still running after retrying without a runtime');
  t.ok((stderr.match(/runtime not ready, retrying/g) ?? []).length >= 2, 'logs the retries');
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: exit 0');
});

for (const runtime of ['containerd', 'docker'] as const) {
  t.test(`${runtime}: agents in the lab run a deployment`, async (t) => {
    const ctrContainers = (node: string): Promise<string[]> => runtimeContainers(runtime, node);
    await lab(['down']); // the lab of the other runtime, if any
    t.teardown(() => kubectl(['delete', 'deployment', 'web', '--wait=false']));
    await up(t, runtime);
    const status = await lab(['status']);
    t.match(status.stdout, /node-1 .*agent pid \d+ alive/, 'status shows the agent');

    const ready = await until('both Nodes Ready', async () => {
      const ns = await nodes();
      const ok = ns.filter((n) => (n.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'));
      return ok.length === 2 ? ns : undefined;
    }, 60_000);
    t.same(ready.map((n) => n.metadata?.name).sort(), ['node-1', 'node-2'], 'both Nodes Ready');
    const cidrs = new Map(ready.map((n) => [n.metadata?.name ?? '', n.spec?.podCIDR ?? '']));
    for (const [name, cidr] of cidrs) {
      t.match(cidr, /^10\.244\.\d+\.0\/24$/, `${name} has a podCIDR`);
      const conf = JSON.parse(readFileSync(join(containerdPaths(labNode(Number(name.replace('node-', '')))).cniConfDir, '10-knode.conflist'), 'utf8')) as { plugins: { type: string }[] };
      t.same(conf.plugins.map((p) => p.type), ['knode-flannel', 'knode-portmap'], `${name}: conflist with knode-flannel and knode-portmap`);
      const env = readFileSync(agentPaths(labNode(Number(name.replace('node-', '')))).subnetFile, 'utf8');
      t.match(env, `FLANNEL_SUBNET=${cidr.replace(/0\/24$/, '1/24')}`, `${name}: subnet file over the podCIDR`);
    }
    const routes = (await inNode('node-1', ['ip', 'route'])).stdout;
    const net2 = cidrs.get('node-2')!.replace(/\./g, '\\.');
    t.match(routes, new RegExp(`${net2} via ${net2.replace(/0\/24$/, '0')} dev flannel\\.1 onlink`), 'node-1 routes node-2\'s pods through VXLAN (the default overlay)');

    const create = await kubectl(['create', 'deployment', 'web', '--image=knode.local/app:1.0', '--replicas=2']);
    t.equal(create.code, 0, 'deployment created', { stderr: create.stderr });
    let web = await readyWebPods(2);
    for (const p of web) {
      const cidr = cidrs.get(p.spec?.nodeName ?? '') ?? '';
      t.ok(p.status?.podIP?.startsWith(cidr.replace(/0\/24$/, '')), `${p.metadata?.name} on ${p.spec?.nodeName}: podIP ${p.status?.podIP} in ${cidr}`);
      t.equal(p.status?.hostIP, p.spec?.nodeName === 'node-1' ? '172.31.0.11' : '172.31.0.12', 'hostIP');
      t.match(p.status?.containerStatuses?.[0]?.containerID, new RegExp(`^${runtime}://[0-9a-f]{64}$`), 'containerID');
      const r = await until(`HTTP from ${p.metadata?.name}`, async () => {
        const res = await inNode('node-1', ['curl', '-s', '-m', '3', `http://${p.status?.podIP}:8080/`]);
        return res.code === 0 ? res : undefined;
      }, 15_000);
      t.match(r.stdout, p.metadata?.name ?? '', `node-1 reaches ${p.metadata?.name} (on ${p.spec?.nodeName}) and it answers with its name`);
    }
    if (!web.some((p) => p.spec?.nodeName === 'node-2')) t.comment('no pod landed on node-2: cross-node HTTP not exercised this run');

    // Graceful delete: the agent stops the pod and makes the final delete; the ReplicaSet replaces it.
    const victim = web[0]!;
    const del = await kubectl(['delete', 'pod', victim.metadata!.name!, '--grace-period=2', '--wait=false']);
    t.equal(del.code, 0, 'kubectl delete pod');
    await until('the deleted pod gone from the API', async () => ((await pods()).some((p) => p.metadata?.uid === victim.metadata?.uid) ? undefined : true), 30_000);
    t.pass('the agent finally deleted the pod');
    web = await readyWebPods(2);
    t.notOk(web.some((p) => p.metadata?.uid === victim.metadata?.uid), 'a new pod replaced it');
    const victimContainer = appContainerId(victim);
    t.notOk((await ctrContainers(victim.spec!.nodeName!)).includes(victimContainer), `its container is removed from ${runtime}`);

    // kill -9 + restart: nothing restarts.
    const before = web.find((p) => p.spec?.nodeName === 'node-1') ?? web[0]!;
    const node = before.spec!.nodeName!;
    const oldPid = agentPid(node);
    process.kill(oldPid, 'SIGKILL');
    await until('the agent gone', async () => (alive(oldPid) ? undefined : true), 5000);
    await up(t, runtime);
    t.not(agentPid(node), oldPid, `a new agent runs on ${node}`);
    await until('the new agent registered', async () => (readFileSync(agentPaths(labNode(Number(node.replace('node-', '')))).log, 'utf8').split('\n').filter((l) => l.includes('"node registered"')).length >= 2 ? true : undefined), 30_000);
    await new Promise((r) => setTimeout(r, 4000)); // a few relist periods
    const after = (await pods()).find((p) => p.metadata?.uid === before.metadata?.uid);
    t.ok(after, 'the pod is still there');
    t.equal(appContainerId(after!), appContainerId(before), 'same container');
    t.equal(after?.status?.containerStatuses?.[0]?.restartCount, 0, 'restartCount 0');
    t.equal(after?.status?.podIP, before.status?.podIP, 'same podIP');
    t.ok(isReady(after!), 'still Ready');

    // A pod force-deleted while its agent was down is cleaned up when the agent starts.
    const orphan = (await readyWebPods(2)).find((p) => p.spec?.nodeName === 'node-2') ?? (await readyWebPods(2))[0]!;
    const orphanNode = orphan.spec!.nodeName!;
    const orphanContainer = appContainerId(orphan);
    process.kill(agentPid(orphanNode), 'SIGKILL');
    const force = await kubectl(['delete', 'pod', orphan.metadata!.name!, '--force', '--grace-period=0']);
    t.equal(force.code, 0, 'force delete while the agent is down');
    t.ok((await ctrContainers(orphanNode)).includes(orphanContainer), 'its container still runs');
    await up(t, runtime);
    await until('the orphaned container removed', async () => ((await ctrContainers(orphanNode)).includes(orphanContainer) ? undefined : true), 30_000);
    t.pass('the restarted agent removed the sandbox of the pod deleted while it was down');
    await readyWebPods(2);

    // A bad spec gives the upstream waiting reason, and the agent keeps serving the others.
    const bad = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'bad-image', labels: { app: 'bad' } }, spec: { containers: [{ name: 'c', image: 'knode.local/App:1.0' }] } };
    const made = await kubectl(['create', '--validate=false', '-f', '-'], JSON.stringify(bad));
    t.equal(made.code, 0, 'pod with an invalid image name created', { stderr: made.stderr });
    const reason = await until('InvalidImageName', async () => {
      const p = (await pods('app=bad'))[0];
      const r = p?.status?.containerStatuses?.[0]?.state?.waiting?.reason;
      return r === 'InvalidImageName' ? r : undefined;
    }, 30_000);
    t.equal(reason, 'InvalidImageName', 'waiting reason InvalidImageName');
    t.equal(live(await pods()).filter(isReady).length, 2, 'the web pods stay Ready');

    // A readiness gate: Ready waits for the gate's condition, which another component sets; the
    // agent's status writes keep that condition (they own only the kubelet's condition types).
    const gated = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'gated', labels: { app: 'gated' } }, spec: { readinessGates: [{ conditionType: 'example.com/gate' }], containers: [{ name: 'c', image: 'knode.local/app:1.0' }] } };
    t.equal((await kubectl(['create', '--validate=false', '-f', '-'], JSON.stringify(gated))).code, 0, 'pod with a readiness gate created');
    t.teardown(() => kubectl(['delete', 'pod', 'gated', '--wait=false']));
    const readyReason = (p: V1Pod | undefined): string | undefined => p?.status?.conditions?.find((c) => c.type === 'Ready')?.reason ?? p?.status?.conditions?.find((c) => c.type === 'Ready')?.status;
    t.equal(await until('gated pod Running, not Ready', async () => {
      const p = (await pods('app=gated'))[0];
      return p?.status?.phase === 'Running' && readyReason(p) === 'ReadinessGatesNotReady' ? readyReason(p) : undefined;
    }, 30_000), 'ReadinessGatesNotReady', 'Running but not Ready: ReadinessGatesNotReady');
    const gatePatch = await kubectl(['patch', 'pod', 'gated', '--subresource=status', '-p', JSON.stringify({ status: { conditions: [{ type: 'example.com/gate', status: 'True' }] } })]);
    t.equal(gatePatch.code, 0, 'gate condition set through the status subresource', { stderr: gatePatch.stderr });
    const gatedReady = await until('gated pod Ready', async () => {
      const p = (await pods('app=gated'))[0];
      return p !== undefined && isReady(p) ? p : undefined;
    }, 30_000);
    t.equal(gatedReady.status?.conditions?.find((c) => c.type === 'example.com/gate')?.status, 'True', 'the gate condition survived the agent\'s status write');

    // SIGTERM: the agent exits, the pods keep running.
    const pid = agentPid('node-1');
    const running = await ctrContainers('node-1');
    process.kill(pid, 'SIGTERM');
    await until('the agent exited on SIGTERM', async () => (alive(pid) ? undefined : true), 15_000);
    t.match(readFileSync(agentPaths(labNode(1)).log, 'utf8'), /"msg":"stopped"/, 'it logged a clean stop');
    t.same((await ctrContainers('node-1')).sort(), running.sort(), 'containers of node-1 are untouched');
    await up(t, runtime);
  });
}

t.test('down leaves nothing, CNI results included', async (t) => {
  const r = await lab(['down']);
  t.equal(r.code, 0, 'scripts/lab down', { stderr: r.stderr.slice(-3000) });
  t.same(labCniResults(), [], 'no CNI results naming the lab');
  t.notOk(existsSync(labRunDir) || existsSync(labDataDir), 'lab dirs removed');
});

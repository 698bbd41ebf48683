/**
 * Pod startup latency of knode-agent on a 1-node lab, next to its floor, plus the agent's RSS.
 *
 *   agent  30 pods created at once through the apiserver (spec.nodeName=node-1 set, so the
 *          scheduler is not in the path); latency = from the create request to the first watch
 *          event that shows the pod Running (an informer on the bench side, like a client's).
 *   floor  the same 30 sandboxes + containers created at once by this process calling CRI
 *          directly on the node's containerd (agent/runtime/cri's client): RunPodSandbox,
 *          PodSandboxStatus, ImageStatus, CreateContainer, StartContainer, with the configs the
 *          agent renders (agent/pods/config.ts: same labels, log dirs, DNS, cgroup parent,
 *          resources), the same image (pre-pulled, knode.local/app:1.0) and the same CNI
 *          (the lab node's conflist). Latency = from the first call to StartContainer's answer.
 *   CPU    CPU seconds of the agent (or the bench process, for the floor) and of containerd from
 *          the first create to the last pod Running (/proc/<pid>/stat): where the time goes.
 *   RSS    the agent's VmRSS (/proc/<pid>/status) with 0 pods (after a warm-up pod came and
 *          went) and with the 30 pods Running; VmHWM (its peak) too; VmRSS split into RssAnon
 *          (heap, malloc: the agent's own) and RssFile + RssShmem (the node binary's mapped code,
 *          shared with every node process).
 *
 * Design notes
 * - Rounds alternate the order agent/floor so machine drift hits both alike; p50/p99 pool every
 *   round's 30 samples. A warm-up pod through each path is not recorded.
 * - Between batches everything is removed and the bench waits until the node's containerd has no
 *   sandbox left, so a batch never shares the machine with the previous one's teardown.
 * - The lab: `scripts/lab down; scripts/lab up --nodes 1 --runtime containerd` at the start and
 *   `scripts/lab down` at the end (also on failure). Run it under the lab lock.
 *
 * Runtimes (--runtime containerd|docker|both, default containerd): on docker the lab node runs
 * dockerd and the floor makes the same sandboxes + containers through agent/runtime/docker from
 * this process (pause container, CNI run by this process inside the node's netns with the node's
 * conflist, app container joined to it) — what the agent's Docker backend does, without the agent.
 * `both` benches docker, then containerd (a fresh lab each) and prints them side by side.
 *
 * Usage (root): flock /run/knode-lab.lock scripts/bench-agent [--pods 30] [--rounds 3] [--runtime containerd|docker|both] [--node-options=--max-old-space-size=64]
 * (--node-options: NODE_OPTIONS for the lab's programs, the agent among them.)
 */
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import { createKubeClient, type KubeClient } from '../agent/kube/client.js';
import { startInformer } from '../agent/kube/informer.js';
import { podListWatch } from '../agent/kube/resources.js';
import { containerConfig, podSandboxConfig } from '../agent/pods/config.js';
import { createCriRuntime } from '../agent/runtime/cri/client.js';
import { createDockerRuntime } from '../agent/runtime/docker/client.js';
import type { Runtime } from '../agent/runtime/types.js';
import { execFile } from '../lib/exec.js';
import { createLogger } from '../lib/log.js';
import { agentPaths } from '../lab/machines/agent.js';
import { labCniBinDir } from '../lab/machines/cni-plugins.js';
import { containerdPaths } from '../lab/machines/containerd.js';
import { controlPlanePaths } from '../lab/machines/control-plane.js';
import { dockerdPaths } from '../lab/machines/dockerd.js';
import { labCgroupParent, labNode, netnsPath, type RuntimeKind } from '../lab/machines/layout.js';
import { imageRefs, repoRoot } from '../lab/paths.js';

const quiet = createLogger({ component: 'bench-agent', level: 'error' });
const node = labNode(1);
const nodeName = node.name;

// ---- statistics ------------------------------------------------------------

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}
const fmt = (ms: number): string => (ms / 1000).toFixed(2);
const ratio = (x: number, ref: number): string => `${(x / ref).toFixed(2)}×`;

// ---- helpers -----------------------------------------------------------------

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

function agentPid(): number {
  return Number(readFileSync(agentPaths(node).pidFile, 'utf8').trim());
}

/** CPU seconds (user + system, its waited-for children included: CNI plugins) a process has used so far (/proc/<pid>/stat, 100 ticks/s). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / 100;
}

/** The bench's runtime: containerd or docker (set once per lab in main). */
let runtimeKind: RuntimeKind = 'containerd';

/** The node's runtime daemon (containerd, or dockerd on docker). */
function containerdPid(): number {
  return Number(readFileSync(runtimeKind === 'docker' ? dockerdPaths(node).pidFile : containerdPaths(node).pidFile, 'utf8').trim());
}

/**
 * A runtime client from this process: containerd's CRI, or the agent's Docker backend with CNI
 * run inside the node's netns (the conflist and plugins the lab agent uses) and its own cache dir.
 */
function benchRuntime(kind: RuntimeKind, stateDir: string): Runtime {
  if (kind === 'containerd') return createCriRuntime({ endpoint: `unix://${containerdPaths(node).socket}`, requestTimeoutMs: 120_000, logger: quiet });
  return createDockerRuntime({
    endpoint: `unix://${dockerdPaths(node).socket}`,
    requestTimeoutMs: 120_000,
    logger: quiet,
    network: { confDir: containerdPaths(node).cniConfDir, binDir: labCniBinDir(node), hostNetns: netnsPath(node.netns) },
    stateDir,
    sandboxImage: imageRefs.pause,
    cgroupParent: labCgroupParent(node),
  });
}

function memory(pid: number): { rssMB: number; hwmMB: number; anonMB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMB: kb('VmRSS') / 1024, hwmMB: kb('VmHWM') / 1024, anonMB: kb('RssAnon') / 1024 };
}

async function lab(args: string[], env?: NodeJS.ProcessEnv): Promise<void> {
  const r = await execFile(join(repoRoot, 'scripts/lab'), args, { allowFailure: true, timeoutMs: 300_000, ...(env !== undefined ? { env } : {}) });
  if (r.code !== 0) throw new Error(`scripts/lab ${args.join(' ')} failed: ${r.stderr.slice(-2000)}`);
}

function benchPod(name: string, uid?: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', labels: { bench: 'agent' }, ...(uid !== undefined ? { uid } : {}) },
    spec: {
      nodeName,
      terminationGracePeriodSeconds: 0,
      restartPolicy: 'Always',
      dnsPolicy: 'ClusterFirst',
      enableServiceLinks: false,
      containers: [{ name: 'app', image: imageRefs.app, imagePullPolicy: 'IfNotPresent', ports: [{ containerPort: 8080, protocol: 'TCP' }] }],
    },
  };
}

async function sandboxCount(cri: Runtime): Promise<number> {
  return (await cri.listPodSandbox()).length;
}

// ---- the agent path ----------------------------------------------------------

async function agentBatch(kube: KubeClient, cri: Runtime, prefix: string, n: number): Promise<{ latencies: number[]; rssMB: number; hwmMB: number; anonMB: number; afterMB: number; agentCpu: number; containerdCpu: number }> {
  const cpu0 = { agent: cpuSeconds(agentPid()), containerd: cpuSeconds(containerdPid()) };
  const controller = new AbortController();
  const created = new Map<string, number>();
  const running = new Map<string, number>();
  let allRunning: () => void = () => undefined;
  const done = new Promise<void>((r) => (allRunning = r));
  const seen = (pod: V1Pod): void => {
    const name = pod.metadata?.name ?? '';
    if (!name.startsWith(prefix) || running.has(name) || pod.status?.phase !== 'Running') return;
    running.set(name, performance.now());
    if (running.size === n) allRunning();
  };
  const informer = startInformer<V1Pod>({
    listWatch: podListWatch(kube),
    fieldSelector: `spec.nodeName=${nodeName}`,
    labelSelector: 'bench=agent',
    signal: controller.signal,
    logger: quiet,
    onAdd: seen,
    onUpdate: (_old, pod) => seen(pod),
    onDelete: () => undefined,
  });
  try {
    await informer.synced;
    const names = Array.from({ length: n }, (_, i) => `${prefix}${i}`);
    await Promise.all(
      names.map(async (name) => {
        created.set(name, performance.now());
        await kube.core.createNamespacedPod({ namespace: 'default', body: benchPod(name) });
      }),
    );
    await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${running.size}/${n} pods Running after 180 s`)), 180_000))]);
    const latencies = names.map((name) => running.get(name)! - created.get(name)!);
    const agentCpu = cpuSeconds(agentPid()) - cpu0.agent;
    const containerdCpu = cpuSeconds(containerdPid()) - cpu0.containerd;
    await new Promise((r) => setTimeout(r, 1000)); // let the last status writes settle
    const mem = memory(agentPid());
    await Promise.all(names.map((name) => kube.core.deleteNamespacedPod({ name, namespace: 'default', gracePeriodSeconds: 0 }).catch(() => undefined)));
    await until('the agent removed every sandbox', async () => ((await sandboxCount(cri)) === 0 ? true : undefined), 180_000);
    return { latencies, ...mem, afterMB: memory(agentPid()).rssMB, agentCpu, containerdCpu };
  } finally {
    controller.abort();
    await informer.done;
  }
}

// ---- the floor: CRI straight from this process ---------------------------------------

async function floorBatch(cri: Runtime, prefix: string, n: number, memoryCapacity: number): Promise<{ latencies: number[]; benchCpu: number; containerdCpu: number }> {
  const cpu0 = { bench: process.cpuUsage(), containerd: cpuSeconds(containerdPid()) };
  const sandboxOptions = { podLogsRoot: agentPaths(node).podLogsDir, clusterDNS: ['10.96.0.10'], clusterDomain: 'cluster.local', cgroupParent: labCgroupParent(node) };
  const ids: string[] = [];
  const one = async (i: number): Promise<number> => {
    const t0 = performance.now();
    const pod = benchPod(`${prefix}${i}`, `${prefix}${i}-${process.pid}`);
    const sandboxConfig = podSandboxConfig(pod, 0, sandboxOptions);
    if (sandboxConfig.logDirectory !== undefined) await mkdir(sandboxConfig.logDirectory, { recursive: true, mode: 0o755 });
    const sandboxId = await cri.runPodSandbox(sandboxConfig);
    ids.push(sandboxId);
    await cri.podSandboxStatus(sandboxId);
    const image = await cri.imageStatus({ image: imageRefs.app });
    if (image === undefined) throw new Error(`${imageRefs.app} is not present on ${nodeName}`);
    const spec = pod.spec!.containers[0]!;
    const config = containerConfig(pod, spec, { restartCount: 0, imageRef: image.id, env: [], mounts: [], memoryCapacity });
    const id = await cri.createContainer(sandboxId, config, sandboxConfig);
    await cri.startContainer(id);
    return performance.now() - t0;
  };
  try {
    const latencies = await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
    const b = process.cpuUsage(cpu0.bench);
    return { latencies, benchCpu: (b.user + b.system) / 1e6, containerdCpu: cpuSeconds(containerdPid()) - cpu0.containerd };
  } finally {
    for (const id of ids) {
      await cri.stopPodSandbox(id).catch(() => undefined);
      await cri.removePodSandbox(id).catch(() => undefined);
    }
  }
}

// ---- main ---------------------------------------------------------------------

/** Startup latencies (ms) of one runtime's lab: the agent's and the floor's, every round pooled. */
interface RuntimeResult {
  kind: RuntimeKind;
  agent: number[];
  floor: number[];
}

async function benchOn(kind: RuntimeKind, n: number, rounds: number, nodeOptions: string | undefined): Promise<RuntimeResult> {
  runtimeKind = kind;
  console.log(`\n==== runtime: ${kind} ====`);
  console.log(`load average at the start: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  await lab(['down']);
  let cri: Runtime | undefined;
  const stateDir = await mkdtemp(join(tmpdir(), 'knode-bench-agent-'));
  try {
    // --node-options: NODE_OPTIONS for the lab's node programs (the agent among them), e.g. a heap cap.
    await lab(['up', '--nodes', '1', '--runtime', kind], nodeOptions !== undefined ? { ...process.env, NODE_OPTIONS: nodeOptions } : undefined);
    if (nodeOptions !== undefined) console.log(`the lab runs with NODE_OPTIONS=${nodeOptions}`);
    const kube = createKubeClient(controlPlanePaths.adminKubeconfig);
    await until(`${nodeName} Ready`, async () => {
      const nd = await kube.core.readNode({ name: nodeName });
      return nd.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? true : undefined;
    }, 120_000);
    cri = benchRuntime(kind, stateDir);
    await cri.waitReady({ timeoutMs: 30_000 });
    const memoryCapacity = Number(/^MemTotal:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) * 1024;

    // Warm-up, one pod each way: image present, CNI and the agent's code paths warm.
    await agentBatch(kube, cri, 'bench-warm-', 1);
    await floorBatch(cri, 'bench-floor-warm-', 1, memoryCapacity);
    await new Promise((r) => setTimeout(r, 3000));
    const idle = memory(agentPid());

    const agent: number[] = [];
    const floor: number[] = [];
    const perRound: string[] = [];
    const rss: string[] = [];
    const cpu: string[] = [];
    let at30 = { rssMB: 0, hwmMB: 0, anonMB: 0 };
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? (['agent', 'floor'] as const) : (['floor', 'agent'] as const);
      const got: Record<string, number[]> = {};
      for (const which of order) {
        if (which === 'agent') {
          const b = await agentBatch(kube, cri, `bench-${r}-`, n);
          got.agent = b.latencies;
          at30 = { rssMB: Math.max(at30.rssMB, b.rssMB), hwmMB: Math.max(at30.hwmMB, b.hwmMB), anonMB: Math.max(at30.anonMB, b.anonMB) };
          cpu.push(`round ${r + 1} agent: CPU until all Running: knode-agent ${b.agentCpu.toFixed(2)} s, ${runtimeKind === 'docker' ? 'dockerd' : 'containerd'} ${b.containerdCpu.toFixed(2)} s`);
          rss.push(`round ${r + 1}: VmRSS ${b.rssMB.toFixed(1)} MB (RssAnon ${b.anonMB.toFixed(1)}) with ${n} pods Running, ${b.afterMB.toFixed(1)} MB once they are gone`);
        } else {
          const fb = await floorBatch(cri, `bench-floor-${r}-`, n, memoryCapacity);
          got.floor = fb.latencies;
          cpu.push(`round ${r + 1} floor: CPU until all started: bench process ${fb.benchCpu.toFixed(2)} s, ${runtimeKind === 'docker' ? 'dockerd' : 'containerd'} ${fb.containerdCpu.toFixed(2)} s`);
          await until('the floor sandboxes removed', async () => ((await sandboxCount(cri!)) === 0 ? true : undefined), 60_000);
        }
        await new Promise((res) => setTimeout(res, 2000));
      }
      agent.push(...got.agent!);
      floor.push(...got.floor!);
      const a = [...got.agent!].sort((x, y) => x - y);
      const f = [...got.floor!].sort((x, y) => x - y);
      perRound.push(`round ${r + 1} (${order.join(' then ')}): agent p50 ${fmt(percentile(a, 50))} s p99 ${fmt(percentile(a, 99))} s; floor p50 ${fmt(percentile(f, 50))} s p99 ${fmt(percentile(f, 99))} s`);
      console.log(`[${kind}] ${perRound.at(-1) ?? ''}`); // as it goes: a run cut short still leaves its rounds
    }

    const a = [...agent].sort((x, y) => x - y);
    const f = [...floor].sort((x, y) => x - y);
    const row = (name: string, s: number[]): string =>
      `| ${name} | ${s.length} | ${fmt(percentile(s, 50))} | ${fmt(percentile(s, 99))} | ${fmt(s.at(-1) ?? NaN)} | ${ratio(percentile(s, 50), percentile(f, 50))} | ${ratio(percentile(s, 99), percentile(f, 99))} |`;
    console.log(`\npod startup on ${kind}, ${n} pods at once on ${nodeName}, ${rounds} round(s), pre-pulled ${imageRefs.app}\n`);
    console.log('| path | samples | p50 s | p99 s | max s | p50 vs floor | p99 vs floor |');
    console.log('|---|---:|---:|---:|---:|---:|---:|');
    console.log(row(kind === 'docker' ? 'floor: agent/runtime/docker calls from one process' : 'floor: CRI calls from one process', f));
    console.log(row('knode-agent: create → Running (watch)', a));
    console.log('');
    for (const line of perRound) console.log(line);
    console.log('');
    for (const line of cpu) console.log(line);
    console.log('\n| knode-agent memory | MB |');
    console.log('|---|---:|');
    console.log(`| VmRSS, 0 pods (after warm-up) | ${idle.rssMB.toFixed(1)} |`);
    console.log(`| RssAnon (the agent's own: heap, malloc), 0 pods | ${idle.anonMB.toFixed(1)} |`);
    console.log(`| VmRSS, ${n} pods Running (max over rounds) | ${at30.rssMB.toFixed(1)} |`);
    console.log(`| RssAnon, ${n} pods Running (max over rounds) | ${at30.anonMB.toFixed(1)} |`);
    console.log(`| VmHWM (peak) at the end | ${at30.hwmMB.toFixed(1)} |`);
    console.log('');
    for (const line of rss) console.log(line);
    console.log(`\nload average at the end: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
    return { kind, agent: a, floor: f };
  } finally {
    cri?.close();
    await lab(['down']).catch((err: unknown) => console.error(String(err)));
    await rm(stateDir, { recursive: true, force: true });
  }
}

/** The runtimes side by side: each path's p50/p99 and its ratio to its own runtime's floor and to containerd's floor. */
function sideBySide(results: RuntimeResult[], n: number, rounds: number): void {
  const cf = results.find((r) => r.kind === 'containerd')?.floor ?? [];
  const ref = { p50: percentile(cf, 50), p99: percentile(cf, 99) };
  console.log(`\npod startup side by side, ${n} pods at once, ${rounds} round(s) per runtime, pre-pulled ${imageRefs.app}\n`);
  console.log('| path | samples | p50 s | p99 s | p50 vs own floor | p99 vs own floor | p50 vs containerd floor | p99 vs containerd floor |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    const own = { p50: percentile(r.floor, 50), p99: percentile(r.floor, 99) };
    for (const [name, s] of [
      [`floor on ${r.kind}`, r.floor],
      [`knode-agent on ${r.kind}`, r.agent],
    ] as const) {
      const p50 = percentile(s, 50);
      const p99 = percentile(s, 99);
      console.log(`| ${name} | ${s.length} | ${fmt(p50)} | ${fmt(p99)} | ${ratio(p50, own.p50)} | ${ratio(p99, own.p99)} | ${ratio(p50, ref.p50)} | ${ratio(p99, ref.p99)} |`);
    }
  }
  const agents = new Map(results.map((r) => [r.kind, r.agent]));
  const d = agents.get('docker');
  const c = agents.get('containerd');
  if (d !== undefined && c !== undefined) console.log(`\nknode-agent docker/containerd: p50 ${ratio(percentile(d, 50), percentile(c, 50))}, p99 ${ratio(percentile(d, 99), percentile(c, 99))}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { pods: { type: 'string', default: '30' }, rounds: { type: 'string', default: '3' }, runtime: { type: 'string', default: 'containerd' }, 'node-options': { type: 'string' } } });
  const nodeOptions = values['node-options'];
  const n = Number(values.pods);
  const rounds = Number(values.rounds);
  const which = values.runtime;
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(rounds) || rounds < 1) throw new Error('--pods and --rounds take positive integers');
  const kinds: RuntimeKind[] = which === 'both' ? ['docker', 'containerd'] : which === 'containerd' || which === 'docker' ? [which] : [];
  if (kinds.length === 0) throw new Error(`--runtime ${which}: containerd, docker or both`);
  if (process.getuid?.() !== 0) throw new Error('bench-agent needs root (the lab)');
  const results: RuntimeResult[] = [];
  for (const kind of kinds) results.push(await benchOn(kind, n, rounds, nodeOptions));
  if (results.length > 1) sideBySide(results, n, rounds);
}

main().catch((err: unknown) => {
  console.error(`bench-agent: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});

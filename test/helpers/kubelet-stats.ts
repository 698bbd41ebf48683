/**
 * /stats/summary checks shared by the kubelet-server e2e tests (containerd and
 * docker): a pod that writes 2 MiB into an emptyDir and 1 MiB into its root
 * filesystem, logs a line a second, and gets traffic; the Summary must show
 * real non-zero figures for it (network, volume, rootfs, logs,
 * ephemeral-storage) and for the node (fs, imageFs, network).
 * `statsPodTest` is the integration variant (cri-stats, docker-stats): the pod made
 * straight through a runtime, readSummary called in-process.
 */
import t from 'tap';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { volumeHostPath } from '../../agent/pods/volumes.js';
import { readSummary } from '../../agent/server/stats.js';
import type { PodSandboxConfig, Runtime } from '../../agent/runtime/types.js';
import { imageRefs } from '../../lab/paths.js';
import type { TestEnv } from './containerd.js';
import { until } from './poll.js';

export const statsPodName = 'stats';

export function statsPod(): V1Pod {
  const script = 'dd if=/dev/zero of=/scratch/f bs=1024 count=2048 && dd if=/dev/zero of=/tmp/rootfs-f bs=1024 count=1024 && i=0; while true; do echo "stats $i"; i=$((i+1)); sleep 1; done';
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: statsPodName },
    spec: {
      terminationGracePeriodSeconds: 1,
      volumes: [{ name: 'scratch', emptyDir: {} }],
      containers: [{ name: statsPodName, image: 'knode.local/app:1.0', command: ['sh', '-c', script], volumeMounts: [{ name: 'scratch', mountPath: '/scratch' }] }],
    },
  };
}

interface Fs {
  usedBytes?: number;
  capacityBytes?: number;
  availableBytes?: number;
  inodesUsed?: number;
}

interface Net {
  name?: string;
  rxBytes?: number;
  txBytes?: number;
  interfaces?: { name: string }[];
}

export interface Summary {
  node: { fs?: Fs; runtime?: { imageFs?: Fs }; network?: Net };
  pods: {
    podRef: { name: string };
    network?: Net;
    volume?: (Fs & { name: string })[];
    'ephemeral-storage'?: Fs;
    containers: { name: string; rootfs?: Fs; logs?: Fs }[];
  }[];
}

export interface Check {
  what: string;
  ok: boolean;
  got: unknown;
}

const MiB = 1024 * 1024;

/** The checks on one Summary for the stats pod. Pure. */
export function statsChecks(s: Summary): Check[] {
  const p = s.pods.find((x) => x.podRef.name === statsPodName);
  const c = p?.containers.find((x) => x.name === statsPodName);
  const scratch = p?.volume?.find((v) => v.name === 'scratch');
  const n = s.node;
  return [
    { what: 'node fs: capacity and usage (statfs of the root dir)', ok: (n.fs?.capacityBytes ?? 0) > 0 && (n.fs?.usedBytes ?? 0) > 0 && (n.fs?.availableBytes ?? 0) > 0, got: n.fs },
    { what: 'node runtime.imageFs: the images\' usage, with capacity', ok: (n.runtime?.imageFs?.usedBytes ?? 0) > 0 && (n.runtime?.imageFs?.capacityBytes ?? 0) > 0, got: n.runtime?.imageFs },
    { what: 'node network: interfaces with traffic', ok: (n.network?.interfaces?.length ?? 0) > 0 && (n.network?.rxBytes ?? 0) > 0, got: n.network },
    { what: 'pod network: eth0 received and sent bytes', ok: p?.network?.name === 'eth0' && (p.network.rxBytes ?? 0) > 0 && (p.network.txBytes ?? 0) > 0, got: p?.network },
    { what: 'emptyDir volume scratch: the 2 MiB written', ok: (scratch?.usedBytes ?? 0) >= 2 * MiB && (scratch?.inodesUsed ?? 0) >= 2, got: scratch },
    { what: 'container rootfs: the 1 MiB written to /tmp', ok: (c?.rootfs?.usedBytes ?? 0) >= MiB, got: c?.rootfs },
    { what: 'container logs: its log directory', ok: (c?.logs?.usedBytes ?? 0) > 0, got: c?.logs },
    { what: 'ephemeral-storage: rootfs + logs + emptyDir', ok: (p?.['ephemeral-storage']?.usedBytes ?? 0) >= 3 * MiB, got: p?.['ephemeral-storage'] },
  ];
}

/** Polls the Summary until every check passes (the runtime's usage figures lag a little), or gives the last checks after `timeoutMs`. */
export async function settledStatsChecks(fetchSummary: () => Promise<Summary>, timeoutMs = 90_000): Promise<Check[]> {
  let last: Check[] = [];
  try {
    await until('every /stats/summary check passes', async () => {
      last = statsChecks(await fetchSummary());
      return last.every((c) => c.ok) ? true : undefined;
    }, timeoutMs, 2000);
  } catch {
    // the failing checks are reported by the caller
  }
  return last;
}

/**
 * Runs the stats pod through `rt` as the agent would (its emptyDir under <tmp>/agent, bind-mounted),
 * fetches a page from it inside the test namespace, and checks readSummary's figures (all but the
 * node's network, which is the test process's own). The sandbox is removed at teardown.
 */
export async function statsPodTest(o: { env: TestEnv; rt: Runtime; runtimeName: string; cgroupParent: string; ipPattern: RegExp; settleMs: number }): Promise<void> {
  const { env, rt } = o;
  const rootDir = join(env.tmp, 'agent');
  const uid = `uid-${env.rand}`;
  const spec = statsPod();
  const pod: V1Pod = { ...spec, metadata: { ...spec.metadata, namespace: 'default', uid } };
  const scratch = volumeHostPath(rootDir, uid, pod.spec!.volumes![0]!)!;
  await mkdir(scratch, { recursive: true });
  const sandboxConfig: PodSandboxConfig = {
    metadata: { name: statsPodName, namespace: 'default', uid, attempt: 0 },
    hostname: statsPodName,
    logDirectory: join(env.tmp, 'pod-logs'),
    labels: { 'io.kubernetes.pod.uid': uid },
    annotations: {},
    linux: { cgroupParent: o.cgroupParent },
  };
  await mkdir(sandboxConfig.logDirectory!, { recursive: true });
  const sandboxId = await rt.runPodSandbox(sandboxConfig);
  t.teardown(() => rt.removePodSandbox(sandboxId));
  const c = pod.spec!.containers[0]!;
  const appId = await rt.createContainer(
    sandboxId,
    {
      metadata: { name: c.name, attempt: 0 },
      image: { image: imageRefs.app },
      // The stats script, then the app's httpd in the background so the pod has something to fetch.
      command: ['sh', '-c', `httpd -p 8080 -h /tmp; ${c.command![2]!}`],
      mounts: [{ containerPath: '/scratch', hostPath: scratch }],
      logPath: `${c.name}/0.log`,
      labels: { 'io.kubernetes.pod.uid': uid, 'io.kubernetes.container.name': c.name },
      annotations: {},
    },
    sandboxConfig,
  );
  await rt.startContainer(appId);

  t.test(`readSummary on ${o.runtimeName}: fs, imageFs, pod network, emptyDir, rootfs, logs, ephemeral-storage`, async (t) => {
    const ip = (await rt.podSandboxStatus(sandboxId)).status.network.ip;
    t.match(ip, o.ipPattern, 'the pod has an IP on the test bridge');
    let fetched = false;
    for (let i = 0; i < 100 && !fetched; i++) {
      const r = await env.inNetns('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', `http://${ip}:8080/`], { allowFailure: true });
      fetched = r.stdout !== '000' && r.stdout !== '';
      if (!fetched) await new Promise((r) => setTimeout(r, 200));
    }
    t.ok(fetched, 'HTTP to the pod from the test namespace (traffic on its eth0)');
    const checks = await settledStatsChecks(async () => (await readSummary('n1', rt, new Date(), { rootDir, pods: () => [pod] })) as Summary, o.settleMs);
    for (const ch of checks) {
      // The node's own network is the test process's (the root namespace's), not a lab node's: not checked here.
      if (ch.what.startsWith('node network')) continue;
      t.ok(ch.ok, ch.what, { got: ch.got });
    }
    t.ok(checks.length > 0, 'the Summary was read');
  });
}

/**
 * /stats/summary's gathering (readSummary) on the Docker backend, for real: a
 * throw-away dockerd in a `knode-t-<random>` namespace (reference CNI bridge
 * 10.253.2.0/24), a pod with an emptyDir (a directory under the test's
 * <root-dir>/pods/<uid>/volumes/kubernetes.io~empty-dir/, bind-mounted as the
 * agent does) whose container writes 2 MiB there and 1 MiB into its root
 * filesystem, logs a line a second, and serves HTTP; the test fetches a page
 * from the pod's IP inside the test namespace. The Summary shows the node's
 * fs and imageFs, the pod's eth0 traffic (from /proc/<pause pid>/net/dev), the
 * volume, the container's rootfs (docker's SizeRw) and logs, and
 * ephemeral-storage, all non-zero.
 *
 * Teardown: test/helpers/dockerd.ts removes the containers, then
 * test/helpers/containerd.ts removes processes, mounts, the cgroup parent,
 * the namespace and the temp dir.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { createDockerRuntime } from '../../agent/runtime/docker/client.js';
import type { PodSandboxConfig } from '../../agent/runtime/types.js';
import { volumeHostPath } from '../../agent/pods/volumes.js';
import { readSummary } from '../../agent/server/stats.js';
import { createLogger } from '../../lib/log.js';
import { imageArchive, imageRefs } from '../../lab/paths.js';
import { createTestEnv } from '../helpers/containerd.js';
import { startDockerd } from '../helpers/dockerd.js';
import { settledStatsChecks, statsPod, statsPodName, type Summary } from '../helpers/kubelet-stats.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}
for (const name of ['pause', 'app'] as const) {
  if (!existsSync(imageArchive(name, 'docker'))) {
    t.fail(`${imageArchive(name, 'docker')} missing: run scripts/setup (or knode-lab images build)`);
    process.exit(1);
  }
}

const env = await createTestEnv(t, 'docker-stats');
const { rand, tmp } = env;
const cgroupParent = `/knode-t-${rand}`;
env.cleanupCgroup(cgroupParent);
const cniConfDir = join(tmp, 'cni', 'net.d');
await mkdir(cniConfDir, { recursive: true });
await writeFile(
  join(cniConfDir, '10-test.conflist'),
  JSON.stringify({
    cniVersion: '1.0.0',
    name: `knode-t-${rand}`,
    plugins: [{ type: 'bridge', bridge: `kt-${rand}`, isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: '10.253.2.0/24' }]], dataDir: join(tmp, 'cni', 'ipam') } }],
  }),
);
const dockerd = await startDockerd(env, { cgroupParent });
await dockerd.loadImages(['pause', 'app']);
const rt = createDockerRuntime({
  endpoint: dockerd.endpoint,
  requestTimeoutMs: 60_000,
  network: { confDir: cniConfDir, binDir: '/usr/lib/cni', hostNetns: env.netnsPath },
  stateDir: join(tmp, 'state'),
  sandboxImage: imageRefs.pause,
  cgroupParent,
  logger: createLogger({ component: 'docker-stats-test', level: 'warn' }),
});
t.teardown(() => rt.close());

// The pod as the agent would run it: the stats pod's spec, its emptyDir under <root-dir>.
const rootDir = join(tmp, 'agent');
const uid = `uid-${rand}`;
const spec = statsPod();
const pod: V1Pod = { ...spec, metadata: { ...spec.metadata, namespace: 'default', uid } };
const scratch = volumeHostPath(rootDir, uid, pod.spec!.volumes![0]!)!;
await mkdir(scratch, { recursive: true });
const sandboxConfig: PodSandboxConfig = {
  metadata: { name: statsPodName, namespace: 'default', uid, attempt: 0 },
  hostname: statsPodName,
  logDirectory: join(tmp, 'pod-logs'),
  labels: { 'io.kubernetes.pod.uid': uid },
  annotations: {},
  linux: { cgroupParent },
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

t.test('readSummary on docker: fs, imageFs, pod network, emptyDir, rootfs, logs, ephemeral-storage', async (t) => {
  const ip = (await rt.podSandboxStatus(sandboxId)).status.network.ip;
  t.match(ip, /^10\.253\.2\.\d+$/, 'the pod has an IP on the test bridge');
  let fetched = false;
  for (let i = 0; i < 100 && !fetched; i++) {
    const r = await env.inNetns('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', `http://${ip}:8080/`], { allowFailure: true });
    fetched = r.stdout !== '000' && r.stdout !== '';
    if (!fetched) await new Promise((r) => setTimeout(r, 200));
  }
  t.ok(fetched, 'HTTP to the pod from the test namespace (traffic on its eth0)');
  const checks = await settledStatsChecks(async () => (await readSummary('n1', rt, new Date(), { rootDir, pods: () => [pod] })) as Summary, 60_000);
  for (const ch of checks) {
    // The node's own network is the test process's (the root namespace's), not a lab node's: not checked here.
    if (ch.what.startsWith('node network')) continue;
    t.ok(ch.ok, ch.what, { got: ch.got });
  }
  t.ok(checks.length > 0, 'the Summary was read');
});

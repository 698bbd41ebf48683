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
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDockerRuntime } from '../../agent/runtime/docker/client.js';
import { createLogger } from '../../lib/log.js';
import { imageRefs } from '../../lab/paths.js';
import { createTestEnv } from '../helpers/containerd.js';
import { startDockerd } from '../helpers/dockerd.js';
import { statsPodTest } from '../helpers/kubelet-stats.js';
import { requireLabImages } from '../helpers/lab-images.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}
requireLabImages(['docker']);

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

await statsPodTest({ env, rt, runtimeName: 'docker', cgroupParent, ipPattern: /^10\.253\.2\.\d+$/, settleMs: 60_000 });

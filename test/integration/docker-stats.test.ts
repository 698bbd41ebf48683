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
import { createTestEnv } from '../helpers/containerd.js';
import { startDockerRuntime } from '../helpers/dockerd.js';
import { statsPodTest } from '../helpers/kubelet-stats.js';
import { requireLabImages } from '../helpers/lab-images.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}
requireLabImages(['docker']);

const env = await createTestEnv(t, 'docker-stats');
const { rt, cgroupParent } = await startDockerRuntime(env, { subnet: '10.253.2.0/24', component: 'docker-stats-test' });
t.teardown(() => rt.close());

await statsPodTest({ env, rt, runtimeName: 'docker', cgroupParent, ipPattern: /^10\.253\.2\.\d+$/, settleMs: 60_000 });

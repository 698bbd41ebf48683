/**
 * /stats/summary's gathering (readSummary) on containerd's CRI, for real: a
 * throw-away containerd in a `knode-t-<random>` namespace (reference CNI
 * bridge 10.253.3.0/24, run by containerd), a pod with an emptyDir (a directory under the test's
 * <root-dir>/pods/<uid>/volumes/kubernetes.io~empty-dir/, bind-mounted as the
 * agent does) whose container writes 2 MiB there and 1 MiB into its root
 * filesystem, logs a line a second, and serves HTTP; the test fetches a page
 * from the pod's IP inside the test namespace. The Summary shows the node's
 * fs and imageFs, the pod's eth0 traffic (from /proc/<sandbox pid>/net/dev, the pid
 * from the verbose PodSandboxStatus), the volume, the container's rootfs
 * (containerd's writable-layer usage, refreshed every ~10 s) and logs, and
 * ephemeral-storage, all non-zero.
 *
 * Teardown: test/helpers/containerd.ts removes processes, mounts, the cgroup parent,
 * the namespace and the temp dir.
 */
import t from 'tap';
import { createCriRuntime } from '../../agent/runtime/cri/client.js';
import { createLogger } from '../../lib/log.js';
import { createTestEnv, startContainerd, writeBridgeConflist } from '../helpers/containerd.js';
import { statsPodTest } from '../helpers/kubelet-stats.js';
import { requireLabImages } from '../helpers/lab-images.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}
requireLabImages(['oci']);

const env = await createTestEnv(t, 'cri-stats');
const { rand } = env;
const cgroupParent = `/knode-t-${rand}`;
env.cleanupCgroup(cgroupParent);
env.cleanupCniCache(`knode-t-${rand}`);
const cniConfDir = await writeBridgeConflist(env, '10.253.3.0/24');
const containerd = await startContainerd(env, { cri: { cniConfDir } });
await containerd.importImages(['pause', 'app']);
const rt = createCriRuntime({ endpoint: `unix://${containerd.socket}`, requestTimeoutMs: 60_000, logger: createLogger({ component: 'cri-stats-test', level: 'warn' }) });
t.teardown(() => rt.close());

await statsPodTest({ env, rt, runtimeName: 'containerd', cgroupParent, ipPattern: /^10\.253\.3\.\d+$/, settleMs: 90_000 });

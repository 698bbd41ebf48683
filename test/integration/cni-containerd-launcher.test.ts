/**
 * containerd runs knode's conflist through the sh launcher and knode-cni-daemon, for real: a
 * throw-away containerd (CRI) in a throw-away `knode-t-<random>` namespace whose CNI bin dir holds
 * the rendered launcher and the plugin names linked to it (as install-node and the lab make it),
 * a knode-cni-daemon in the same namespace on a temporary socket, and a pod sandbox run, stopped
 * and removed through the agent's CRI client. The daemon's request log proves the path; no Node
 * plugin process is started. Teardown: test/helpers/containerd.ts.
 */
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCriRuntime } from '../../agent/runtime/cri/client.js';
import type { PodSandboxConfig } from '../../agent/runtime/types.js';
import { buildDaemon, buildPlugins } from '../../cni/testing/harness.js';
import { installLauncher } from '../../cni/launcher.js';
import { errorMessage } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { imageArchive } from '../../lab/paths.js';
import { createTestEnv, startContainerd, waitFor } from '../helpers/containerd.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}
if (!existsSync(imageArchive('pause', 'oci'))) {
  t.fail(`${imageArchive('pause', 'oci')} missing: run scripts/setup (or knode-lab images build)`);
  process.exit(1);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bundleDir = join(root, 'build', 'cni-test');

const env = await createTestEnv(t, 'cnil');
const { rand, tmp } = env;
const network = `knode-t-${rand}`;
const cgroupParent = `/knode-t-${rand}`;
env.cleanupCgroup(cgroupParent);
env.cleanupCniCache(network);
const quiet = createLogger({ component: 'cni-ctd-test', level: 'warn' });
const socket = join(tmp, 'knode', 'cni.sock');
const daemonLog = join(tmp, 'cni-daemon.log');

async function setUp(): Promise<ReturnType<typeof createCriRuntime>> {
  await buildPlugins();
  const daemonBundle = await buildDaemon();
  const binDir = join(tmp, 'cni', 'bin');
  await installLauncher(binDir, { node: process.execPath, dist: bundleDir, socket, generator: 'cni-containerd-launcher.test.ts' });
  env.startDaemon('cni-daemon', process.execPath, [daemonBundle, '--socket', socket, '--log-requests']);
  await waitFor('the daemon socket', async () => (existsSync(socket) ? true : undefined), 20_000);

  const cniConfDir = join(tmp, 'cni', 'net.d');
  await mkdir(cniConfDir, { recursive: true });
  await writeFile(
    join(cniConfDir, '10-knode-test.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: network,
      plugins: [
        {
          type: 'knode-bridge',
          bridge: 'knode-tbr1',
          isGateway: true,
          ipMasq: false,
          ipam: { type: 'knode-host-local', ranges: [[{ subnet: '10.251.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(tmp, 'cni', 'ipam') },
        },
        { type: 'knode-portmap', capabilities: { portMappings: true } },
      ],
    }),
  );
  const containerd = await startContainerd(env, { cri: { cniConfDir, cniBinDir: binDir } });
  await containerd.importImages(['pause']);
  const cri = createCriRuntime({ endpoint: `unix://${containerd.socket}`, requestTimeoutMs: 60_000, logger: quiet });
  t.teardown(() => cri.close());
  return cri;
}

const cri = await setUp().catch((err: unknown) => {
  t.fail(`setup failed: ${errorMessage(err)}`);
  return undefined;
});

const served = (plugin: string, command: string, id: string): boolean =>
  existsSync(daemonLog) &&
  readFileSync(daemonLog, 'utf8').includes(`"plugin":"${plugin}","command":"${command}","containerId":"${id}","exitCode":0`);

if (cri !== undefined) {
  t.test('a pod sandbox gets its network from containerd -> launcher -> socat -> knode-cni-daemon', async (t) => {
    const config: PodSandboxConfig = {
      metadata: { name: `net-${rand}`, uid: `uid-${rand}`, namespace: 'knode-test', attempt: 0 },
      hostname: `net-${rand}`,
      logDirectory: join(tmp, 'pods', `net-${rand}`),
      dnsConfig: { servers: [], searches: [], options: [] },
      labels: { 'knode.test/run': rand },
      annotations: {},
      portMappings: [{ protocol: 'TCP', containerPort: 8080, hostPort: 18181, hostIp: '' }],
      linux: { cgroupParent, securityContext: { namespaceOptions: { network: 'pod', pid: 'container', ipc: 'pod' } } },
    };
    const id = await cri.runPodSandbox(config);
    const { status } = await cri.podSandboxStatus(id);
    t.equal(status.state, 'ready');
    t.match(status.network.ip, /^10\.251\.0\.\d+$/, `pod IP ${status.network.ip} from knode-host-local`);
    t.ok(served('knode-bridge', 'ADD', id), 'knode-cni-daemon served the knode-bridge ADD');
    t.ok(served('knode-portmap', 'ADD', id), 'and the chained knode-portmap ADD');
    t.ok(served('knode-loopback', 'ADD', id), "and containerd's loopback (the `loopback` link)");
    const nat = await env.inNetns('iptables', ['-w', '5', '-t', 'nat', '-S', 'CNI-HOSTPORT-DNAT']);
    t.match(nat.stdout, /-m multiport --dports 18181 -j CNI-DN-/, 'the hostPort rule is in the namespace');

    await cri.stopPodSandbox(id);
    t.ok(served('knode-portmap', 'DEL', id), 'DEL through the daemon too');
    t.ok(served('knode-bridge', 'DEL', id));
    await cri.removePodSandbox(id);
    const after = await env.inNetns('iptables', ['-w', '5', '-t', 'nat', '-S']);
    t.notMatch(after.stdout, 'CNI-DN-', 'no port mapping left');
  });
}

/**
 * A throw-away dockerd for integration tests, the docker twin of
 * startContainerd in ./containerd.ts: started in the test env's `knode-t-*`
 * namespace (nsenter --net), everything (data root, exec root with its own
 * containerd, socket, pid file, trust key) under the env's temp dir, no
 * bridge and no iptables (the agent's CNI does the networking), containers
 * under the cgroup parent the test names.
 *
 * Teardown: an env hook removes every container through the API first; the
 * env's teardown then kills what still names the temp dir (dockerd, its
 * containerd, the shims and their children) and unmounts under it.
 */
import { createReadStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Docker from 'dockerode';
import { createDockerRuntime, type DockerRuntime } from '../../agent/runtime/docker/client.js';
import { createLogger } from '../../lib/log.js';
import { imageArchive, imageRefs, type ImageName } from '../../lab/paths.js';
import { waitFor, writeBridgeConflist, type TestEnv } from './containerd.js';

export interface TestDockerd {
  dir: string;
  socket: string;
  /** unix://<socket> */
  endpoint: string;
  docker: Docker;
  /** `docker load` the lab images' docker archives. */
  loadImages(names: readonly ImageName[]): Promise<void>;
}

/** dockerd's command line for a test (pure). */
export function testDockerdArgs(dir: string, cgroupParent: string): string[] {
  return [
    '--data-root', join(dir, 'root'),
    '--exec-root', join(dir, 'exec'),
    '--pidfile', join(dir, 'dockerd.pid'),
    '-H', `unix://${join(dir, 'docker.sock')}`,
    '--config-file', join(dir, 'daemon.json'),
    '--bridge=none',
    '--iptables=false',
    '--ip6tables=false',
    '--ip-masq=false',
    '--ip-forward=false',
    '--exec-opt', 'native.cgroupdriver=cgroupfs',
    '--cgroup-parent', cgroupParent,
  ];
}

export async function startDockerd(env: TestEnv, options: { name?: string; cgroupParent: string }): Promise<TestDockerd> {
  const name = options.name ?? 'dockerd';
  const dir = join(env.tmp, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'daemon.json'), JSON.stringify({ 'deprecated-key-path': join(dir, 'key.json') }));
  const socket = join(dir, 'docker.sock');
  const docker = new Docker({ socketPath: socket });
  env.onTeardown(async () => {
    const list = await docker.listContainers({ all: true }).catch(() => []);
    for (const c of list) await docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
  });
  const child = env.startDaemon(name, 'dockerd', testDockerdArgs(dir, options.cgroupParent));
  await waitFor(
    'dockerd',
    async () => {
      if (child.exitCode !== null) throw new Error(`dockerd exited with ${child.exitCode}; see ${join(env.tmp, `${name}.log`)}`);
      return (await docker.ping().then(() => true, () => undefined)) ?? undefined;
    },
    60_000,
  );
  return {
    dir,
    socket,
    endpoint: `unix://${socket}`,
    docker,
    async loadImages(names) {
      for (const n of names) {
        const stream = await docker.loadImage(createReadStream(imageArchive(n, 'docker')), { quiet: true });
        await new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err: Error | null) => (err === null ? resolve() : reject(err))));
      }
    },
  };
}

/**
 * A throw-away dockerd (its containers under the cgroup `/knode-t-<rand>`, removed at teardown)
 * with the lab images, and the agent's Docker backend on it, whose CNI (the reference bridge +
 * host-local over `subnet`) runs inside the test's namespace.
 */
export async function startDockerRuntime(env: TestEnv, o: { subnet: string; component: string; requestTimeoutMs?: number }): Promise<{ rt: DockerRuntime; cgroupParent: string }> {
  const cgroupParent = `/knode-t-${env.rand}`;
  env.cleanupCgroup(cgroupParent);
  const cniConfDir = await writeBridgeConflist(env, o.subnet);
  const dockerd = await startDockerd(env, { cgroupParent });
  await dockerd.loadImages(['pause', 'app']);
  const rt = createDockerRuntime({
    endpoint: dockerd.endpoint,
    requestTimeoutMs: o.requestTimeoutMs ?? 60_000,
    network: { confDir: cniConfDir, binDir: '/usr/lib/cni', hostNetns: env.netnsPath },
    stateDir: join(env.tmp, 'state'),
    sandboxImage: imageRefs.pause,
    cgroupParent,
    logger: createLogger({ component: o.component, level: 'warn' }),
  });
  return { rt, cgroupParent };
}

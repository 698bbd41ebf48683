/**
 * The Docker backend of the agent's runtime port against a real dockerd: a
 * throw-away dockerd in a throw-away `knode-t-<random>` namespace, the
 * reference CNI plugins (bridge kt-<rand>, 10.252.0.0/24, host-local under the
 * temp dir, portmap) run by the backend inside that namespace, the lab images
 * loaded, and registries (plain and basic auth) in the namespace for pulls.
 *
 * Teardown: test/helpers/dockerd.ts removes the containers, then
 * test/helpers/containerd.ts removes processes, mounts, the cgroup parent,
 * the namespace and the temp dir.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDockerRuntime, type DockerRuntime } from '../../agent/runtime/docker/client.js';
import type { ContainerConfig, PodSandboxConfig } from '../../agent/runtime/types.js';
import { errorMessage } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { pushImages } from '../../lab/images/push.js';
import { startRegistry, stopRegistry } from '../../lab/images/registry.js';
import { imageRefs, registry } from '../../lab/paths.js';
import { createTestEnv, waitFor } from '../helpers/containerd.js';
import { startDockerd } from '../helpers/dockerd.js';
import { requireLabImages } from '../helpers/lab-images.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}
requireLabImages(['docker']);

const env = await createTestEnv(t, 'agent-docker');
const { rand, tmp } = env;
const network = `knode-t-${rand}`;
const cgroupParent = `/knode-t-${rand}`;
env.cleanupCgroup(cgroupParent);
const quiet = createLogger({ component: 'agent-docker-test', level: 'warn' });
const cniConfDir = join(tmp, 'cni', 'net.d');
const ipamDir = join(tmp, 'cni', 'ipam');
const registryRunDir = join(tmp, 'registry-run');
env.onTeardown(async () => {
  for (const name of ['plain', 'auth'] as const) await stopRegistry(name, { runDir: registryRunDir }).catch(() => false);
});

await mkdir(cniConfDir, { recursive: true });
await writeFile(
  join(cniConfDir, '10-test.conflist'),
  JSON.stringify({
    cniVersion: '1.0.0',
    name: network,
    plugins: [
      {
        type: 'bridge',
        bridge: `kt-${rand}`,
        isGateway: true,
        ipMasq: false,
        ipam: { type: 'host-local', ranges: [[{ subnet: '10.252.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: ipamDir },
      },
      { type: 'portmap', capabilities: { portMappings: true }, snat: false },
    ],
  }),
);

function backend(confDir = cniConfDir): DockerRuntime {
  const r = createDockerRuntime({
    endpoint: dockerdEndpoint,
    requestTimeoutMs: 30_000,
    network: { confDir, binDir: '/usr/lib/cni', hostNetns: env.netnsPath },
    stateDir: join(tmp, 'state'),
    sandboxImage: imageRefs.pause,
    cgroupParent,
    logger: quiet,
  });
  t.teardown(() => r.close());
  return r;
}

const dockerd = await startDockerd(env, { cgroupParent });
const dockerdEndpoint = dockerd.endpoint;
await dockerd.loadImages(['pause', 'app']);
const rt = backend();

const uid = `uid-${rand}`;
const podLogs = join(tmp, 'pod-logs', `default_web_${uid}`);
const sandboxConfig: PodSandboxConfig = {
  metadata: { name: 'web', namespace: 'default', uid, attempt: 0 },
  hostname: 'web',
  logDirectory: podLogs,
  dnsConfig: { servers: ['10.96.0.10'], searches: ['default.svc.cluster.local'], options: ['ndots:5'] },
  portMappings: [{ protocol: 'TCP', containerPort: 8080, hostPort: 18080 }],
  labels: { 'io.kubernetes.pod.uid': uid, 'io.kubernetes.pod.name': 'web', app: 'web' },
  annotations: { 'kubernetes.io/config.source': 'test' },
  linux: { cgroupParent },
};

function containerConfig(name: string, extra: Partial<ContainerConfig> = {}): ContainerConfig {
  return {
    metadata: { name, attempt: 0 },
    image: { image: imageRefs.app },
    envs: [{ key: 'PORT', value: '8080' }],
    logPath: `${name}/0.log`,
    labels: { 'io.kubernetes.pod.uid': uid, 'io.kubernetes.container.name': name },
    annotations: { 'io.kubernetes.container.restartCount': '0' },
    ...extra,
  };
}

t.test('version and status', async (t) => {
  const v = await rt.waitReady({ timeoutMs: 10_000 });
  t.equal(v.runtimeName, 'docker');
  t.match(v.runtimeVersion, /^\d+\.\d+/);
  const st = await rt.status();
  t.same(st.conditions.map((c) => [c.type, c.status]), [['RuntimeReady', true], ['NetworkReady', true]]);
  const empty = join(tmp, 'cni', 'empty');
  await mkdir(empty, { recursive: true });
  const noNet = await backend(empty).status();
  t.same(noNet.conditions.find((c) => c.type === 'NetworkReady')?.status, false, 'NetworkReady false without a conflist');
  const gone = createDockerRuntime({ endpoint: `unix://${join(tmp, 'nothing.sock')}`, logger: quiet });
  await t.rejects(gone.version(), { code: 'UNAVAILABLE' }, 'no socket: UNAVAILABLE');
});

t.test('sandbox, containers, exec, logs, adoption, CNI DEL', async (t) => {
  const sandboxId = await rt.runPodSandbox(sandboxConfig);
  t.match(sandboxId, /^[0-9a-f]{64}$/);
  const { status } = await rt.podSandboxStatus(sandboxId);
  t.equal(status.state, 'ready');
  t.match(status.network.ip, /^10\.252\.0\.\d+$/, 'pod IP from the CNI result');
  t.equal(status.namespaceOptions?.network, 'pod');
  const ip = status.network.ip;
  const ipFile = join(ipamDir, network, ip);
  t.ok(existsSync(ipFile), 'host-local holds the IP');

  const appId = await rt.createContainer(sandboxId, containerConfig('app'), sandboxConfig);
  await rt.startContainer(appId);
  const page = await waitFor('HTTP on the pod IP', async () => {
    const r = await env.curl(`http://${ip}:8080/hostname`);
    return r.code === 0 ? r.stdout : undefined;
  });
  t.equal(page.trim(), 'web', 'the app serves on the pod IP and sees the sandbox hostname');
  // The bridge's gateway address is local to the namespace: portmap's OUTPUT DNAT applies.
  const viaPort = await env.curl('http://10.252.0.1:18080/hostname');
  t.equal(viaPort.stdout.trim(), 'web', 'portmap (runtimeConfig.portMappings): hostPort 18080 reaches the pod');

  const resolv = (await rt.execSync(appId, ['cat', '/etc/resolv.conf'], 10)).stdout.toString();
  t.match(resolv, /^nameserver 10\.96\.0\.10$/m, 'resolv.conf from the sandbox dnsConfig');
  t.match(resolv, /^search default\.svc\.cluster\.local$/m);
  t.match(resolv, /^options ndots:5$/m);
  const r = await rt.execSync(appId, ['sh', '-c', 'echo out; echo err >&2; exit 3'], 10);
  t.same([r.stdout.toString(), r.stderr.toString(), r.exitCode], ['out\n', 'err\n', 3], 'execSync: streams and exit code');
  t.equal((await rt.execSync(appId, ['true'], 0)).exitCode, 0);
  await t.rejects(rt.execSync(appId, ['sleep', '30'], 1), { code: 'DEADLINE_EXCEEDED' }, 'execSync timeout');
  await t.rejects(rt.execSync('0'.repeat(64), ['true'], 1), { code: 'NOT_FOUND' });

  const st = (await rt.containerStatus(appId)).status;
  t.equal(st.state, 'running');
  t.ok(st.startedAt > st.createdAt && st.finishedAt === 0n, 'started, not finished');
  t.equal(st.logPath, join(podLogs, 'app', '0.log'));
  t.equal(st.labels['io.kubernetes.container.name'], 'app');
  t.same(st.annotations, { 'io.kubernetes.container.restartCount': '0' });
  const appLog = await waitFor('app log line', async () => {
    const text = await readFile(join(podLogs, 'app', '0.log'), 'utf8').catch(() => '');
    return text.includes('serving') ? text : undefined;
  });
  t.match(appLog, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z stderr F knode app: pod web serving \/tmp\/www on port 8080$/m, 'CRI log format');

  const oneshotId = await rt.createContainer(
    sandboxId,
    containerConfig('oneshot', { command: ['sh', '-c'], args: ['echo hello; echo oops >&2; exit 2'] }),
    sandboxConfig,
  );
  await rt.startContainer(oneshotId);
  const done = await waitFor('oneshot exited', async () => {
    const s = (await rt.containerStatus(oneshotId)).status;
    return s.state === 'exited' ? s : undefined;
  });
  t.equal(done.exitCode, 2);
  t.equal(done.reason, 'Error');
  t.ok(done.finishedAt >= done.startedAt && done.startedAt > 0n);
  const oneshotLog = join(podLogs, 'oneshot', '0.log');
  const logged = await readFile(oneshotLog, 'utf8');
  t.match(logged, / stdout F hello\n/);
  t.match(logged, / stderr F oops\n/);

  // A new backend instance (an agent restart) finds everything from docker's labels and names.
  const rt2 = backend();
  const sandboxes = await rt2.listPodSandbox({ labelSelector: { 'io.kubernetes.pod.uid': uid } });
  t.same(sandboxes.map((s) => [s.id, s.metadata, s.state, s.labels.app, s.annotations['kubernetes.io/config.source']]), [
    [sandboxId, sandboxConfig.metadata, 'ready', 'web', 'test'],
  ]);
  t.equal((await rt2.podSandboxStatus(sandboxId)).status.network.ip, ip, 'same IP after adoption');
  const containers = await rt2.listContainers({ labelSelector: { 'io.kubernetes.pod.uid': uid } });
  t.same(containers.map((c) => [c.metadata.name, c.state, c.podSandboxId]).sort(), [['app', 'running', sandboxId], ['oneshot', 'exited', sandboxId]]);
  t.same(await rt2.listContainers({ podSandboxId: sandboxId, state: 'running' }).then((l) => l.map((c) => c.id)), [appId]);
  t.same(await rt2.listPodSandbox({ labelSelector: { app: 'nope' } }), []);
  // The new instance copies the exited container's log again from where the file ends: no duplicates.
  await rt2.containerStatus(oneshotId);
  t.equal(await readFile(oneshotLog, 'utf8'), logged, 'log not duplicated by the new instance');

  await rt2.stopPodSandbox(sandboxId);
  t.notOk(existsSync(ipFile), 'CNI DEL released the IP');
  t.equal((await rt2.podSandboxStatus(sandboxId)).status.state, 'notready');
  t.equal((await rt2.containerStatus(appId)).status.state, 'exited');
  await rt2.stopPodSandbox(sandboxId);
  t.pass('stop again: idempotent');
  await rt2.removePodSandbox(sandboxId);
  t.same(await rt2.listPodSandbox({ labelSelector: { 'io.kubernetes.pod.uid': uid } }), []);
  t.same(await rt2.listContainers({ labelSelector: { 'io.kubernetes.pod.uid': uid } }), []);
  await rt2.removePodSandbox(sandboxId);
  await t.rejects(rt2.podSandboxStatus(sandboxId), { code: 'NOT_FOUND' });
  t.same(await readdir(join(tmp, 'state', 'cni')), [], 'CNI cache emptied');
});

t.test('security context, resources, shared PID namespace, read-only mounts, OOMKilled', async (t) => {
  const puid = `${uid}-sec`;
  const config: PodSandboxConfig = {
    ...sandboxConfig,
    metadata: { ...sandboxConfig.metadata, name: 'sec', uid: puid },
    hostname: 'sec',
    portMappings: [],
    labels: { 'io.kubernetes.pod.uid': puid },
    linux: { cgroupParent, securityContext: { namespaceOptions: { pid: 'pod' } } },
  };
  const sandboxId = await rt.runPodSandbox(config);
  t.teardown(() => rt.removePodSandbox(sandboxId));
  const hostDir = join(tmp, 'ro-src');
  await mkdir(hostDir, { recursive: true });
  await writeFile(join(hostDir, 'f'), 'from the host\n');
  const id = await rt.createContainer(
    sandboxId,
    containerConfig('sec', {
      command: ['sleep', '3600'],
      mounts: [{ hostPath: hostDir, containerPath: '/ro', readonly: true }],
      workingDir: '/ro',
      linux: {
        resources: { memoryLimitInBytes: 64 << 20, cpuQuota: 20_000, cpuPeriod: 100_000, cpuShares: 256 },
        securityContext: { runAsUser: 65534, runAsGroup: 65534, readonlyRootfs: true, capabilities: { drop: ['ALL'] }, namespaceOptions: { pid: 'pod' } },
      },
    }),
    config,
  );
  await rt.startContainer(id);
  const sh = async (cmd: string): Promise<string> => {
    const r = await rt.execSync(id, ['sh', '-c', cmd], 10);
    return r.stdout.toString() + r.stderr.toString();
  };
  t.equal(await sh('id -u; id -g'), '65534\n65534\n', 'runAsUser / runAsGroup');
  t.equal(await sh('pwd; cat f'), '/ro\nfrom the host\n', 'workingDir and the bind mount');
  t.match(await sh('touch /ro/x 2>&1; touch /x 2>&1; true'), /Read-only file system[^]*Read-only file system/, 'read-only mount and read-only rootfs');
  t.match(await sh('grep CapEff /proc/self/status'), /CapEff:\s+0+\n/, 'capabilities dropped');
  t.match(await sh('cat /proc/1/cmdline | tr "\\0" " "'), /pause/, 'shared PID namespace: PID 1 is the pause process');
  const cg = (ctl: string, file: string): Promise<string> => readFile(join('/sys/fs/cgroup', ctl, cgroupParent, id, file), 'utf8').then((x) => x.trim());
  t.equal(await cg('memory', 'memory.limit_in_bytes'), String(64 << 20), 'memory limit');
  t.equal(await cg('cpu', 'cpu.cfs_quota_us'), '20000', 'CPU quota');
  t.equal(await cg('cpu', 'cpu.shares'), '256', 'CPU shares');
  t.match((await rt.containerStatus(id)).status.resources, { memoryLimitInBytes: 64 << 20, cpuQuota: 20_000, cpuShares: 256 });

  const oom = await rt.createContainer(
    sandboxId,
    containerConfig('oom', { command: ['sh', '-c'], args: ['x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo survived'], linux: { resources: { memoryLimitInBytes: 16 << 20 } } }),
    config,
  );
  await rt.startContainer(oom);
  const st = await waitFor('oom container exited', async () => {
    const s = (await rt.containerStatus(oom)).status;
    return s.state === 'exited' ? s : undefined;
  });
  t.equal(st.reason, 'OOMKilled', `reason ${st.reason}, exit code ${st.exitCode}`);
  t.equal(st.exitCode, 137);
});

t.test('TTY logs, log reopen, resource update, stats, image fs, host network', async (t) => {
  const puid = `${uid}-more`;
  const config: PodSandboxConfig = {
    ...sandboxConfig,
    metadata: { ...sandboxConfig.metadata, name: 'more', uid: puid },
    portMappings: [],
    labels: { 'io.kubernetes.pod.uid': puid },
    linux: { cgroupParent, securityContext: { namespaceOptions: { network: 'node' } } },
  };
  const sandboxId = await rt.runPodSandbox(config);
  t.teardown(() => rt.removePodSandbox(sandboxId));
  const sb = (await rt.podSandboxStatus(sandboxId)).status;
  t.same([sb.network.ip, sb.namespaceOptions?.network], ['', 'node'], 'host network: no CNI, no pod IP');

  const tty = await rt.createContainer(sandboxId, containerConfig('tty', { command: ['sh', '-c', 'echo on-a-tty'], tty: true }), config);
  await rt.startContainer(tty);
  await waitFor('tty container exited', async () => ((await rt.containerStatus(tty)).status.state === 'exited' ? true : undefined));
  t.match(await readFile(join(podLogs, 'tty', '0.log'), 'utf8'), /^\S+Z stdout F on-a-tty\n$/, 'a TTY container logs to stdout, one line');

  const ticker = await rt.createContainer(sandboxId, containerConfig('ticker', { command: ['sh', '-c', 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done'] }), config);
  await rt.startContainer(ticker);
  const logFile = join(podLogs, 'ticker', '0.log');
  await waitFor('ticks', async () => ((await readFile(logFile, 'utf8').catch(() => '')).includes('tick 1\n') ? true : undefined));
  await rename(logFile, `${logFile}.1`);
  await rt.reopenContainerLog(ticker);
  const fresh = await waitFor('ticks in the reopened file', async () => {
    const text = await readFile(logFile, 'utf8').catch(() => '');
    return text.split('\n').length > 2 ? text : undefined;
  });
  const lastRotated = Number(/tick (\d+)\n$/.exec(await readFile(`${logFile}.1`, 'utf8'))?.[1]);
  t.equal(Number(/tick (\d+)/.exec(fresh)?.[1]), lastRotated + 1, 'the reopened file goes on where the rotated one ended');
  await t.rejects(rt.reopenContainerLog(tty), { code: 'FAILED_PRECONDITION' }, 'reopen for an exited container');

  await rt.updateContainerResources(ticker, { cpuShares: 128, cpuQuota: 30_000, cpuPeriod: 100_000 });
  t.equal((await readFile(join('/sys/fs/cgroup/cpu', cgroupParent, ticker, 'cpu.shares'), 'utf8')).trim(), '128', 'updateContainerResources');
  const stats = await rt.containerStats(ticker);
  t.equal(stats.metadata.name, 'ticker');
  t.ok((stats.cpu?.usageCoreNanoSeconds ?? 0n) > 0n && (stats.memory?.workingSetBytes ?? 0) > 0, 'cpu and memory usage');
  t.same((await rt.listContainerStats({ podSandboxId: sandboxId })).map((x) => x.id), [ticker], 'stats of the running containers');
  const fs = await rt.imageFsInfo();
  t.ok((fs.imageFilesystems[0]?.usedBytes ?? 0) > 0 && fs.imageFilesystems[0]?.mountpoint.startsWith(dockerd.dir), 'image fs of the data root');
  await rt.stopContainer(ticker, 0);
  await rt.stopContainer(ticker, 0);
  t.equal((await rt.containerStatus(ticker)).status.state, 'exited', 'stopContainer, twice');
});

t.test('sandbox set-up failure: a broken network config leaves nothing behind', async (t) => {
  const badDir = join(tmp, 'cni', 'bad');
  await mkdir(badDir, { recursive: true });
  await writeFile(join(badDir, '10-bad.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'bad', plugins: [{ type: 'no-such-plugin' }] }));
  const bad = backend(badDir);
  const config = { ...sandboxConfig, metadata: { ...sandboxConfig.metadata, name: 'broken', uid: `${uid}-b` }, labels: { 'io.kubernetes.pod.uid': `${uid}-b` } };
  await t.rejects(bad.runPodSandbox(config), { code: 'CNI_FAILED' });
  t.same(await bad.listPodSandbox({ labelSelector: { 'io.kubernetes.pod.uid': `${uid}-b` } }), [], 'pause container removed');
});

t.test('image pulls from registries, with and without auth', async (t) => {
  const storageDir = join(tmp, 'registry-storage');
  const auth = { user: registry.auth.user, password: registry.auth.password };
  await startRegistry({ name: 'plain', listen: '127.0.0.1:5000', storageDir, runDir: registryRunDir, netnsPath: env.netnsPath, logger: quiet });
  await startRegistry({ name: 'auth', listen: '127.0.0.1:5001', storageDir, runDir: registryRunDir, netnsPath: env.netnsPath, auth, logger: quiet });
  await pushImages({ target: { address: '127.0.0.1:5000' }, images: ['app'], netnsPath: env.netnsPath, logger: quiet });
  await pushImages({ target: { address: '127.0.0.1:5001', auth }, images: ['app'], netnsPath: env.netnsPath, logger: quiet });

  const plain = '127.0.0.1:5000/knode/app:1.0';
  const ref = await rt.pullImage({ image: plain });
  t.match(ref, /^sha256:[0-9a-f]{64}$/);
  const st = await rt.imageStatus({ image: plain });
  t.equal(st?.id, ref);
  t.ok(st?.repoTags.includes(plain));
  t.ok((await rt.listImages()).some((i) => i.id === ref));

  const authed = '127.0.0.1:5001/knode/app:1.0';
  await t.rejects(rt.pullImage({ image: authed }), { code: 'UNKNOWN' }, 'no credentials: refused');
  t.equal(await rt.imageStatus({ image: authed }), undefined);
  await t.rejects(rt.pullImage({ image: authed }, { auth: { username: auth.user, password: 'wrong' } }), 'wrong password: refused');
  t.equal(await rt.pullImage({ image: authed }, { auth: { username: auth.user, password: auth.password } }), ref, 'user/password');
  await rt.removeImage({ image: authed });
  t.equal(await rt.imageStatus({ image: authed }), undefined, 'removed');
  const b64 = Buffer.from(`${auth.user}:${auth.password}`).toString('base64');
  t.equal(await rt.pullImage({ image: authed }, { auth: { auth: b64 } }), ref, 'docker-config style auth');
  await rt.removeImage({ image: authed });
  await rt.removeImage({ image: authed });
  t.pass('removeImage again: idempotent');
  await rt.removeImage({ image: plain });
  t.equal(await rt.imageStatus({ image: plain }), undefined);
}).catch((err: unknown) => t.fail(errorMessage(err)));

/**
 * The agent's CRI client against a real containerd 1.6 (CRI v1): a throw-away
 * containerd in a throw-away `knode-t-<random>` namespace, with the reference CNI
 * bridge + host-local plugins (bridge knode-tbr0, 10.250.0.0/24, living only in
 * that namespace), the lab images imported, and throw-away registries (plain
 * and basic auth) on the namespace's loopback for pulls.
 *
 * Everything goes through agent/runtime/cri/client.ts; ctr is only used to
 * import the images. Teardown: test/helpers/containerd.ts (processes, mounts,
 * the pods' cgroup parent, CNI result cache, namespace, temp dir).
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCriRuntime, type CriRuntime } from '../../agent/runtime/cri/client.js';
import { conditionTrue, nanosToDate } from '../../agent/runtime/cri/convert.js';
import type { ContainerConfig, ContainerStatus, PodSandboxConfig } from '../../agent/runtime/types.js';
import { errorMessage, isKnodeError } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { pushImages } from '../../lab/images/push.js';
import { startRegistry, stopRegistry } from '../../lab/images/registry.js';
import { imageRefs, registry as labRegistry } from '../../lab/paths.js';
import { createTestEnv, renderPlainHttpHosts, sleep, startContainerd, waitFor, type TestContainerd } from '../helpers/containerd.js';
import { requireLabImages } from '../helpers/lab-images.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}
requireLabImages(['oci']);

const env = await createTestEnv(t, 'cri');
const { rand, tmp } = env;
const network = `knode-t-${rand}`;
const cgroupParent = `/knode-t-${rand}`;
env.cleanupCgroup(cgroupParent);
env.cleanupCniCache(network);
const registryRunDir = join(tmp, 'registry-run');
env.onTeardown(async () => {
  for (const name of ['plain', 'auth']) await stopRegistry(name, { runDir: registryRunDir }).catch(() => false);
});

const quiet = createLogger({ component: 'cri-test', level: 'warn' });

/** containerd with CRI, CNI config, registry hosts and the lab images; the client on its socket. */
async function setUp(): Promise<{ containerd: TestContainerd; cri: CriRuntime }> {
  // CNI: the reference bridge + host-local; state (IPAM) under the temp dir.
  const cniConfDir = join(tmp, 'cni', 'net.d');
  await mkdir(cniConfDir, { recursive: true });
  await writeFile(
    join(cniConfDir, '10-knode-test.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: network,
      plugins: [
        {
          type: 'bridge',
          bridge: 'knode-tbr0',
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: '10.250.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(tmp, 'cni', 'ipam') },
        },
      ],
    }),
  );
  const registryConfigDir = join(tmp, 'certs.d');
  for (const host of ['127.0.0.1:5000', '127.0.0.1:5001']) {
    await mkdir(join(registryConfigDir, host), { recursive: true });
    await writeFile(join(registryConfigDir, host, 'hosts.toml'), renderPlainHttpHosts(host));
  }

  const containerd = await startContainerd(env, { cri: { cniConfDir, registryConfigDir } });
  await containerd.importImages(['pause', 'app']);
  const cri = createCriRuntime({ endpoint: `unix://${containerd.socket}`, requestTimeoutMs: 30_000, logger: quiet });
  t.teardown(() => cri.close());
  return { containerd, cri };
}

// No throw at the top level: it would end the process before t.teardown runs.
const ready = await setUp().catch((err: unknown) => {
  t.fail(`setup failed: ${errorMessage(err)}`);
  return undefined;
});

const logDirectory = join(tmp, 'pods', `knode-test_web-${rand}_uid-${rand}`);
const hostname = `web-${rand}`;
const runLabel = { 'knode.test/run': rand };
const sandboxConfig: PodSandboxConfig = {
  metadata: { name: `web-${rand}`, uid: `uid-${rand}`, namespace: 'knode-test', attempt: 0 },
  hostname,
  logDirectory,
  dnsConfig: { servers: ['10.96.0.10'], searches: ['knode-test.svc.cluster.local'], options: ['ndots:5'] },
  labels: { ...runLabel, 'io.kubernetes.pod.name': `web-${rand}` },
  annotations: { 'knode.test/note': 'kept verbatim' },
  linux: { cgroupParent, securityContext: { namespaceOptions: { network: 'pod', pid: 'container', ipc: 'pod' } } },
};

async function waitExited(cri: CriRuntime, id: string, timeoutMs = 20_000): Promise<ContainerStatus> {
  return waitFor(`container ${id} to exit`, async () => {
    const s = (await cri.containerStatus(id)).status;
    return s.state === 'exited' ? s : undefined;
  }, timeoutMs);
}

if (ready !== undefined) registerTests(ready);

function registerTests({ containerd, cri }: { containerd: TestContainerd; cri: CriRuntime }): void {
  t.test('version and status', async (t) => {
    const v = await cri.waitReady({ timeoutMs: 10_000 });
    t.equal(v.runtimeName, 'containerd');
    t.equal(v.runtimeApiVersion, 'v1');
    t.match(v.runtimeVersion, /^1\.6\./);
    t.equal(v.version, '0.1.0');
    const status = await waitFor('NetworkReady', async () => {
      const s = await cri.status();
      return conditionTrue(s, 'NetworkReady') ? s : undefined;
    }, 10_000);
    t.ok(conditionTrue(status, 'RuntimeReady'), 'RuntimeReady');
    t.ok(conditionTrue(status, 'NetworkReady'), 'NetworkReady (CNI config loaded)');
    const verbose = await cri.status({ verbose: true });
    t.ok(Object.keys(verbose.info).length > 0, 'verbose status carries info');
  });

  t.test('images: status, list, fs info', async (t) => {
    for (const name of ['pause', 'app'] as const) {
      const img = await cri.imageStatus({ image: imageRefs[name] });
      t.ok(img, `${imageRefs[name]} present`);
      t.ok(img?.repoTags.includes(imageRefs[name]), 'tagged');
      t.match(img?.id, /^sha256:[0-9a-f]{64}$/);
      t.ok((img?.size ?? 0) > 0, `size ${img?.size}`);
      if (name === 'pause') t.equal(img?.uid, 65535, 'pause runs as 65535');
    }
    t.equal(await cri.imageStatus({ image: 'knode.local/nothing:0' }), undefined, 'a missing image is undefined, not an error');
    const all = await cri.listImages();
    t.ok(all.some((i) => i.repoTags.includes(imageRefs.app)), 'listed');
    const fs = await cri.imageFsInfo();
    t.equal(fs.imageFilesystems.length, 1);
    t.ok(fs.imageFilesystems[0]!.mountpoint.startsWith(containerd.dir), `image fs under the test's root: ${fs.imageFilesystems[0]!.mountpoint}`);
    t.ok(fs.imageFilesystems[0]!.timestamp > 0n);
  });

  t.test('a pod: sandbox with CNI, app container, exec, logs, stop, remove', async (t) => {
    const appConfig: ContainerConfig = {
      metadata: { name: 'app', attempt: 0 },
      image: { image: imageRefs.app },
      envs: [
        { key: 'WWW_ROOT', value: '/tmp/site' },
        { key: 'GREETING', value: 'hello from env' },
      ],
      labels: { ...runLabel, container: 'app' },
      annotations: { 'knode.test/c': 'app' },
      logPath: 'app/0.log',
      linux: { resources: { cpuShares: 256, memoryLimitInBytes: 64 * 1024 * 1024 } },
    };

    const t0 = performance.now();
    const sandboxId = await cri.runPodSandbox(sandboxConfig);
    const t1 = performance.now();
    const appId = await cri.createContainer(sandboxId, appConfig, sandboxConfig);
    const t2 = performance.now();
    await cri.startContainer(appId);
    const t3 = performance.now();
    t.comment(`latency: RunPodSandbox ${(t1 - t0).toFixed(0)} ms, CreateContainer ${(t2 - t1).toFixed(0)} ms, StartContainer ${(t3 - t2).toFixed(0)} ms, total ${(t3 - t0).toFixed(0)} ms`);
    t.match(sandboxId, /^[0-9a-f]{64}$/);

    const { status: sb } = await cri.podSandboxStatus(sandboxId);
    t.equal(sb.state, 'ready');
    t.match(sb.network.ip, /^10\.250\.0\.\d+$/, `pod IP ${sb.network.ip} from host-local`);
    t.same(sb.network.additionalIps, []);
    t.same(sb.metadata, sandboxConfig.metadata);
    t.same(sb.labels, sandboxConfig.labels);
    t.same(sb.annotations, sandboxConfig.annotations, 'annotations verbatim');
    t.same(sb.namespaceOptions, { network: 'pod', pid: 'container', ipc: 'pod' });
    const created = nanosToDate(sb.createdAt);
    t.ok(created !== undefined && Math.abs(created.getTime() - Date.now()) < 60_000, `createdAt ${created?.toISOString()} is now`);
    const verbose = await cri.podSandboxStatus(sandboxId, { verbose: true });
    t.ok('info' in verbose.info, 'verbose sandbox status has info');

    const { status: app } = await cri.containerStatus(appId);
    t.equal(app.state, 'running');
    t.ok(app.startedAt >= app.createdAt && app.createdAt > 0n, 'createdAt <= startedAt');
    t.equal(app.finishedAt, 0n);
    t.equal(app.logPath, join(logDirectory, 'app/0.log'));
    t.match(app.imageRef, /^sha256:|@sha256:/);
    t.same(app.labels, appConfig.labels);
    t.same(app.annotations, appConfig.annotations);
    t.equal(app.metadata.name, 'app');

    // The app answers on the pod IP, from the test's namespace (via knode-tbr0).
    const page = await waitFor('the app to answer on the pod IP', async () => {
      const r = await env.curl(`http://${sb.network.ip}:8080/`);
      return r.code === 0 && r.stdout !== '' ? r.stdout : undefined;
    });
    t.match(page, `Hello from pod ${hostname}`, 'page names the sandbox hostname');
    const whoami = await env.curl(`http://${sb.network.ip}:8080/cgi-bin/whoami`);
    t.match(whoami.stdout, 'client_addr=10.250.0.1\n', 'the test namespace reaches the pod from the bridge address');

    const h = await cri.execSync(appId, ['hostname'], 10);
    t.equal(h.exitCode, 0);
    t.equal(h.stdout.toString().trim(), hostname, 'ExecSync hostname');
    const envOut = await cri.execSync(appId, ['sh', '-c', 'echo "$GREETING"; ls /tmp/site'], 10);
    t.equal(envOut.stdout.toString(), 'hello from env\ncgi-bin\nhealthz\nhostname\nindex.html\n', 'env reaches the container (WWW_ROOT honoured)');
    const failing = await cri.execSync(appId, ['sh', '-c', 'echo oops >&2; exit 7'], 10);
    t.equal(failing.exitCode, 7, 'exec exit code');
    t.equal(failing.stderr.toString(), 'oops\n');
    const resolv = await cri.execSync(appId, ['cat', '/etc/resolv.conf'], 10);
    t.match(resolv.stdout.toString(), /nameserver 10\.96\.0\.10/, 'DNS config applied');
    t.match(resolv.stdout.toString(), /search knode-test\.svc\.cluster\.local/);
    t.match(resolv.stdout.toString(), /options ndots:5/);
    const cgroup = await cri.execSync(appId, ['cat', '/proc/self/cgroup'], 10);
    t.match(cgroup.stdout.toString(), `${cgroupParent}/`, 'runs under the sandbox cgroup parent');
    const url = await cri.exec(appId, { cmd: ['sh'], stdin: true, tty: true });
    t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\//, 'Exec returns a streaming URL');
    t.match(await cri.attach(appId, { stdout: true, stderr: true }), /^http:\/\/127\.0\.0\.1:\d+\/attach\//, 'Attach returns a streaming URL');
    const pf = await cri.portForward(sandboxId, [8080]);
    t.match(pf, /^http:\/\/127\.0\.0\.1:\d+\/portforward\//, 'PortForward returns a streaming URL');

    const log = await waitFor('the app log', async () => {
      const text = await readFile(app.logPath, 'utf8').catch(() => '');
      return text.includes('serving') ? text : undefined;
    });
    t.match(log, new RegExp(`^\\S+ stderr F knode app: pod ${hostname} serving /tmp/site on port 8080$`, 'm'), 'CRI log format: time stream tag message');

    // A container that fails.
    const crashConfig: ContainerConfig = {
      metadata: { name: 'crasher', attempt: 0 },
      image: { image: imageRefs.app },
      command: ['sh', '-c', 'echo bye; exit 3'],
      labels: { ...runLabel, container: 'crasher' },
      logPath: 'crasher/0.log',
    };
    const crashId = await cri.createContainer(sandboxId, crashConfig, sandboxConfig);
    await cri.startContainer(crashId);
    const crashed = await waitExited(cri, crashId);
    t.equal(crashed.exitCode, 3, 'exit code 3');
    t.equal(crashed.reason, 'Error');
    // containerd 1.6 stamps startedAt after the start call returns: for a container that
    // exits at once, finishedAt can precede it by microseconds. Only order against createdAt.
    t.ok(crashed.startedAt > crashed.createdAt && crashed.finishedAt > crashed.createdAt, 'startedAt and finishedAt set');
    t.match(await readFile(join(logDirectory, 'crasher/0.log'), 'utf8'), / stdout F bye\n$/);

    // Listing with filters.
    const mine = await cri.listContainers({ labelSelector: runLabel });
    t.same(mine.map((c) => c.metadata.name).sort(), ['app', 'crasher']);
    const onlyCrasher = await cri.listContainers({ labelSelector: { ...runLabel, container: 'crasher' } });
    t.same(onlyCrasher.map((c) => c.id), [crashId]);
    const running = await cri.listContainers({ podSandboxId: sandboxId, state: 'running' });
    t.same(running.map((c) => c.id), [appId]);
    t.equal(running[0]!.podSandboxId, sandboxId);
    t.equal(running[0]!.image.image.length > 0, true);
    t.same(await cri.listContainers({ labelSelector: { 'knode.test/run': 'nobody' } }), []);
    const pods = await cri.listPodSandbox({ labelSelector: runLabel });
    t.same(pods.map((p) => p.id), [sandboxId]);
    t.equal(pods[0]!.state, 'ready');
    t.same((await cri.listPodSandbox({ labelSelector: runLabel, state: 'notready' })).map((p) => p.id), []);

    const stats = await cri.containerStats(appId);
    t.equal(stats.id, appId);
    t.ok(stats.memory !== undefined && (stats.memory.workingSetBytes ?? 0) > 0, `memory working set ${stats.memory?.workingSetBytes}`);
    const allStats = await cri.listContainerStats({ podSandboxId: sandboxId });
    t.ok(allStats.some((x) => x.id === appId && x.metadata.name === 'app'), 'ListContainerStats by sandbox');
    await cri.updateRuntimeConfig('10.250.0.0/24');
    await cri.updateContainerResources(appId, { cpuShares: 512, memoryLimitInBytes: 96 * 1024 * 1024 });
    t.equal((await cri.containerStatus(appId)).status.resources?.memoryLimitInBytes, 96 * 1024 * 1024, 'UpdateContainerResources applied');
    await cri.reopenContainerLog(appId);

    // Stop: busybox httpd exits on SIGTERM (128 + 15).
    await cri.stopContainer(appId, 10);
    const stopped = (await cri.containerStatus(appId)).status;
    t.equal(stopped.state, 'exited');
    t.equal(stopped.exitCode, 143, 'SIGTERM (128 + 15)');
    t.ok(stopped.finishedAt > stopped.startedAt);
    await cri.stopContainer(appId, 2);
    t.pass('StopContainer again: idempotent');

    // A container that ignores SIGTERM is killed when the grace period ends.
    const stubbornId = await cri.createContainer(
      sandboxId,
      { metadata: { name: 'stubborn', attempt: 0 }, image: { image: imageRefs.app }, command: ['sh', '-c', 'trap "" TERM; while true; do sleep 0.2; done'], labels: runLabel },
      sandboxConfig,
    );
    await cri.startContainer(stubbornId);
    await sleep(300);
    const stopStarted = Date.now();
    await cri.stopContainer(stubbornId, 1);
    const stopMs = Date.now() - stopStarted;
    const killed = (await cri.containerStatus(stubbornId)).status;
    t.equal(killed.exitCode, 137, 'SIGKILL after the grace period (128 + 9)');
    t.ok(stopMs >= 900 && stopMs < 5000, `stop took ${stopMs} ms (grace 1 s)`);
    await cri.removeContainer(crashId);
    await cri.removeContainer(crashId);
    t.pass('RemoveContainer twice');
    await t.rejects(cri.containerStatus(crashId), { code: 'NOT_FOUND' }, 'removed container: NOT_FOUND');

    await cri.stopPodSandbox(sandboxId);
    await cri.stopPodSandbox(sandboxId);
    t.equal((await cri.podSandboxStatus(sandboxId)).status.state, 'notready', 'stopped sandbox is NOTREADY');
    await cri.removePodSandbox(sandboxId);
    await cri.removePodSandbox(sandboxId);
    t.pass('StopPodSandbox and RemovePodSandbox twice');
    await t.rejects(cri.podSandboxStatus(sandboxId), { code: 'NOT_FOUND' }, 'removed sandbox: NOT_FOUND');
    await t.rejects(cri.containerStatus(appId), { code: 'NOT_FOUND' }, 'its containers went with it');
    t.same(await cri.listPodSandbox({ labelSelector: runLabel }), []);
    const ipam = join(tmp, 'cni', 'ipam', network);
    t.notOk(existsSync(join(ipam, sb.network.ip)), 'CNI DEL released the IP');
  });

  t.test('errors are typed', async (t) => {
    const cfg: PodSandboxConfig = { ...sandboxConfig, metadata: { ...sandboxConfig.metadata, name: `err-${rand}`, uid: `err-${rand}` }, hostname: `err-${rand}` };
    const sandboxId = await cri.runPodSandbox(cfg);
    try {
      const err = await cri
        .createContainer(sandboxId, { metadata: { name: 'x', attempt: 0 }, image: { image: 'knode.local/does-not-exist:1' } }, cfg)
        .then(() => undefined, (e: unknown) => e);
      t.ok(isKnodeError(err), 'a KnodeError');
      t.equal(isKnodeError(err) ? err.code : undefined, 'NOT_FOUND', `code for a missing image: ${String(err)}`);
      t.match(isKnodeError(err) ? err.details : {}, { method: 'CreateContainer', grpcCode: 5 });
      await t.rejects(cri.startContainer('0123456789abcdef'), { code: 'NOT_FOUND' }, 'unknown container');
      await t.rejects(cri.execSync('0123456789abcdef', ['true'], 1), { code: 'NOT_FOUND' });
    } finally {
      await cri.stopPodSandbox(sandboxId);
      await cri.removePodSandbox(sandboxId);
    }

    const dead = createCriRuntime({ endpoint: join(tmp, 'nobody-listens.sock'), logger: quiet });
    try {
      const started = Date.now();
      await t.rejects(dead.version({ timeoutMs: 1000 }), { code: 'UNAVAILABLE' }, 'dead socket: UNAVAILABLE');
      t.ok(Date.now() - started <= 1500, `within the deadline (${Date.now() - started} ms)`);
      const w0 = Date.now();
      await t.rejects(dead.waitReady({ timeoutMs: 1500 }), { code: 'UNAVAILABLE' }, 'waitReady gives up with UNAVAILABLE');
      const waited = Date.now() - w0;
      t.ok(waited >= 1000 && waited < 4000, `after retrying for ~1.5 s (${waited} ms)`);
      const ac = new AbortController();
      const p = dead.waitReady({ timeoutMs: 30_000, signal: ac.signal });
      await sleep(200);
      ac.abort();
      await t.rejects(p, { code: 'CANCELLED' }, 'waitReady can be aborted');
    } finally {
      dead.close();
    }
  });

  t.test('PullImage from registries, with and without AuthConfig', async (t) => {
    const storageDir = join(tmp, 'registry-storage');
    const auth = { user: labRegistry.auth.user, password: labRegistry.auth.password };
    await startRegistry({ name: 'plain', listen: '127.0.0.1:5000', storageDir, runDir: registryRunDir, netnsPath: env.netnsPath, logger: quiet });
    await startRegistry({ name: 'auth', listen: '127.0.0.1:5001', storageDir, runDir: registryRunDir, netnsPath: env.netnsPath, auth, logger: quiet });
    await pushImages({ target: { address: '127.0.0.1:5000' }, images: ['app'], netnsPath: env.netnsPath, logger: quiet });
    await pushImages({ target: { address: '127.0.0.1:5001', auth }, images: ['pause'], netnsPath: env.netnsPath, logger: quiet });
    const local = await cri.imageStatus({ image: imageRefs.app });

    const plainRef = '127.0.0.1:5000/knode/app:1.0';
    const p0 = performance.now();
    const pulled = await cri.pullImage({ image: plainRef });
    t.comment(`PullImage (plain, layers already local) ${(performance.now() - p0).toFixed(0)} ms`);
    t.equal(pulled, local?.id, 'PullImage returns the image id (same config digest as the imported image)');
    const st = await cri.imageStatus({ image: plainRef });
    t.ok(st?.repoTags.includes(plainRef), 'tagged with the registry ref');
    t.ok(st?.repoDigests.some((d) => d.startsWith('127.0.0.1:5000/knode/app@sha256:')), 'repo digest recorded');

    const authRef = '127.0.0.1:5001/knode/pause:3.9';
    const denied = await cri.pullImage({ image: authRef }).then(() => undefined, (e: unknown) => e);
    t.ok(isKnodeError(denied), `pull without credentials fails: ${String(denied)}`);
    t.equal(await cri.imageStatus({ image: authRef }), undefined, 'nothing pulled');
    const wrong = await cri.pullImage({ image: authRef }, { auth: { username: auth.user, password: 'wrong' } }).then(() => undefined, (e: unknown) => e);
    t.ok(isKnodeError(wrong), 'wrong password fails');
    const ok = await cri.pullImage({ image: authRef }, { auth: { username: auth.user, password: auth.password } });
    t.match(ok, /^sha256:[0-9a-f]{64}$/, 'pull with AuthConfig username/password');
    t.ok((await cri.imageStatus({ image: authRef }))?.repoTags.includes(authRef));
    await cri.removeImage({ image: authRef });
    t.equal(await cri.imageStatus({ image: authRef }), undefined, 'removed');
    const viaAuthField = await cri.pullImage({ image: authRef }, { auth: { auth: Buffer.from(`${auth.user}:${auth.password}`).toString('base64') } });
    t.equal(viaAuthField, ok, 'pull with AuthConfig.auth (base64 user:password)');

    await cri.removeImage({ image: plainRef });
    await cri.removeImage({ image: authRef });
    await cri.removeImage({ image: authRef });
    t.pass('RemoveImage is idempotent');
    t.equal(await cri.imageStatus({ image: plainRef }), undefined);
    // CRI removes an image, not a tag: containerd drops every reference of that image id.
    t.equal(await cri.imageStatus({ image: imageRefs.app }), undefined, 'the imported tag of the same image went too');
  });
}

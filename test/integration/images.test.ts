/**
 * The lab images for real: build them, import them into a throw-away containerd
 * and a throw-away dockerd (both running inside a throw-away network namespace),
 * run them, and push them to throw-away registries (plain and basic auth) that
 * containerd then pulls from.
 *
 * Everything lives under one temp dir and one `knode-t-<random>` namespace; the
 * teardown kills every process whose command line names the temp dir (daemons,
 * shims, registries) and the containers under those shims, unmounts whatever is
 * mounted under the temp dir, deletes the namespace and the dir.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFile, writeFile, mkdir, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { execFile } from '../../lib/exec.js';
import { buildImages, archivePath, type BuildResult } from '../../lab/images/build.js';
import { pushImages, registryImageRef } from '../../lab/images/push.js';
import { probeRegistry, registryStatus, startRegistry, stopRegistry } from '../../lab/images/registry.js';
import { imageRefs, registry as labRegistry } from '../../lab/paths.js';
import { createTestEnv, kill, processes, sleep, startContainerd, waitFor } from '../helpers/containerd.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const env = await createTestEnv(t, 'images');
const { rand, netnsPath, tmp, children, inNetns, curl } = env;
// Registries first (by their pid files), then the generic teardown kills the rest.
env.onTeardown(async () => {
  for (const name of ['plain', 'auth']) await stopRegistry(name, { runDir: join(tmp, 'run') }).catch(() => false);
});
const startDaemon = async (name: string, file: string, args: string[]): Promise<void> => {
  env.startDaemon(name, file, args);
};

const outDir = join(tmp, 'images');
let built: BuildResult | undefined;

t.test('build both images, twice: the second build writes nothing', async (t) => {
  const first = await buildImages({ outDir });
  for (const [name, r] of Object.entries(first)) {
    t.ok(r.oci.written && r.docker.written, `${name} archives written`);
    t.ok((await stat(r.oci.path)).size > 0);
  }
  t.equal(first.pause.ref, imageRefs.pause);
  t.equal(first.app.ref, imageRefs.app);
  t.equal(first.pause.oci.path, archivePath(outDir, 'pause', 'oci'));
  const second = await buildImages({ outDir });
  for (const [name, r] of Object.entries(second)) {
    t.notOk(r.oci.written || r.docker.written, `${name} unchanged`);
    t.equal(r.manifestDigest, first[name as keyof BuildResult].manifestDigest, `${name} same digest`);
  }
  // The pause binary is static: no interpreter, no libc needed in the image.
  const elf = await readFile(join(outDir, 'pause', 'pause'));
  t.equal(elf.subarray(0, 4).toString('latin1'), '\x7fELF', 'an ELF binary');
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const types = Array.from({ length: elf.readUInt16LE(0x38) }, (_, i) => elf.readUInt32LE(phoff + i * phentsize));
  t.notOk(types.includes(3), 'no PT_INTERP: statically linked');
  built = first;
});

t.test('pause reaps orphans as PID 1 and exits 0 on SIGTERM', async (t) => {
  const pauseBin = join(outDir, 'pause', 'pause');
  // PID 1 of a new PID namespace, as in a pod.
  const child = spawn('unshare', ['--pid', '--fork', pauseBin], { stdio: 'ignore' });
  children.push(child);
  const pausePid = await waitFor('pause to start', async () => {
    const p = (await processes()).find((q) => q.ppid === child.pid && q.cmdline.startsWith(pauseBin));
    return p?.pid;
  });
  // A shell in pause's PID namespace starts a short sleep and exits: the sleep is
  // re-parented to pause, and must not stay a zombie when it ends.
  await execFile('nsenter', [`--target=${pausePid}`, '--pid', '--', 'busybox', 'sh', '-c', 'busybox sleep 1 </dev/null >/dev/null 2>&1 & exit 0']);
  const orphan = await waitFor('the orphan to be re-parented to pause', async () => (await processes()).find((p) => p.ppid === pausePid)?.pid, 2000);
  t.ok(orphan, `orphan ${orphan} is a child of pause ${pausePid}`);
  await sleep(1500);
  const left = (await processes()).filter((p) => p.ppid === pausePid);
  t.same(left, [], 'no zombie left under pause');
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  kill(pausePid, 'SIGTERM');
  t.equal(await exit, 0, 'exit 0 after SIGTERM');
});

t.test('containerd: import, run the app and pause, pull from registries', async (t) => {
  if (built === undefined) return t.fail('build failed');
  const images = built;
  const containerd = await startContainerd(env);
  const ctr = containerd.ctr;
  const sock = containerd.socket;
  for (const name of ['pause', 'app'] as const) {
    const r = await ctr(['images', 'import', archivePath(outDir, name, 'oci')]);
    t.match(r.stdout, imageRefs[name], `import names ${imageRefs[name]}`);
  }
  const listed = (await ctr(['images', 'ls'])).stdout;
  t.match(listed, new RegExp(`${imageRefs.pause}\\s+application/vnd.oci.image.manifest.v1\\+json\\s+${images.pause.manifestDigest}`));
  t.match(listed, new RegExp(`${imageRefs.app}\\s+application/vnd.oci.image.manifest.v1\\+json\\s+${images.app.manifestDigest}`));

  await t.test('app serves a page naming its hostname', async (t) => {
    // ctr has no --hostname: give the container a UTS namespace set up beforehand.
    const podName = `pod-${rand}`;
    const uts = join(tmp, 'uts');
    await writeFile(uts, '');
    await execFile('unshare', [`--uts=${uts}`, 'hostname', podName]);
    const id = `app-${rand}`;
    await ctr(['run', '-d', '--with-ns', `network:${netnsPath}`, '--with-ns', `uts:${uts}`, imageRefs.app, id]);
    const name = await waitFor('the app to answer', async () => {
      const r = await curl('http://127.0.0.1:8080/hostname');
      return r.code === 0 && r.stdout !== '' ? r.stdout.trim() : undefined;
    });
    t.equal(name, podName, '/hostname');
    const page = await curl('http://127.0.0.1:8080/');
    t.match(page.stdout, `Hello from pod ${podName}`, 'index page names the pod');
    const whoami = await curl('http://127.0.0.1:8080/cgi-bin/whoami');
    t.match(whoami.stdout, `hostname=${podName}\nclient_addr=127.0.0.1\n`, 'CGI reports the client address');
    t.equal((await curl('http://127.0.0.1:8080/healthz')).stdout, 'ok\n');
    const id0 = await ctr(['task', 'exec', '--exec-id', `id-${rand}`, id, 'id']);
    t.equal(id0.stdout.trim(), 'uid=0(root) gid=0(root) groups=0(root)', '/etc/passwd and /etc/group resolve');
    const nobody = await ctr(['task', 'exec', '--exec-id', `nb-${rand}`, id, 'su', '-s', '/bin/sh', 'nobody', '-c', 'id']);
    t.match(nobody.stdout, 'uid=65534(nobody) gid=65534(nobody)');
    await ctr(['task', 'kill', '-s', 'SIGKILL', id]);
    await waitFor('app to stop', async () => ((await ctr(['task', 'delete', id], true)).code === 0 ? true : undefined));
    await ctr(['containers', 'rm', id]);
  });

  await t.test('pause runs as 65535 and exits 0 on SIGTERM', async (t) => {
    const id = `pause-${rand}`;
    const run = spawn('nsenter', [`--net=${netnsPath}`, 'ctr', '--address', sock, '-n', 'k8s.io', 'run', '--rm', imageRefs.pause, id], { stdio: 'ignore' });
    children.push(run);
    const exited = new Promise<number | null>((resolve) => run.once('exit', (code) => resolve(code)));
    const pid = await waitFor('pause to run', async () => {
      const m = new RegExp(`^${id}\\s+(\\d+)\\s+RUNNING`, 'm').exec((await ctr(['task', 'ls'], true)).stdout);
      return m === null ? undefined : Number(m[1]);
    });
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    t.match(status, /^Uid:\s+65535\s/m, 'runs as uid 65535');
    const started = Date.now();
    await ctr(['task', 'kill', '-s', 'SIGTERM', id]);
    t.equal(await exited, 0, 'ctr run reports exit code 0');
    t.ok(Date.now() - started < 5000, `stopped in ${Date.now() - started} ms`);
  });

  await t.test('registries: push, inspect, auth, containerd pull', async (t) => {
    const runDir = join(tmp, 'run');
    const storageDir = join(tmp, 'registry-storage');
    const auth = { user: labRegistry.auth.user, password: labRegistry.auth.password };
    // Inside the test's namespace, so the lab's own registries (if any) on the host are not disturbed.
    const plain = await startRegistry({ name: 'plain', listen: '127.0.0.1:5000', storageDir, runDir, netnsPath });
    const authReg = await startRegistry({ name: 'auth', listen: '127.0.0.1:5001', storageDir, runDir, netnsPath, auth });
    t.ok(plain.healthy && authReg.healthy, 'both healthy');
    t.equal(await probeRegistry('127.0.0.1:5000', netnsPath), 200);
    t.equal(await probeRegistry('127.0.0.1:5001', netnsPath), 401, 'auth registry challenges');
    const again = await startRegistry({ name: 'plain', listen: '127.0.0.1:5000', storageDir, runDir, netnsPath });
    t.equal(again.pid, plain.pid, 'starting again leaves the running instance alone');
    t.match(await readFile(join(runDir, 'auth', 'htpasswd'), 'utf8'), /^knode:\$2y\$/, 'bcrypt htpasswd');

    const pushedPlain = await pushImages({ target: { address: '127.0.0.1:5000' }, dir: outDir, netnsPath });
    t.same(pushedPlain, [
      { ref: registryImageRef('127.0.0.1:5000', 'pause'), digest: images.pause.manifestDigest, pushed: true },
      { ref: '127.0.0.1:5000/knode/app:1.0', digest: images.app.manifestDigest, pushed: true },
    ]);
    const again2 = await pushImages({ target: { address: '127.0.0.1:5000' }, dir: outDir, netnsPath });
    t.same(again2.map((r) => r.pushed), [false, false], 'second push: already there, skipped');
    const forced = await pushImages({ target: { address: '127.0.0.1:5000' }, dir: outDir, netnsPath, images: ['pause'], force: true });
    t.same(forced.map((r) => r.pushed), [true], 'force pushes anyway');
    // The auth registry shares the storage, but its tags must be checked with credentials.
    const pushedAuth = await pushImages({ target: { address: '127.0.0.1:5001', auth }, dir: outDir, netnsPath });
    t.same(pushedAuth.map((r) => r.ref), ['127.0.0.1:5001/knode/pause:3.9', '127.0.0.1:5001/knode/app:1.0']);
    await t.rejects(pushImages({ target: { address: '127.0.0.1:5001' }, dir: outDir, netnsPath, images: ['pause'] }), { code: 'IMAGES_PUSH_FAILED' }, 'push without creds refused');

    const inspect = await inNetns('skopeo', ['inspect', '--tls-verify=false', 'docker://127.0.0.1:5000/knode/app:1.0']);
    t.equal((JSON.parse(inspect.stdout) as { Digest: string }).Digest, images.app.manifestDigest, 'registry keeps the manifest digest');
    const noCreds = await inNetns('skopeo', ['inspect', '--tls-verify=false', 'docker://127.0.0.1:5001/knode/app:1.0'], { allowFailure: true });
    t.not(noCreds.code, 0, 'auth registry: inspect without creds fails');
    t.match(noCreds.stderr, /unauthorized|authentication required/);
    const manifestUrl = 'http://127.0.0.1:5001/v2/knode/app/manifests/1.0';
    const accept = ['-H', 'Accept: application/vnd.oci.image.manifest.v1+json'];
    t.equal((await curl(manifestUrl, ['-o', '/dev/null', '-w', '%{http_code}', ...accept])).stdout, '401', 'manifest without creds: 401');
    t.equal((await curl(manifestUrl, ['-o', '/dev/null', '-w', '%{http_code}', '-u', 'knode:wrong', ...accept])).stdout, '401', 'wrong password: 401');
    t.equal((await curl(manifestUrl, ['-o', '/dev/null', '-w', '%{http_code}', '-u', `${auth.user}:${auth.password}`, ...accept])).stdout, '200', 'with creds: 200');
    const withCreds = await inNetns('skopeo', ['inspect', '--tls-verify=false', '--creds', `${auth.user}:${auth.password}`, 'docker://127.0.0.1:5001/knode/pause:3.9']);
    t.equal((JSON.parse(withCreds.stdout) as { Digest: string }).Digest, images.pause.manifestDigest);

    // containerd pulls (the ctr client fetches, so it runs inside the namespace too).
    const pullPlain = await ctr(['images', 'pull', '--plain-http', '127.0.0.1:5000/knode/app:1.0']);
    t.match(pullPlain.stdout, /done/);
    const pullNoCreds = await ctr(['images', 'pull', '--plain-http', '127.0.0.1:5001/knode/pause:3.9'], true);
    t.not(pullNoCreds.code, 0, 'containerd pull from the auth registry without creds fails');
    await ctr(['images', 'pull', '--plain-http', '--user', `${auth.user}:${auth.password}`, '127.0.0.1:5001/knode/pause:3.9']);
    const after = (await ctr(['images', 'ls'])).stdout;
    t.match(after, new RegExp(`127\\.0\\.0\\.1:5000/knode/app:1\\.0\\s+\\S+\\s+${images.app.manifestDigest}`));
    t.match(after, new RegExp(`127\\.0\\.0\\.1:5001/knode/pause:3\\.9\\s+\\S+\\s+${images.pause.manifestDigest}`));

    t.equal((await registryStatus('auth', { runDir })).healthy, true);
    t.equal(await stopRegistry('auth', { runDir }), true, 'stop');
    t.equal(await stopRegistry('auth', { runDir }), false, 'stop again: nothing to do');
    t.equal((await registryStatus('auth', { runDir })).running, false);
    t.equal(await probeRegistry('127.0.0.1:5001', netnsPath), 0, 'nothing answers any more');
    await stopRegistry('plain', { runDir });
  });
});

interface DockerResponse {
  status: number;
  body: Buffer;
}

function dockerApi(sock: string, method: string, path: string, body?: Buffer | object): Promise<DockerResponse> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string | number> = {};
    if (payload !== undefined) {
      headers['Content-Type'] = Buffer.isBuffer(body) ? 'application/x-tar' : 'application/json';
      headers['Content-Length'] = payload.length;
    }
    const req = request({ socketPath: sock, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

t.test('dockerd: load the docker archives and run them', async (t) => {
  if (built === undefined) return t.fail('build failed');
  const images = built;
  const dir = join(tmp, 'docker');
  await mkdir(dir, { recursive: true });
  const sock = join(dir, 'docker.sock');
  await writeFile(join(dir, 'daemon.json'), '{}\n');
  await startDaemon('dockerd', 'dockerd', [
    '--data-root', join(dir, 'data'),
    '--exec-root', join(dir, 'exec'),
    '-H', `unix://${sock}`,
    '--pidfile', join(dir, 'docker.pid'),
    '--config-file', join(dir, 'daemon.json'),
    '--bridge=none',
    '--iptables=false',
    '--ip6tables=false',
    '--ip-masq=false',
    '--ip-forward=false',
  ]);
  await waitFor('dockerd', async () => ((await dockerApi(sock, 'GET', '/_ping')).status === 200 ? true : undefined), 30_000);

  for (const name of ['pause', 'app'] as const) {
    const r = await dockerApi(sock, 'POST', '/images/load?quiet=1', await readFile(archivePath(outDir, name, 'docker')));
    t.equal(r.status, 200, `load ${name}`);
    t.match(r.body.toString(), `Loaded image: ${imageRefs[name]}`);
  }
  const list = JSON.parse((await dockerApi(sock, 'GET', '/images/json')).body.toString()) as { Id: string; RepoTags: string[] | null }[];
  for (const name of ['pause', 'app'] as const) {
    const img = list.find((i) => i.RepoTags?.includes(imageRefs[name]));
    t.ok(img, `${imageRefs[name]} listed`);
    t.equal(img?.Id, images[name].configDigest, 'docker image id = config digest');
  }

  const podName = `dock-${rand}`;
  const create = await dockerApi(sock, 'POST', `/containers/create?name=app-${rand}`, {
    Image: imageRefs.app,
    Hostname: podName,
    Env: ['PORT=8081'],
    HostConfig: { NetworkMode: 'host' },
  });
  t.equal(create.status, 201, `create app: ${create.body.toString()}`);
  const appId = (JSON.parse(create.body.toString()) as { Id: string }).Id;
  t.equal((await dockerApi(sock, 'POST', `/containers/${appId}/start`)).status, 204);
  const name = await waitFor('the docker app to answer', async () => {
    const r = await curl('http://127.0.0.1:8081/hostname');
    return r.code === 0 && r.stdout !== '' ? r.stdout.trim() : undefined;
  });
  t.equal(name, podName, 'page names the container hostname (PORT honoured)');
  t.match((await curl('http://127.0.0.1:8081/')).stdout, `Hello from pod ${podName}`);

  const pc = await dockerApi(sock, 'POST', `/containers/create?name=pause-${rand}`, { Image: imageRefs.pause, HostConfig: { NetworkMode: 'host' } });
  t.equal(pc.status, 201, `create pause: ${pc.body.toString()}`);
  const pauseId = (JSON.parse(pc.body.toString()) as { Id: string }).Id;
  t.equal((await dockerApi(sock, 'POST', `/containers/${pauseId}/start`)).status, 204);
  const started = Date.now();
  t.equal((await dockerApi(sock, 'POST', `/containers/${pauseId}/stop?t=10`)).status, 204);
  const elapsed = Date.now() - started;
  const state = (JSON.parse((await dockerApi(sock, 'GET', `/containers/${pauseId}/json`)).body.toString()) as { State: { ExitCode: number } }).State;
  t.equal(state.ExitCode, 0, 'pause exits 0 on docker stop');
  t.ok(elapsed < 5000, `stopped by SIGTERM in ${elapsed} ms, not by the SIGKILL after 10 s`);

  for (const id of [appId, pauseId]) t.equal((await dockerApi(sock, 'DELETE', `/containers/${id}?force=1`)).status, 204);
});

// The lab machines, for real (root): `scripts/lab up` with each runtime makes
// node namespaces on an underlay, runtimes answer inside them, a container of
// the app image serves HTTP in a node, nodes reach each other, the root
// namespace stays free of the lab, and `down` leaves nothing behind (also
// after daemons were killed with SIGKILL and without the state file).
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { execFile, type ExecResult } from '../../lib/exec.js';
import { imageArchive, imageRefs, labDataDir, labRegistry, labRunDir, registry, repoRoot, underlay } from '../../lab/paths.js';
import { dockerRequest } from '../../lab/machines/docker-api.js';
import { dockerCall } from '../../lab/machines/docker-api.js';
import { containerdPaths, renderContainerdConfig } from '../../lab/machines/containerd.js';
import { dockerdArgs, dockerdPaths } from '../../lab/machines/dockerd.js';
import { isLabNetnsName, labCgroupParent, labNode, stateFile, type RuntimeKind } from '../../lab/machines/layout.js';
import { _internal } from '../../lab/machines/cleanup.js';
import { renderTopology } from '../../lab/machines/topology.js';
import { labCniBinDir } from '../../lab/machines/cni-plugins.js';
import { controlPlanePaths } from '../../lab/machines/control-plane.js';

const labScript = join(repoRoot, 'scripts/lab');
const runtimeKinds: RuntimeKind[] = ['containerd', 'docker'];
const imagesBuilt = existsSync(imageArchive('app', 'oci')) && existsSync(imageArchive('app', 'docker'));

function lab(args: string[], timeoutMs = 180_000): Promise<ExecResult> {
  return execFile(labScript, args, { allowFailure: true, timeoutMs });
}

function inNode(node: string, cmd: string[]): Promise<ExecResult> {
  return lab(['exec', node, '--', ...cmd], 30_000);
}

async function retry(fn: () => Promise<ExecResult>, timeoutMs: number): Promise<ExecResult> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await fn();
    if (r.code === 0 || Date.now() > deadline) return r;
    await new Promise((res) => setTimeout(res, 250));
  }
}

const pingCmd = existsSync('/usr/bin/ping') || existsSync('/bin/ping') ? ['ping'] : ['busybox', 'ping'];

/** Everything of the lab that still exists; all lists empty = clean. */
function leftovers(): Record<string, string[]> {
  const netns = existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n.startsWith('knode-') && !n.startsWith('knode-t-')) : [];
  const processes: string[] = [];
  for (const pid of readdirSync('/proc').filter((e) => /^[0-9]+$/.test(e))) {
    if (Number(pid) === process.pid) continue;
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if (cmdline.includes(labRunDir + '/') || cmdline.includes(labDataDir + '/')) processes.push(`${pid} ${cmdline}`);
  }
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(labRunDir) || m.startsWith(labDataDir) || /\/netns\/knode-(underlay|node-)/.test(m));
  const dirs = [labRunDir, labDataDir].filter((d) => existsSync(d));
  const cgroups = readdirSync('/sys/fs/cgroup')
    .map((c) => join('/sys/fs/cgroup', c, 'knode-lab'))
    .filter((d) => existsSync(d));
  return { netns, processes, mounts, dirs, cgroups };
}

function assertClean(t: Test, what: string): void {
  const left = leftovers();
  for (const [kind, list] of Object.entries(left)) t.same(list, [], `${what}: no lab ${kind} left`);
}

async function assertRootNamespaceUntouched(t: Test): Promise<void> {
  const addrs = (await execFile('ip', ['-o', 'addr'])).stdout;
  t.notMatch(addrs, /172\.31\./, 'root namespace has no 172.31. address');
  const links = (await execFile('ip', ['-o', 'link'])).stdout;
  t.notMatch(links, /^[0-9]+: (lab0|v[0-9]+)[@:]/m, 'root namespace has no lab link');
  const route = (await execFile('ip', ['route', 'get', underlay.nodeAddress(2)])).stdout;
  const def = (await execFile('ip', ['route', 'show', 'default'])).stdout;
  const defDev = /dev (\S+)/.exec(def)?.[1];
  const routeDev = /dev (\S+)/.exec(route)?.[1];
  if (defDev !== undefined) t.equal(routeDev, defDev, `root route to ${underlay.nodeAddress(2)} goes by the default route (${defDev}), not a lab link`);
  else t.notOk(routeDev !== undefined && /^(lab0|v[0-9]+)$/.test(routeDev), 'no lab route in the root namespace');
  const routes = (await execFile('ip', ['route', 'show', 'table', 'all'])).stdout;
  t.notMatch(routes, /172\.31\.0\./, 'no route for the underlay in any root table');
}

interface StatusJson {
  up: boolean;
  healthy: boolean;
  nodes: { node: string; pid: number; alive: boolean; answering: boolean }[];
}

async function status(): Promise<StatusJson> {
  const r = await lab(['status', '--json']);
  return JSON.parse(r.stdout) as StatusJson;
}

/** Start the app image in a node, on the node's network (host networking inside the lab node). */
async function startApp(runtime: RuntimeKind, nodeIndex: number, id: string): Promise<void> {
  const node = labNode(nodeIndex);
  if (runtime === 'containerd') {
    const p = containerdPaths(node);
    await execFile('ctr', [
      '--address', p.socket, '-n', 'k8s.io', 'run', '-d', '--net-host',
      '--runc-root', p.runcRoot, '--fifo-dir', join(node.runDir, 'fifo'),
      '--cgroup', `${labCgroupParent(node)}/${id}`,
      imageRefs.app, id,
    ]);
  } else {
    const socket = dockerdPaths(node).socket;
    await dockerCall({
      socket, method: 'POST', path: `/containers/create?name=${id}`,
      json: { Image: imageRefs.app, HostConfig: { NetworkMode: 'host' } },
    });
    await dockerCall({ socket, method: 'POST', path: `/containers/${id}/start` });
  }
}

t.before(async () => {
  await lab(['down']);
  // The registries' storage is what the lab serves to its nodes: make sure the images are in it.
  const reg = await lab(['registry', 'up']);
  if (reg.code !== 0) throw new Error(`registry up failed: ${reg.stderr}`);
  const push = await lab(['images', 'push', '--registry', 'plain']);
  if (push.code !== 0) throw new Error(`images push failed: ${push.stderr}`);
});

t.test('the image archives exist (scripts/setup builds them)', async (t) => {
  t.ok(imagesBuilt, 'build/images holds the app image as OCI and docker archives');
});

/** Pull the app image inside node-1 from the lab's registries: plain, then auth without and with credentials. */
async function pullFromLabRegistries(t: Test, runtime: RuntimeKind): Promise<void> {
  const node = labNode(1);
  const creds = `${registry.auth.user}:${registry.auth.password}`;
  if (runtime === 'containerd') {
    const sock = containerdPaths(node).socket;
    const pull = (ref: string, extra: string[]) =>
      inNode(node.name, ['ctr', '--address', sock, '-n', 'k8s.io', 'images', 'pull', '--plain-http', ...extra, ref]);
    const plain = await pull(`${labRegistry.plain}/knode/app:1.0`, []);
    t.equal(plain.code, 0, `containerd in node-1 pulls from ${labRegistry.plain}`, { stderr: plain.stderr });
    const anon = await pull(`${labRegistry.auth}/knode/app:1.0`, []);
    t.not(anon.code, 0, `a pull from ${labRegistry.auth} without credentials fails`);
    const authed = await pull(`${labRegistry.auth}/knode/app:1.0`, ['--user', creds]);
    t.equal(authed.code, 0, `a pull from ${labRegistry.auth} with credentials succeeds`, { stderr: authed.stderr });
  } else {
    const socket = dockerdPaths(node).socket;
    const present = async (ref: string) => (await dockerRequest({ socket, method: 'GET', path: `/images/${ref}/json` })).status === 200;
    const pull = (host: string, auth?: string) =>
      dockerRequest({
        socket, method: 'POST', path: `/images/create?fromImage=${encodeURIComponent(`${host}/knode/app`)}&tag=1.0`, timeoutMs: 60_000,
        ...(auth ? { headers: { 'X-Registry-Auth': auth } } : {}),
      });
    await pull(labRegistry.plain);
    t.ok(await present(`${labRegistry.plain}/knode/app:1.0`), `dockerd in node-1 pulls from ${labRegistry.plain}`);
    await pull(labRegistry.auth);
    t.notOk(await present(`${labRegistry.auth}/knode/app:1.0`), `a pull from ${labRegistry.auth} without credentials fails`);
    const auth = Buffer.from(JSON.stringify({ username: registry.auth.user, password: registry.auth.password, serveraddress: labRegistry.auth })).toString('base64url');
    await pull(labRegistry.auth, auth);
    t.ok(await present(`${labRegistry.auth}/knode/app:1.0`), `a pull from ${labRegistry.auth} with credentials succeeds`);
  }
}

for (const runtime of runtimeKinds) {
  t.test(`lab with ${runtime}`, async (t) => {
    t.teardown(async () => {
      await lab(['down']);
    });

    const t0 = Date.now();
    const upRun = await lab(['up', '--nodes', '2', '--runtime', runtime]);
    t.equal(upRun.code, 0, `up --runtime ${runtime} succeeds in ${Date.now() - t0} ms`, { stderr: upRun.stderr });
    if (upRun.code !== 0) return;
    t.ok(existsSync(stateFile), 'state file written');

    const st = await status();
    t.ok(st.healthy, 'status: healthy');
    t.equal(st.nodes.length, 2, 'status: two nodes');
    for (const n of st.nodes) t.ok(n.alive && n.answering, `status: ${n.node} runtime pid ${n.pid} alive and answering`);

    const env = await lab(['env']);
    t.match(env.stdout, /^export KNODE_LAB_RUN=/m, 'env prints KNODE_LAB_RUN');
    t.match(env.stdout, runtime === 'containerd' ? /^export CONTAINERD_ADDRESS_NODE_2=\S+containerd\.sock$/m : /^export DOCKER_HOST_NODE_2=unix:\/\/\S+docker\.sock$/m, 'env prints the runtime socket of each node');

    // The runtime answers from inside each node.
    for (const i of [1, 2]) {
      const node = labNode(i);
      if (runtime === 'containerd') {
        const r = await inNode(node.name, ['ctr', '--address', containerdPaths(node).socket, 'version']);
        t.equal(r.code, 0, `${node.name}: ctr version answers`);
        t.match(r.stdout, /Server:/, `${node.name}: containerd server version printed`);
        const imgs = await inNode(node.name, ['ctr', '--address', containerdPaths(node).socket, '-n', 'k8s.io', 'images', 'ls', '-q']);
        t.match(imgs.stdout, imageRefs.pause, `${node.name}: pause image imported`);
        t.match(imgs.stdout, imageRefs.app, `${node.name}: app image imported`);
      } else {
        const r = await inNode(node.name, ['curl', '-sS', '--unix-socket', dockerdPaths(node).socket, 'http://docker/_ping']);
        t.equal(r.stdout.trim(), 'OK', `${node.name}: docker _ping answers`);
        const img = await dockerCall({ socket: dockerdPaths(node).socket, method: 'GET', path: `/images/${imageRefs.app}/json` });
        t.equal(img.status, 200, `${node.name}: app image loaded`);
      }
    }

    // A container of the app image serves HTTP to a client in the same node, and across the underlay.
    await startApp(runtime, 1, 'lab-e2e-app');
    const local = await retry(() => inNode('node-1', ['curl', '-sS', '-m', '2', 'http://127.0.0.1:8080/']), 15_000);
    t.equal(local.code, 0, 'node-1: app answers on 127.0.0.1:8080', { stderr: local.stderr });
    t.match(local.stdout, /knode app/, 'node-1: app page served');
    const remote = await inNode('node-2', ['curl', '-sS', '-m', '2', `http://${underlay.nodeAddress(1)}:8080/`]);
    t.match(remote.stdout, /knode app/, 'node-2 reaches the app in node-1 over the underlay');
    const fromRoot = await execFile('curl', ['-sS', '-m', '1', 'http://127.0.0.1:8080/'], { allowFailure: true });
    t.not(fromRoot.code, 0, 'the app is not on the root namespace loopback');

    await pullFromLabRegistries(t, runtime);

    // The control plane: kubectl from the host with the env's KUBECONFIG, and from inside a node with its own kubeconfig.
    const kubeconfig = /^export KUBECONFIG=(\S+)$/m.exec(env.stdout)?.[1];
    t.equal(kubeconfig, controlPlanePaths.adminKubeconfig, 'env prints KUBECONFIG of the lab admin');
    const fromHost = await execFile('kubectl', ['--kubeconfig', controlPlanePaths.adminKubeconfig, 'get', 'nodes,pods', '-A'], { allowFailure: true });
    t.equal(fromHost.code, 0, 'kubectl get nodes,pods -A works from the host', { stderr: fromHost.stderr });
    const ns = await execFile('kubectl', ['--kubeconfig', controlPlanePaths.adminKubeconfig, 'get', 'namespaces', '-o', 'name'], { allowFailure: true });
    t.match(ns.stdout, /namespace\/kube-node-lease/, 'the apiserver serves the system namespaces');
    // The controllers run with the apiserver: a Deployment becomes a ReplicaSet and pods (Pending: no kubelet yet).
    const kc = ['--kubeconfig', controlPlanePaths.adminKubeconfig];
    const created = await execFile('kubectl', [...kc, 'create', 'deployment', 'e2e-web', '--image', imageRefs.app, '--replicas', '2'], { allowFailure: true });
    t.equal(created.code, 0, 'kubectl create deployment', { stderr: created.stderr });
    const pods = await retry(async () => {
      const r = await execFile('kubectl', [...kc, 'get', 'pods', '-l', 'app=e2e-web', '-o', 'name'], { allowFailure: true });
      return r.stdout.trim().split('\n').filter(Boolean).length === 2 ? r : { ...r, code: 1 };
    }, 15_000);
    t.equal(pods.code, 0, 'the deployment controller and the replicaset controller made 2 pods', { stdout: pods.stdout });
    const fromNode = await inNode('node-2', ['kubectl', '--kubeconfig', controlPlanePaths.nodeKubeconfig('node-2'), 'get', '--raw', '/api/v1/namespaces/default']);
    t.equal(fromNode.code, 0, `node-2 reaches the apiserver at ${controlPlanePaths.labUrl} with its node credentials`, { stderr: fromNode.stderr });

    const ping = await inNode('node-1', [...pingCmd, '-c', '1', '-W', '2', underlay.nodeAddress(2)]);
    t.equal(ping.code, 0, `node-1 pings node-2 (${underlay.nodeAddress(2)})`);
    const fwd = await inNode('node-1', ['cat', '/proc/sys/net/ipv4/ip_forward']);
    t.equal(fwd.stdout.trim(), '1', 'ip_forward is on inside node-1');
    const exit7 = await inNode('node-1', ['sh', '-c', 'exit 7']);
    t.equal(exit7.code, 7, 'exec propagates the exit code');

    await assertRootNamespaceUntouched(t);

    // up again with the same shape: a no-op.
    const again = await lab(['up', '--nodes', '2', '--runtime', runtime]);
    t.equal(again.code, 0, 'second up succeeds');
    t.match(again.stderr, /already up, nothing changed/, 'second up changes nothing');
    const st2 = await status();
    t.same(st2.nodes.map((n) => n.pid), st.nodes.map((n) => n.pid), 'runtime pids unchanged');
    // A different shape is refused.
    const other = await lab(['up', '--nodes', '3', '--runtime', runtime]);
    t.equal(other.code, 1, 'up with another shape fails');
    t.match(other.stderr, /LAB_SHAPE_MISMATCH.*down/, 'and asks for down first');

    const t1 = Date.now();
    const downRun = await lab(['down']);
    t.equal(downRun.code, 0, `down succeeds in ${Date.now() - t1} ms`, { stderr: downRun.stderr });
    assertClean(t, 'after down');
    const down2 = await lab(['down']);
    t.equal(down2.code, 0, 'down twice is fine');
    assertClean(t, 'after a second down');
  });

  t.test(`down after ${runtime} daemons and shims were killed with SIGKILL, without the state file`, async (t) => {
    t.teardown(async () => {
      await lab(['down']);
    });
    const upRun = await lab(['up', '--nodes', '2', '--runtime', runtime]);
    t.equal(upRun.code, 0, 'up succeeds', { stderr: upRun.stderr });
    if (upRun.code !== 0) return;
    await startApp(runtime, 2, 'lab-e2e-crash');
    const served = await retry(() => inNode('node-2', ['curl', '-sS', '-m', '2', 'http://127.0.0.1:8080/']), 15_000);
    t.equal(served.code, 0, 'app runs in node-2');

    // SIGKILL every lab daemon, shim and runc (the container processes stay, orphaned).
    const victims = (leftovers().processes ?? []).map((p) => Number(p.split(' ')[0]));
    t.ok(victims.length >= 3, `killing ${victims.length} lab processes`);
    for (const pid of victims) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await new Promise((res) => setTimeout(res, 300));
    const orphan = await inNode('node-2', ['curl', '-sS', '-m', '2', 'http://127.0.0.1:8080/']);
    t.equal(orphan.code, 0, 'the orphaned container process still serves');
    await execFile('rm', ['-f', stateFile]);

    const downRun = await lab(['down']);
    t.equal(downRun.code, 0, 'down succeeds', { stderr: downRun.stderr });
    assertClean(t, 'after down of a crashed lab');
    const gone = await execFile('pgrep', ['-f', '^httpd -f -p 8080'], { allowFailure: true });
    const inLab = gone.stdout
      .split('\n')
      .filter((p) => p !== '')
      .filter((p) => {
        try {
          return readFileSync(`/proc/${p}/cgroup`, 'utf8').includes('/knode-lab/');
        } catch {
          return false;
        }
      });
    t.same(inLab, [], 'the orphaned container process was killed');
  });
}

/** Start `scripts/lab up` and SIGKILL it as soon as stderr shows `when`. */
function upKilledAt(args: string[], when: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    // Own process group: scripts/lab runs node under flock, so kill the whole group.
    const child = spawn(labScript, ['up', ...args], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let err = '';
    let killed = false;
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
      if (!killed && when.test(err) && child.pid !== undefined) {
        killed = true;
        process.kill(-child.pid, 'SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('exit', () => resolve(err));
  });
}

for (const runtime of runtimeKinds) {
  t.test(`up completes an interrupted up and restarts a dead ${runtime}`, async (t) => {
    t.teardown(async () => {
      await lab(['down']);
    });
    const killedAt = await upKilledAt(['--runtime', runtime], /runtime: .*\.\.\./);
    t.match(killedAt, /runtime: .*\.\.\./, 'first up was killed while starting the runtimes');
    t.notMatch(killedAt, /lab up/, 'first up did not finish');
    const up2 = await lab(['up', '--runtime', runtime]);
    t.equal(up2.code, 0, 'up after an interrupted up succeeds', { stderr: up2.stderr });
    const st = await status();
    t.ok(st.healthy, 'the lab is healthy');

    const victim = st.nodes[0]!.pid;
    process.kill(victim, 'SIGKILL');
    const sick = await lab(['status']);
    t.equal(sick.code, 1, 'status exits 1 when a runtime is dead');
    t.match(sick.stdout, /DEAD/, 'status says which runtime is dead');
    const up3 = await lab(['up', '--runtime', runtime]);
    t.equal(up3.code, 0, 'up restarts the dead runtime', { stderr: up3.stderr });
    const st3 = await status();
    t.ok(st3.healthy, 'healthy again');
    t.not(st3.nodes[0]!.pid, victim, 'node-1 runtime has a new pid');
    t.equal(st3.nodes[1]!.pid, st.nodes[1]!.pid, 'node-2 runtime untouched');

    // node-2's namespace deleted under its running runtime: up remakes it and moves the runtime.
    await execFile('ip', ['netns', 'del', 'knode-node-2']);
    const up4 = await lab(['up', '--runtime', runtime]);
    t.equal(up4.code, 0, 'up remakes a deleted node namespace', { stderr: up4.stderr });
    t.match(up4.stderr, /runs outside knode-node-2; restarting it/, 'and restarts the runtime that ran in the old one');
    const st4 = await status();
    t.ok(st4.healthy, 'healthy after the namespace was remade');
    await pullFromLabRegistries(t, runtime);

    const ping = await inNode('node-1', [...pingCmd, '-c', '1', '-W', '2', underlay.nodeAddress(2)]);
    t.equal(ping.code, 0, 'node-1 reaches the remade node-2');

    const downRun = await lab(['down']);
    t.equal(downRun.code, 0, 'down succeeds', { stderr: downRun.stderr });
    assertClean(t, 'after down');
  });
}

t.test('rendered runtime configuration', async (t) => {
  const node = labNode(1);
  const toml = renderContainerdConfig(containerdPaths(node));
  t.match(toml, /^version = 2$/m, 'containerd config version 2');
  t.match(toml, `sandbox_image = "${imageRefs.pause}"`, 'sandbox image is the lab pause image');
  t.match(toml, `bin_dir = "${labCniBinDir(node)}"`, 'per-node CNI bin dir (launchers to the node\'s knode-cni-daemon)');
  t.match(toml, `conf_dir = "${join(labDataDir, 'node-1', 'cni', 'net.d')}"`, 'per-node CNI conf dir');
  t.match(toml, /SystemdCgroup = false/, 'cgroupfs');
  t.match(toml, /stream_server_address = "127.0.0.1"/, 'stream server on loopback');
  t.match(toml, `address = "${join(labRunDir, 'node-1', 'containerd', 'containerd.sock')}"`, 'grpc socket under the run dir');
  const args = dockerdArgs(node, dockerdPaths(node));
  for (const flag of ['--bridge=none', '--iptables=false', '--ip-masq=false', '--ip-forward=false']) t.ok(args.includes(flag), `dockerd ${flag}`);
  t.ok(args.every((a) => !a.startsWith('/') || a.startsWith(labDataDir) || a.startsWith(labRunDir) || a.startsWith('/knode-lab')), 'dockerd paths all in the lab dirs');
});

t.test('cleanup guards', async (t) => {
  const { safeToRemove, mentionsLabDir, unescapeMountinfo } = _internal;
  t.notOk(safeToRemove('/'), 'never rm /');
  t.notOk(safeToRemove('/var/lib'), 'never rm a dir without knode in its name');
  t.notOk(safeToRemove('/knode'), 'never rm a top-level dir');
  t.notOk(safeToRemove('relative/knode-lab'), 'never rm a relative path');
  t.ok(safeToRemove('/var/lib/knode-lab'), 'the default data dir may go');
  t.ok(mentionsLabDir(`--config=${labRunDir}/node-1/containerd.toml`), 'a lab path inside an argument');
  t.notOk(mentionsLabDir(`${labRunDir}2/x`), 'a sibling dir with the same prefix is not the lab');
  t.equal(unescapeMountinfo('/a\\040b'), '/a b', 'mountinfo octal escapes');
  t.ok(isLabNetnsName('knode-underlay') && isLabNetnsName('knode-node-12'), 'lab namespace names');
  t.notOk(isLabNetnsName('knode-t-abc') || isLabNetnsName('knode-node-x') || isLabNetnsName('knode-node-01'), 'test namespaces and look-alikes are not the lab');
});

t.test('topology renders the wanted shape', async (t) => {
  const topo = renderTopology({ nodes: 3 });
  t.equal(topo.underlay.address, '172.31.0.1/24');
  t.same(
    topo.nodes.map((n) => [n.netns, n.underlayLink, n.address, n.gateway]),
    [
      ['knode-node-1', 'v1', '172.31.0.11/24', '172.31.0.1'],
      ['knode-node-2', 'v2', '172.31.0.12/24', '172.31.0.1'],
      ['knode-node-3', 'v3', '172.31.0.13/24', '172.31.0.1'],
    ],
  );
  t.throws(() => renderTopology({ nodes: 0 }), { code: 'LAB_BAD_SHAPE' });
});

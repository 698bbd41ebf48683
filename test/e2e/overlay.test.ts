// The pod network between lab nodes, for real (root; run under the lab lock): for each overlay
// backend (`scripts/lab up --overlay vxlan|host-gw`), 2 nodes whose agents publish flannel's
// annotations and NetworkUnavailable=False; the pods' conflist is knode's and containerd runs
// knode's plugins (their own on-disk state proves it); a pod on node-1 reaches a pod on node-2
// (through flannel.1 with vxlan, through a proto-77 route with host-gw), reaches the underlay
// (masqueraded), and a hostPort on node-2 answers; a node that leaves loses its routes on the
// other node. `down` at the end leaves nothing.
import t, { type Test } from 'tap';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { execFile, type ExecResult } from '../../lib/exec.js';
import { labDataDir, labRunDir } from '../../lab/paths.js';
import { containerdPaths, renderContainerdConfig } from '../../lab/machines/containerd.js';
import { agentPaths } from '../../lab/machines/agent.js';
import { cniDaemonLog, labCniBinDir, labCniPlugins, labCniSocket } from '../../lab/machines/cni-plugins.js';
import { labNode } from '../../lab/machines/layout.js';
import { getJson, kubectl, lab as labCmd, until } from '../helpers/lab.js';

const lab = (args: string[], timeoutMs = 240_000): ReturnType<typeof labCmd> => labCmd(args, timeoutMs);

function inNode(node: string, cmd: string[]): Promise<ExecResult> {
  return lab(['exec', node, '--', ...cmd], 30_000);
}

const nodeIndex = (name: string): number => Number(name.replace('node-', ''));
const isReady = (p: V1Pod): boolean => p.status?.phase === 'Running' && (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

function podManifest(name: string, node: string, hostPort?: number): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: 'overlay' } },
    spec: {
      nodeName: node,
      containers: [{ name: 'app', image: 'knode.local/app:1.0', ports: [{ containerPort: 8080, ...(hostPort !== undefined ? { hostPort } : {}) }] }],
    },
  });
}

/** Runs `cmd` inside the network namespace of a pod's app container (found through containerd). */
async function inPod(p: V1Pod, cmd: string[]): Promise<ExecResult> {
  const id = (p.status?.containerStatuses?.[0]?.containerID ?? '').replace(/^containerd:\/\//, '');
  const tasks = await execFile('ctr', ['--address', containerdPaths(labNode(nodeIndex(p.spec!.nodeName!))).socket, '-n', 'k8s.io', 'tasks', 'ls']);
  const pid = tasks.stdout.split('\n').map((l) => l.trim().split(/\s+/)).find((cols) => cols[0] === id)?.[1];
  if (pid === undefined) throw new Error(`no task for ${p.metadata?.name} (${id})`);
  return execFile('nsenter', [`--net=/proc/${pid}/ns/net`, ...cmd], { allowFailure: true, timeoutMs: 20_000 });
}

async function flannelTx(node: string): Promise<number> {
  const r = await inNode(node, ['ip', '-s', '-j', 'link', 'show', 'flannel.1']);
  const rows = JSON.parse(r.stdout) as { stats64?: { tx?: { packets?: number } } }[];
  return rows[0]?.stats64?.tx?.packets ?? 0;
}

/** On a failure: the pods' states and the agents' last warnings, so the log says why. */
async function diagnose(t: Test): Promise<void> {
  const ps = await kubectl(['get', 'pods', '-o', 'wide']);
  t.comment(ps.stdout);
  for (const n of [1, 2]) {
    const log = agentPaths(labNode(n)).log;
    if (!existsSync(log)) continue;
    const warn = readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('"level":"warn"') || l.includes('"level":"error"'));
    t.comment(`node-${n} agent:\n${warn.slice(-5).join('\n')}`);
  }
}

async function labDown(t?: Test): Promise<void> {
  await kubectl(['delete', 'pod', '-l', 'app=overlay', '--wait=false']);
  const r = await lab(['down']);
  t?.equal(r.code, 0, 'scripts/lab down', { stderr: r.stderr.slice(-2000) });
}

t.before(async () => {
  await lab(['down']);
});

t.teardown(async () => {
  await lab(['down']);
});

t.test('the lab runs knode\'s CNI plugins', async (t) => {
  const toml = renderContainerdConfig(containerdPaths(labNode(1)));
  t.match(toml, `bin_dir = "${labCniBinDir(labNode(1))}"`, 'containerd\'s bin_dir is the node\'s knode plugin dir');
  t.same([...labCniPlugins].sort(), ['knode-bridge', 'knode-flannel', 'knode-host-local', 'knode-loopback', 'knode-portmap', 'loopback']);
});

for (const backend of ['vxlan', 'host-gw'] as const) {
  t.test(`overlay ${backend}: pod to pod across nodes, hostPort, egress, a node leaving`, async (t) => {
    const up = await lab(['up', '--nodes', '2', '--overlay', backend]);
    t.equal(up.code, 0, `scripts/lab up --nodes 2 --overlay ${backend}`, { stderr: up.stderr.slice(-3000) });
    if (up.code !== 0) return;
    t.teardown(() => labDown()); // on failure too (no assertions after the end)
    for (const n of [1, 2]) {
      for (const name of labCniPlugins) t.ok(existsSync(join(labCniBinDir(labNode(n)), name)), `${name} installed in node-${n}'s CNI bin dir`);
      t.ok(existsSync(labCniSocket(labNode(n))), `node-${n}'s knode-cni-daemon socket is there`);
    }

    const ready = await until('both Nodes Ready with NetworkUnavailable=False', async () => {
      const ns = (await getJson<{ items: V1Node[] }>(['get', 'nodes'])).items;
      const ok = ns.filter((n) => {
        const c = n.status?.conditions ?? [];
        return c.some((x) => x.type === 'Ready' && x.status === 'True') && c.some((x) => x.type === 'NetworkUnavailable' && x.status === 'False' && x.reason === 'FlannelIsUp');
      });
      return ok.length === 2 ? ns : undefined;
    }, 90_000);
    const cidrs = new Map(ready.map((n) => [n.metadata?.name ?? '', n.spec?.podCIDR ?? '']));
    for (const n of ready) {
      const a = n.metadata?.annotations ?? {};
      const name = n.metadata?.name ?? '';
      t.equal(a['flannel.alpha.coreos.com/backend-type'], backend, `${name}: backend-type ${backend}`);
      t.equal(a['flannel.alpha.coreos.com/public-ip'], `172.31.0.1${nodeIndex(name)}`, `${name}: public-ip`);
      t.equal(a['flannel.alpha.coreos.com/kube-subnet-manager'], 'true');
      if (backend === 'vxlan') t.match(a['flannel.alpha.coreos.com/backend-data'], /^\{"VNI":1,"VtepMAC":"([0-9a-f]{2}:){5}[0-9a-f]{2}"\}$/, `${name}: backend-data`);
      const conf = JSON.parse(readFileSync(join(containerdPaths(labNode(nodeIndex(name))).cniConfDir, '10-knode.conflist'), 'utf8')) as { plugins: { type: string }[] };
      t.same(conf.plugins.map((p) => p.type), ['knode-flannel', 'knode-portmap'], `${name}: knode's conflist`);
      const env = readFileSync(agentPaths(labNode(nodeIndex(name))).subnetFile, 'utf8');
      t.match(env, `FLANNEL_MTU=${backend === 'vxlan' ? 1450 : 1500}\n`, `${name}: FLANNEL_MTU`);
    }
    const cidr2 = cidrs.get('node-2')!;
    const routes = (await inNode('node-1', ['ip', 'route', 'show', cidr2])).stdout;
    if (backend === 'vxlan') t.match(routes, `${cidr2} via ${cidr2.replace(/\/24$/, '')} dev flannel.1 onlink`, 'node-1: route to node-2\'s pods through flannel.1');
    else t.match(routes, new RegExp(`${cidr2.replace(/\./g, '\\.')} via 172\\.31\\.0\\.12 dev \\S+ proto 77`), 'node-1: host-gw route to node-2\'s pods');

    for (const [name, node, hostPort] of [['ov-a', 'node-1', undefined], ['ov-b', 'node-2', 18080]] as const) {
      const r = await kubectl(['create', '--validate=false', '-f', '-'], podManifest(name, node, hostPort));
      t.equal(r.code, 0, `pod ${name} on ${node}`, { stderr: r.stderr });
    }
    const [a, b] = await until('both pods Ready', async () => {
      const ps = (await getJson<{ items: V1Pod[] }>(['get', 'pods', '-l', 'app=overlay'])).items;
      const pa = ps.find((p) => p.metadata?.name === 'ov-a');
      const pb = ps.find((p) => p.metadata?.name === 'ov-b');
      return pa && pb && isReady(pa) && isReady(pb) ? ([pa, pb] as const) : undefined;
    }, 90_000).catch(async (err: unknown) => {
      await diagnose(t);
      throw err;
    });
    t.ok(a.status?.podIP?.startsWith(cidrs.get('node-1')!.replace(/0\/24$/, '')), `ov-a has ${a.status?.podIP} from node-1's ${cidrs.get('node-1')}`);
    t.ok(b.status?.podIP?.startsWith(cidr2.replace(/0\/24$/, '')), `ov-b has ${b.status?.podIP} from node-2's ${cidr2}`);

    // containerd ran knode's plugins: their own state, under the agent's root dir.
    const root2 = agentPaths(labNode(2)).rootDir;
    t.ok(existsSync(join(root2, 'cni', 'networks', 'knode', b.status!.podIP!)), 'knode-host-local reserved ov-b\'s IP in the agent\'s store');
    const saved = readdirSync(join(root2, 'cni', 'flannel')).map((f) => JSON.parse(readFileSync(join(root2, 'cni', 'flannel', f), 'utf8')) as { type?: string; ipam?: { type?: string } });
    t.ok(saved.some((d) => d.type === 'knode-bridge' && d.ipam?.type === 'knode-host-local'), 'knode-flannel saved its bridge + host-local delegate config');
    // …through the sh launcher and the node's knode-cni-daemon (no Node process per call).
    for (const n of [1, 2]) {
      const log = readFileSync(cniDaemonLog(labNode(n)), 'utf8');
      t.match(log, /"msg":"request","component":"knode-cni-daemon","plugin":"knode-flannel","command":"ADD","containerId":"[0-9a-f]{64}","exitCode":0/, `node-${n}: knode-cni-daemon served containerd's knode-flannel ADD`);
      t.match(log, /"plugin":"knode-portmap","command":"ADD","containerId":"[0-9a-f]{64}","exitCode":0/, `node-${n}: and the chained knode-portmap ADD`);
      t.match(log, /"plugin":"knode-loopback","command":"ADD","containerId":"[0-9a-f]{64}","exitCode":0/, `node-${n}: and the pod's lo (loopback)`);
    }

    // Pod to pod across nodes.
    const tx0 = backend === 'vxlan' ? await flannelTx('node-1') : 0;
    const hello = await until('ov-a reaches ov-b', async () => {
      const r = await inPod(a, ['curl', '-s', '-m', '3', `http://${b.status?.podIP}:8080/`]);
      return r.code === 0 ? r : undefined;
    }, 20_000);
    t.match(hello.stdout, 'ov-b', 'ov-b answers ov-a with its name');
    if (backend === 'vxlan') t.ok((await flannelTx('node-1')) > tx0, 'the traffic left node-1 through flannel.1');
    else t.not((await inNode('node-1', ['ip', 'link', 'show', 'flannel.1'])).code, 0, 'no flannel.1 with host-gw');

    // Egress leaves the cluster CIDR masqueraded (the underlay has no route back to the pods).
    const egress = await inPod(a, ['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', 'http://172.31.0.1:5000/v2/']);
    t.equal(egress.stdout, '200', 'ov-a reaches the lab registry on the underlay');
    const nat = (await inNode('node-1', ['iptables', '-t', 'nat', '-L', 'FLANNEL-POSTRTG', '-n', '-v', '-x'])).stdout;
    const masqPkts = Number(/^\s*(\d+)\s+\d+\s+MASQUERADE\s.*10\.244\.0\.0\/16\s+!224\.0\.0\.0\/4/m.exec(nat)?.[1] ?? '0');
    t.ok(masqPkts > 0, `FLANNEL-POSTRTG masqueraded it (${masqPkts} packet(s))`);

    // hostPort on node-2, from node-1 over the underlay.
    const hp = await until('hostPort 18080 on node-2', async () => {
      const r = await inNode('node-1', ['curl', '-s', '-m', '3', 'http://172.31.0.12:18080/']);
      return r.code === 0 ? r : undefined;
    }, 20_000);
    t.match(hp.stdout, 'ov-b', 'node-2:18080 answers from ov-b (knode-portmap)');

    // node-2 leaves: its agent stops, its Node is deleted; node-1 drops its routes.
    const pid = Number(readFileSync(agentPaths(labNode(2)).pidFile, 'utf8').trim());
    process.kill(pid, 'SIGTERM');
    await until('node-2\'s agent exited', async () => (existsSync(`/proc/${pid}`) ? undefined : true), 20_000);
    const del = await kubectl(['delete', 'node', 'node-2']);
    t.equal(del.code, 0, 'kubectl delete node node-2');
    await until('node-1 dropped node-2\'s route', async () => ((await inNode('node-1', ['ip', 'route', 'show', cidr2])).stdout.trim() === '' ? true : undefined), 30_000);
    t.pass(`node-1 has no route to ${cidr2} any more`);
    if (backend === 'vxlan') {
      t.notMatch((await inNode('node-1', ['ip', 'neigh', 'show', 'dev', 'flannel.1'])).stdout, cidr2.replace(/\/24$/, ''), 'no neighbour for node-2');
      t.notMatch((await inNode('node-1', ['bridge', 'fdb', 'show', 'dev', 'flannel.1'])).stdout, '172.31.0.12', 'no FDB entry for node-2');
    }
    await labDown(t);
  });
}

t.test('down leaves nothing', async (t) => {
  const r = await lab(['down']);
  t.equal(r.code, 0, 'scripts/lab down', { stderr: r.stderr.slice(-3000) });
  t.notOk(existsSync(labRunDir) || existsSync(labDataDir), 'lab dirs removed');
});

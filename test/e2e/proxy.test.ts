// knode-proxy in the lab, for real (root): `scripts/lab up` starts a proxy per
// node; a Service in front of a Deployment answers on its ClusterIP from both
// nodes (balanced over both pods) and on its NodePort at a node's address;
// `curl 127.0.0.1:10249/proxyMode` inside a node prints the mode; `up
// --proxy-mode nftables` switches the proxies and the Service still answers.
import t from 'tap';
import { join } from 'node:path';
import { execFile, type ExecResult } from '../../lib/exec.js';
import { repoRoot, underlay } from '../../lab/paths.js';
import { controlPlanePaths } from '../../lab/machines/control-plane.js';

const labScript = join(repoRoot, 'scripts/lab');
const lab = (args: string[]): Promise<ExecResult> => execFile(labScript, args, { allowFailure: true, timeoutMs: 180_000 });
const inNode = (node: string, cmd: string[]): Promise<ExecResult> => lab(['exec', node, '--', ...cmd]);
const kubectl = (args: string[]): Promise<ExecResult> =>
  execFile('kubectl', ['--kubeconfig', controlPlanePaths.adminKubeconfig, ...args], { allowFailure: true, timeoutMs: 60_000 });

/** Hostnames answering `url` from inside `node` over `n` requests (failures counted as "error"). */
async function answers(node: string, url: string, n: number): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const r = await inNode(node, ['curl', '-sS', '-m', '3', url]);
    const key = r.code === 0 ? r.stdout.trim() : 'error';
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  return seen;
}

/** Retries until every one of `n` requests succeeds (the proxies sync within a second or two). */
async function settled(node: string, url: string, n: number, timeoutMs = 30_000): Promise<Map<string, number>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen = await answers(node, url, n);
    if (!seen.has('error') || Date.now() > deadline) return seen;
    await new Promise((r) => setTimeout(r, 500));
  }
}

t.before(async () => {
  await lab(['down']);
});
t.teardown(async () => {
  await lab(['down']);
});

t.test('a Service answers through knode-proxy on every node, in iptables then nftables mode', async (t) => {
  const up = await lab(['up', '--nodes', '2', '--runtime', 'containerd']);
  t.equal(up.code, 0, 'lab up (default proxy mode iptables)', { stderr: up.stderr });
  if (up.code !== 0) return;

  for (const node of ['node-1', 'node-2']) {
    const mode = await inNode(node, ['curl', '-sS', '-m', '3', 'http://127.0.0.1:10249/proxyMode']);
    t.equal(mode.stdout, 'iptables', `${node}: /proxyMode says iptables (bare word)`);
  }

  t.equal((await kubectl(['create', 'deployment', 'svcweb', '--image', 'knode.local/app:1.0', '--replicas', '2'])).code, 0, 'deployment created');
  t.equal((await kubectl(['expose', 'deployment', 'svcweb', '--port', '80', '--target-port', '8080', '--type', 'NodePort'])).code, 0, 'NodePort service created');
  const rollout = await kubectl(['rollout', 'status', 'deployment/svcweb', '--timeout=120s']);
  t.equal(rollout.code, 0, 'deployment rolled out', { stderr: rollout.stderr });
  const pods = (await kubectl(['get', 'pods', '-l', 'app=svcweb', '-o', 'jsonpath={.items[*].metadata.name}'])).stdout.split(' ').filter(Boolean).sort();
  t.equal(pods.length, 2, 'two pods');
  const clusterIP = (await kubectl(['get', 'svc', 'svcweb', '-o', 'jsonpath={.spec.clusterIP}'])).stdout;
  const nodePort = (await kubectl(['get', 'svc', 'svcweb', '-o', 'jsonpath={.spec.ports[0].nodePort}'])).stdout;
  t.match(clusterIP, /^10\.96\.\d+\.\d+$/, `ClusterIP ${clusterIP}`);

  for (const node of ['node-1', 'node-2']) {
    const seen = await settled(node, `http://${clusterIP}/hostname`, 20);
    t.notOk(seen.has('error'), `${node}: every request to the ClusterIP answered`, { seen: Object.fromEntries(seen) });
    t.same([...seen.keys()].sort(), pods, `${node}: both pods answered through the ClusterIP`, { seen: Object.fromEntries(seen) });
  }
  const viaNodePort = await settled('node-1', `http://${underlay.nodeAddress(2)}:${nodePort}/hostname`, 4);
  t.notOk(viaNodePort.has('error'), `node-1 reaches the service on node-2's NodePort ${nodePort}`, { seen: Object.fromEntries(viaNodePort) });

  const again = await lab(['up', '--nodes', '2', '--runtime', 'containerd', '--proxy-mode', 'nftables']);
  t.equal(again.code, 0, 'up --proxy-mode nftables restarts the proxies in nftables mode', { stderr: again.stderr });
  for (const node of ['node-1', 'node-2']) {
    const mode = await inNode(node, ['curl', '-sS', '-m', '3', 'http://127.0.0.1:10249/proxyMode']);
    t.equal(mode.stdout, 'nftables', `${node}: /proxyMode says nftables`);
    const table = await inNode(node, ['nft', 'list', 'table', 'ip', 'kube-proxy']);
    t.equal(table.code, 0, `${node}: the kube-proxy nft table exists`);
  }
  const seen = await settled('node-2', `http://${clusterIP}/hostname`, 10);
  t.notOk(seen.has('error'), 'node-2: the ClusterIP still answers in nftables mode', { seen: Object.fromEntries(seen) });
});

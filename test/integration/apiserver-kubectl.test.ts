/**
 * kubectl against the lab apiserver (admin kubeconfig): apply a pod and a
 * service from YAML, get (-o wide, -o yaml, -w), patch, label, describe,
 * get --raw, delete. Skipped when kubectl is not installed.
 */
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { execFile } from '../../lib/exec.js';
import type { ExecResult } from '../../lib/exec.js';
import { startApiServer } from '../../lab/apiserver/server.js';

const probe = await execFile('kubectl', ['version', '--client'], { allowFailure: true }).catch(() => undefined);
if (!probe || probe.code !== 0) {
  t.plan(0, 'kubectl is not installed');
  process.exit(0);
}

const dir = await mkdtemp(join(tmpdir(), 'knode-t-kubectl-'));
const server = await startApiServer({ dataDir: join(dir, 'data'), listen: ['127.0.0.1:0'] });
t.teardown(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

const env = { ...process.env, KUBECONFIG: server.adminKubeconfig, HOME: dir };
const kubectl = (args: string[], timeoutMs = 20_000): Promise<ExecResult> => execFile('kubectl', args, { env, timeoutMs });

const manifest = join(dir, 'workload.yaml');
await writeFile(
  manifest,
  `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: app
    image: knode.local/app:1.0
    ports:
    - containerPort: 8080
    env:
    - name: MODE
      value: lab
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
`,
);

t.test('apply creates, a second apply is a no-op', async (t) => {
  const first = await kubectl(['apply', '--validate=false', '-f', manifest]);
  t.match(first.stdout, /pod\/web created/);
  t.match(first.stdout, /service\/web created/);
  const second = await kubectl(['apply', '--validate=false', '-f', manifest]);
  t.match(second.stdout, /pod\/web unchanged/);
  t.match(second.stdout, /service\/web unchanged/);
});

t.test('get: tables, -o wide, -o yaml', async (t) => {
  const pods = await kubectl(['get', 'pods', '-o', 'wide']);
  t.match(pods.stdout, /NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE/);
  t.match(pods.stdout, /web\s+0\/1\s+Pending\s+0/);
  const svc = await kubectl(['get', 'svc', 'web', '-o', 'wide']);
  t.match(svc.stdout, /web\s+NodePort\s+10\.96\.\d+\.\d+\s+<none>\s+80:3\d{4}\/TCP\s+\S+\s+app=web/);
  const yaml = await kubectl(['get', 'pod', 'web', '-o', 'yaml']);
  t.match(yaml.stdout, /kind: Pod/);
  t.match(yaml.stdout, /uid: [0-9a-f-]{36}/);
  const all = await kubectl(['get', 'ns,nodes,svc', '-A']);
  t.match(all.stdout, /namespace\/kube-system\s+Active/);
  t.match(all.stdout, /service\/kubernetes\s+ClusterIP\s+10\.96\.0\.1/);
  const jsonpath = await kubectl(['get', 'svc', 'kubernetes', '-o', 'jsonpath={.spec.clusterIP}']);
  t.equal(jsonpath.stdout, '10.96.0.1');
});

t.test('get -w sees a change', async (t) => {
  const watching = execFile('kubectl', ['get', 'pod', 'web', '-w', '-o', 'custom-columns=NAME:.metadata.name,TIER:.metadata.labels.tier'], {
    env,
    timeoutMs: 5000,
    allowFailure: true,
  });
  await new Promise((r) => setTimeout(r, 1500));
  await kubectl(['label', 'pod', 'web', 'tier=watched']);
  const out = await watching;
  t.match(out.stdout, /web\s+<none>/, 'initial state');
  t.match(out.stdout, /web\s+watched/, 'the change arrives through the watch');
});

t.test('patch, label, describe', async (t) => {
  const patched = await kubectl(['patch', 'pod', 'web', '-p', '{"spec":{"containers":[{"name":"app","image":"knode.local/app:2.0"}]}}']);
  t.match(patched.stdout, /pod\/web patched/);
  const image = await kubectl(['get', 'pod', 'web', '-o', 'jsonpath={.spec.containers[0].image} {.spec.containers[0].env[0].value}']);
  t.equal(image.stdout, 'knode.local/app:2.0 lab', 'strategic merge kept env');
  const merge = await kubectl(['patch', 'svc', 'web', '--type=merge', '-p', '{"metadata":{"annotations":{"note":"merged"}}}']);
  t.match(merge.stdout, /service\/web patched/);
  const json = await kubectl(['patch', 'svc', 'web', '--type=json', '-p', '[{"op":"add","path":"/metadata/labels","value":{"j":"1"}}]']);
  t.match(json.stdout, /service\/web patched/);
  const labeled = await kubectl(['label', 'pod', 'web', 'env=lab']);
  t.match(labeled.stdout, /pod\/web labeled/);
  const relabel = await kubectl(['label', 'pod', 'web', 'env-']);
  t.match(relabel.stdout, /pod\/web unlabeled/);
  const shown = await kubectl(['get', 'pods', '-l', 'app=web,tier=watched', '--show-labels']);
  t.match(shown.stdout, /web.*app=web,tier=watched/);
  const describe = await kubectl(['describe', 'pod', 'web']);
  t.match(describe.stdout, /Name:\s+web/);
  t.match(describe.stdout, /Image:\s+knode\.local\/app:2\.0/);
  t.match(describe.stdout, /Status:\s+Pending/);
  const describeSvc = await kubectl(['describe', 'svc', 'web']);
  t.match(describeSvc.stdout, /NodePort:\s+http\s+3\d{4}\/TCP/);
});

t.test('get --raw', async (t) => {
  const raw = await kubectl(['get', '--raw', '/api/v1']);
  const doc = JSON.parse(raw.stdout) as { kind: string; resources: { name: string }[] };
  t.equal(doc.kind, 'APIResourceList');
  t.ok(doc.resources.some((r) => r.name === 'pods'));
  const health = await kubectl(['get', '--raw', '/healthz']);
  t.equal(health.stdout, 'ok');
});

t.test('errors come back as kubectl messages', async (t) => {
  const missing = await execFile('kubectl', ['get', 'pod', 'nope'], { env, allowFailure: true });
  t.not(missing.code, 0);
  t.match(missing.stderr, /pods "nope" not found/);
});

/** Fields the client meant to send that the server lost or changed (server-set fields ignored). */
function lostFields(server: unknown, client: unknown, path = ''): string[] {
  if (client !== null && typeof client === 'object' && !Array.isArray(client)) {
    const out: string[] = [];
    for (const [k, v] of Object.entries(client)) {
      const empty = v === null || (typeof v === 'object' && Object.keys(v as object).length === 0);
      const there = server !== null && typeof server === 'object' && k in server;
      if (!there) {
        if (!empty) out.push(`${path}.${k} missing`);
        continue;
      }
      if (k === 'creationTimestamp') continue;
      out.push(...lostFields((server as Record<string, unknown>)[k], v, `${path}.${k}`));
    }
    return out;
  }
  if (Array.isArray(client)) return client.flatMap((v, i) => lostFields(Array.isArray(server) ? server[i] : undefined, v, `${path}[${i}]`));
  return server === client ? [] : [`${path}: ${JSON.stringify(server)} != ${JSON.stringify(client)}`];
}

t.test('kubectl create generators (protobuf bodies) keep every field', async (t) => {
  const created = await kubectl(['create', 'namespace', 'gen']);
  t.match(created.stdout, /namespace\/gen created/);
  const cases: [kind: string, name: string, args: string[]][] = [
    ['configmap', 'c1', ['create', 'configmap', 'c1', '--from-literal=a=b', '--from-literal=x=y']],
    ['secret', 's1', ['create', 'secret', 'generic', 's1', '--from-literal=p=q']],
    ['serviceaccount', 'robot', ['create', 'serviceaccount', 'robot']],
    ['deployment', 'd1', ['create', 'deployment', 'd1', '--image=knode.local/app:1.0', '--replicas=2', '--port=8080']],
    ['deployment', 'd0', ['create', 'deployment', 'd0', '--image=knode.local/app:1.0', '--replicas=0', '--', 'sleep', '10']],
    ['service', 'np', ['create', 'service', 'nodeport', 'np', '--tcp=80:8080']],
    ['service', 'cip', ['create', 'service', 'clusterip', 'cip', '--tcp=443:https']],
  ];
  for (const [kind, name, args] of cases) {
    const dash = args.indexOf('--');
    const dryRun = dash < 0 ? [...args, '--dry-run=client', '-o', 'json'] : [...args.slice(0, dash), '--dry-run=client', '-o', 'json', ...args.slice(dash)];
    const intended = JSON.parse((await kubectl(['-n', 'gen', ...dryRun])).stdout) as unknown;
    const out = await kubectl(['-n', 'gen', ...args]);
    t.match(out.stdout, /created/, args.join(' '));
    const stored = JSON.parse((await kubectl(['-n', 'gen', 'get', kind, name, '-o', 'json'])).stdout) as unknown;
    t.same(lostFields(stored, intended), [], `${kind}/${name}: nothing lost`);
  }
  const scaled = await kubectl(['-n', 'gen', 'scale', 'deployment', 'd1', '--replicas=3']);
  t.match(scaled.stdout, /scaled/);
  t.equal((await kubectl(['-n', 'gen', 'get', 'deploy', 'd1', '-o', 'jsonpath={.spec.replicas}'])).stdout, '3');
  t.equal((await kubectl(['auth', 'can-i', 'delete', 'nodes'])).stdout.trim(), 'yes');
  t.match((await kubectl(['auth', 'whoami'])).stdout, /admin/);
  const deleted = await kubectl(['delete', 'namespace', 'gen'], 30_000);
  t.match(deleted.stdout, /namespace "gen" deleted/);
});

t.test('logs through a (fake) kubelet', async (t) => {
  const kubelet = createHttpsServer({ key: server.pki.serving.key, cert: server.pki.serving.cert }, (req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(`log of ${req.url ?? ''}\n`);
  });
  await new Promise<void>((resolve) => kubelet.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => kubelet.close(() => resolve())));
  const port = (kubelet.address() as AddressInfo).port;
  const file = join(dir, 'logs.yaml');
  await writeFile(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'v1', kind: 'Node', metadata: { name: 'log-node' }, status: { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }], daemonEndpoints: { kubeletEndpoint: { Port: port } } } },
        { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'logged' }, spec: { nodeName: 'log-node', containers: [{ name: 'app', image: 'i' }] } },
      ],
    }),
  );
  await kubectl(['apply', '--validate=false', '-f', file]);
  const logs = await kubectl(['logs', 'logged', '--tail=5']);
  t.equal(logs.stdout, 'log of /containerLogs/default/logged/app?tailLines=5\n');
  const nodes = await kubectl(['get', 'nodes', '-o', 'wide']);
  t.match(nodes.stdout, /log-node\s+Unknown\s+<none>\s+\S+\s+\S*\s+127\.0\.0\.1/);
  await kubectl(['delete', 'pod', 'logged', '--grace-period=0', '--force']);
  await kubectl(['delete', 'node', 'log-node']);
});

t.test('delete', async (t) => {
  const deleted = await kubectl(['delete', '-f', manifest]);
  t.match(deleted.stdout, /pod "web" deleted/);
  t.match(deleted.stdout, /service "web" deleted/);
  const after = await kubectl(['get', 'pods']);
  t.match(after.stdout + after.stderr, /No resources found/);
});

/**
 * The kubelet TLS bootstrap end to end against the lab apiserver and its
 * controllers (in-process, 127.0.0.1:0, temp dir), through real HTTPS:
 * a bootstrap token Secret → agent/bootstrap makes a CSR with the token, the
 * csrapproving controller approves it, csrsigning signs it with the lab CA →
 * the written kubeconfig authenticates as system:node:<node> (kubectl auth
 * whoami, a Node create) and `kubectl get csr` shows Approved,Issued. Then a
 * rotation with the node's own certificate (clock moved past the rotation
 * deadline) and bad tokens (unknown, wrong secret, expired, not for
 * authentication) → 401; CSR validation and who may approve; and the built
 * knode-agent (dist/, `npm run build` first) bootstrapping with only
 * --bootstrap-kubeconfig before it connects its runtime.
 */
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { request } from 'node:https';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { execFile } from '../../lib/exec.js';
import { createLogger } from '../../lib/log.js';
import { startApiServer } from '../../lab/apiserver/server.js';
import { ApiClient } from '../../lab/controllers/client.js';
import { startControllers } from '../../lab/controllers/index.js';
import { bootstrapClientCertificate, runClientCertificateRotation } from '../../agent/bootstrap/index.js';
import { currentPath } from '../../agent/bootstrap/certstore.js';
import { until } from '../helpers/poll.js';

const dir = await mkdtemp(join(tmpdir(), 'knode-t-bootstrap-'));
const server = await startApiServer({ dataDir: join(dir, 'data'), listen: ['127.0.0.1:0'] });
const logger = createLogger({ component: 'bootstrap-test', level: process.env.KNODE_LOG_LEVEL === 'debug' ? 'debug' : 'warn' });
const controllers = await startControllers({
  kubeconfigPath: server.adminKubeconfig,
  logger,
  only: ['csrapproving', 'csrsigning'],
  clusterSigning: { certFile: server.pki.ca.certFile, keyFile: server.pki.ca.keyFile, durationSeconds: 3600 },
});
const api = await ApiClient.fromKubeconfig(server.adminKubeconfig);
const stop = new AbortController();
t.teardown(async () => {
  stop.abort();
  await controllers.stop();
  api.close();
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const kubectl = (kubeconfig: string, args: string[]) => execFile('kubectl', ['--kubeconfig', kubeconfig, ...args], { env: { ...process.env, HOME: dir }, timeoutMs: 60_000, allowFailure: true });

async function tokenSecret(id: string, secret: string, extra: Record<string, string> = {}): Promise<void> {
  await api.create('/api/v1/namespaces/kube-system/secrets', {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `bootstrap-token-${id}`, namespace: 'kube-system' },
    type: 'bootstrap.kubernetes.io/token',
    stringData: { 'token-id': id, 'token-secret': secret, 'usage-bootstrap-authentication': 'true', 'usage-bootstrap-signing': 'true', 'auth-extra-groups': 'system:bootstrappers:kubeadm:default-node-token', ...extra },
  });
}

async function bootstrapKubeconfig(name: string, token: string): Promise<string> {
  const path = join(dir, `${name}.kubeconfig`);
  await writeFile(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'lab', cluster: { server: server.urls[0], 'certificate-authority-data': b64(server.pki.ca.cert) } }],
      users: [{ name: 'tls-bootstrap-token-user', user: { token } }],
      contexts: [{ name: 'boot', context: { cluster: 'lab', user: 'tls-bootstrap-token-user' } }],
      'current-context': 'boot',
    }),
  );
  return path;
}

/** GET /api with a bearer token: the HTTP status. */
function statusWithToken(token: string): Promise<number> {
  const url = new URL('/api/v1/namespaces/default/pods', server.urls[0]);
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { Authorization: `Bearer ${token}` }, ca: server.pki.ca.cert }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

await tokenSecret('abcdef', '0123456789abcdef');
const kubeconfig = join(dir, 'kubelet.conf');
const certDir = join(dir, 'pki');
const node = 'boot-node-1';
const opts = {
  kubeconfigPath: kubeconfig,
  bootstrapKubeconfigPath: await bootstrapKubeconfig('bootstrap', 'abcdef.0123456789abcdef'),
  certDir,
  nodeName: node,
  expirationSeconds: 600,
  requestTimeoutMs: 60_000,
  signal: stop.signal,
  logger,
};

t.test('bootstrap: token → CSR → approved, signed → a working node kubeconfig', async (t) => {
  t.equal(await bootstrapClientCertificate(opts), true);
  const cert = new X509Certificate(await readFile(currentPath(certDir)));
  t.match(cert.subject, /CN=system:node:boot-node-1/);
  t.match(cert.subject, /O=system:nodes/);
  t.ok(cert.verify(new X509Certificate(server.pki.ca.cert).publicKey), 'signed by the lab CA');
  // expirationSeconds 600 (< the 3600 s signing duration) plus the 5 min backdate.
  t.equal((Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 1000, 900);
  const who = await kubectl(kubeconfig, ['auth', 'whoami', '-o', 'json']);
  t.equal(who.code, 0, who.stderr);
  const status = JSON.parse(who.stdout) as { status: { userInfo: { username: string; groups: string[] } } };
  t.equal(status.status.userInfo.username, `system:node:${node}`);
  t.ok(status.status.userInfo.groups.includes('system:nodes'));
  const nodeFile = join(dir, 'node.json');
  await writeFile(nodeFile, JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: node } }));
  const made = await kubectl(kubeconfig, ['create', '--validate=false', '-f', nodeFile, '-o', 'name']);
  t.equal(made.code, 0, made.stderr);
  t.equal(made.stdout.trim(), `node/${node}`);
  const csrs = await kubectl(server.adminKubeconfig, ['get', 'csr']);
  t.equal(csrs.code, 0, csrs.stderr);
  t.match(csrs.stdout, /NAME\s+AGE\s+SIGNERNAME\s+REQUESTOR\s+REQUESTEDDURATION\s+CONDITION/);
  t.match(csrs.stdout, /node-csr-\S+\s+\S+\s+kubernetes\.io\/kube-apiserver-client-kubelet\s+system:bootstrap:abcdef\s+10m\s+Approved,Issued/);
  // A second start finds the kubeconfig usable and requests nothing.
  const before = (await api.list('/apis/certificates.k8s.io/v1/certificatesigningrequests')).items.length;
  t.equal(await bootstrapClientCertificate(opts), true);
  t.equal((await api.list('/apis/certificates.k8s.io/v1/certificatesigningrequests')).items.length, before);
});

t.test('rotation with the current certificate swaps the credentials in place', async (t) => {
  const first = new X509Certificate(await readFile(currentPath(certDir)));
  const rotationStop = new AbortController();
  let draws = 0;
  // The clock 400 s ahead: past the first deadline (70 % of 900 s after notBefore = +330 s), not past the next one (+510 s).
  const rotation = runClientCertificateRotation({ ...opts, signal: rotationStop.signal, now: () => Date.now() + 400_000, random: () => (draws++ === 0 ? 0 : 1) });
  const second = await until(
    'a rotated certificate',
    async () => {
      const c = new X509Certificate(await readFile(currentPath(certDir)));
      return c.serialNumber !== first.serialNumber ? c : undefined;
    },
    30_000,
    200,
  );
  rotationStop.abort();
  await rotation;
  t.match(second.subject, /CN=system:node:boot-node-1/);
  t.not(second.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'), first.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'), 'a new key');
  const csrs = await kubectl(server.adminKubeconfig, ['get', 'csr', '--no-headers']);
  t.match(csrs.stdout, /kubernetes\.io\/kube-apiserver-client-kubelet\s+system:node:boot-node-1\s+10m\s+Approved,Issued/, 'the renewal was asked for by the node itself and auto-approved');
  const who = await kubectl(kubeconfig, ['get', 'node', node, '-o', 'name']);
  t.equal(who.code, 0, who.stderr);
});

t.test('bad bootstrap tokens are refused with 401', async (t) => {
  await tokenSecret('expird', '0123456789abcdef', { expiration: new Date(Date.now() - 60_000).toISOString() });
  await tokenSecret('noauth', '0123456789abcdef', { 'usage-bootstrap-authentication': 'false' });
  t.equal(await statusWithToken('abcdef.0123456789abcdef'), 403, 'a valid token authenticates (but may not list pods)');
  t.equal(await statusWithToken('abcdef.0123456789abcdee'), 401, 'wrong secret');
  t.equal(await statusWithToken('zzzzzz.0123456789abcdef'), 401, 'no such token');
  t.equal(await statusWithToken('expird.0123456789abcdef'), 401, 'expired');
  t.equal(await statusWithToken('noauth.0123456789abcdef'), 401, 'not for authentication');
  const expired = await kubectl(await bootstrapKubeconfig('expired', 'expird.0123456789abcdef'), ['get', 'csr']);
  t.not(expired.code, 0);
  t.match(expired.stderr, /Unauthorized|must be logged in/);
});

t.test('CSR validation and approval rights', async (t) => {
  const boot = opts.bootstrapKubeconfigPath;
  const bad = join(dir, 'bad-csr.json');
  await writeFile(bad, JSON.stringify({ apiVersion: 'certificates.k8s.io/v1', kind: 'CertificateSigningRequest', metadata: { name: 'bad' }, spec: { request: b64('nope'), signerName: 'kubernetes.io/kube-apiserver-client-kubelet', usages: ['client auth'] } }));
  const created = await kubectl(boot, ['create', '--validate=false', '-f', bad]);
  t.not(created.code, 0);
  t.match(created.stderr, /is invalid: spec\.request/);
  const list = await api.list<{ metadata: { name: string } }>('/apis/certificates.k8s.io/v1/certificatesigningrequests');
  const name = list.items[0]!.metadata.name;
  const approve = await kubectl(boot, ['certificate', 'approve', '--force', name]);
  t.not(approve.code, 0, 'a bootstrapper may not approve');
  t.match(approve.stderr, /forbidden/);
  const nodeApprove = await kubectl(kubeconfig, ['certificate', 'deny', '--force', name]);
  t.not(nodeApprove.code, 0, 'nor may a node');
});

const agent = join(process.cwd(), 'dist', 'knode-agent.mjs');
t.test('knode-agent bootstraps with --bootstrap-kubeconfig before anything else', { skip: existsSync(agent) ? false : 'dist/knode-agent.mjs not built (npm run build)' }, async (t) => {
  const root = join(dir, 'agent-root');
  const agentKubeconfig = join(dir, 'agent-kubelet.conf');
  const child = spawn(
    process.execPath,
    [agent, '--kubeconfig', agentKubeconfig, '--bootstrap-kubeconfig', opts.bootstrapKubeconfigPath, '--root-dir', root, '--hostname-override', 'boot-node-2',
      '--container-runtime-endpoint', `unix://${join(dir, 'no-runtime.sock')}`, '--port', '0', '--healthz-port', '0'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  await until('the agent waiting for its runtime after the bootstrap', async () => (/runtime not ready|container runtime not reachable/.test(output) ? true : undefined), 30_000, 200).catch((err: unknown) => {
    throw new Error(`${String(err)}\nagent output:\n${output.slice(-3000)}`);
  });
  t.match(output, /TLS bootstrap: client certificate issued/);
  const who = await kubectl(agentKubeconfig, ['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}']);
  t.equal(who.stdout, 'system:node:boot-node-2', who.stderr);
  t.ok(existsSync(join(root, 'pki', 'kubelet-client-current.pem')));
  t.match(output, /client certificate rotation scheduled/);
  child.kill('SIGTERM');
  t.equal(await exited, 0, output.slice(-2000));
});

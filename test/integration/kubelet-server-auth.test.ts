// The kubelet server's authentication and authorization against a real lab
// apiserver (in-process, 127.0.0.1:0) with static tokens: no credentials →
// 401, an unknown token → 401, a token whose user may not use nodes/proxy →
// 403 (TokenReview then SubjectAccessReview, asked by the kubelet with its
// node credentials), an allowed token and an allowed client certificate →
// 200; a node's own certificate is not enough; the plain healthz answers on
// its own port; malformed and unknown requests get 400/404 after auth. The
// serving certificate is the self-signed one made at start.
import t from 'tap';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { startApiServer } from '../../lab/apiserver/server.js';
import { ensureClientCert } from '../../lab/apiserver/pki.js';
import { createKubeClient } from '../../agent/kube/index.js';
import { createRuntime } from '../../agent/runtime/index.js';
import { apiReviewer, cachingReviewer, loadServingCert, startKubeletServer } from '../../agent/server/index.js';
import { createLogger } from '../../lib/log.js';

interface Answer {
  code: number;
  body: string;
}

function get(port: number, path: string, o: { token?: string; cert?: string; key?: string; ca?: string; method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: o.method ?? 'GET',
        headers: { ...(o.token ? { Authorization: `Bearer ${o.token}` } : {}), ...o.headers },
        ...(o.cert ? { cert: o.cert, key: o.key } : {}),
        ...(o.ca ? { ca: o.ca, servername: 'localhost' } : { rejectUnauthorized: false }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ code: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

t.test('kubelet API authn/authz through TokenReview and SubjectAccessReview', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'knode-kserver-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const api = await startApiServer({
    dataDir: join(dir, 'apiserver'),
    listen: ['127.0.0.1:0'],
    nodes: ['n1'],
    tokens: new Map([
      ['admin-token', { name: 'root-user', groups: ['system:masters'] }],
      ['viewer-token', { name: 'viewer', groups: ['viewers'] }],
    ]),
  });
  t.teardown(() => api.close());
  const kube = createKubeClient(await api.nodeKubeconfig('n1'));
  const runtime = await createRuntime('cri', { endpoint: `unix://${join(dir, 'no-runtime.sock')}` });
  t.teardown(() => runtime.close());
  const tls = await loadServingCert({ rootDir: join(dir, 'agent'), nodeName: 'n1', addresses: ['127.0.0.1'] });
  const pod: V1Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'default', uid: 'u1' }, spec: { containers: [{ name: 'c', image: 'x' }] } };
  const server = await startKubeletServer({
    nodeName: 'n1',
    address: '127.0.0.1',
    port: 0,
    healthzAddress: '127.0.0.1',
    healthzPort: 0,
    tls,
    clientCA: api.pki.ca.cert,
    reviewer: cachingReviewer(apiReviewer(kube)),
    runtime,
    pods: () => [pod],
    logger: createLogger({ component: 'test-kubelet-server', level: 'error' }),
  });
  t.teardown(() => server.stop());
  const port = server.port!;

  t.equal((await get(port, '/pods')).code, 401, 'anonymous: 401');
  t.equal((await get(port, '/pods', { token: 'no-such-token' })).code, 401, 'unknown token: 401');
  t.equal((await get(port, '/pods', { headers: { Authorization: 'Basic eDp5' } })).code, 401, 'not a bearer token: 401');
  const denied = await get(port, '/pods', { token: 'viewer-token' });
  t.equal(denied.code, 403, 'a user without nodes/proxy: 403');
  t.match(denied.body, /user=viewer, verb=get, resource=nodes, subresource=proxy/);
  t.equal((await get(port, '/exec/default/p/c?command=sh&input=1', { token: 'viewer-token', method: 'POST', headers: { Connection: 'Upgrade', Upgrade: 'SPDY/3.1' } })).code, 403, 'an exec upgrade without rights: 403, no exec');
  const ok = await get(port, '/pods', { token: 'admin-token', ca: tls.cert });
  t.equal(ok.code, 200, 'system:masters token: 200 (and the self-signed serving certificate verifies for localhost)');
  t.same((JSON.parse(ok.body) as { items: V1Pod[] }).items.map((p) => p.metadata?.name), ['p']);
  t.equal((await get(port, '/healthz', { token: 'admin-token' })).body, 'ok');

  const admin = await ensureClientCert(api.pki, 'admin', 'admin', ['system:masters']);
  t.equal((await get(port, '/pods', { cert: admin.cert, key: admin.key })).code, 200, 'admin client certificate: 200');
  const nodeCert = await ensureClientCert(api.pki, 'node-n1', 'system:node:n1', ['system:nodes']);
  t.equal((await get(port, '/pods', { cert: nodeCert.cert, key: nodeCert.key })).code, 403, 'a node certificate has no nodes/proxy in the lab: 403');

  t.equal((await get(port, '/exec/default/p/c?output=1', { token: 'admin-token', method: 'POST' })).code, 400, 'exec without a command: 400');
  t.equal((await get(port, '/exec/default/p/c?command=ls&output=1', { token: 'admin-token', method: 'POST' })).code, 400, 'exec without an upgrade: 400');
  const unknown = await get(port, '/exec/default/nope/c?command=ls&output=1', { token: 'admin-token', method: 'POST', headers: { Connection: 'Upgrade', Upgrade: 'SPDY/3.1' } });
  t.equal(unknown.code, 404, 'exec upgrade for an unknown pod: 404');
  t.match(unknown.body, /pod \\?"default\/nope\\?" not found/);
  t.equal((await get(port, '/containerLogs/default/p/zz', { token: 'admin-token' })).code, 404, 'logs of an unknown container: 404');
  t.equal((await get(port, '/containerLogs/default/p/c?tailLines=x', { token: 'admin-token' })).code, 400, 'bad tailLines: 400');
  t.equal((await get(port, '/nothing-here', { token: 'admin-token' })).code, 404);

  const health = await new Promise<Answer>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: server.healthzPort!, path: '/healthz' }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ code: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
  t.same(health, { code: 200, body: 'ok' }, 'healthz (plain HTTP, no auth)');
  t.ok((await readFile(join(dir, 'agent', 'pki', 'kubelet.crt'), 'utf8')).includes('BEGIN CERTIFICATE'), 'self-signed certificate kept in <root-dir>/pki');
});

/**
 * The probe runners against real servers on loopback (no root): httpGet
 * (status classes, redirects, headers, HTTPS without verification, timeout,
 * refused), tcpSocket, and grpc against a @grpc/grpc-js grpc.health.v1 server.
 */
import t from 'tap';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { directDialer } from '../../agent/pods/probes/dial.js';
import { runGrpcProbe, decodeHealthCheckResponse, encodeHealthCheckRequest } from '../../agent/pods/probes/grpc.js';
import { runHttpProbe } from '../../agent/pods/probes/http.js';
import { httpProbeRequest } from '../../agent/pods/probes/spec.js';
import { runTcpProbe } from '../../agent/pods/probes/tcp.js';
import { ensurePki } from '../../lab/apiserver/pki.js';

function listen(server: Server | ReturnType<typeof createTcpServer>): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = createTcpServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}

let lastHeaders: IncomingHttpHeaders = {};
const http = createHttpServer((req, res) => {
  lastHeaders = req.headers;
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname === '/ok') return void res.end('fine');
  if (url.pathname === '/missing') return void res.writeHead(404).end('no');
  if (url.pathname === '/boom') return void res.writeHead(500).end();
  if (url.pathname === '/hop') return void res.writeHead(302, { location: '/ok' }).end();
  if (url.pathname === '/away') return void res.writeHead(301, { location: 'http://example.invalid/ok' }).end('gone');
  if (url.pathname === '/loop') return void res.writeHead(302, { location: '/loop' }).end();
  if (url.pathname === '/slow') return void setTimeout(() => res.end('late'), 3000);
  if (url.pathname === '/big') return void res.end('x'.repeat(50_000));
  res.writeHead(404).end();
});
const httpPort = await listen(http);
t.teardown(() => {
  http.closeAllConnections();
  http.close();
});

const req = (path: string, port = httpPort, scheme: 'http' | 'https' = 'http', headers: { name: string; value: string }[] = []) =>
  httpProbeRequest({ kind: 'httpGet', host: undefined, port, path, scheme, headers }, '127.0.0.1', port, 'kube-probe/1.32');

t.test('httpGet: 2xx, 4xx, 5xx, headers sent', async (t) => {
  t.same(await runHttpProbe(directDialer, req('/ok'), 1000), { result: 'success', output: 'fine' });
  t.equal(lastHeaders['user-agent'], 'kube-probe/1.32');
  t.equal(lastHeaders.accept, '*/*');
  t.equal(lastHeaders.host, `127.0.0.1:${httpPort}`);
  t.same(await runHttpProbe(directDialer, req('/missing'), 1000), { result: 'failure', output: 'HTTP probe failed with statuscode: 404' });
  t.same(await runHttpProbe(directDialer, req('/boom'), 1000), { result: 'failure', output: 'HTTP probe failed with statuscode: 500' });
  await runHttpProbe(directDialer, req('/ok', httpPort, 'http', [{ name: 'X-Probe', value: 'yes' }, { name: 'Host', value: 'app.test' }]), 1000);
  t.equal(lastHeaders['x-probe'], 'yes');
  t.equal(lastHeaders.host, 'app.test', 'a Host header sets the host');
  const big = await runHttpProbe(directDialer, req('/big'), 1000);
  t.equal(big.output.length, 10 * 1024, 'body read capped at 10 KiB');
});

t.test('httpGet redirects: same host followed, other host not (warning), loops stop after 10', async (t) => {
  t.same(await runHttpProbe(directDialer, req('/hop'), 1000), { result: 'success', output: 'fine' });
  t.same(await runHttpProbe(directDialer, req('/away'), 1000), { result: 'warning', output: 'Probe terminated redirects, Response body: gone' });
  t.same(await runHttpProbe(directDialer, req('/loop'), 2000), { result: 'failure', output: `Get "http://127.0.0.1:${httpPort}/loop": stopped after 10 redirects` });
});

t.test('httpGet transport failures: refused and timeout', async (t) => {
  const port = await closedPort();
  t.same(await runHttpProbe(directDialer, req('/ok', port), 1000), { result: 'failure', output: `Get "http://127.0.0.1:${port}/ok": dial tcp 127.0.0.1:${port}: connect: connection refused` });
  t.same(await runHttpProbe(directDialer, req('/slow'), 300), { result: 'failure', output: `Get "http://127.0.0.1:${httpPort}/slow": context deadline exceeded (Client.Timeout exceeded while awaiting headers)` });
});

t.test('httpGet over HTTPS: certificate not verified', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'knode-probe-pki-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const pki = await ensurePki(dir);
  const https = createHttpsServer({ cert: pki.serving.cert, key: pki.serving.key }, (_req, res) => res.end('secure'));
  const port = await listen(https as unknown as Server);
  t.teardown(() => https.close());
  t.same(await runHttpProbe(directDialer, req('/', port, 'https'), 2000), { result: 'success', output: 'secure' });
  t.equal((await runHttpProbe(directDialer, req('/', httpPort, 'https'), 1000)).result, 'failure', 'HTTPS to a plain HTTP server fails');
});

t.test('tcpSocket: open port succeeds, closed port fails with the dial error', async (t) => {
  t.same(await runTcpProbe(directDialer, '127.0.0.1', httpPort, 1000), { result: 'success', output: '' });
  const port = await closedPort();
  t.same(await runTcpProbe(directDialer, '127.0.0.1', port, 1000), { result: 'failure', output: `dial tcp 127.0.0.1:${port}: connect: connection refused` });
});

t.test('grpc health messages encode as grpc.health.v1 expects', async (t) => {
  t.same([...encodeHealthCheckRequest('')], [0, 0, 0, 0, 0]);
  t.same([...encodeHealthCheckRequest('ab')], [0, 0, 0, 0, 4, 10, 2, 97, 98]);
  t.equal(decodeHealthCheckResponse(Buffer.from([0, 0, 0, 0, 2, 8, 1])), 1);
  t.equal(decodeHealthCheckResponse(Buffer.from([0, 0, 0, 0, 0])), 0, 'absent status is UNKNOWN');
});

t.test('grpc probe against a @grpc/grpc-js health server', async (t) => {
  const statuses: Record<string, number> = { '': 1, down: 2 };
  const health: grpc.ServiceDefinition = {
    Check: {
      path: '/grpc.health.v1.Health/Check',
      requestStream: false,
      responseStream: false,
      requestSerialize: (s: { service: string }) => Buffer.from(protobuf.Writer.create().uint32(10).string(s.service).finish()),
      requestDeserialize: (b: Buffer) => {
        const r = protobuf.Reader.create(b);
        let service = '';
        while (r.pos < r.len) {
          const tag = r.uint32();
          if (tag === 10) service = r.string();
          else r.skipType(tag & 7);
        }
        return { service }; // an object: grpc-js takes a falsy request for "no message"
      },
      responseSerialize: (status: number) => Buffer.from(protobuf.Writer.create().uint32(8).int32(status).finish()),
      responseDeserialize: (b: Buffer) => b,
    },
  };
  const server = new grpc.Server();
  server.addService(health, {
    Check: (call: grpc.ServerUnaryCall<{ service: string }, number>, cb: grpc.sendUnaryData<number>) => {
      const s = statuses[call.request.service];
      if (s === undefined) cb({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
      else cb(null, s);
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const bare = new grpc.Server();
  const barePort = await new Promise<number>((resolve, reject) => bare.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  t.teardown(() => {
    server.forceShutdown();
    bare.forceShutdown();
  });
  const run = (p: number, service: string) => runGrpcProbe(directDialer, '127.0.0.1', p, service, 1000, 'kube-probe/1.32');
  t.same(await run(port, ''), { result: 'success', output: 'service healthy' });
  t.same(await run(port, 'down'), { result: 'failure', output: 'service unhealthy (responded with "NOT_SERVING")' });
  t.same(await run(port, 'nope'), { result: 'failure', output: 'error: health rpc probe failed: rpc error: code = NotFound desc = unknown service' });
  t.match(await run(barePort, ''), { result: 'failure', output: /^this server does not implement the grpc health protocol \(grpc\.health\.v1\.Health\): / });
  const closed = await closedPort();
  t.same(await run(closed, ''), { result: 'failure', output: `error: failed to connect service at "127.0.0.1:${closed}": dial tcp 127.0.0.1:${closed}: connect: connection refused` });
  t.match(await run(httpPort, ''), { result: 'failure', output: /^error: health rpc probe failed: / }, 'an HTTP/1 server: a failure, not a crash');
});

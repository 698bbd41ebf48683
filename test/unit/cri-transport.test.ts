/**
 * The CRI client's transport behaviour against an in-process gRPC server that
 * serves the same embedded proto on a unix socket (no root, no containerd):
 * deadlines, cancellation, waitReady's back-off until a server appears, error
 * codes, and int64 timestamps end to end over a real socket.
 */
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCriRuntime, criPackageDefinition } from '../../agent/runtime/cri/client.js';
import { createLogger } from '../../lib/log.js';

const quiet = createLogger({ component: 'test', write: () => undefined });
const dir = mkdtempSync(join(tmpdir(), 'knode-cri-transport-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

type Handler = (call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>, cb: grpc.sendUnaryData<unknown>) => void;

const seen: Record<string, unknown>[] = [];
const handlers: Record<string, Handler> = {
  Version: (call, cb) => {
    seen.push(call.request);
    cb(null, { version: '0.1.0', runtimeName: 'fake', runtimeVersion: '0.0.1', runtimeApiVersion: 'v1' });
  },
  // Never answers within the test's deadlines.
  Status: (_call, cb) => {
    setTimeout(() => cb(null, {}), 3000).unref();
  },
  ContainerStatus: (call, cb) => {
    if (call.request.containerId !== 'c1') return cb({ code: grpc.status.NOT_FOUND, details: `container "${String(call.request.containerId)}" not found` });
    cb(null, { status: { id: 'c1', state: 'CONTAINER_RUNNING', createdAt: '1763900000123456789', startedAt: '1763900000999999999' } });
  },
  ListContainers: (call, cb) => {
    seen.push(call.request);
    cb(null, { containers: [] });
  },
};

async function startServer(socket: string): Promise<grpc.Server> {
  const server = new grpc.Server();
  const service = criPackageDefinition()['runtime.v1.RuntimeService'] as grpc.ServiceDefinition;
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [name, h] of Object.entries(handlers)) impl[name] = h as grpc.handleUnaryCall<unknown, unknown>;
  server.addService(service, impl);
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return server;
}

t.test('calls, deadlines, cancellation and errors over a unix socket', async (t) => {
  const socket = join(dir, 'a.sock');
  const server = await startServer(socket);
  t.teardown(() => server.forceShutdown());
  const cri = createCriRuntime({ endpoint: socket, logger: quiet, requestTimeoutMs: 5000 });
  t.teardown(() => cri.close());

  t.same(await cri.version(), { version: '0.1.0', runtimeName: 'fake', runtimeVersion: '0.0.1', runtimeApiVersion: 'v1' });
  t.same(seen[0], { version: '0.1.0' }, 'the kubelet API version is announced');

  const s = (await cri.containerStatus('c1')).status;
  t.equal(s.createdAt, 1763900000123456789n, 'int64 nanos exact over the wire');
  t.equal(s.startedAt, 1763900000999999999n);
  t.equal(s.state, 'running');
  await t.rejects(cri.containerStatus('nope'), { code: 'NOT_FOUND', message: 'CRI ContainerStatus: container "nope" not found' });
  await t.rejects(cri.podSandboxStatus('x'), { code: 'UNIMPLEMENTED' }, 'a method the server lacks');

  const t0 = Date.now();
  await t.rejects(cri.status({ timeoutMs: 300 }), { code: 'DEADLINE_EXCEEDED' });
  const took = Date.now() - t0;
  t.ok(took >= 250 && took < 1500, `deadline honoured (${took} ms)`);

  const ac = new AbortController();
  const p = cri.status({ signal: ac.signal });
  setTimeout(() => ac.abort(), 100);
  await t.rejects(p, { code: 'CANCELLED' }, 'AbortSignal cancels the call');
  const pre = new AbortController();
  pre.abort();
  await t.rejects(cri.version({ signal: pre.signal }), { code: 'CANCELLED' }, 'an aborted signal stops the call before it starts');

  await cri.listContainers({ podSandboxId: 'sb', state: 'exited', labelSelector: { a: 'b' } });
  t.same(seen[1], { filter: { id: '', podSandboxId: 'sb', state: { state: 'CONTAINER_EXITED' }, labelSelector: { a: 'b' } } }, 'filter arrives as sent');
});

t.test('waitReady: retries until the runtime appears', async (t) => {
  const socket = join(dir, 'late.sock');
  const cri = createCriRuntime({ endpoint: `unix://${socket}`, logger: quiet });
  t.teardown(() => cri.close());
  let server: grpc.Server | undefined;
  t.teardown(() => server?.forceShutdown());
  const t0 = Date.now();
  setTimeout(() => {
    void startServer(socket).then((s) => {
      server = s;
    });
  }, 700);
  const v = await cri.waitReady({ timeoutMs: 10_000 });
  const took = Date.now() - t0;
  t.equal(v.runtimeName, 'fake');
  t.ok(took >= 650 && took < 4000, `ready ${took} ms after the start, the server came at 700 ms`);
});

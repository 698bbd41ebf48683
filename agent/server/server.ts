/**
 * The kubelet server of knode-agent: the HTTPS API on --address:--port
 * (10250) and the plain healthz on --healthz-bind-address:--healthz-port
 * (127.0.0.1:10248).
 *
 * Design notes:
 * - Every request on the HTTPS port — plain or upgrade — passes `gate` first
 *   (auth.ts): 401 without valid credentials, 403 when the SubjectAccessReview
 *   says no; no handler runs before that.
 * - Endpoints: /healthz, /pods, /containerLogs/{ns}/{pod}/{container},
 *   /run/{ns}/{pod}[/{uid}]/{container} (POST, cmd), /metrics,
 *   /stats/summary, and as upgrades /exec, /attach, /portForward
 *   (stream-backend.ts: the runtime's streaming URL for CRI, served here
 *   for docker).
 * - Errors are answered (400 bad parameters, 404 unknown pod/container/path,
 *   500 else) and logged; a handler never throws out of the server, and a
 *   client closing its connection only ends its own request.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { V1Pod } from '@kubernetes/client-node';
import { errorMessage, isKnodeError, KnodeError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { containerNameLabel, podUidLabel } from '../pods/labels.js';
import type { Runtime, RuntimeService } from '../runtime/types.js';
import { bearerToken, nodeAttributes, userFromSubject, type RequestUser, type Reviewer } from './auth.js';
import { findLogTarget, streamContainerLog } from './container-logs.js';
import { parseContainerLogQuery } from './cri-log.js';
import { createKubeletMetrics, metricPath } from './metrics.js';
import { readSummary } from './stats.js';
import { streamingBackendFor, type StreamingBackend } from './stream-backend.js';
import { parseStreamRequest, rejectUpgrade, type StreamRequest } from './streaming.js';

export interface KubeletServerOptions {
  nodeName: string;
  address: string;
  /** undefined = no HTTPS server; 0 = any free port. */
  port: number | undefined;
  healthzAddress: string;
  /** undefined = no healthz server; 0 = any free port. */
  healthzPort: number | undefined;
  tls: { cert: string; key: string };
  /** PEM of the CA whose client certificates authenticate; undefined = tokens only. */
  clientCA: string | undefined;
  reviewer: Reviewer;
  /** With `directStreams` (docker), exec/attach/port-forward are served by the kubelet itself. */
  runtime: RuntimeService & Pick<Runtime, 'directStreams'> & Partial<Pick<Runtime, 'imageFsInfo'>>;
  /** The agent's root dir (/stats/summary: node fs, emptyDir volumes); undefined = node fs of /, no volume stats. */
  rootDir?: string;
  /** How streams are served; default: `streamingBackendFor(runtime)`. */
  streaming?: StreamingBackend;
  /** The pods this node runs (from the agent's pod informer). */
  pods: () => V1Pod[];
  logger: Logger;
}

export interface KubeletServer {
  /** The bound ports (useful with port 0 in tests). */
  port: number | undefined;
  healthzPort: number | undefined;
  stop(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const reasons: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 500: 'Internal Server Error' };

function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (isKnodeError(err, 'NOT_FOUND')) return new HttpError(404, err.message);
  if (isKnodeError(err, 'BAD_REQUEST') || isKnodeError(err, 'INVALID_ARGUMENT')) return new HttpError(400, err.message);
  return new HttpError(500, errorMessage(err));
}

function listen(server: HttpServer | HttpsServer, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function close(server: HttpServer | HttpsServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

export async function startKubeletServer(o: KubeletServerOptions): Promise<KubeletServer> {
  const log = o.logger;
  const metrics = createKubeletMetrics(o.runtime);
  const startTime = new Date();
  const stopping = new AbortController();
  const upgraded = new Set<Duplex>();
  const streaming = o.streaming ?? streamingBackendFor(o.runtime);

  const authenticate = async (req: IncomingMessage): Promise<RequestUser> => {
    const sock = req.socket as TLSSocket;
    if (o.clientCA !== undefined && sock.authorized) {
      const user = userFromSubject(sock.getPeerCertificate().subject as { CN?: string | string[]; O?: string | string[] } | undefined);
      if (user !== undefined) return user;
    }
    const header = req.headers.authorization;
    if (header !== undefined) {
      const token = bearerToken(header);
      if (token === undefined) throw new HttpError(401, 'Unauthorized');
      let user: RequestUser | undefined;
      try {
        user = await o.reviewer.reviewToken(token);
      } catch (err) {
        log.warn('token review failed', { err: errorMessage(err) });
        throw new HttpError(401, 'Unauthorized');
      }
      if (user !== undefined) return user;
    }
    throw new HttpError(401, 'Unauthorized');
  };

  /** Authentication and authorization; throws 401/403. */
  const gate = async (req: IncomingMessage, path: string): Promise<RequestUser> => {
    const user = await authenticate(req);
    const attrs = nodeAttributes(req.method ?? 'GET', path, o.nodeName);
    let decision;
    try {
      decision = await o.reviewer.reviewAccess(user, attrs);
    } catch (err) {
      throw new HttpError(500, `authorization error (user=${user.name}, verb=${attrs.verb}, resource=${attrs.resource}, subresource=${attrs.subresource}): ${errorMessage(err)}`);
    }
    if (!decision.allowed) {
      log.info('kubelet API request forbidden', { user: user.name, verb: attrs.verb, subresource: attrs.subresource, path });
      throw new HttpError(403, `Forbidden (user=${user.name}, verb=${attrs.verb}, resource=${attrs.resource}, subresource=${attrs.subresource})`);
    }
    return user;
  };

  const findPod = (namespace: string, name: string, uid?: string): V1Pod => {
    const pod = o.pods().find((p) => p.metadata?.namespace === namespace && p.metadata?.name === name && (uid === undefined || p.metadata?.uid === uid));
    if (pod === undefined) throw new HttpError(404, `pod "${namespace}/${name}" not found`);
    return pod;
  };

  const checkContainer = (pod: V1Pod, container: string): void => {
    const s = pod.spec;
    const names = [...(s?.containers ?? []), ...(s?.initContainers ?? []), ...(s?.ephemeralContainers ?? [])].map((c) => c.name);
    if (!names.includes(container)) throw new HttpError(404, `container "${container}" not found in pod "${pod.metadata?.namespace}/${pod.metadata?.name}"`);
  };

  const runningContainer = async (pod: V1Pod, container: string): Promise<string> => {
    checkContainer(pod, container);
    const running = await o.runtime.listContainers({ state: 'running', labelSelector: { [podUidLabel]: pod.metadata?.uid ?? '', [containerNameLabel]: container } });
    const c = running.sort((a, b) => b.metadata.attempt - a.metadata.attempt)[0];
    if (c === undefined) throw new HttpError(400, `container "${container}" in pod "${pod.metadata?.namespace}/${pod.metadata?.name}" is not running`);
    return c.id;
  };

  const sendJson = (res: ServerResponse, code: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };

  const containerLogs = async (res: ServerResponse, segs: string[], q: URLSearchParams): Promise<void> => {
    if (segs.length !== 3) throw new HttpError(400, 'expected /containerLogs/{namespace}/{pod}/{container}');
    const [namespace, name, container] = segs as [string, string, string];
    let query;
    try {
      query = parseContainerLogQuery(q, Date.now());
    } catch (err) {
      throw new HttpError(400, errorMessage(err));
    }
    const pod = findPod(namespace, name);
    checkContainer(pod, container);
    const target = await findLogTarget(o.runtime, `${namespace}/${name}`, pod.metadata?.uid ?? '', container, query.previous);
    const done = new AbortController();
    const abort = (): void => done.abort();
    res.on('close', abort);
    stopping.signal.addEventListener('abort', abort, { once: true });
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-cache' });
    res.flushHeaders();
    try {
      await streamContainerLog({ target, query, runtime: o.runtime, out: res, signal: done.signal });
    } finally {
      stopping.signal.removeEventListener('abort', abort);
      res.end();
    }
  };

  const run = async (req: IncomingMessage, res: ServerResponse, path: string, q: URLSearchParams): Promise<void> => {
    if (req.method !== 'POST') throw new HttpError(405, '/run takes POST');
    const segs = path.split('/').slice(2).map(decodeURIComponent);
    if (segs.length !== 3 && segs.length !== 4) throw new HttpError(400, 'expected /run/{namespace}/{pod}[/{uid}]/{container}');
    const cmd = (q.get('cmd') ?? '').split(/\s+/).filter(Boolean);
    if (cmd.length === 0) throw new HttpError(400, 'cmd is required');
    const pod = findPod(segs[0]!, segs[1]!, segs.length === 4 ? segs[2] : undefined);
    const id = await runningContainer(pod, segs[segs.length - 1]!);
    const r = await o.runtime.execSync(id, cmd, 60);
    const out = Buffer.concat([r.stdout, r.stderr]);
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': out.length, 'X-Exit-Code': String(r.exitCode) });
    res.end(out);
  };

  const route = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const path = url.pathname;
    const q = url.searchParams;
    const segs = path.split('/').slice(1);
    const get = req.method === 'GET' || req.method === 'HEAD';
    switch (segs[0]) {
      case 'healthz':
        if (path !== '/healthz') break;
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('ok');
        return;
      case 'pods':
        if (path !== '/pods' && path !== '/pods/') break;
        if (!get) throw new HttpError(405, 'method not allowed');
        sendJson(res, 200, { kind: 'PodList', apiVersion: 'v1', metadata: {}, items: o.pods() });
        return;
      case 'containerLogs': {
        if (!get) throw new HttpError(405, 'method not allowed');
        let parts: string[];
        try {
          parts = segs.slice(1).map(decodeURIComponent);
        } catch {
          throw new HttpError(400, 'malformed path');
        }
        await containerLogs(res, parts, q);
        return;
      }
      case 'metrics':
        if (path !== '/metrics') break;
        res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
        res.end(await metrics.registry.metrics());
        return;
      case 'stats':
        if (path !== '/stats/summary') break;
        sendJson(res, 200, await readSummary(o.nodeName, o.runtime, startTime, { ...(o.rootDir !== undefined ? { rootDir: o.rootDir } : {}), pods: o.pods }));
        return;
      case 'run':
        await run(req, res, path, q);
        return;
      case 'exec':
      case 'attach':
      case 'portForward':
        parseStreamOrThrow(path, q);
        throw new HttpError(400, 'Upgrade request required');
    }
    throw new HttpError(404, `404 page not found`);
  };

  const parseStreamOrThrow = (path: string, q: URLSearchParams): StreamRequest | undefined => {
    try {
      return parseStreamRequest(path, q);
    } catch (err) {
      throw new HttpError(400, errorMessage(err));
    }
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'https://kubelet');
    const labels = { method: req.method ?? '', path: metricPath(url.pathname), server_type: 'readwrite' };
    metrics.httpRequests.inc(labels);
    metrics.httpInflight.inc(labels);
    res.once('close', () => metrics.httpInflight.dec(labels));
    gate(req, url.pathname)
      .then(() => route(req, res, url))
      .catch((err: unknown) => {
        const e = toHttpError(err);
        if (e.code >= 500) log.warn('kubelet API request failed', { path: url.pathname, err: e.message });
        req.resume();
        if (res.headersSent) {
          res.end();
          return;
        }
        res.writeHead(e.code, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end(e.message);
      });
  };

  /** The container (exec, attach) or sandbox (portForward) a stream goes to. */
  const streamTarget = async (s: StreamRequest): Promise<string> => {
    const pod = findPod(s.namespace, s.pod, s.uid);
    if (s.kind === 'portForward') {
      const sandboxes = await o.runtime.listPodSandbox({ state: 'ready', labelSelector: { [podUidLabel]: pod.metadata?.uid ?? '' } });
      const sb = sandboxes[0];
      if (sb === undefined) throw new HttpError(400, `pod "${s.namespace}/${s.pod}" has no running sandbox`);
      return sb.id;
    }
    return runningContainer(pod, s.container);
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = new URL(req.url ?? '/', 'https://kubelet');
    const labels = { method: req.method ?? '', path: metricPath(url.pathname), server_type: 'readwrite' };
    metrics.httpRequests.inc(labels);
    socket.on('error', (err) => log.debug('stream client socket error', { err: errorMessage(err) }));
    const serve = async (): Promise<void> => {
      await gate(req, url.pathname);
      const s = parseStreamOrThrow(url.pathname, url.searchParams);
      if (s === undefined) throw new HttpError(404, `404 page not found`);
      const why = streaming.unsupported(s, req.headers);
      if (why !== undefined) throw new HttpError(400, why);
      const target = await streamTarget(s);
      log.debug('streaming', { kind: s.kind, pod: `${s.namespace}/${s.pod}`, container: s.container, backend: streaming.name });
      upgraded.add(socket);
      metrics.httpInflight.inc(labels);
      try {
        await streaming.serve({ req, socket, head }, s, target, (err) => log.debug('stream error', { err: errorMessage(err) }));
      } finally {
        metrics.httpInflight.dec(labels);
        upgraded.delete(socket);
      }
    };
    serve().catch((err: unknown) => {
      const e = toHttpError(err);
      if (e.code >= 500) log.warn('kubelet stream request failed', { path: url.pathname, err: e.message });
      const status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: e.message, reason: reasons[e.code]?.replace(/ /g, '') ?? 'InternalError', code: e.code };
      rejectUpgrade(socket, e.code, reasons[e.code] ?? 'Error', status);
    });
  };

  let https: HttpsServer | undefined;
  let healthz: HttpServer | undefined;
  let port: number | undefined;
  let healthzPort: number | undefined;
  try {
    if (o.port !== undefined) {
      https = createHttpsServer({
        cert: o.tls.cert,
        key: o.tls.key,
        ...(o.clientCA !== undefined ? { ca: o.clientCA, requestCert: true, rejectUnauthorized: false } : {}),
      });
      https.on('request', onRequest);
      https.on('upgrade', onUpgrade);
      https.on('tlsClientError', (err) => log.debug('TLS handshake failed', { err: errorMessage(err) }));
      port = await listen(https, o.address, o.port);
    }
    if (o.healthzPort !== undefined) {
      healthz = createHttpServer((req, res) => {
        req.resume();
        const ok = new URL(req.url ?? '/', 'http://healthz').pathname === '/healthz';
        res.writeHead(ok ? 200 : 404, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end(ok ? 'ok' : '404 page not found');
      });
      healthzPort = await listen(healthz, o.healthzAddress, o.healthzPort);
    }
  } catch (err) {
    if (https !== undefined) await close(https);
    throw new KnodeError('KUBELET_SERVER_LISTEN', `kubelet server cannot listen: ${errorMessage(err)}`, { cause: err });
  }
  log.info('kubelet server listening', { address: o.address, port, healthz: healthzPort === undefined ? undefined : `${o.healthzAddress}:${healthzPort}` });

  return {
    port,
    healthzPort,
    async stop() {
      stopping.abort();
      for (const s of upgraded) s.destroy();
      await Promise.all([https, healthz].filter((s): s is HttpsServer | HttpServer => s !== undefined).map(close));
    },
  };
}

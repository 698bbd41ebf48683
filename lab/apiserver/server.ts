/**
 * The lab apiserver's HTTPS front: TLS with optional client certificates,
 * authentication and authorization (auth.ts), body limits and decoding, Status
 * errors, discovery, server-side Tables, chunked watch streams; the semantics
 * live in rest.ts and the objects in a Store (store.ts).
 *
 * One https.Server per listen address, all sharing one handler, one Rest and
 * one Store. Listens where it is told (tests: 127.0.0.1:0).
 */
import { createServer as createHttpsServer } from 'node:https';
import type { Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { KnodeError, errorMessage, isKnodeError } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { enterNetns, listenTcpInNetns } from '../../lib/netns-daemon.js';
import { authorize, bearerToken, forbiddenMessage, parseTokenFile, userFromCertSubject, withAuthenticated } from './auth.js';
import { review } from './reviews.js';
import type { TokenAuthenticator } from './reviews.js';
import { authenticateServiceAccountToken, defaultIssuer, ensureServiceAccountKey, looksLikeJwt, tokenRequest } from './serviceaccount-tokens.js';
import type { ServiceAccountTokenOptions, TokenObjects } from './serviceaccount-tokens.js';
import { bootstrapSecretName, bootstrapTokenNamespace, bootstrapTokenUser, parseBootstrapToken } from './bootstrap-tokens.js';
import { csrStorage, stampRequester } from './certificates.js';
import type { Attributes, User } from './auth.js';
import { apiGroup, apiGroupList, apiResourceList, apiVersions, serverVersion } from './discovery.js';
import { ApiError, badRequest } from './errors.js';
import { writeKubeconfig } from './kubeconfig.js';
import { getMap, getNumber, getString, isObject, toKubeObject } from './object.js';
import type { Json, KubeObject } from './object.js';
import { patchTypeOf } from './patch.js';
import { decodeKubeProtobuf, protobufMediaType } from './protobuf.js';
import { kubeletLogTarget, proxyLogs } from './logs.js';
import { kubeletStreamTarget, proxyKubeletUpgrade, rejectUpgrade, type StreamSubresource } from './kubelet-proxy.js';
import type { Duplex } from 'node:stream';
import { ensureClientCert, ensurePki } from './pki.js';
import type { Pki } from './pki.js';
import { findResource } from './resources.js';
import type { ResourceInfo, Subresource } from './resources.js';
import { Rest } from './rest.js';
import type { DeleteOptions, ListOptions, WatchOptions } from './rest.js';
import { parsePath, verbOf } from './routes.js';
import type { ResourcePath } from './routes.js';
import { MemoryStore } from './store.js';
import type { Store } from './store.js';
import { toTable } from './tables.js';
import type { IncludeObject } from './tables.js';

const log = createLogger({ component: 'apiserver' });

export const maxBodyBytes = 3 * 1024 * 1024;

export interface ApiServerOptions {
  /** PKI, kubeconfigs and (by default) nothing else are written here. */
  dataDir: string;
  /** host:port to listen on; default 127.0.0.1:6443. Port 0 picks a free port. */
  listen?: string[];
  serviceCIDR?: string;
  /** Persist objects to this JSON file. */
  persistPath?: string;
  /** Static token file (token,user,uid,"groups"). */
  tokenFile?: string;
  tokens?: Map<string, User>;
  /** Node names to write kubeconfigs for. */
  nodes?: string[];
  /** Extra SANs for the serving certificate (e.g. 172.31.0.1). */
  extraSANs?: string[];
  /** Network namespace (path) the process moves into after binding, for its outgoing connections. */
  egressNetns?: string;
  /** URL written into node kubeconfigs; default: the first listen address. */
  nodeServerUrl?: string;
  /** Address and port of the `kubernetes` service's endpoints; default: the first listen address. */
  advertise?: { ip: string; port: number };
  bookmarkIntervalMs?: number;
  /** Watch events retained (older resourceVersions → 410). */
  watchWindow?: number;
  /** Default watch timeout when the client sets none. */
  defaultWatchTimeoutSeconds?: number;
  store?: Store;
  /**
   * The ServiceAccount admission plugin on pod create (serviceaccount-admission.ts).
   * Off by default here so that tests running the apiserver without the
   * serviceaccount controller can create pods; `knode-lab apiserver` turns it on.
   */
  serviceAccountAdmission?: boolean;
  /** Lower bound of a TokenRequest's expirationSeconds (default 600). Tests only: lets them watch a token refresh. */
  serviceAccountMinTokenExpirationSeconds?: number;
}

export interface ApiServer {
  urls: string[];
  /** A URL this process itself can reach (in its egress namespace when it has one), e.g. for in-process controllers. */
  selfUrl: string;
  adminKubeconfig: string;
  pki: Pki;
  rest: Rest;
  store: Store;
  /** Writes (or rewrites) the kubeconfig of a node and returns its path. */
  nodeKubeconfig(node: string): Promise<string>;
  close(): Promise<void>;
}

export function adminKubeconfigPath(dataDir: string): string {
  return join(dataDir, 'admin.kubeconfig');
}

export function nodeKubeconfigPath(dataDir: string, node: string): string {
  return join(dataDir, 'nodes', `${node}.kubeconfig`);
}

/** host:port, optionally @<netns path> to bind inside another network namespace. */
export function parseListen(s: string): { host: string; port: number; netns?: string } {
  const at = s.indexOf('@');
  const addr = at === -1 ? s : s.slice(0, at);
  const netns = at === -1 ? undefined : s.slice(at + 1);
  const m = addr.match(/^\[?([^\]]+?)\]?:(\d+)$/);
  if (!m || netns === '') throw new KnodeError('INVALID_LISTEN', `listen address "${s}" must be host:port[@netns-path]`);
  return { host: m[1]!, port: Number(m[2]), ...(netns ? { netns } : {}) };
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-cache, private' });
  res.end(text);
}

function sendError(res: ServerResponse, err: unknown): void {
  let api: ApiError;
  if (err instanceof ApiError) api = err;
  else {
    log.error('request failed', { err });
    api = new ApiError('InternalError', `Internal error occurred: ${errorMessage(err)}`);
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, api.httpCode, api.toStatus());
}

class BodyTooLarge extends ApiError {
  constructor() {
    super('RequestEntityTooLarge', `Request entity too large: limit is ${maxBodyBytes}`);
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > maxBodyBytes) {
      reject(new BodyTooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > maxBodyBytes) {
        failed = true;
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
    req.on('error', (e) => {
      if (!failed) reject(e);
    });
  });
}

function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? 'application/json').split(';')[0]!.trim().toLowerCase();
}

function decode(buf: Buffer, type: string): Json {
  const text = buf.toString('utf8');
  try {
    if (type === 'application/yaml' || type === 'application/x-yaml') return parseYaml(text) as Json;
    return JSON.parse(text) as Json;
  } catch (err) {
    throw badRequest(`the body of the request could not be decoded: ${errorMessage(err)}`);
  }
}

function wantsTable(req: IncomingMessage): boolean {
  const accept = req.headers.accept ?? '';
  return accept
    .split(',')
    .some((part) => /;\s*as=Table/.test(part) && /;\s*g=meta\.k8s\.io/.test(part) && /;\s*v=v1(\s|;|$)/.test(part));
}

function boolParam(q: URLSearchParams, name: string): boolean {
  const v = q.get(name);
  return v === 'true' || v === '1';
}

function intParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  if (!/^-?\d+$/.test(v)) throw badRequest(`invalid value for ${name}: "${v}"`);
  return Number(v);
}

export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const listens = (options.listen?.length ? options.listen : ['127.0.0.1:6443']).map(parseListen);
  // Every concrete listen address is a SAN too, so clients can use the URL they connect to.
  const listenSANs = listens.map((l) => l.host).filter((h) => h !== '0.0.0.0' && h !== '::');
  const pki = await ensurePki(options.dataDir, [...listenSANs, ...(options.extraSANs ?? [])]);
  const tokens = new Map<string, User>(options.tokens ?? []);
  if (options.tokenFile) for (const [t, u] of parseTokenFile(await readFile(options.tokenFile, 'utf8'))) tokens.set(t, u);
  const kubeletClient = await ensureClientCert(pki, 'apiserver-kubelet-client', 'kube-apiserver-kubelet-client', ['system:masters']);
  const store = options.store ?? (await MemoryStore.open({ persistPath: options.persistPath, windowSize: options.watchWindow }));
  const saTokens: ServiceAccountTokenOptions = {
    key: await ensureServiceAccountKey(pki.dir),
    issuer: defaultIssuer,
    ...(options.serviceAccountMinTokenExpirationSeconds !== undefined ? { minExpirationSeconds: options.serviceAccountMinTokenExpirationSeconds } : {}),
  };
  const apiAudiences = [defaultIssuer];
  const tokenObjects: TokenObjects = {
    serviceAccount: (namespace, name) => store.get({ storage: 'serviceaccounts', namespace, name }),
    pod: (namespace, name) => store.get({ storage: 'pods', namespace, name }),
  };
  /** Bearer tokens: static, then service-account JWTs, then bootstrap tokens. */
  const authenticateToken: TokenAuthenticator = async (token, audiences) => {
    const user = tokens.get(token);
    if (user) return { user: withAuthenticated(user) };
    if (looksLikeJwt(token)) return authenticateServiceAccountToken(token, audiences.length > 0 ? audiences : apiAudiences, tokenObjects, saTokens);
    const boot = parseBootstrapToken(token);
    if (!boot) return { error: 'invalid bearer token' };
    const secret = await store.get({ storage: 'secrets', namespace: bootstrapTokenNamespace, name: bootstrapSecretName(boot.id) });
    const result = bootstrapTokenUser(boot, secret, Date.now());
    if ('user' in result) return { user: result.user };
    log.info('bootstrap token refused', { tokenId: boot.id, reason: result.reason });
    return { error: 'invalid bearer token' };
  };
  const bookmarkMs = options.bookmarkIntervalMs ?? 60_000;
  const defaultWatchTimeout = options.defaultWatchTimeoutSeconds ?? 1800;
  const watches = new Set<() => void>();
  let rest: Rest | undefined;
  let serverAddress = '';

  const authenticate = async (req: IncomingMessage): Promise<User | undefined | 'invalid'> => {
    const header = req.headers.authorization;
    if (header) {
      const token = bearerToken(header);
      if (!token) return 'invalid';
      const result = await authenticateToken(token, []);
      if ('user' in result) return result.user;
      if (looksLikeJwt(token)) log.info('service account token refused', { reason: result.error });
      return 'invalid';
    }
    const sock = req.socket as TLSSocket;
    if (sock.authorized) {
      const subject = sock.getPeerCertificate().subject as { CN?: string | string[]; O?: string | string[] } | undefined;
      return userFromCertSubject(subject);
    }
    return undefined;
  };

  const serveWatch = async (
    req: IncomingMessage,
    res: ServerResponse,
    info: ResourceInfo,
    namespace: string | undefined,
    opts: WatchOptions,
    timeoutSeconds: number,
    table: boolean,
  ): Promise<void> => {
    let first = true;
    let ended = false;
    // Headers go out with the first event or once the watch is set up, so that
    // a request rejected while setting up (bad selector) still gets a Status.
    const head = (): void => {
      if (res.headersSent) return;
      res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' });
      res.flushHeaders();
    };
    const cleanup: (() => void)[] = [];
    const end = (): void => {
      if (ended) return;
      ended = true;
      for (const c of cleanup) c();
      watches.delete(end);
      head();
      res.end();
    };
    const handle = await rest!.watch(info, namespace, opts, {
      send: (type, object) => {
        if (ended) return;
        head();
        let obj = object;
        if (table && (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED')) {
          obj = toTable(info, [toKubeObject(object)!], { includeObject: 'Metadata', withColumns: first });
          first = false;
        }
        res.write(JSON.stringify({ type, object: obj }) + '\n');
        if (type === 'ERROR') setImmediate(end);
        // A client that does not read: drop it rather than buffer without bound.
        if (res.writableLength > 64 * 1024 * 1024) setImmediate(end);
      },
    });
    head();
    watches.add(end);
    cleanup.push(() => handle.stop());
    const timer = setTimeout(end, timeoutSeconds * 1000);
    cleanup.push(() => clearTimeout(timer));
    if (opts.allowWatchBookmarks) {
      const bm = setInterval(() => handle.bookmark(), bookmarkMs);
      cleanup.push(() => clearInterval(bm));
    }
    req.on('close', end);
    res.on('close', end);
  };

  const serveResource = async (req: IncomingMessage, res: ServerResponse, user: User, p: ResourcePath, q: URLSearchParams): Promise<void> => {
    const info = findResource(p.group, p.version, p.resource);
    if (!info) throw new ApiError('NotFound', 'the server could not find the requested resource', {});
    if (p.namespace !== undefined && !info.namespaced) throw new ApiError('NotFound', 'the server could not find the requested resource', {});
    const sub = p.subresource as Subresource | undefined;
    if (sub !== undefined && !info.subresources.includes(sub)) {
      throw new ApiError('NotFound', 'the server could not find the requested resource', {});
    }
    const verb = verbOf(req.method ?? '', p, boolParam(q, 'watch'));
    if (!verb) throw new ApiError('MethodNotAllowed', `the server does not allow this method on the requested resource`);
    if ((verb === 'update' || verb === 'patch') && p.name === undefined) {
      throw new ApiError('MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }
    if (sub === 'binding' && verb !== 'create') throw new ApiError('MethodNotAllowed', 'the server does not allow this method on the requested resource');
    if (verb === 'create' && p.name !== undefined && sub !== 'binding' && sub !== 'token') {
      throw new ApiError('MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }
    if (sub === 'token' && verb !== 'create') throw new ApiError('MethodNotAllowed', 'the server does not allow this method on the requested resource');
    if (sub === 'log' && verb !== 'get') throw new ApiError('MethodNotAllowed', 'the server does not allow this method on the requested resource');
    if (sub !== undefined && ['list', 'watch', 'deletecollection', 'delete'].includes(verb)) {
      throw new ApiError('MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }
    const baseVerb = verb.replace('deletecollection', 'delete');
    if (!info.verbs.includes(baseVerb) && !(sub && ['get', 'update', 'patch', 'create'].includes(verb))) {
      throw new ApiError('MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }
    const namespace = info.namespaced ? p.namespace : undefined;
    const attrs: Attributes = {
      verb,
      resourceRequest: true,
      group: info.group,
      resource: info.resource,
      subresource: sub,
      namespace,
      name: p.name,
    };
    if (!authorize(user, attrs).allowed) throw new ApiError('Forbidden', forbiddenMessage(user, attrs), { name: p.name, group: info.group, kind: info.resource });
    if (q.get('dryRun')) throw badRequest('dryRun is not supported by the lab apiserver');
    const r = rest!;
    const ns = namespace ?? '';
    if (info.namespaced && namespace === undefined && !['list', 'watch'].includes(verb)) {
      throw new ApiError('NotFound', 'the server could not find the requested resource', {});
    }
    const table = wantsTable(req);
    const includeObject = (q.get('includeObject') ?? undefined) as IncludeObject | undefined;
    const listOpts = (): ListOptions => ({
      labelSelector: q.get('labelSelector') ?? undefined,
      fieldSelector: q.get('fieldSelector') ?? undefined,
      limit: intParam(q, 'limit'),
      continue: q.get('continue') ?? undefined,
      resourceVersion: q.get('resourceVersion') ?? undefined,
      resourceVersionMatch: q.get('resourceVersionMatch') ?? undefined,
    });
    const body = async (): Promise<Json> => {
      const buf = await readBody(req);
      if (verb === 'patch') return decode(buf, 'application/json');
      const type = mediaType(req);
      if (type === protobufMediaType) {
        try {
          return decodeKubeProtobuf(buf) as unknown as Json;
        } catch (err) {
          if (isKnodeError(err, 'PROTOBUF_UNSUPPORTED')) throw new ApiError('UnsupportedMediaType', err.message);
          throw err;
        }
      }
      if (!['application/json', 'application/yaml', 'application/x-yaml', '*/*'].includes(type)) {
        throw new ApiError('UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml`);
      }
      if (buf.length === 0) throw badRequest('the body of the request is empty');
      return decode(buf, type);
    };
    switch (verb) {
      case 'get': {
        if (p.watchPrefix) break;
        if (sub === 'log') {
          const pod = toKubeObject(await r.get(info, ns, p.name!))!;
          const nodeName = getString(getMap(pod, 'spec'), 'nodeName');
          const node = nodeName ? await store.get({ storage: 'nodes', namespace: '', name: nodeName }) : undefined;
          await proxyLogs(kubeletLogTarget(pod, node, q), kubeletClient, req, res);
          return;
        }
        const obj = await r.get(info, ns, p.name!, sub);
        if (table && sub === undefined) sendJson(res, 200, toTable(info, [toKubeObject(obj)!], { includeObject }));
        else sendJson(res, 200, obj);
        return;
      }
      case 'list': {
        const list = (await r.list(info, namespace, listOpts())) as { metadata: { resourceVersion?: string; continue?: string }; items: KubeObject[] };
        if (table) {
          sendJson(
            res,
            200,
            toTable(info, list.items, { includeObject, resourceVersion: list.metadata.resourceVersion, continue: list.metadata.continue }),
          );
        } else sendJson(res, 200, list);
        return;
      }
      case 'watch':
        break;
      case 'create': {
        const b = await body();
        if (info.virtual) {
          sendJson(res, 201, await review(info.resource, b, user, authenticateToken));
          return;
        }
        if (sub === 'token') {
          sendJson(res, 201, await tokenRequest(ns, p.name!, b, tokenObjects, saTokens));
          return;
        }
        const result =
          sub === 'binding' ? await r.bind(ns, p.name!, b) : await r.create(info, ns, info.storage === csrStorage ? stampRequester(b, user) : b);
        sendJson(res, result.code, result.object);
        return;
      }
      case 'update': {
        const result = await r.update(info, ns, p.name!, await body(), sub);
        sendJson(res, result.code, result.object);
        return;
      }
      case 'patch': {
        const type = patchTypeOf(req.headers['content-type']);
        if (!type) {
          throw new ApiError(
            'UnsupportedMediaType',
            `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`,
          );
        }
        const result = await r.patch(info, ns, p.name!, type, await body(), sub);
        sendJson(res, result.code, result.object);
        return;
      }
      case 'delete':
      case 'deletecollection': {
        const buf = await readBody(req);
        const opts: DeleteOptions = {};
        if (buf.length > 0) {
          const d = decode(buf, 'application/json');
          if (!isObject(d)) throw badRequest('DeleteOptions must be an object');
          const g = getNumber(d, 'gracePeriodSeconds');
          if (g !== undefined) opts.gracePeriodSeconds = g;
          const pre = getMap(d, 'preconditions');
          if (pre) opts.preconditions = { uid: getString(pre, 'uid'), resourceVersion: getString(pre, 'resourceVersion') };
          const pp = getString(d, 'propagationPolicy');
          if (pp) opts.propagationPolicy = pp;
        }
        const g = intParam(q, 'gracePeriodSeconds');
        if (g !== undefined) opts.gracePeriodSeconds = g;
        const result =
          verb === 'delete' ? await r.delete(info, ns, p.name!, opts) : await r.deleteCollection(info, namespace, listOpts(), opts);
        sendJson(res, result.code, result.object);
        return;
      }
    }
    // watch (also GET .../<name>?watch=true, which watches one object)
    let fieldSelector = q.get('fieldSelector') ?? undefined;
    if (p.name !== undefined) fieldSelector = [fieldSelector, `metadata.name=${p.name}`].filter(Boolean).join(',');
    const timeout = intParam(q, 'timeoutSeconds');
    await serveWatch(
      req,
      res,
      info,
      namespace,
      {
        labelSelector: q.get('labelSelector') ?? undefined,
        fieldSelector,
        resourceVersion: q.get('resourceVersion') ?? undefined,
        allowWatchBookmarks: boolParam(q, 'allowWatchBookmarks'),
        sendInitialEvents: boolParam(q, 'sendInitialEvents'),
      },
      timeout !== undefined && timeout > 0 ? timeout : defaultWatchTimeout,
      wantsTable(req),
    );
  };

  /** pods/exec, pods/attach, pods/portforward: the path's parts when it names one of them. */
  const streamPath = (parsed: ReturnType<typeof parsePath>): { namespace: string; name: string; sub: StreamSubresource } | undefined => {
    if (parsed.kind !== 'resource') return undefined;
    const p = parsed.path;
    if (p.group !== '' || p.resource !== 'pods' || p.namespace === undefined || p.name === undefined) return undefined;
    if (p.subresource !== 'exec' && p.subresource !== 'attach' && p.subresource !== 'portforward') return undefined;
    return { namespace: p.namespace, name: p.name, sub: p.subresource };
  };

  /** Authorizes a streaming subresource (verb create, as upstream requires for WebSocket upgrades too). */
  const authorizeStream = (user: User, s: { namespace: string; name: string; sub: StreamSubresource }): void => {
    const attrs: Attributes = { verb: 'create', resourceRequest: true, group: '', resource: 'pods', subresource: s.sub, namespace: s.namespace, name: s.name };
    if (!authorize(user, attrs).allowed) throw new ApiError('Forbidden', forbiddenMessage(user, attrs), { name: s.name, group: '', kind: 'pods' });
  };

  /** An upgrade request (exec/attach/portforward streams): proxied to the kubelet of the pod's node. */
  const serveUpgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    const url = new URL(req.url ?? '/', 'https://apiserver');
    const user = await authenticate(req);
    if (user === undefined || user === 'invalid') throw new ApiError('Unauthorized', 'Unauthorized');
    const s = streamPath(parsePath(url.pathname));
    if (s === undefined) throw new ApiError('NotFound', 'the server could not find the requested resource', {});
    authorizeStream(user, s);
    const info = findResource('', 'v1', 'pods')!;
    const pod = toKubeObject(await rest!.get(info, s.namespace, s.name))!;
    const nodeName = getString(getMap(pod, 'spec'), 'nodeName');
    const node = nodeName ? await store.get({ storage: 'nodes', namespace: '', name: nodeName }) : undefined;
    await proxyKubeletUpgrade(kubeletStreamTarget(s.sub, pod, node, url.searchParams), kubeletClient, req, socket, head);
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    serveUpgrade(req, socket, head).catch((err: unknown) => {
      if (!(err instanceof ApiError)) log.error('upgrade request failed', { err });
      rejectUpgrade(socket, err instanceof ApiError ? err : new ApiError('InternalError', `Internal error occurred: ${errorMessage(err)}`));
    });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'https://apiserver');
    const path = url.pathname;
    if (/^\/(healthz|livez|readyz)(\/.*)?$/.test(path)) {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('ok');
      return;
    }
    if (path === '/version' || path === '/version/') {
      sendJson(res, 200, serverVersion);
      return;
    }
    const user = await authenticate(req);
    if (user === undefined || user === 'invalid') {
      // Drain what the client sends so that the connection stays usable.
      req.resume();
      throw new ApiError('Unauthorized', 'Unauthorized');
    }
    const parsed = parsePath(path);
    const stream = streamPath(parsed);
    if (stream !== undefined) {
      req.resume();
      authorizeStream(user, stream);
      throw badRequest('Upgrade request required');
    }
    if (parsed.kind === 'resource') {
      await serveResource(req, res, user, parsed.path, url.searchParams);
      return;
    }
    req.resume();
    const attrs: Attributes = { verb: (req.method ?? 'GET').toLowerCase(), resourceRequest: false, path };
    if (!authorize(user, attrs).allowed) throw new ApiError('Forbidden', forbiddenMessage(user, attrs));
    if (req.method !== 'GET') throw new ApiError('MethodNotAllowed', 'the server does not allow this method on the requested resource');
    if (parsed.kind === 'discovery') {
      let doc: unknown;
      if (parsed.legacy) doc = parsed.version === undefined ? apiVersions(serverAddress) : parsed.version === 'v1' ? apiResourceList('', 'v1') : undefined;
      else if (parsed.group === undefined) doc = apiGroupList();
      else if (parsed.version === undefined) doc = apiGroup(parsed.group);
      else doc = apiResourceList(parsed.group, parsed.version);
      if (doc === undefined) throw new ApiError('NotFound', 'the server could not find the requested resource', {});
      sendJson(res, 200, doc);
      return;
    }
    throw new ApiError('NotFound', 'the server could not find the requested resource', {});
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((err: unknown) => {
      if (err instanceof BodyTooLarge) {
        // Stop reading the oversized body: answer, then close the connection.
        res.setHeader('Connection', 'close');
        sendError(res, err);
        req.unpipe();
        setTimeout(() => req.socket.destroy(), 100).unref();
        return;
      }
      sendError(res, err);
    });
  };

  const servers: Server[] = [];
  const urls: string[] = [];
  let selfUrl = '';
  try {
    for (const l of listens) {
      const server = createHttpsServer(
        { key: pki.serving.key, cert: pki.serving.cert, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: false },
        onRequest,
      );
      server.on('upgrade', onUpgrade);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        const onListening = (): void => {
          server.off('error', reject);
          resolve();
        };
        if (l.netns) server.listen({ fd: listenTcpInNetns(l.netns, l.host, l.port) }, onListening);
        else server.listen(l.port, l.host, onListening);
      });
      servers.push(server);
      const addr = server.address() as AddressInfo;
      const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
      urls.push(`https://${host}:${addr.port}`);
    }
    // From here on, outgoing connections (e.g. pods/log to a kubelet) are made in the egress namespace.
    if (options.egressNetns) enterNetns(options.egressNetns);
    const egressIndex = options.egressNetns ? listens.findIndex((l) => l.netns === options.egressNetns) : -1;
    selfUrl = urls[egressIndex === -1 ? 0 : egressIndex]!;
    const first = new URL(urls[0]!);
    serverAddress = first.host;
    // The `kubernetes` service points at the first address pods can reach (not loopback) if any.
    const reachable = new URL(urls.find((u) => !/^https:\/\/(127\.|localhost|\[::1\])/.test(u)) ?? urls[0]!);
    const advertise = options.advertise ?? { ip: reachable.hostname, port: Number(reachable.port) };
    rest = new Rest({
      store,
      serviceCIDR: options.serviceCIDR,
      kubernetesEndpoint: advertise,
      serviceAccountAdmission: options.serviceAccountAdmission === true,
      ...(options.serviceAccountMinTokenExpirationSeconds !== undefined ? { minTokenExpirationSeconds: options.serviceAccountMinTokenExpirationSeconds } : {}),
    });
    await rest.init();
  } catch (err) {
    for (const s of servers) s.close();
    throw err;
  }

  const adminCert = await ensureClientCert(pki, 'admin', 'admin', ['system:masters']);
  const adminKubeconfig = adminKubeconfigPath(options.dataDir);
  await writeKubeconfig(adminKubeconfig, { server: urls[0]!, caPem: pki.ca.cert, user: 'admin', certPem: adminCert.cert, keyPem: adminCert.key });

  const nodeKubeconfig = async (node: string): Promise<string> => {
    const cert = await ensureClientCert(pki, `node-${node}`, `system:node:${node}`, ['system:nodes']);
    await mkdir(join(options.dataDir, 'nodes'), { recursive: true, mode: 0o700 });
    const path = nodeKubeconfigPath(options.dataDir, node);
    await writeKubeconfig(path, {
      server: options.nodeServerUrl ?? urls[0]!,
      caPem: pki.ca.cert,
      user: `system:node:${node}`,
      certPem: cert.cert,
      keyPem: cert.key,
    });
    return path;
  };
  for (const n of options.nodes ?? []) await nodeKubeconfig(n);
  log.info('apiserver listening', { urls, dataDir: options.dataDir });

  const finalRest = rest;
  return {
    urls,
    selfUrl,
    adminKubeconfig,
    pki,
    rest: finalRest,
    store,
    nodeKubeconfig,
    close: async () => {
      for (const end of [...watches]) end();
      finalRest.close();
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections();
            }),
        ),
      );
      await store.close();
    },
  };
}

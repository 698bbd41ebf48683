/**
 * The agent's apiserver transport: JSON requests and streaming watches over
 * node:https (or http) with the kubeconfig's CA, client certificate, token or
 * basic auth.
 *
 * Design notes:
 * - One keep-alive Agent per credential set. The credential files (CA, client
 *   certificate and key, token file) are checked at most once a second and
 *   re-read when their mtime or size changes, so a rotated client certificate
 *   (agent/bootstrap) is used by the next connection without a restart; the
 *   old Agent's idle sockets are closed a little later.
 * - Requests: JSON in and out, dates revived (wire.ts); an HTTP status ≥ 400
 *   rejects with KubeApiError (statusCode + body), which httpStatus() and
 *   apiErrorSummary() read. A request with no answer for `timeoutMs` (60 s by
 *   default) fails instead of hanging a pod worker.
 * - Watches: GET …?watch=true, events decoded line by line as they arrive;
 *   resolves when the server ends the stream or the signal aborts, rejects on a
 *   connection error or a non-200 answer (statusCode 410 included, which the
 *   informer turns into a relist).
 */
import { readFileSync, statSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { KnodeError, errorMessage } from '../../lib/errors.js';
import type { Kubeconfig } from './kubeconfig.js';
import { KubeApiError, WatchDecoder, encodeQuery, reviveDates, type QueryValue, type WatchEvent } from './wire.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface KubeRequest {
  method: HttpMethod;
  /** e.g. /api/v1/namespaces/default/pods */
  path: string;
  query?: Record<string, QueryValue>;
  body?: unknown;
  /** Default application/json; patches name their type (mergePatch, strategicMergePatch, jsonPatch). */
  contentType?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface KubeRest {
  readonly server: string;
  request<T>(r: KubeRequest): Promise<T>;
  /** Streams a watch's events to onEvent; see the design notes. */
  watch(r: { path: string; query: Record<string, QueryValue>; signal: AbortSignal }, onEvent: (e: WatchEvent) => void): Promise<void>;
  /** Closes idle keep-alive connections (tests, shutdown). */
  close(): void;
}

interface Creds {
  agent: http.Agent;
  authorization: string | undefined;
  stamp: string;
}

/** The files a kubeconfig's credentials are read from. */
function credentialFiles(kc: Kubeconfig): string[] {
  return [kc.cluster.caFile, kc.user.certFile, kc.user.keyFile, kc.user.tokenFile].filter((f): f is string => f !== undefined);
}

function fileStamp(files: string[]): string {
  return files
    .map((f) => {
      try {
        const s = statSync(f);
        return `${f}:${s.mtimeMs}:${s.size}:${s.ino}`;
      } catch {
        return `${f}:missing`;
      }
    })
    .join('|');
}

function readCreds(kc: Kubeconfig, stamp: string, https_: boolean): Creds {
  const read = (file: string, what: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new KnodeError('KUBECONFIG_INVALID', `cannot read the kubeconfig's ${what} ${file}: ${errorMessage(err)}`, { cause: err });
    }
  };
  const b64 = (s: string): Buffer => Buffer.from(s, 'base64');
  const u = kc.user;
  let authorization: string | undefined;
  if (u.token !== undefined) authorization = `Bearer ${u.token}`;
  else if (u.tokenFile !== undefined) authorization = `Bearer ${read(u.tokenFile, 'token file').toString('utf8').trim()}`;
  else if (u.username !== undefined) authorization = `Basic ${Buffer.from(`${u.username}:${u.password ?? ''}`).toString('base64')}`;
  if (!https_) return { agent: new http.Agent({ keepAlive: true }), authorization, stamp };
  const c = kc.cluster;
  const ca = c.caData !== undefined ? b64(c.caData) : c.caFile !== undefined ? read(c.caFile, 'certificate authority') : undefined;
  const cert = u.certData !== undefined ? b64(u.certData) : u.certFile !== undefined ? read(u.certFile, 'client certificate') : undefined;
  const key = u.keyData !== undefined ? b64(u.keyData) : u.keyFile !== undefined ? read(u.keyFile, 'client key') : undefined;
  const agent = new https.Agent({
    keepAlive: true,
    ...(ca !== undefined ? { ca } : {}),
    ...(cert !== undefined ? { cert } : {}),
    ...(key !== undefined ? { key } : {}),
    ...(c.tlsServerName !== undefined ? { servername: c.tlsServerName } : {}),
    rejectUnauthorized: !c.skipTLSVerify,
  });
  return { agent, authorization, stamp };
}

export function createKubeRest(kc: Kubeconfig, options: { defaultTimeoutMs?: number } = {}): KubeRest {
  const base = new URL(kc.cluster.server);
  const isHttps = base.protocol === 'https:';
  const basePath = base.pathname.replace(/\/+$/, '');
  const files = credentialFiles(kc);
  const defaultTimeoutMs = options.defaultTimeoutMs ?? 60_000;
  let creds: Creds | undefined;
  let checkedAt = 0;

  const credentials = (): Creds => {
    const now = Date.now();
    if (creds !== undefined && (files.length === 0 || now - checkedAt < 1000)) return creds;
    checkedAt = now;
    const stamp = fileStamp(files);
    if (creds !== undefined && creds.stamp === stamp) return creds;
    const next = readCreds(kc, stamp, isHttps);
    const old = creds;
    creds = next;
    // In-flight requests (watches) keep their sockets; idle ones of the old credentials go.
    if (old !== undefined) setTimeout(() => old.agent.destroy(), 10 * 60_000).unref();
    return next;
  };

  /** Starts a request; calls back with the response (any status) or an error. */
  const start = (method: HttpMethod, path: string, query: Record<string, QueryValue> | undefined, headers: Record<string, string>, payload: Buffer | undefined, timeoutMs: number): { req: http.ClientRequest; response: Promise<http.IncomingMessage> } => {
    const c = credentials();
    const h: Record<string, string> = { Accept: 'application/json', ...headers };
    if (c.authorization !== undefined) h.Authorization = c.authorization;
    if (payload !== undefined) h['Content-Length'] = String(payload.length);
    const requestOptions: http.RequestOptions = {
      method,
      protocol: base.protocol,
      hostname: base.hostname.replace(/^\[|\]$/g, ''),
      port: base.port === '' ? (isHttps ? 443 : 80) : Number(base.port),
      path: basePath + path + encodeQuery(query),
      headers: h,
      agent: c.agent,
    };
    let req!: http.ClientRequest;
    const response = new Promise<http.IncomingMessage>((resolve, reject) => {
      req = (isHttps ? https : http).request(requestOptions, resolve);
      req.on('error', reject);
      if (timeoutMs > 0) req.setTimeout(timeoutMs, () => req.destroy(new KnodeError('KUBE_TIMEOUT', `${method} ${path}: no answer from the apiserver within ${Math.round(timeoutMs / 1000)} s`)));
      req.end(payload);
    });
    return { req, response };
  };

  const readBody = (res: http.IncomingMessage): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
      res.on('aborted', () => reject(new KnodeError('KUBE_CONNECTION', 'the apiserver closed the connection mid-answer')));
    });

  const abortError = (): Error => Object.assign(new Error('the request was aborted'), { name: 'AbortError' });

  return {
    server: kc.cluster.server,

    async request<T>(r: KubeRequest): Promise<T> {
      if (r.signal?.aborted) throw abortError();
      const payload = r.body === undefined ? undefined : Buffer.from(JSON.stringify(r.body));
      const headers: Record<string, string> = payload !== undefined ? { 'Content-Type': r.contentType ?? 'application/json' } : {};
      const { req, response } = start(r.method, r.path, r.query, headers, payload, r.timeoutMs ?? defaultTimeoutMs);
      const onAbort = (): void => void req.destroy(abortError());
      r.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        const res = await response;
        const body = await readBody(res);
        const status = res.statusCode ?? 0;
        if (status >= 400 || status < 200) throw new KubeApiError(status, body.toString('utf8'), `${r.method} ${r.path}`);
        if (body.length === 0) return undefined as T;
        let parsed: unknown;
        try {
          parsed = JSON.parse(body.toString('utf8'));
        } catch {
          throw new KnodeError('KUBE_DECODE', `${r.method} ${r.path}: the answer is not JSON: ${body.toString('utf8').slice(0, 120)}`);
        }
        return reviveDates(parsed) as T;
      } finally {
        r.signal?.removeEventListener('abort', onAbort);
      }
    },

    watch(r, onEvent) {
      return new Promise<void>((resolve, reject) => {
        if (r.signal.aborted) return resolve();
        let settled = false;
        let req: http.ClientRequest | undefined;
        let response: Promise<http.IncomingMessage>;
        const settle = (err?: unknown): void => {
          if (settled) return;
          settled = true;
          r.signal.removeEventListener('abort', onAbort);
          req?.destroy();
          if (err === undefined || r.signal.aborted) resolve();
          else reject(err);
        };
        const onAbort = (): void => settle();
        r.signal.addEventListener('abort', onAbort, { once: true });
        try {
          const started = start('GET', r.path, { ...r.query, watch: true }, {}, undefined, 0);
          req = started.req;
          response = started.response;
        } catch (err) {
          settle(err);
          return;
        }
        response.then(
          (res) => {
            if (settled) return void res.destroy();
            const status = res.statusCode ?? 0;
            if (status !== 200) {
              void readBody(res).then(
                (b) => settle(new KubeApiError(status, b.toString('utf8'), `watch ${r.path}`)),
                (err: unknown) => settle(err),
              );
              return;
            }
            const decoder = new WatchDecoder();
            const deliver = (events: WatchEvent[]): void => {
              for (const e of events) {
                if (settled) return;
                onEvent(e);
              }
            };
            res.on('data', (chunk: Buffer) => {
              try {
                deliver(decoder.push(chunk));
              } catch (err) {
                settle(err);
              }
            });
            res.on('end', () => {
              try {
                deliver(decoder.end());
                settle();
              } catch (err) {
                settle(err);
              }
            });
            res.on('aborted', () => settle(new KnodeError('KUBE_CONNECTION', 'the watch connection was cut')));
            res.on('error', (err) => settle(err));
          },
          (err: unknown) => settle(err),
        );
      });
    },

    close() {
      creds?.agent.destroy();
      creds = undefined;
    },
  };
}

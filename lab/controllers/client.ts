/**
 * A small JSON client for the Kubernetes API over HTTPS, built from a
 * kubeconfig (client-node's KubeConfig resolves certificates and tokens).
 * The controllers are ordinary API clients: they list, watch and write through
 * this, never through the apiserver's internals.
 *
 * Errors are KnodeError('API_ERROR') with `details.status` (HTTP code) and
 * `details.reason` (the Status reason); use apiReason() to branch.
 */
import { Agent, request } from 'node:https';
import type { RequestOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { KubeConfig } from '@kubernetes/client-node';
import { KnodeError, isKnodeError } from '../../lib/errors.js';

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export interface ListResult<T> {
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

export type PatchKind = 'merge' | 'strategic' | 'json';

const patchTypes: Record<PatchKind, string> = {
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  json: 'application/json-patch+json',
};

export function apiReason(err: unknown): string | undefined {
  if (!isKnodeError(err, 'API_ERROR')) return undefined;
  const r = err.details?.reason;
  return typeof r === 'string' ? r : undefined;
}

export function apiStatus(err: unknown): number | undefined {
  if (!isKnodeError(err, 'API_ERROR')) return undefined;
  const s = err.details?.status;
  return typeof s === 'number' ? s : undefined;
}

function query(params: Record<string, string | number | boolean | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

export class ApiClient {
  private constructor(
    private readonly base: URL,
    private readonly tls: RequestOptions,
    private readonly agent: Agent,
  ) {}

  static async fromKubeconfig(path: string): Promise<ApiClient> {
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new KnodeError('KUBECONFIG_INVALID', `kubeconfig ${path} has no current cluster`);
    const opts: RequestOptions = {};
    await kc.applyToHTTPSOptions(opts);
    const agent = new Agent({ keepAlive: true, ca: opts.ca, cert: opts.cert, key: opts.key, rejectUnauthorized: opts.rejectUnauthorized });
    return new ApiClient(new URL(cluster.server), opts, agent);
  }

  close(): void {
    this.agent.destroy();
  }

  /** Without a signal (not a watch) a request that makes no progress for 30 s fails. */
  private open(method: string, path: string, body: string | undefined, contentType: string | undefined, signal?: AbortSignal): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { Accept: 'application/json', ...((this.tls.headers ?? {}) as Record<string, string>) };
      if (body !== undefined) {
        headers['Content-Type'] = contentType ?? 'application/json';
        headers['Content-Length'] = String(Buffer.byteLength(body));
      }
      const req = request(
        {
          protocol: 'https:',
          hostname: this.base.hostname.replace(/^\[|\]$/g, ''),
          port: this.base.port || 443,
          method,
          path: this.base.pathname.replace(/\/$/, '') + path,
          headers,
          agent: this.agent,
          signal,
        },
        resolve,
      );
      req.on('error', (err) => reject(new KnodeError('API_UNREACHABLE', `${method} ${path}: ${err.message}`, { cause: err })));
      if (!signal) req.setTimeout(30_000, () => req.destroy(new Error('no response within 30 s')));
      req.end(body);
    });
  }

  async request<T>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    const res = await this.open(method, path, body === undefined ? undefined : JSON.stringify(body), contentType);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const code = res.statusCode ?? 0;
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (code < 200 || code > 299) {
      const status = (json ?? {}) as { reason?: string; message?: string };
      throw new KnodeError('API_ERROR', `${method} ${path}: ${code} ${status.reason ?? ''}: ${status.message ?? text.slice(0, 200)}`, {
        details: { status: code, reason: status.reason ?? '' },
      });
    }
    return json as T;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  list<T>(path: string, params: Record<string, string | number | boolean | undefined> = {}): Promise<ListResult<T>> {
    return this.request<ListResult<T>>('GET', path + query(params));
  }

  create<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  update<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PUT', path, body);
  }

  patch<T>(path: string, patch: unknown, kind: PatchKind = 'merge'): Promise<T> {
    return this.request<T>('PATCH', path, patch, patchTypes[kind]);
  }

  delete(path: string, options: { propagationPolicy?: string; gracePeriodSeconds?: number; preconditions?: { uid?: string } } = {}): Promise<unknown> {
    return this.request('DELETE', path, { apiVersion: 'v1', kind: 'DeleteOptions', ...options });
  }

  /**
   * Streams watch events until the server ends the stream, the signal aborts or
   * the connection fails (rejects). `onEvent` runs for each decoded line.
   */
  async watch<T>(
    path: string,
    params: Record<string, string | number | boolean | undefined>,
    onEvent: (e: WatchEvent<T>) => void,
    signal: AbortSignal,
  ): Promise<void> {
    let res: IncomingMessage;
    try {
      res = await this.open('GET', path + query({ ...params, watch: true }), undefined, undefined, signal);
    } catch (err) {
      if (signal.aborted) return;
      throw err;
    }
    if ((res.statusCode ?? 0) !== 200) {
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      let reason = '';
      try {
        reason = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { reason?: string }).reason ?? '';
      } catch {
        // not a Status
      }
      throw new KnodeError('API_ERROR', `watch ${path}: ${res.statusCode ?? 0} ${reason}`, { details: { status: res.statusCode ?? 0, reason } });
    }
    let buf = '';
    try {
      for await (const chunk of res) {
        buf += (chunk as Buffer).toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) onEvent(JSON.parse(line) as WatchEvent<T>);
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      throw new KnodeError('API_UNREACHABLE', `watch ${path}: stream failed`, { cause: err });
    }
  }
}

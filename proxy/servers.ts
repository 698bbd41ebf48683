/**
 * knode-proxy's HTTP endpoints, as kube-proxy serves them (cmd/kube-proxy/app/server.go,
 * pkg/proxy/healthcheck).
 *
 * - metrics server (default 127.0.0.1:10249): `/proxyMode` (the bare mode word, text/plain, no
 *   newline), `/metrics` (Prometheus text), `/healthz` ("ok").
 * - proxier health server (default 0.0.0.0:10256): `/healthz` and `/livez` with upstream's JSON
 *   `{"lastUpdated": "…","currentTime": "…", "nodeEligible": true}`; 503 when an update has been
 *   queued for longer than 2 × syncPeriod without a successful sync (ProxierHealthServer);
 *   `/healthz` is also 503 when the node is being deleted (nodeEligible false).
 * - service health servers: one listener per healthCheckNodePort of externalTrafficPolicy
 *   Local services, answering 200 when this node has local endpoints, else 503.
 *
 * `ProxierHealth` holds the timestamps with an injected clock, so staleness is unit-testable.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KnodeError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { ProxyMetrics } from './metrics.js';

export interface HealthClock {
  now(): number;
}

/** Go's time.Time.String() for UTC: "2006-01-02 15:04:05.999999999 +0000 UTC"; zero time as Go prints it. */
export function goTimeString(ms: number | undefined): string {
  if (ms === undefined) return '0001-01-01 00:00:00 +0000 UTC';
  const iso = new Date(ms).toISOString(); // 2006-01-02T15:04:05.123Z
  const [date, rest] = iso.split('T') as [string, string];
  const [hms, fracZ] = rest.split('.') as [string, string];
  const frac = fracZ.replace('Z', '').replace(/0+$/, '');
  return `${date} ${hms}${frac === '' ? '' : `.${frac}`} +0000 UTC`;
}

export interface HealthStatus {
  healthy: boolean;
  nodeEligible: boolean;
  lastUpdated: number | undefined;
  currentTime: number;
}

/** upstream ProxierHealthServer's state: QueuedUpdate / Updated / node eligibility. */
export class ProxierHealth {
  readonly healthTimeoutMs: number;
  private readonly clock: HealthClock;
  private lastUpdated: number | undefined;
  private oldestPendingQueued: number | undefined;
  private nodeEligible = true;

  constructor(opts: { syncPeriodMs: number; clock?: HealthClock }) {
    this.healthTimeoutMs = 2 * opts.syncPeriodMs;
    this.clock = opts.clock ?? { now: () => Date.now() };
  }

  /** A change was queued; the oldest unsynced one counts. */
  queuedUpdate(): void {
    this.oldestPendingQueued ??= this.clock.now();
  }

  /** A sync succeeded: everything queued before is programmed. */
  updated(): void {
    this.lastUpdated = this.clock.now();
    this.oldestPendingQueued = undefined;
  }

  setNodeEligible(eligible: boolean): void {
    this.nodeEligible = eligible;
  }

  status(): HealthStatus {
    const now = this.clock.now();
    const healthy = this.oldestPendingQueued === undefined || now - this.oldestPendingQueued < this.healthTimeoutMs;
    return { healthy, nodeEligible: this.nodeEligible, lastUpdated: this.lastUpdated, currentTime: now };
  }
}

export function healthBody(s: HealthStatus): string {
  return `{"lastUpdated": ${JSON.stringify(goTimeString(s.lastUpdated))},"currentTime": ${JSON.stringify(goTimeString(s.currentTime))}, "nodeEligible": ${s.nodeEligible}}`;
}

export interface RunningServer {
  host: string;
  port: number;
  close(): Promise<void>;
}

async function listen(server: Server, host: string, port: number): Promise<RunningServer> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(new KnodeError('PROXY_LISTEN_FAILED', `cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  return {
    host,
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function send(res: ServerResponse, code: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(code, { 'Content-Type': type, 'X-Content-Type-Options': 'nosniff', 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function pathOf(req: IncomingMessage): string {
  return new URL(req.url ?? '/', 'http://x').pathname;
}

export interface MetricsServerOptions {
  host: string;
  port: number;
  /** The effective mode (after any IPVS fallback). */
  mode: () => string;
  metrics: ProxyMetrics;
  logger?: Logger;
}

/** The 10249 server: /proxyMode, /metrics, /healthz. */
export function startMetricsServer(opts: MetricsServerOptions): Promise<RunningServer> {
  const server = createServer((req, res) => {
    const path = pathOf(req);
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    if (path === '/proxyMode') return send(res, 200, 'text/plain; charset=utf-8', opts.mode());
    if (path === '/healthz') return send(res, 200, 'text/plain; charset=utf-8', 'ok');
    if (path === '/metrics') {
      opts.metrics.registry.metrics().then(
        (text) => send(res, 200, opts.metrics.registry.contentType, text),
        (err: unknown) => {
          opts.logger?.error('metrics collection failed', { err });
          send(res, 500, 'text/plain; charset=utf-8', 'metrics collection failed\n');
        },
      );
      return;
    }
    send(res, 404, 'text/plain; charset=utf-8', '404 page not found\n');
  });
  return listen(server, opts.host, opts.port);
}

/** The 10256 server: /healthz (node eligibility counts) and /livez. */
export function startHealthzServer(opts: { host: string; port: number; health: ProxierHealth }): Promise<RunningServer> {
  const server = createServer((req, res) => {
    const path = pathOf(req);
    if (path !== '/healthz' && path !== '/livez') return send(res, 404, 'text/plain; charset=utf-8', '404 page not found\n');
    const s = opts.health.status();
    const ok = path === '/livez' ? s.healthy : s.healthy && s.nodeEligible;
    send(res, ok ? 200 : 503, 'application/json', healthBody(s));
  });
  return listen(server, opts.host, opts.port);
}

export interface ServiceHealth {
  namespace: string;
  name: string;
  localEndpoints: number;
}

export function serviceHealthBody(s: ServiceHealth, proxyHealthy: boolean): string {
  return [
    '{',
    '\t"service": {',
    `\t\t"namespace": ${JSON.stringify(s.namespace)},`,
    `\t\t"name": ${JSON.stringify(s.name)}`,
    '\t},',
    `\t"localEndpoints": ${s.localEndpoints},`,
    `\t"serviceProxyHealthy": ${proxyHealthy}`,
    '}',
  ].join('\n');
}

/**
 * healthCheckNodePort listeners (upstream ServiceHealthServer): `sync()` opens listeners for new
 * ports, closes those no longer wanted and updates counts in place.
 */
export class ServiceHealthServers {
  private readonly servers = new Map<number, { server: RunningServer; state: ServiceHealth }>();
  private readonly host: string;
  private readonly proxyHealthy: () => boolean;
  private readonly log: Logger | undefined;

  constructor(opts: { host: string; proxyHealthy: () => boolean; logger?: Logger }) {
    this.host = opts.host;
    this.proxyHealthy = opts.proxyHealthy;
    this.log = opts.logger;
  }

  ports(): number[] {
    return [...this.servers.keys()].sort((a, b) => a - b);
  }

  async sync(desired: ReadonlyMap<number, ServiceHealth>): Promise<void> {
    for (const [port, entry] of [...this.servers]) {
      if (desired.has(port)) continue;
      this.servers.delete(port);
      await entry.server.close();
    }
    for (const [port, state] of desired) {
      const cur = this.servers.get(port);
      if (cur) {
        cur.state = { ...state };
        continue;
      }
      const entry = { server: undefined as unknown as RunningServer, state: { ...state } };
      const server = createServer((_req, res) => {
        const healthy = this.proxyHealthy();
        const s = entry.state;
        send(res, s.localEndpoints > 0 && healthy ? 200 : 503, 'application/json', serviceHealthBody(s, healthy), {
          'X-Load-Balancing-Endpoint-Weight': String(s.localEndpoints),
        });
      });
      try {
        entry.server = await listen(server, this.host, port);
        this.servers.set(port, entry);
      } catch (err) {
        this.log?.error('cannot open a service health check port', { port, service: `${state.namespace}/${state.name}`, err });
      }
    }
  }

  async close(): Promise<void> {
    await this.sync(new Map());
  }
}

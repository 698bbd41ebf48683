/**
 * The kubelet server's /metrics: a few of upstream's kubelet metric names in
 * a private prom-client registry, plus the process metrics. The pod and
 * container gauges are computed from the runtime at scrape time.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { RuntimeService } from '../runtime/types.js';

export interface KubeletMetrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'path' | 'server_type'>;
  httpInflight: Gauge<'method' | 'path' | 'server_type'>;
}

/** The first path segment, as upstream labels kubelet_http_requests_total's path. Pure. */
export function metricPath(path: string): string {
  const first = path.split('/')[1] ?? '';
  return ['pods', 'containerLogs', 'exec', 'attach', 'portForward', 'run', 'metrics', 'stats', 'healthz'].includes(first) ? first : 'other';
}

export function createKubeletMetrics(runtime: RuntimeService): KubeletMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  new Gauge({
    name: 'kubelet_running_pods',
    help: 'Number of pods that have a running pod sandbox',
    registers,
    async collect() {
      this.set((await runtime.listPodSandbox({ state: 'ready' }).catch(() => [])).length);
    },
  });
  new Gauge({
    name: 'kubelet_running_containers',
    help: 'Number of containers currently running',
    labelNames: ['container_state'],
    registers,
    async collect() {
      const all = await runtime.listContainers().catch(() => []);
      this.reset();
      for (const state of ['created', 'running', 'exited', 'unknown'] as const) this.set({ container_state: state }, all.filter((c) => c.state === state).length);
    },
  });
  return {
    registry,
    httpRequests: new Counter({ name: 'kubelet_http_requests_total', help: 'Number of the http requests received since the server started', labelNames: ['method', 'path', 'server_type'], registers }),
    httpInflight: new Gauge({ name: 'kubelet_http_inflight_requests', help: 'Number of the inflight http requests', labelNames: ['method', 'path', 'server_type'], registers }),
  };
}

/**
 * The knode-proxy control loop: watches → change tracker → bounded-frequency runner → backend
 * sync → stale UDP conntrack cleanup → metrics, health and service health-check ports.
 *
 * Design notes
 * - Watch handlers only feed the ChangeTracker, mark the health state "update queued" and
 *   request a sync; all work happens in the runner's single sync function (upstream's
 *   OnServiceUpdate/OnEndpointSliceUpdate + syncProxyRules split).
 * - The first sync waits until Services and EndpointSlices have been listed once (upstream
 *   isInitialized) so that a restart never programs a half-empty ruleset.
 * - The node (hostname-override or os.hostname) gives the node IPs (InternalIP first, then
 *   ExternalIP, as GetNodeHostIPs), the IP family (single stack: the primary IP's family) and
 *   "primary" NodePort addresses. If it does not show up within nodeWaitMs the proxy carries on
 *   without node IPs, as kube-proxy does. A later change of the node IPs rebuilds the backend
 *   before the next sync (which is then full).
 * - Watches that fail (apiserver gone) are restarted with back-off; the rules in the kernel stay
 *   as they are meanwhile, and the re-list after reconnecting is diffed into the tracker, so only
 *   real changes reach the kernel.
 * - Stale UDP conntrack entries are deleted only after a successful sync; deletions owed by a
 *   failed sync are kept for the next successful one.
 */
import { hostname } from 'node:os';
import {
  CoreV1Api,
  DiscoveryV1Api,
  ListWatch,
  Watch,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type V1EndpointSlice,
  type V1Node,
  type V1Service,
} from '@kubernetes/client-node';
import { KnodeError, errorMessage } from '../lib/errors.js';
import { createLogger, type Logger } from '../lib/log.js';
import { backends } from './backends/index.js';
import { IpvsBackend } from './backends/ipvs/backend.js';
import { makeRunner } from './backends/run.js';
import type { ExecFn, ProxyBackend, ProxyMode } from './backends/types.js';
import { ChangeTracker, type StaleUdpEndpoint } from './changes.js';
import { resolveNodePortAddresses, splitHostPort, type ProxyConfig } from './config.js';
import { clearConntrack, conntrackCommands } from './conntrack.js';
import { resolveMode, type IpvsProbeResult } from './ipvs-probe.js';
import { createProxyMetrics, type ProxyMetrics } from './metrics.js';
import { isFamily, type IPFamily, type ProxyState, type ServicePort } from './model.js';
import { BoundedFrequencyRunner, type Clock, type RunRequest } from './runner.js';
import {
  ProxierHealth,
  ServiceHealthServers,
  startHealthzServer,
  startMetricsServer,
  type RunningServer,
  type ServiceHealth,
} from './servers.js';

/** Services/slices with this label belong to another proxy; headless ones have no rules. */
const SERVICE_PROXY_NAME = 'service.kubernetes.io/service-proxy-name';
const HEADLESS = 'service.kubernetes.io/headless';
const TRIGGER_TIME = 'endpoints.kubernetes.io/last-change-trigger-time';

export interface ProxierOptions {
  config: ProxyConfig;
  kubeConfig: KubeConfig;
  /** Default: --hostname-override, else os.hostname() lower-cased. */
  nodeName?: string;
  logger?: Logger;
  /** Program rules inside this network namespace (`nsenter --net=`); tests. */
  netnsPath?: string;
  exec?: ExecFn;
  ipvsProbe?: () => Promise<IpvsProbeResult>;
  /** Where healthCheckNodePort listeners bind (default: 0.0.0.0). */
  healthCheckHost?: string;
  /** How long to wait for this node's Node object before going on without it (default 10 s). */
  nodeWaitMs?: number;
  /** Clock of the runner (tests). */
  clock?: Clock;
  /** Include process_* metrics (the program does; tests don't). */
  processMetrics?: boolean;
}

export interface NodeInfo {
  name: string;
  ips: string[];
  labels: Record<string, string>;
  eligible: boolean;
}

/** GetNodeHostIPs: InternalIP addresses first, then ExternalIP; one per family, primary first. */
export function nodeHostIPs(node: V1Node): string[] {
  const addrs = node.status?.addresses ?? [];
  const all = [...addrs.filter((a) => a.type === 'InternalIP'), ...addrs.filter((a) => a.type === 'ExternalIP')].map((a) => a.address);
  const out: string[] = [];
  for (const ip of all) {
    const fam: IPFamily | undefined = isFamily(ip, 'IPv4') ? 'IPv4' : isFamily(ip, 'IPv6') ? 'IPv6' : undefined;
    if (fam && !out.some((o) => isFamily(o, fam))) out.push(ip);
  }
  return out;
}

/** upstream: a node being deleted or tainted for deletion by the autoscaler is not eligible. */
export function nodeEligible(node: V1Node | undefined): boolean {
  if (!node) return true;
  if (node.metadata?.deletionTimestamp !== undefined) return false;
  return !(node.spec?.taints ?? []).some((t) => t.key === 'ToBeDeletedByClusterAutoscaler');
}

function ignored(obj: KubernetesObject): boolean {
  const labels = obj.metadata?.labels ?? {};
  return labels[SERVICE_PROXY_NAME] !== undefined || labels[HEADLESS] !== undefined;
}

interface Watched<T extends KubernetesObject> {
  informer: ListWatch<T>;
  listed: boolean;
}

export class Proxier {
  readonly config: ProxyConfig;
  readonly nodeName: string;
  readonly metrics: ProxyMetrics;
  readonly health: ProxierHealth;
  /** The effective mode (after any IPVS fallback); set by start(). */
  mode: ProxyMode = 'iptables';
  family: IPFamily = 'IPv4';
  metricsServer: RunningServer | undefined;
  healthzServer: RunningServer | undefined;
  readonly serviceHealth: ServiceHealthServers;

  private readonly kc: KubeConfig;
  private readonly log: Logger;
  private readonly opts: ProxierOptions;
  private tracker: ChangeTracker | undefined;
  private backend: ProxyBackend | undefined;
  private backendDirty = false;
  private runner: BoundedFrequencyRunner | undefined;
  private node: V1Node | undefined;
  private nodeIPs: string[] = [];
  private readonly watches: Watched<KubernetesObject>[] = [];
  private readonly restartTimers = new Set<ReturnType<typeof setTimeout>>();
  private stopped = false;
  private pendingStale: StaleUdpEndpoint[] = [];
  private pendingNewlyServed: ServicePort[] = [];
  /** service → earliest unsynced EndpointSlice trigger time (ms). */
  private readonly triggerTimes = new Map<string, number>();
  private nodeSeen: (() => void) | undefined;
  /** Successful syncs (tests and logs). */
  syncs = 0;
  lastSyncError: unknown;

  constructor(opts: ProxierOptions) {
    this.opts = opts;
    this.config = opts.config;
    this.kc = opts.kubeConfig;
    this.nodeName = opts.nodeName ?? opts.config.hostnameOverride ?? hostname().toLowerCase();
    this.log = (opts.logger ?? createLogger({ component: 'knode-proxy' })).child({ node: this.nodeName });
    this.metrics = createProxyMetrics({ processMetrics: opts.processMetrics });
    this.health = new ProxierHealth({ syncPeriodMs: opts.config.syncPeriodMs });
    this.serviceHealth = new ServiceHealthServers({
      host: opts.healthCheckHost ?? '0.0.0.0',
      proxyHealthy: () => this.health.status().healthy,
      logger: this.log,
    });
  }

  async start(): Promise<void> {
    this.mode = await resolveMode(this.config.mode, { logger: this.log, probe: this.opts.ipvsProbe });
    if (this.config.metricsBindAddress !== '') {
      const { host, port } = splitHostPort(this.config.metricsBindAddress);
      this.metricsServer = await startMetricsServer({ host, port, mode: () => this.mode, metrics: this.metrics, logger: this.log });
    }
    if (this.config.healthzBindAddress !== '') {
      const { host, port } = splitHostPort(this.config.healthzBindAddress);
      this.healthzServer = await startHealthzServer({ host, port, health: this.health });
    }
    this.log.info('knode-proxy starting', {
      mode: this.mode,
      requestedMode: this.config.mode,
      metrics: this.metricsServer ? `${this.metricsServer.host}:${this.metricsServer.port}` : undefined,
      healthz: this.healthzServer ? `${this.healthzServer.host}:${this.healthzServer.port}` : undefined,
    });

    // This node first: its IPs decide the family and the NodePort addresses.
    const core = this.kc.makeApiClient(CoreV1Api);
    const fieldSelector = `metadata.name=${this.nodeName}`;
    const nodeSeen = new Promise<void>((resolve) => (this.nodeSeen = resolve));
    await this.watch<V1Node>(
      'node',
      '/api/v1/nodes',
      () => core.listNode({ fieldSelector }),
      {
        upsert: (n) => this.onNode(n),
        remove: () => this.onNode(undefined),
      },
      fieldSelector,
    );
    const waitMs = this.opts.nodeWaitMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([nodeSeen, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
    if (this.stopped) return;
    if (!this.node) this.log.warn(`node ${this.nodeName} not found after ${waitMs} ms: going on without node IPs`);
    this.nodeIPs = this.currentNodeIPs();
    this.family = this.nodeIPs[0] !== undefined && isFamily(this.nodeIPs[0], 'IPv6') ? 'IPv6' : 'IPv4';
    this.tracker = new ChangeTracker({ family: this.family, nodeName: this.nodeName });
    this.backend = await this.makeBackend();

    const discovery = this.kc.makeApiClient(DiscoveryV1Api);
    const tracker = this.tracker;
    const svcWatch = this.watch<V1Service>('services', '/api/v1/services', () => core.listServiceForAllNamespaces(), {
      upsert: (s) => {
        if (ignored(s)) tracker.deleteService(s.metadata?.namespace ?? 'default', s.metadata?.name ?? '');
        else tracker.updateService(s);
        this.queued();
      },
      remove: (s) => {
        tracker.deleteService(s.metadata?.namespace ?? 'default', s.metadata?.name ?? '');
        this.queued();
      },
    });
    const epWatch = this.watch<V1EndpointSlice>(
      'endpointslices',
      '/apis/discovery.k8s.io/v1/endpointslices',
      () => discovery.listEndpointSliceForAllNamespaces(),
      {
        upsert: (s) => {
          if (ignored(s)) tracker.deleteEndpointSlice(s.metadata?.namespace ?? 'default', s.metadata?.name ?? '');
          else tracker.updateEndpointSlice(s);
          this.noteTrigger(s);
          this.queued();
        },
        remove: (s) => {
          tracker.deleteEndpointSlice(s.metadata?.namespace ?? 'default', s.metadata?.name ?? '');
          this.queued();
        },
      },
    );
    await Promise.all([svcWatch, epWatch]);
    if (this.stopped) return;

    this.runner = new BoundedFrequencyRunner({
      minIntervalMs: this.config.minSyncPeriodMs,
      maxIntervalMs: this.config.syncPeriodMs,
      fn: (req) => this.syncProxyRules(req),
      onError: (err, info) => {
        this.lastSyncError = err;
        this.log.error('sync failed, retrying with a full sync', { err, failures: info.failures, retryInMs: info.retryInMs });
      },
      clock: this.opts.clock,
    });
    this.runner.start();
  }

  /** Stop watching and syncing; the rules stay in the kernel (kube-proxy on SIGTERM). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.restartTimers) clearTimeout(t);
    this.restartTimers.clear();
    await Promise.all(this.watches.map((w) => w.informer.stop()));
    await this.runner?.stop();
    await this.serviceHealth.close();
    await this.metricsServer?.close();
    await this.healthzServer?.close();
    this.nodeSeen?.();
  }

  /** Request a sync (as a watch event does). */
  requestSync(): void {
    this.runner?.run();
  }

  private queued(): void {
    this.health.queuedUpdate();
    this.metrics.lastQueuedTimestamp.set(Date.now() / 1000);
    this.runner?.run();
  }

  private noteTrigger(slice: V1EndpointSlice): void {
    const raw = slice.metadata?.annotations?.[TRIGGER_TIME];
    const svc = slice.metadata?.labels?.['kubernetes.io/service-name'];
    if (raw === undefined || svc === undefined) return;
    const t = Date.parse(raw);
    if (Number.isNaN(t)) return;
    const key = `${slice.metadata?.namespace ?? 'default'}/${svc}`;
    const prev = this.triggerTimes.get(key);
    if (prev === undefined || t < prev) this.triggerTimes.set(key, t);
  }

  private currentNodeIPs(): string[] {
    const bind = this.config.bindAddress;
    if (bind !== undefined && bind !== '' && bind !== '0.0.0.0' && bind !== '::') return [bind];
    return this.node ? nodeHostIPs(this.node) : [];
  }

  private onNode(node: V1Node | undefined): void {
    this.node = node;
    this.health.setNodeEligible(nodeEligible(node));
    if (node) this.nodeSeen?.();
    if (!this.backend) return;
    const ips = this.currentNodeIPs();
    if (ips.length > 0 && ips.join(',') !== this.nodeIPs.join(',')) {
      this.log.warn('node IPs changed: rebuilding the rules backend', { from: this.nodeIPs, to: ips });
      this.nodeIPs = ips;
      this.backendDirty = true;
      this.runner?.run();
    }
  }

  private async localIPs(): Promise<string[]> {
    const r = await makeRunner({ netnsPath: this.opts.netnsPath, exec: this.opts.exec }).run('ip', ['-j', 'addr', 'show'], {
      allowFailure: true,
      timeoutMs: 10_000,
    });
    if (r.code !== 0) throw new KnodeError('PROXY_LOCAL_ADDRESSES', `ip -j addr show failed: ${r.stderr.trim()}`);
    const links = JSON.parse(r.stdout) as { addr_info?: { local?: string }[] }[];
    return links.flatMap((l) => (l.addr_info ?? []).map((a) => a.local ?? '')).filter((ip) => ip !== '');
  }

  private async makeBackend(): Promise<ProxyBackend> {
    const spec = this.config.nodePortAddresses;
    let nodePortIPs: string[] = [];
    if (spec.length > 0) {
      const localIPs = spec.includes('primary') ? [] : await this.localIPs();
      nodePortIPs = resolveNodePortAddresses(spec, { nodeIPs: this.nodeIPs, localIPs }).filter((ip) => isFamily(ip, this.family));
      if (nodePortIPs.length === 0) {
        this.log.error('no local address matches --nodeport-addresses: NodePorts answer on every local address', { nodePortAddresses: spec });
      }
    }
    const clusterCIDR = this.config.clusterCIDR
      ?.split(',')
      .map((c) => c.trim())
      .find((c) => isFamily(c.split('/')[0] ?? '', this.family));
    this.log.info('rules backend', { mode: this.mode, family: this.family, nodeIPs: this.nodeIPs, nodePortIPs, clusterCIDR });
    return backends[this.mode]({
      family: this.family,
      masqueradeBit: this.config.masqueradeBit,
      masqueradeAll: this.config.masqueradeAll,
      clusterCIDR,
      nodePortIPs,
      nodeIPs: this.nodeIPs.filter((ip) => isFamily(ip, this.family)),
      localhostNodePorts: this.config.localhostNodePorts,
      conntrackTCPLiberal: this.config.conntrack.tcpBeLiberal,
      ipvsScheduler: this.config.ipvsScheduler,
      netnsPath: this.opts.netnsPath,
      exec: this.opts.exec,
      logger: this.log,
    });
  }

  private async syncProxyRules(req: RunRequest): Promise<void> {
    const tracker = this.tracker!;
    if (this.backendDirty) {
      this.backend = await this.makeBackend();
      this.backendDirty = false;
    }
    const backend = this.backend!;
    const t0 = performance.now();
    const r = tracker.take();
    for (const w of r.warnings) this.log.warn('ignored invalid field', { object: w.object, problem: w.message });
    this.metrics.serviceChanges.inc(r.serviceChanges);
    this.metrics.endpointChanges.inc(r.endpointChanges);
    this.pendingStale.push(...r.staleUdpEndpoints);
    this.pendingNewlyServed.push(...r.newlyServedUdp);
    let result;
    try {
      result = await backend.sync({ full: req.full, state: r.state, changed: r.changed });
    } catch (err) {
      this.metrics.syncFailures.inc();
      if (this.mode === 'iptables') this.metrics.iptablesRestoreFailures.inc();
      else if (this.mode === 'nftables') this.metrics.nftablesSyncFailures.inc();
      throw err;
    }
    const seconds = (performance.now() - t0) / 1000;
    this.metrics.syncDuration.observe(seconds);
    (result.full ? this.metrics.syncFullDuration : this.metrics.syncPartialDuration).observe(seconds);
    const now = Date.now();
    this.metrics.lastTimestamp.set(now / 1000);
    this.health.updated();
    this.syncs++;
    if (this.syncs === 1 && this.mode !== 'ipvs') await this.cleanupIpvsLeftovers();
    this.lastSyncError = undefined;
    for (const svc of r.changed) {
      const t = this.triggerTimes.get(svc);
      if (t === undefined) continue;
      this.triggerTimes.delete(svc);
      this.metrics.networkProgrammingDuration.observe(Math.max(0, (now - t) / 1000));
    }
    const log = result.full ? this.log.info.bind(this.log) : this.log.debug.bind(this.log);
    log('synced proxy rules', {
      full: result.full,
      reason: req.reason,
      changedServices: r.changed.size,
      services: r.state.services.size,
      ms: Math.round(seconds * 1000),
      computeMs: Math.round(result.duration.computeMs),
      applyMs: Math.round(result.duration.applyMs),
    });
    await this.clearStaleConntrack();
    await this.syncServiceHealth(r.state);
  }

  /** A node switched from IPVS mode: remove what only IPVS mode used, once, after the first sync. */
  private async cleanupIpvsLeftovers(): Promise<void> {
    const ipvs = new IpvsBackend({ family: this.family, masqueradeBit: this.config.masqueradeBit, masqueradeAll: false, netnsPath: this.opts.netnsPath, exec: this.opts.exec, logger: this.log });
    try {
      const removed = await ipvs.cleanupIpvsOnlyLeftovers();
      if (removed > 0) this.log.info('removed IPVS mode leftovers', { mode: this.mode, removed });
    } catch (err) {
      this.log.warn('could not remove IPVS mode leftovers', { err: errorMessage(err) });
    }
  }

  private async clearStaleConntrack(): Promise<void> {
    const cmds = conntrackCommands({ staleUdpEndpoints: this.pendingStale, newlyServedUdp: this.pendingNewlyServed }, this.family);
    this.pendingStale = [];
    this.pendingNewlyServed = [];
    if (cmds.length === 0) return;
    try {
      await clearConntrack(cmds, { netnsPath: this.opts.netnsPath, exec: this.opts.exec });
      this.log.debug('cleared stale UDP conntrack entries', { commands: cmds.length });
    } catch (err) {
      this.log.error('clearing stale UDP conntrack entries failed', { err });
    }
  }

  /** upstream LocalReadyEndpoints: distinct local ready endpoint IPs per service, on its healthCheckNodePort. */
  private async syncServiceHealth(state: ProxyState): Promise<void> {
    const ipsByService = new Map<string, { sp: ServicePort; ips: Set<string> }>();
    for (const sp of state.services.values()) {
      if (sp.healthCheckNodePort === 0) continue;
      let e = ipsByService.get(sp.service);
      if (!e) ipsByService.set(sp.service, (e = { sp, ips: new Set() }));
      for (const ep of state.endpoints.get(sp.key) ?? []) if (ep.isLocal && ep.ready) e.ips.add(ep.ip);
    }
    const desired = new Map<number, ServiceHealth>();
    for (const { sp, ips } of ipsByService.values()) {
      desired.set(sp.healthCheckNodePort, { namespace: sp.namespace, name: sp.name, localEndpoints: ips.size });
    }
    await this.serviceHealth.sync(desired);
  }

  private async watch<T extends KubernetesObject>(
    what: string,
    path: string,
    list: () => Promise<KubernetesListObject<T>>,
    on: { upsert: (o: T) => void; remove: (o: T) => void },
    fieldSelector?: string,
  ): Promise<void> {
    const w: Watched<T> = { informer: undefined as unknown as ListWatch<T>, listed: false };
    const listFn = async (): Promise<KubernetesListObject<T>> => {
      const l = await list();
      w.listed = true;
      return l;
    };
    const informer = new ListWatch<T>(path, new Watch(this.kc), listFn, false, undefined, fieldSelector);
    w.informer = informer;
    this.watches.push(w as unknown as Watched<KubernetesObject>);
    informer.on('add', on.upsert);
    informer.on('update', on.upsert);
    informer.on('delete', on.remove);
    let failures = 0;
    let wasDown = false;
    informer.on('connect', () => {
      if (wasDown) this.log.info('watch reconnecting', { resource: what });
      wasDown = false;
    });
    informer.on('error', (err) => {
      // Before the first list, the start-up loop below retries.
      if (this.stopped || !w.listed) return;
      failures++;
      wasDown = true;
      const delay = Math.min(500 * 2 ** Math.min(failures - 1, 5), 15_000);
      this.log.warn('watch failed, restarting (rules stay as they are)', { resource: what, err: errorMessage(err), retryInMs: delay });
      const t = setTimeout(() => {
        this.restartTimers.delete(t);
        if (this.stopped) return;
        informer.start().then(
          () => {
            failures = 0;
          },
          () => undefined,
        );
      }, delay);
      this.restartTimers.add(t);
    });
    // First list: retried until it succeeds (nothing is synced before it).
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await informer.start();
      } catch (err) {
        this.log.warn('initial list failed', { resource: what, err: errorMessage(err) });
      }
      if (w.listed) return;
      await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** attempt, 10_000)));
    }
  }
}

/** kube-proxy --cleanup: remove what every mode programs, both families; errors collected. */
export async function cleanupAll(opts: { netnsPath?: string; exec?: ExecFn; logger?: Logger }): Promise<{ errors: string[] }> {
  const log = opts.logger ?? createLogger({ component: 'knode-proxy' });
  const errors: string[] = [];
  for (const mode of Object.keys(backends) as ProxyMode[]) {
    for (const family of ['IPv4', 'IPv6'] as const) {
      const b = backends[mode]({ family, masqueradeBit: 14, masqueradeAll: false, netnsPath: opts.netnsPath, exec: opts.exec, logger: log });
      try {
        await b.cleanup();
        log.info('cleaned up', { mode, family });
      } catch (err) {
        errors.push(`${mode} ${family}: ${errorMessage(err)}`);
      }
    }
  }
  return { errors };
}

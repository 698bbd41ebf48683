/**
 * kube-proxy's metrics (pkg/proxy/metrics), same names, types and buckets, in a private
 * prom-client registry (no global state: several proxiers can live in one test process).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, exponentialBuckets, linearBuckets } from 'prom-client';

export interface ProxyMetrics {
  registry: Registry;
  syncDuration: Histogram;
  syncFullDuration: Histogram;
  syncPartialDuration: Histogram;
  networkProgrammingDuration: Histogram;
  lastTimestamp: Gauge;
  lastQueuedTimestamp: Gauge;
  serviceChanges: Counter;
  endpointChanges: Counter;
  iptablesRestoreFailures: Counter;
  nftablesSyncFailures: Counter;
  syncFailures: Counter;
}

const SYNC_BUCKETS = exponentialBuckets(0.001, 2, 15);
/** upstream: LinearBuckets(0.25,0.25,2) + LinearBuckets(1,1,59) + LinearBuckets(60,5,12) + LinearBuckets(120,30,7). */
const PROGRAMMING_BUCKETS = [
  ...linearBuckets(0.25, 0.25, 2),
  ...linearBuckets(1, 1, 59),
  ...linearBuckets(60, 5, 12),
  ...linearBuckets(120, 30, 7),
].filter((v, i, a) => a.indexOf(v) === i);

export function createProxyMetrics(opts: { processMetrics?: boolean } = {}): ProxyMetrics {
  const registry = new Registry();
  if (opts.processMetrics) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const hist = (name: string, help: string, buckets = SYNC_BUCKETS): Histogram => new Histogram({ name, help, buckets, registers });
  return {
    registry,
    syncDuration: hist('kubeproxy_sync_proxy_rules_duration_seconds', 'SyncProxyRules latency in seconds'),
    syncFullDuration: hist('kubeproxy_sync_full_proxy_rules_duration_seconds', 'SyncProxyRules latency in seconds for full resyncs'),
    syncPartialDuration: hist('kubeproxy_sync_partial_proxy_rules_duration_seconds', 'SyncProxyRules latency in seconds for partial resyncs'),
    networkProgrammingDuration: hist(
      'kubeproxy_network_programming_duration_seconds',
      'In Cluster Network Programming Latency in seconds',
      PROGRAMMING_BUCKETS,
    ),
    lastTimestamp: new Gauge({
      name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
      help: 'The last time proxy rules were successfully synced',
      registers,
    }),
    lastQueuedTimestamp: new Gauge({
      name: 'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds',
      help: 'The last time a sync of proxy rules was queued',
      registers,
    }),
    serviceChanges: new Counter({
      name: 'kubeproxy_sync_proxy_rules_service_changes_total',
      help: 'Cumulative proxy rules Service changes',
      registers,
    }),
    endpointChanges: new Counter({
      name: 'kubeproxy_sync_proxy_rules_endpoint_changes_total',
      help: 'Cumulative proxy rules Endpoint changes',
      registers,
    }),
    iptablesRestoreFailures: new Counter({
      name: 'kubeproxy_sync_proxy_rules_iptables_restore_failures_total',
      help: 'Cumulative proxy iptables restore failures',
      registers,
    }),
    nftablesSyncFailures: new Counter({
      name: 'kubeproxy_sync_proxy_rules_nftables_sync_failures_total',
      help: 'Cumulative proxy nftables sync failures',
      registers,
    }),
    syncFailures: new Counter({
      name: 'kubeproxy_sync_proxy_rules_failures_total',
      help: 'Cumulative failed proxy rules syncs (any mode, any cause)',
      registers,
    }),
  };
}

import t from 'tap';
import { request } from 'node:http';
import { createProxyMetrics } from '../../proxy/metrics.js';
import {
  ProxierHealth,
  ServiceHealthServers,
  goTimeString,
  healthBody,
  startHealthzServer,
  startMetricsServer,
} from '../../proxy/servers.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function get(port: number, path: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('Go time strings', async (t) => {
  t.equal(goTimeString(Date.UTC(2024, 0, 2, 3, 4, 5, 120)), '2024-01-02 03:04:05.12 +0000 UTC');
  t.equal(goTimeString(Date.UTC(2024, 0, 2, 3, 4, 5, 0)), '2024-01-02 03:04:05 +0000 UTC');
  t.equal(goTimeString(undefined), '0001-01-01 00:00:00 +0000 UTC');
  t.equal(
    healthBody({ healthy: true, nodeEligible: true, lastUpdated: Date.UTC(2024, 0, 1), currentTime: Date.UTC(2024, 0, 1, 0, 0, 1) }),
    '{"lastUpdated": "2024-01-01 00:00:00 +0000 UTC","currentTime": "2024-01-01 00:00:01 +0000 UTC", "nodeEligible": true}',
    'byte for byte as upstream formats it',
  );
});

t.test('metrics server: /proxyMode, /metrics, /healthz', async (t) => {
  const metrics = createProxyMetrics();
  let mode = 'iptables';
  const srv = await startMetricsServer({ host: '127.0.0.1', port: 0, mode: () => mode, metrics });
  t.teardown(() => srv.close());
  t.ok(srv.port > 0);
  const pm = await get(srv.port, '/proxyMode');
  t.equal(pm.status, 200);
  t.equal(pm.body, 'iptables', 'exactly the word, no newline');
  t.equal(pm.headers['content-type'], 'text/plain; charset=utf-8');
  mode = 'nftables';
  t.equal((await get(srv.port, '/proxyMode')).body, 'nftables');

  metrics.syncDuration.observe(0.012);
  metrics.syncFullDuration.observe(0.012);
  metrics.serviceChanges.inc(3);
  metrics.lastTimestamp.set(1700000000);
  const m = await get(srv.port, '/metrics');
  t.equal(m.status, 200);
  t.match(m.headers['content-type'], /^text\/plain; version=0.0.4/);
  for (const name of [
    'kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.016"} 1',
    'kubeproxy_sync_proxy_rules_duration_seconds_count 1',
    'kubeproxy_sync_full_proxy_rules_duration_seconds_count 1',
    'kubeproxy_sync_partial_proxy_rules_duration_seconds_count 0',
    'kubeproxy_network_programming_duration_seconds_count 0',
    'kubeproxy_sync_proxy_rules_last_timestamp_seconds 1700000000',
    'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds 0',
    'kubeproxy_sync_proxy_rules_service_changes_total 3',
    'kubeproxy_sync_proxy_rules_endpoint_changes_total 0',
    'kubeproxy_sync_proxy_rules_iptables_restore_failures_total 0',
    '# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram',
    '# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge',
    '# TYPE kubeproxy_sync_proxy_rules_service_changes_total counter',
  ]) {
    t.ok(m.body.split('\n').includes(name), name);
  }
  const hz = await get(srv.port, '/healthz');
  t.same([hz.status, hz.body], [200, 'ok']);
  t.equal((await get(srv.port, '/nope')).status, 404);
});

t.test('healthz server: 200, then 503 when a queued update is older than 2 × syncPeriod', async (t) => {
  let now = Date.UTC(2024, 5, 1, 12, 0, 0);
  const health = new ProxierHealth({ syncPeriodMs: 30_000, clock: { now: () => now } });
  const srv = await startHealthzServer({ host: '127.0.0.1', port: 0, health });
  t.teardown(() => srv.close());

  let r = await get(srv.port, '/healthz');
  t.equal(r.status, 200, 'nothing queued yet: healthy');
  t.equal(r.headers['content-type'], 'application/json');
  t.equal(r.body, '{"lastUpdated": "0001-01-01 00:00:00 +0000 UTC","currentTime": "2024-06-01 12:00:00 +0000 UTC", "nodeEligible": true}');

  health.updated();
  now += 5_000;
  health.queuedUpdate();
  now += 59_999;
  t.equal((await get(srv.port, '/healthz')).status, 200, 'queued 59.999 s ago: still healthy');
  health.queuedUpdate(); // a later change does not reset the oldest
  now += 1;
  r = await get(srv.port, '/healthz');
  t.equal(r.status, 503, 'queued 60 s ago without a sync: unhealthy');
  t.equal(r.body, '{"lastUpdated": "2024-06-01 12:00:00 +0000 UTC","currentTime": "2024-06-01 12:01:05 +0000 UTC", "nodeEligible": true}');
  t.equal((await get(srv.port, '/livez')).status, 503);

  health.updated();
  t.equal((await get(srv.port, '/healthz')).status, 200, 'a sync makes it healthy again');

  health.setNodeEligible(false);
  r = await get(srv.port, '/healthz');
  t.equal(r.status, 503, 'node being deleted: /healthz 503');
  t.match(r.body, /"nodeEligible": false\}$/);
  t.equal((await get(srv.port, '/livez')).status, 200, '/livez ignores node eligibility');
  t.equal((await get(srv.port, '/metrics')).status, 404);
});

t.test('service health check servers (externalTrafficPolicy Local)', async (t) => {
  let healthy = true;
  const shs = new ServiceHealthServers({ host: '127.0.0.1', proxyHealthy: () => healthy });
  t.teardown(() => shs.close());
  // Find a free port by letting the OS pick one, then hand it over.
  const probe = await startHealthzServer({ host: '127.0.0.1', port: 0, health: new ProxierHealth({ syncPeriodMs: 1000 }) });
  const port = probe.port;
  await probe.close();

  await shs.sync(new Map([[port, { namespace: 'shop', name: 'web', localEndpoints: 2 }]]));
  t.same(shs.ports(), [port]);
  let r = await get(port, '/');
  t.equal(r.status, 200);
  t.same(JSON.parse(r.body), { service: { namespace: 'shop', name: 'web' }, localEndpoints: 2, serviceProxyHealthy: true });
  t.equal(r.headers['x-load-balancing-endpoint-weight'], '2');

  await shs.sync(new Map([[port, { namespace: 'shop', name: 'web', localEndpoints: 0 }]]));
  r = await get(port, '/');
  t.equal(r.status, 503, 'no local endpoints');
  t.match(JSON.parse(r.body), { localEndpoints: 0 });

  await shs.sync(new Map([[port, { namespace: 'shop', name: 'web', localEndpoints: 1 }]]));
  healthy = false;
  r = await get(port, '/');
  t.equal(r.status, 503, 'proxy unhealthy');
  t.match(JSON.parse(r.body), { serviceProxyHealthy: false });

  await shs.sync(new Map());
  t.same(shs.ports(), []);
  await t.rejects(get(port, '/'), { code: 'ECONNREFUSED' }, 'listener closed with the service');
});

/**
 * knode-proxy end to end on one machine (root): the lab apiserver in-process on 127.0.0.1:0,
 * the proxier in-process with its rules going into a throw-away node namespace
 * (proxy/testing/topology.ts), Services and EndpointSlices created through the API, and real
 * HTTP from the client namespace to the ClusterIP. Status servers on 127.0.0.1:0.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { CoreV1Api, DiscoveryV1Api, KubeConfig, type V1EndpointSlice } from '@kubernetes/client-node';
import { startApiServer, type ApiServer } from '../../lab/apiserver/server.js';
import { createLogger, type Logger } from '../../lib/log.js';
import { execFile } from '../../lib/exec.js';
import { createTopology, type Topology } from '../../proxy/testing/topology.js';
import { parseProxyArgs } from '../../proxy/config.js';
import { Proxier, cleanupAll } from '../../proxy/proxier.js';
import { freePort, until } from '../helpers/poll.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const NODE = 'knode-t-proxy-node';
const NS = 'default';

function capture(): { lines: string[]; logger: Logger } {
  const lines: string[] = [];
  return { lines, logger: createLogger({ component: 'test', level: 'debug', write: (l) => lines.push(l) }) };
}

function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  return until(what, fn, timeoutMs, 100);
}

async function hits(topo: Topology, url: string, n: number): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const r = await topo.get('client', url, 1);
    const key = r.ok ? r.body : 'error';
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  return seen;
}

async function http(url: string): Promise<{ status: number; type: string; body: string }> {
  const res = await fetch(url);
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

function slice(name: string, svc: string, ips: string[]): V1EndpointSlice {
  return {
    metadata: { name, namespace: NS, labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], nodeName: NODE, conditions: { ready: true } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

/** A free loopback port (the OS picks it, then it is handed over). */

async function natSave(topo: Topology): Promise<string> {
  return (await topo.exec('node', 'iptables-save', ['-t', 'nat'])).stdout;
}

t.test('knode-proxy against the lab apiserver', { timeout: 150_000 }, async (t) => {
  const topo = await createTopology();
  t.teardown(() => topo.destroy());
  const dataDir = await mkdtemp(join(tmpdir(), 'knode-t-proxy-api-'));
  const persistPath = join(dataDir, 'store.json');
  let api: ApiServer = await startApiServer({ dataDir, listen: ['127.0.0.1:0'], persistPath, nodes: [NODE] });
  const apiPort = new URL(api.urls[0]!).port;
  t.teardown(async () => {
    await api.close().catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  });
  const kc = new KubeConfig();
  kc.loadFromFile(api.adminKubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  await core.createNode({ body: { metadata: { name: NODE, labels: { 'kubernetes.io/hostname': NODE } } } });
  const node = await core.readNode({ name: NODE });
  node.status = { ...node.status, addresses: [{ type: 'InternalIP', address: topo.nodeIP }] };
  await core.replaceNodeStatus({ name: NODE, body: node });
  const proxyKc = new KubeConfig();
  proxyKc.loadFromFile(await api.nodeKubeconfig(NODE));

  const proxies: Proxier[] = [];
  const startProxy = async (mode: string, logger: Logger): Promise<Proxier> => {
    const config = parseProxyArgs(
      [
        `--proxy-mode=${mode}`,
        `--hostname-override=${NODE}`,
        '--cluster-cidr=10.244.0.0/16',
        '--metrics-bind-address=127.0.0.1:0',
        '--healthz-bind-address=127.0.0.1:0',
        '--iptables-min-sync-period=100ms',
        '--iptables-sync-period=10s',
      ],
      { readFile: () => '' },
    );
    const p = new Proxier({ config, kubeConfig: proxyKc, netnsPath: topo.nodePath, logger, healthCheckHost: '127.0.0.1', nodeWaitMs: 5000 });
    proxies.push(p);
    await p.start();
    return p;
  };
  t.teardown(async () => {
    for (const p of proxies) await p.stop().catch(() => undefined);
  });

  await t.test('iptables mode: services, partial syncs, status endpoints, apiserver restart', async (t) => {
    const { logger } = capture();
    const proxy = await startProxy('iptables', logger);
    const metricsUrl = `http://127.0.0.1:${proxy.metricsServer!.port}`;
    const healthUrl = `http://127.0.0.1:${proxy.healthzServer!.port}`;
    t.equal(proxy.family, 'IPv4');

    const pm = await http(`${metricsUrl}/proxyMode`);
    t.equal(pm.status, 200);
    t.equal(pm.body, 'iptables', 'bare mode word, no newline');
    t.match(pm.type, /^text\/plain/);

    const svc = await core.createNamespacedService({
      namespace: NS,
      body: { metadata: { name: 'web' }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
    });
    const clusterIP = svc.spec!.clusterIP!;
    await discovery.createNamespacedEndpointSlice({ namespace: NS, body: slice('web-1', 'web', topo.podIPs) });
    const url = `http://${clusterIP}/`;
    const seen = await waitFor('both backends behind the ClusterIP', async () => {
      const s = await hits(topo, url, 12);
      return s.has('pod1') && s.has('pod2') ? s : undefined;
    });
    t.pass(`ClusterIP ${clusterIP} balanced: ${JSON.stringify(Object.fromEntries(seen))}`);

    const partialBefore = (await proxy.metrics.syncPartialDuration.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
    const cur = await discovery.readNamespacedEndpointSlice({ name: 'web-1', namespace: NS });
    cur.endpoints = cur.endpoints!.slice(0, 1);
    await discovery.replaceNamespacedEndpointSlice({ name: 'web-1', namespace: NS, body: cur });
    await waitFor('only pod1 answering', async () => {
      const s = await hits(topo, url, 6);
      return s.size === 1 && s.has('pod1') ? s : undefined;
    });
    const partialAfter = (await proxy.metrics.syncPartialDuration.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
    t.ok(partialAfter > partialBefore, `a partial sync programmed the change (${partialBefore} → ${partialAfter})`);

    const metrics = await http(`${metricsUrl}/metrics`);
    t.equal(metrics.status, 200);
    const count = Number(/^kubeproxy_sync_proxy_rules_duration_seconds_count (\S+)$/m.exec(metrics.body)?.[1] ?? '0');
    t.ok(count > 0, `kubeproxy_sync_proxy_rules_duration_seconds_count ${count}`);
    for (const name of [
      'kubeproxy_sync_full_proxy_rules_duration_seconds',
      'kubeproxy_sync_partial_proxy_rules_duration_seconds',
      'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
      'kubeproxy_sync_proxy_rules_endpoint_changes_total',
      'kubeproxy_sync_proxy_rules_service_changes_total',
    ]) {
      t.match(metrics.body, new RegExp(`^${name}`, 'm'), name);
    }
    const hz = await http(`${healthUrl}/healthz`);
    t.equal(hz.status, 200);
    t.match(JSON.parse(hz.body), { nodeEligible: true });
    t.match(hz.body, /^\{"lastUpdated": "\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC","currentTime": ".*", "nodeEligible": true\}$/);
    t.equal((await http(`${healthUrl}/livez`)).status, 200);

    // externalTrafficPolicy Local: the healthCheckNodePort answers with the local endpoint count.
    const hcPort = await freePort();
    await core.createNamespacedService({
      namespace: NS,
      body: {
        metadata: { name: 'local' },
        spec: { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: hcPort, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
      },
    });
    await discovery.createNamespacedEndpointSlice({ namespace: NS, body: slice('local-1', 'local', topo.podIPs) });
    const hc = await waitFor('the health check node port', async () => {
      const r = await http(`http://127.0.0.1:${hcPort}/`).catch(() => undefined);
      return r?.status === 200 ? r : undefined;
    });
    t.same(JSON.parse(hc.body), { service: { namespace: NS, name: 'local' }, localEndpoints: 2, serviceProxyHealthy: true }, 'healthCheckNodePort served');
    await discovery.deleteNamespacedEndpointSlice({ name: 'local-1', namespace: NS });
    await waitFor('503 without local endpoints', async () => ((await http(`http://127.0.0.1:${hcPort}/`)).status === 503 ? true : undefined));
    await core.deleteNamespacedService({ name: 'local', namespace: NS });
    await waitFor('health check port closed', async () => ((await http(`http://127.0.0.1:${hcPort}/`).catch(() => undefined)) === undefined ? true : undefined));
    t.pass('health check port follows the service');

    // The apiserver goes away: rules stay, the proxy keeps serving and resumes afterwards.
    await api.close();
    await new Promise((r) => setTimeout(r, 1500));
    t.same([...(await hits(topo, url, 3)).keys()], ['pod1'], 'rules stay while the apiserver is down');
    api = await startApiServer({ dataDir, listen: [`127.0.0.1:${apiPort}`], persistPath, nodes: [NODE] });
    const kc2 = new KubeConfig();
    kc2.loadFromFile(api.adminKubeconfig);
    const discovery2 = kc2.makeApiClient(DiscoveryV1Api);
    const core2 = kc2.makeApiClient(CoreV1Api);
    const again = await discovery2.readNamespacedEndpointSlice({ name: 'web-1', namespace: NS });
    again.endpoints = slice('x', 'web', topo.podIPs).endpoints;
    await discovery2.replaceNamespacedEndpointSlice({ name: 'web-1', namespace: NS, body: again });
    await waitFor(
      'both backends again after the apiserver restart',
      async () => {
        const s = await hits(topo, url, 12);
        return s.has('pod1') && s.has('pod2') ? s : undefined;
      },
      20_000,
    );
    t.pass('watches resumed after the apiserver restart');

    // Delete the service: its chains go, the ClusterIP no longer answers.
    await core2.deleteNamespacedService({ name: 'web', namespace: NS });
    await discovery2.deleteNamespacedEndpointSlice({ name: 'web-1', namespace: NS });
    await waitFor('no rules for default/web', async () => ((await natSave(topo)).includes('default/web') ? undefined : true));
    const r = await topo.get('client', url, 1);
    t.notOk(r.ok, `ClusterIP of a deleted service does not answer (${r.body})`);
    const nat = await natSave(topo);
    t.match(nat, /:KUBE-SERVICES/, 'the rest of the ruleset is in place');

    await proxy.stop();
    t.match(await natSave(topo), /:KUBE-SERVICES/, 'rules stay after stop (SIGTERM)');
    const { errors } = await cleanupAll({ netnsPath: topo.nodePath, logger: capture().logger });
    t.same(errors.filter((e) => e.startsWith('iptables IPv4')), []);
    t.notMatch(await natSave(topo), /KUBE-/, '--cleanup removed every KUBE- chain');
  });

  await t.test('nftables mode', async (t) => {
    const { logger } = capture();
    const proxy = await startProxy('nftables', logger);
    const pm = await http(`http://127.0.0.1:${proxy.metricsServer!.port}/proxyMode`);
    t.equal(pm.body, 'nftables');
    const kc2 = new KubeConfig();
    kc2.loadFromFile(api.adminKubeconfig);
    const core2 = kc2.makeApiClient(CoreV1Api);
    const discovery2 = kc2.makeApiClient(DiscoveryV1Api);
    const svc = await core2.createNamespacedService({
      namespace: NS,
      body: { metadata: { name: 'nft' }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
    });
    await discovery2.createNamespacedEndpointSlice({ namespace: NS, body: slice('nft-1', 'nft', topo.podIPs) });
    const seen = await waitFor('both backends behind the ClusterIP (nftables)', async () => {
      const s = await hits(topo, `http://${svc.spec!.clusterIP!}/`, 12);
      return s.has('pod1') && s.has('pod2') ? s : undefined;
    });
    t.pass(`balanced: ${JSON.stringify(Object.fromEntries(seen))}`);
    await core2.deleteNamespacedService({ name: 'nft', namespace: NS });
    await discovery2.deleteNamespacedEndpointSlice({ name: 'nft-1', namespace: NS });
    await proxy.stop();
    const list = await topo.exec('node', 'nft', ['list', 'tables']);
    t.match(list.stdout, /kube-proxy/, 'table stays after stop');
    await cleanupAll({ netnsPath: topo.nodePath, logger: capture().logger });
    t.notMatch((await topo.exec('node', 'nft', ['list', 'tables'])).stdout, /kube-proxy/, '--cleanup removed the table');
  });

  await t.test('ipvs mode without IPVS in the kernel falls back to iptables', async (t) => {
    const { lines, logger } = capture();
    const proxy = await startProxy('ipvs', logger);
    const pm = await http(`http://127.0.0.1:${proxy.metricsServer!.port}/proxyMode`);
    t.equal(pm.body, 'iptables');
    const fallback = lines.map((l) => JSON.parse(l) as { level: string; msg: string }).find((l) => /falling back to iptables/.test(l.msg));
    t.ok(fallback, 'the fallback is logged');
    t.equal(fallback?.level, 'error');
    t.match(fallback?.msg ?? '', /IPVS is not available in this kernel \(no generic netlink family IPVS\): falling back to iptables mode/);
    await waitFor('a first sync', async () => (proxy.syncs > 0 ? true : undefined));
    t.match(await natSave(topo), /:KUBE-SERVICES/, 'iptables rules programmed');
    await proxy.stop();
    await cleanupAll({ netnsPath: topo.nodePath, logger: capture().logger });
  });
});

t.test('the bundled knode-proxy program under nsenter in the node namespace', { timeout: 120_000 }, async (t) => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const bundle = join(root, 'dist', `.knode-proxy-test-${process.pid}.mjs`);
  await build({
    entryPoints: [join(root, 'proxy/main.ts')],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    external: ['koffi', 'netlink'],
    banner: { js: "import { createRequire as __knodeCreateRequire } from 'node:module';\nconst require = __knodeCreateRequire(import.meta.url);" },
    logLevel: 'warning',
  });
  t.teardown(() => rm(bundle, { force: true }));

  const bad = await execFile(process.execPath, [bundle, '--proxy-mode', 'userspace', '--nodeport-addresses', '10.0.0.0/33'], { allowFailure: true });
  t.equal(bad.code, 2, 'invalid flags: exit 2');
  t.match(bad.stderr, /proxy mode "userspace": must be one of iptables, nftables, ipvs/);
  t.match(bad.stderr, /node port address "10.0.0.0\/33" is not a CIDR/);

  const topo = await createTopology();
  t.teardown(() => topo.destroy());
  const dataDir = await mkdtemp(join(tmpdir(), 'knode-t-proxy-api-'));
  // The apiserver also listens inside the node namespace, where the program runs.
  const api = await startApiServer({ dataDir, listen: ['127.0.0.1:0', `127.0.0.1:0@${topo.nodePath}`], nodes: [NODE] });
  t.teardown(async () => {
    await api.close().catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  });
  const kc = new KubeConfig();
  kc.loadFromFile(api.adminKubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  await core.createNode({ body: { metadata: { name: NODE } } });
  const node = await core.readNode({ name: NODE });
  node.status = { ...node.status, addresses: [{ type: 'InternalIP', address: topo.nodeIP }] };
  await core.replaceNodeStatus({ name: NODE, body: node });
  const nodeKc = new KubeConfig();
  nodeKc.loadFromFile(await api.nodeKubeconfig(NODE));
  nodeKc.loadFromOptions({
    clusters: nodeKc.clusters.map((c) => ({ ...c, server: api.urls[1]! })),
    users: nodeKc.users,
    contexts: nodeKc.contexts,
    currentContext: nodeKc.currentContext,
  });
  const kubeconfig = join(dataDir, 'proxy.kubeconfig');
  await writeFile(kubeconfig, nodeKc.exportConfig());

  const stderr: string[] = [];
  const child = spawn(
    'nsenter',
    [`--net=${topo.nodePath}`, process.execPath, bundle, '--kubeconfig', kubeconfig, '--hostname-override', NODE, '--cluster-cidr', topo.podCIDR, '--iptables-min-sync-period', '100ms'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.stderr.on('data', (c: Buffer) => stderr.push(c.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  const svc = await core.createNamespacedService({
    namespace: NS,
    body: { metadata: { name: 'prog' }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
  });
  await discovery.createNamespacedEndpointSlice({ namespace: NS, body: slice('prog-1', 'prog', topo.podIPs) });
  const url = `http://${svc.spec!.clusterIP!}/`;
  await waitFor(
    'both backends through the program',
    async () => {
      const s = await hits(topo, url, 12);
      return s.has('pod1') && s.has('pod2') ? s : undefined;
    },
    20_000,
  ).catch((err: unknown) => {
    t.comment(stderr.join(''));
    throw err;
  });
  t.pass('the program programs the node namespace from the API');

  const mode = await topo.get('node', 'http://127.0.0.1:10249/proxyMode');
  t.same([mode.ok, mode.body], [true, 'iptables'], 'curl 127.0.0.1:10249/proxyMode on the node');
  const hz = await topo.exec('node', 'curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:10256/healthz']);
  t.equal(hz.stdout, '200', '10256 /healthz on the node');

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: clean exit');
  t.match(await natSave(topo), /KUBE-SVC-/, 'rules stay after SIGTERM');
  const after = await hits(topo, url, 6);
  t.notOk(after.has('error'), `still served with the program gone: ${JSON.stringify(Object.fromEntries(after))}`);

  const cleanup = await execFile('nsenter', [`--net=${topo.nodePath}`, process.execPath, bundle, '--cleanup'], { allowFailure: true, timeoutMs: 30_000 });
  t.equal(cleanup.code, 0, '--cleanup exits 0');
  if (cleanup.code !== 0) t.comment(cleanup.stderr);
  t.notMatch(await natSave(topo), /KUBE-/, '--cleanup removed every KUBE- chain');
});

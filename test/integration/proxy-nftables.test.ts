/**
 * knode-proxy nftables backend for real: the table `ip kube-proxy` rendered from
 * Service/EndpointSlice objects is loaded with `nft -f` into a throw-away "node" namespace (never
 * the root namespace),
 * and real HTTP traffic from a "client" namespace and from the node itself reaches busybox
 * httpd backends in two "pod" namespaces. See proxy/testing/topology.ts for the layout.
 */
import t from 'tap';
import { ChangeTracker } from '../../proxy/changes.js';
import { NftablesBackend, STALE_DELETE_AGE_MS } from '../../proxy/backends/nftables/backend.js';
import { nftPort, type NftPort } from '../../proxy/backends/nftables/apply.js';
import { createTopology } from '../../proxy/testing/topology.js';
import { endpoints, hits, service } from '../../proxy/testing/fixtures.js';
import { isKnodeError } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const quiet = createLogger({ component: 'test', write: () => undefined });

t.test('nftables backend in a throw-away node namespace', { timeout: 120_000 }, async (t) => {
  const topo = await createTopology();
  t.teardown(() => topo.destroy());

  const tracker = new ChangeTracker({ family: 'IPv4', nodeName: 'node1' });
  tracker.updateService(service('web', '10.96.0.10', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }));
  tracker.updateService(service('sticky', '10.96.0.11', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }));
  tracker.updateService(service('empty', '10.96.0.12'));
  tracker.updateEndpointSlice(endpoints('web', topo.podIPs));
  tracker.updateEndpointSlice(endpoints('sticky', topo.podIPs));

  const realPort = nftPort({ family: 'IPv4', netnsPath: topo.nodePath });
  let corruptNext = false;
  const port: NftPort = {
    apply: (script) => realPort.apply(corruptNext ? ((corruptNext = false), `${script}add rule ip kube-proxy services jump no-such-chain\n`) : script),
    list: () => realPort.list(),
    deleteTable: () => realPort.deleteTable(),
  };
  let clock = Date.now();
  const backend = new NftablesBackend({ family: 'IPv4', masqueradeBit: 14, masqueradeAll: false, clusterCIDR: topo.podCIDR, port, logger: quiet, now: () => clock });
  const sync = async (full = false) => {
    const r = tracker.take();
    return backend.sync({ full, state: r.state, changed: r.changed });
  };
  const listTable = async () => (await topo.exec('node', 'nft', ['list', 'table', 'ip', 'kube-proxy'])).stdout;

  const first = await sync();
  t.equal(first.full, true);
  t.comment(`full sync: compute ${first.duration.computeMs.toFixed(1)} ms, apply ${first.duration.applyMs.toFixed(1)} ms`);
  const table = await listTable();
  t.match(table, /map service-ips/);
  t.match(table, /numgen random mod 2/);

  await t.test('client reaches the ClusterIP, balanced over both backends', async (t) => {
    const seen = await hits(topo, 'client', 'http://10.96.0.10/', 20);
    t.same([...seen.keys()].sort(), ['pod1', 'pod2'], JSON.stringify(Object.fromEntries(seen)));
  });

  await t.test('the node itself reaches the ClusterIP (nat output)', async (t) => {
    const seen = await hits(topo, 'node', 'http://10.96.0.10/', 10);
    t.ok([...seen.keys()].every((k) => k === 'pod1' || k === 'pod2'), JSON.stringify(Object.fromEntries(seen)));
  });

  await t.test('NodePort on the node address', async (t) => {
    const r = await topo.get('client', `http://${topo.nodeIP}:30080/`);
    t.ok(r.ok, r.body);
    t.match(r.body, /^pod[12]$/);
  });

  await t.test('ClientIP affinity sticks to one backend', async (t) => {
    const seen = await hits(topo, 'client', 'http://10.96.0.11/', 12);
    t.equal(seen.size, 1, JSON.stringify(Object.fromEntries(seen)));
    t.match([...seen.keys()][0], /^pod[12]$/);
  });

  await t.test('a service without endpoints is rejected at once', async (t) => {
    const r = await topo.get('client', 'http://10.96.0.12/', 5);
    t.notOk(r.ok);
    t.ok(r.ms < 2000, `refused in ${r.ms.toFixed(0)} ms, not a timeout`);
    t.equal(r.code, 7, `curl: could not connect (${r.body})`);
  });

  await t.test('partial sync after removing one endpoint; stale chain deleted a sync later', async (t) => {
    tracker.updateEndpointSlice(endpoints('web', [topo.podIPs[0]]));
    const r = await sync();
    t.equal(r.full, false);
    t.equal(r.stats.writtenServices, 1);
    t.equal(r.stats.staleChains, 1);
    t.comment(`partial sync: compute ${r.duration.computeMs.toFixed(1)} ms, apply ${r.duration.applyMs.toFixed(1)} ms`);
    const seen = await hits(topo, 'client', 'http://10.96.0.10/', 10);
    t.same([...seen.keys()], ['pod1'], JSON.stringify(Object.fromEntries(seen)));
    clock += STALE_DELETE_AGE_MS + 1000; // deletions are batched (render.ts): at the latest after this age
    const r2 = await sync();
    t.equal(r2.stats.staleChains, 0);
    t.equal((await listTable()).match(/chain endpoint-/g)?.length, 3, 'web: 1 endpoint chain left, sticky: 2');
  });

  await t.test('a second identical sync is fine', async (t) => {
    const r = await sync();
    t.equal(r.full, false);
    t.equal(r.stats.writtenServices, 0);
    t.equal((await hits(topo, 'client', 'http://10.96.0.10/', 3)).get('pod1'), 3);
  });

  await t.test('a full resync keeps everything working', async (t) => {
    const r = await sync(true);
    t.equal(r.full, true);
    t.equal((await hits(topo, 'client', 'http://10.96.0.10/', 3)).get('pod1'), 3);
    t.equal((await hits(topo, 'client', 'http://10.96.0.11/', 6)).size, 1, 'affinity survives a full sync');
  });

  await t.test('a restarted proxy (new backend, rules already there) syncs fully and keeps serving', async (t) => {
    const again = new NftablesBackend({ family: 'IPv4', masqueradeBit: 14, masqueradeAll: false, clusterCIDR: topo.podCIDR, port, now: () => clock, logger: quiet });
    const r = await again.sync({ full: false, state: tracker.state(), changed: new Set() });
    t.equal(r.full, true);
    t.equal((await hits(topo, 'client', 'http://10.96.0.10/', 3)).get('pod1'), 3);
  });

  await t.test('a malformed ruleset fails cleanly; previous rules keep working', async (t) => {
    const before = await listTable();
    await t.rejects(realPort.apply('add rule ip kube-proxy services bogus garbage\n'), { code: 'NFT_FAILED' });
    tracker.updateEndpointSlice(endpoints('web', topo.podIPs));
    corruptNext = true;
    const err = await sync().catch((e: unknown) => e);
    t.ok(isKnodeError(err, 'NFT_FAILED'), String(err));
    const strip = (s: string) => s.replace(/expires \S+/g, '').replace(/timeout \S+/g, '');
    t.equal(strip(await listTable()), strip(before), 'nothing changed in the kernel');
    t.same([...(await hits(topo, 'client', 'http://10.96.0.10/', 3)).keys()], ['pod1'], 'old rules still serve');
    const r = await sync();
    t.equal(r.full, true, 'the sync after a failure is full');
    const seen = await hits(topo, 'client', 'http://10.96.0.10/', 20);
    t.same([...seen.keys()].sort(), ['pod1', 'pod2'], 'the lost change (pod2 back) is applied by the full sync');
  });

  await t.test('IPv6: the same services load for the ip6 family', async (t) => {
    const v6 = new ChangeTracker({ family: 'IPv6', nodeName: 'node1' });
    v6.updateService({
      metadata: { namespace: 'default', name: 'web6' },
      spec: {
        type: 'NodePort',
        clusterIPs: ['fd00:96::10'],
        externalIPs: ['fd00:99::1'],
        sessionAffinity: 'ClientIP',
        ports: [{ name: 'http', port: 80, nodePort: 30081 }],
      },
    });
    v6.updateService({ metadata: { namespace: 'default', name: 'empty6' }, spec: { clusterIPs: ['fd00:96::12'], ports: [{ name: 'http', port: 80 }] } });
    v6.updateEndpointSlice({
      metadata: { namespace: 'default', name: 'web6-x', labels: { 'kubernetes.io/service-name': 'web6' } },
      addressType: 'IPv6',
      endpoints: [{ addresses: ['fd00:244::11'] }, { addresses: ['fd00:244::12'] }],
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    });
    const be6 = new NftablesBackend({ family: 'IPv6', masqueradeBit: 14, masqueradeAll: false, clusterCIDR: 'fd00:244::/64', netnsPath: topo.nodePath, now: () => clock, logger: quiet });
    const r = v6.take();
    const res = await be6.sync({ full: true, state: r.state, changed: r.changed });
    t.equal(res.applied, true);
    const dump = (await topo.exec('node', 'nft', ['list', 'table', 'ip6', 'kube-proxy'])).stdout;
    t.match(dump, /fd00:244::11\]:8080/);
    v6.updateEndpointSlice({
      metadata: { namespace: 'default', name: 'web6-x', labels: { 'kubernetes.io/service-name': 'web6' } },
      addressType: 'IPv6',
      endpoints: [{ addresses: ['fd00:244::12'] }],
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    });
    const r2 = v6.take();
    t.equal((await be6.sync({ full: false, state: r2.state, changed: r2.changed })).full, false, 'partial IPv6 sync loads too');
    await be6.cleanup();
  });

  await t.test('cleanup deletes the table', async (t) => {
    await backend.cleanup();
    const r = await topo.exec('node', 'nft', ['list', 'tables'], { allowFailure: true });
    t.notMatch(r.stdout, /kube-proxy/);
    await backend.cleanup();
    t.pass('cleanup twice is fine');
  });
});

/**
 * knode-proxy iptables backend for real: rules rendered from Service/EndpointSlice objects are
 * loaded with iptables-restore into a throw-away "node" namespace (never the root namespace),
 * and real HTTP traffic from a "client" namespace and from the node itself reaches busybox
 * httpd backends in two "pod" namespaces. See proxy/testing/topology.ts for the layout.
 */
import t from 'tap';
import type { V1EndpointSlice } from '@kubernetes/client-node';
import { ChangeTracker } from '../../proxy/changes.js';
import { IptablesBackend } from '../../proxy/backends/iptables/backend.js';
import { iptablesPort, type IptablesPort } from '../../proxy/backends/iptables/apply.js';
import { createTopology } from '../../proxy/testing/topology.js';
import { endpoints, hits, service } from '../../proxy/testing/fixtures.js';
import { isKnodeError } from '../../lib/errors.js';
import { clearConntrack, conntrackCommands } from '../../proxy/conntrack.js';
import { createLogger } from '../../lib/log.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const quiet = createLogger({ component: 'test', write: () => undefined });

t.test('iptables backend in a throw-away node namespace', { timeout: 120_000 }, async (t) => {
  const topo = await createTopology();
  t.teardown(() => topo.destroy());

  const tracker = new ChangeTracker({ family: 'IPv4', nodeName: 'node1' });
  tracker.updateService(service('web', '10.96.0.10', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }));
  tracker.updateService(service('sticky', '10.96.0.11', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }));
  tracker.updateService(service('empty', '10.96.0.12'));
  tracker.updateEndpointSlice(endpoints('web', topo.podIPs));
  tracker.updateEndpointSlice(endpoints('sticky', topo.podIPs));

  const realPort = iptablesPort({ family: 'IPv4', netnsPath: topo.nodePath });
  let corruptNext = false;
  const port: IptablesPort = {
    restore: (text) => realPort.restore(corruptNext ? ((corruptNext = false), text.replace('COMMIT\n*nat', '-A KUBE-NOPE -j NOWHERE\nCOMMIT\n*nat')) : text),
    save: () => realPort.save(),
    chainExists: (table, chain) => realPort.chainExists(table, chain),
  };
  const backend = new IptablesBackend({ family: 'IPv4', masqueradeBit: 14, masqueradeAll: false, clusterCIDR: topo.podCIDR, port, logger: quiet });
  const sync = async (full = false) => {
    const r = tracker.take();
    return backend.sync({ full, state: r.state, changed: r.changed });
  };

  const first = await sync();
  t.equal(first.full, true);
  t.comment(`full sync: compute ${first.duration.computeMs.toFixed(1)} ms, apply ${first.duration.applyMs.toFixed(1)} ms`);
  const saved = await realPort.save();
  t.match(saved, /-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES/);
  t.match(saved, /:KUBE-PROXY-CANARY/);

  await t.test('client reaches the ClusterIP, balanced over both backends', async (t) => {
    const seen = await hits(topo, 'client', 'http://10.96.0.10/', 20);
    t.same([...seen.keys()].sort(), ['pod1', 'pod2'], JSON.stringify(Object.fromEntries(seen)));
  });

  await t.test('the node itself reaches the ClusterIP (nat OUTPUT)', async (t) => {
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

  await t.test('partial sync after removing one endpoint', async (t) => {
    tracker.updateEndpointSlice(endpoints('web', [topo.podIPs[0]]));
    const r = await sync();
    t.equal(r.full, false);
    t.equal(r.stats.writtenServices, 1);
    t.equal(r.stats.deletedChains, 1);
    t.comment(`partial sync: compute ${r.duration.computeMs.toFixed(1)} ms, apply ${r.duration.applyMs.toFixed(1)} ms`);
    const seen = await hits(topo, 'client', 'http://10.96.0.10/', 10);
    t.same([...seen.keys()], ['pod1'], JSON.stringify(Object.fromEntries(seen)));
    const nat = await realPort.save();
    t.equal((nat.match(/^:KUBE-SEP-/gm) ?? []).length, 3, 'web: 1 endpoint chain left, sticky: 2');
  });

  await t.test('a second identical sync is fine', async (t) => {
    const r = await sync();
    t.equal(r.full, false);
    t.equal(r.stats.writtenServices, 0);
    t.equal((await hits(topo, 'client', 'http://10.96.0.10/', 3)).get('pod1'), 3);
  });

  await t.test('a full resync does not duplicate jump rules', async (t) => {
    const r = await sync(true);
    t.equal(r.full, true);
    const s = await realPort.save();
    t.equal((s.match(/^-A PREROUTING .*-j KUBE-SERVICES$/gm) ?? []).length, 1);
    t.equal((s.match(/^-A INPUT .*-j KUBE-EXTERNAL-SERVICES$/gm) ?? []).length, 1);
  });

  await t.test('a restarted proxy (new backend, rules already there) syncs fully and keeps serving', async (t) => {
    const again = new IptablesBackend({ family: 'IPv4', masqueradeBit: 14, masqueradeAll: false, clusterCIDR: topo.podCIDR, port, logger: quiet });
    const r = await again.sync({ full: false, state: tracker.state(), changed: new Set() });
    t.equal(r.full, true);
    t.equal((await hits(topo, 'client', 'http://10.96.0.10/', 3)).get('pod1'), 3);
  });

  await t.test('a malformed ruleset fails cleanly; previous rules keep working', async (t) => {
    const before = await realPort.save();
    await t.rejects(realPort.restore('*nat\n-A KUBE-SERVICES -j NO-SUCH-CHAIN\nCOMMIT\n'), { code: 'IPTABLES_RESTORE_FAILED' });
    tracker.updateEndpointSlice(endpoints('web', topo.podIPs));
    corruptNext = true;
    const err = await sync().catch((e: unknown) => e);
    t.ok(isKnodeError(err, 'IPTABLES_RESTORE_FAILED'), String(err));
    const after = await realPort.save();
    const strip = (s: string) => s.replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, '');
    t.equal(strip(after), strip(before), 'nothing changed in the kernel');
    t.same([...(await hits(topo, 'client', 'http://10.96.0.10/', 3)).keys()], ['pod1'], 'old rules still serve');
    const r = await sync();
    t.equal(r.full, true, 'the sync after a failure is full');
    const seen = await hits(topo, 'client', 'http://10.96.0.10/', 20);
    t.same([...seen.keys()].sort(), ['pod1', 'pod2'], 'the lost change (pod2 back) is applied by the full sync');
  });

  await t.test('a flushed nat table is noticed through the canary', async (t) => {
    await topo.exec('node', 'iptables', ['-w', '5', '-t', 'nat', '-F']);
    await topo.exec('node', 'iptables', ['-w', '5', '-t', 'nat', '-X']);
    const r = await sync();
    t.equal(r.full, true);
    const seen = await hits(topo, 'client', 'http://10.96.0.10/', 10);
    t.ok(seen.size >= 1 && [...seen.keys()].every((k) => k === 'pod1' || k === 'pod2'), JSON.stringify(Object.fromEntries(seen)));
  });

  await t.test('UDP: stale conntrack entries are cleared when an endpoint goes', async (t) => {
    const udpSlice = (ips: string[]): V1EndpointSlice => ({
      ...endpoints('dns', ips),
      ports: [{ name: 'dns', port: 5353, protocol: 'UDP' }],
    });
    tracker.updateService(service('dns', '10.96.0.20', { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }));
    tracker.updateEndpointSlice(udpSlice([topo.podIPs[0]]));
    await sync();
    const send = () =>
      topo.exec('client', process.execPath, [
        '-e',
        "const s=require('dgram').createSocket('udp4');s.bind(40053,()=>s.send('x',53,'10.96.0.20',()=>s.close()))",
      ]);
    const flowTo = async () => {
      const r = await topo.exec('node', 'conntrack', ['-L', '-p', 'udp', '--orig-dst', '10.96.0.20'], { allowFailure: true });
      return /src=(10\.244\.0\.\d+) dst=\S+ sport=5353/.exec(r.stdout)?.[1];
    };
    await send();
    t.equal(await flowTo(), topo.podIPs[0], 'flow DNATed to pod1');

    tracker.updateEndpointSlice(udpSlice([topo.podIPs[1]]));
    const taken = tracker.take();
    await backend.sync({ full: false, state: taken.state, changed: taken.changed });
    await send();
    t.equal(await flowTo(), topo.podIPs[0], 'without clearing, the same 5-tuple still goes to the gone endpoint');
    const cmds = conntrackCommands(taken, 'IPv4');
    t.same(cmds, [['-D', '-f', 'ipv4', '--orig-dst', '10.96.0.20', '--dst-nat', topo.podIPs[0], '-p', 'udp']]);
    await clearConntrack(cmds, { netnsPath: topo.nodePath });
    t.equal(await flowTo(), undefined, 'entry deleted');
    await send();
    t.equal(await flowTo(), topo.podIPs[1], 'the next datagram goes to the new endpoint');
    t.equal(await clearConntrack(cmds, { netnsPath: topo.nodePath }), 1, 'nothing left to delete is not an error');
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
    const be6 = new IptablesBackend({ family: 'IPv6', masqueradeBit: 14, masqueradeAll: false, clusterCIDR: 'fd00:244::/64', netnsPath: topo.nodePath, logger: quiet });
    const r = v6.take();
    const res = await be6.sync({ full: true, state: r.state, changed: r.changed });
    t.equal(res.applied, true);
    const dump = (await topo.exec('node', 'ip6tables-save', [])).stdout;
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

  await t.test('cleanup removes every chain and jump', async (t) => {
    await backend.cleanup();
    const s = await realPort.save();
    t.notMatch(s, /KUBE-/);
  });
});

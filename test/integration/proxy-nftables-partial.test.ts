/**
 * knode-proxy nftables partial syncs for real: after a sequence of partial syncs (chain blocks,
 * map blocks, batched stale chain deletion; see proxy/backends/nftables/render.ts) the kernel's
 * table equals what one full sync of the final state loads into a fresh namespace. Both
 * namespaces are throw-away knode-t-* ones; `nft list table ip kube-proxy` is compared after
 * normalising the order of chains, sets and set elements (rule order within a chain is kept).
 * Also checks with strace that a one-endpoint partial sync makes nft dump no chains.
 */
import t from 'tap';
import type { V1Service } from '@kubernetes/client-node';
import { ChangeTracker } from '../../proxy/changes.js';
import { NftablesBackend, STALE_DELETE_AGE_MS } from '../../proxy/backends/nftables/backend.js';
import { nftPort, type NftPort } from '../../proxy/backends/nftables/apply.js';
import { endpoints, service } from '../../proxy/testing/fixtures.js';
import { createNetns, deleteNetns, inNetns, type Netns } from '../../cni/testing/harness.js';
import { execFile } from '../../lib/exec.js';
import { createLogger } from '../../lib/log.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const quiet = createLogger({ component: 'test', write: () => undefined });

/** `nft list table` text → sorted blocks; set/map elements sorted, dynamic set contents dropped. */
export function normaliseTable(text: string): string[] {
  const blocks: string[] = [];
  let cur: string[] | undefined;
  for (const line of text.split('\n')) {
    if (/^\t(chain|set|map) /.test(line)) cur = [line.trim()];
    else if (line === '\t}' && cur) {
      let body = cur.join('\n');
      body = body.replace(/elements = \{([^}]*)\}/s, (_m, els: string) => {
        const list = els
          .split(',')
          .map((e) => e.replace(/\s+/g, ' ').trim())
          .filter((e) => e !== '')
          .sort();
        return `elements = { ${list.join(', ')} }`;
      });
      blocks.push(body);
      cur = undefined;
    } else if (cur) cur.push(line.trim());
  }
  return blocks.sort();
}

async function listTable(ns: Netns): Promise<string> {
  const r = await inNetns(ns, 'nft', ['list', 'table', 'ip', 'kube-proxy'], false);
  return r.stdout;
}

t.test('a sequence of partial syncs leaves the table a full sync would load', { timeout: 120_000 }, async (t) => {
  const made: Netns[] = [];
  t.teardown(async () => {
    for (const ns of made) await deleteNetns(ns);
  });
  const nsA = await createNetns();
  made.push(nsA);
  const nsB = await createNetns();
  made.push(nsB);

  const tracker = new ChangeTracker({ family: 'IPv4', nodeName: 'node1' });
  const np = (name: string, ip: string, nodePort: number, extra: Partial<NonNullable<V1Service['spec']>> = {}) =>
    service(name, ip, { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort }], ...extra });
  tracker.updateService(np('web', '10.96.0.10', 30080));
  tracker.updateService(service('sticky', '10.96.0.11', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }));
  tracker.updateService(service('empty', '10.96.0.12'));
  tracker.updateService(service('ext', '10.96.0.13', { externalIPs: ['192.0.2.13'] }));
  tracker.updateEndpointSlice(endpoints('web', ['10.64.1.1', '10.64.1.2', '10.64.1.3']));
  tracker.updateEndpointSlice(endpoints('sticky', ['10.64.2.1', '10.64.2.2']));
  tracker.updateEndpointSlice(endpoints('ext', ['10.64.3.1']));

  let clock = Date.now();
  const common = { family: 'IPv4' as const, masqueradeBit: 14, masqueradeAll: false, clusterCIDR: '10.64.0.0/16', logger: quiet, now: () => clock };
  const realA = nftPort({ family: 'IPv4', netnsPath: nsA.path });
  const scripts: string[] = [];
  const portA: NftPort = { ...realA, apply: (s) => (scripts.push(s), realA.apply(s)) };
  const a = new NftablesBackend({ ...common, port: portA });
  const syncA = async () => {
    const r = tracker.take();
    const res = await a.sync({ full: false, state: r.state, changed: r.changed });
    return res;
  };
  t.equal((await syncA()).full, true);

  const steps: [string, () => void][] = [
    ['one endpoint replaced', () => tracker.updateEndpointSlice(endpoints('web', ['10.64.1.1', '10.64.1.2', '10.64.1.4']))],
    ['one endpoint removed', () => tracker.updateEndpointSlice(endpoints('web', ['10.64.1.1', '10.64.1.4']))],
    ['sticky: endpoint replaced', () => tracker.updateEndpointSlice(endpoints('sticky', ['10.64.2.1', '10.64.2.3']))],
    ['all endpoints of ext gone', () => tracker.updateEndpointSlice(endpoints('ext', []))],
    ['empty gets endpoints', () => tracker.updateEndpointSlice(endpoints('empty', ['10.64.4.1']))],
    ['ext endpoints back', () => tracker.updateEndpointSlice(endpoints('ext', ['10.64.3.2']))],
    ['service added with affinity and a NodePort', () => tracker.updateService(np('new', '10.96.0.20', 30020, { sessionAffinity: 'ClientIP' }))],
    ['its endpoints', () => tracker.updateEndpointSlice(endpoints('new', ['10.64.5.1', '10.64.5.2']))],
    ['affinity off, NodePort changed', () => tracker.updateService(np('new', '10.96.0.20', 30021))],
    ['sticky deleted', () => tracker.deleteService('default', 'sticky')],
    ['a Local-policy NodePort service with externalIPs', () => {
      tracker.updateService(np('local', '10.96.0.30', 30030, { externalTrafficPolicy: 'Local', externalIPs: ['192.0.2.30'] }));
      tracker.updateEndpointSlice(endpoints('local', ['10.64.6.1']));
    }],
    ['a LoadBalancer with source ranges', () => {
      tracker.updateService({
        metadata: { namespace: 'default', name: 'lb' },
        spec: { type: 'LoadBalancer', clusterIP: '10.96.0.31', ports: [{ name: 'http', port: 80, nodePort: 30031 }], loadBalancerSourceRanges: ['203.0.113.0/25'] },
        status: { loadBalancer: { ingress: [{ ip: '198.51.100.31' }] } },
      });
      tracker.updateEndpointSlice(endpoints('lb', ['10.64.7.1', '10.64.7.2']));
    }],
    ['lb: one endpoint replaced', () => tracker.updateEndpointSlice(endpoints('lb', ['10.64.7.1', '10.64.7.3']))],
    ['web: port renamed', () => tracker.updateService(service('web', '10.96.0.10', { type: 'NodePort', ports: [{ name: 'http2', port: 80, nodePort: 30080, targetPort: 8080 }] }))],
  ];
  for (const [what, step] of steps) {
    step();
    clock += 1500;
    const r = await syncA();
    t.equal(r.full, false, `${what}: partial`);
  }
  // The one-endpoint partial wrote no command that makes nft fetch its cache.
  t.notMatch(scripts[1]!, /^(add rule|add element|delete (element|chain|set)) /m, 'one-endpoint partial: chain blocks only');

  // Stale chains left flushed by the batching are deleted once they are old enough.
  clock += STALE_DELETE_AGE_MS;
  const last = await syncA();
  t.equal(last.stats.staleChains, 0, 'no stale chains left');

  const realB = nftPort({ family: 'IPv4', netnsPath: nsB.path });
  const b = new NftablesBackend({ ...common, port: realB });
  await b.sync({ full: true, state: tracker.state(), changed: new Set() });

  const tableA = normaliseTable(await listTable(nsA));
  const tableB = normaliseTable(await listTable(nsB));
  t.ok(tableA.length > 20, `${tableA.length} chains and sets`);
  t.same(tableA, tableB, 'partial syncs end where one full sync starts');

  await t.test('a one-endpoint partial sync makes nft dump no chains (strace)', async (t) => {
    tracker.updateEndpointSlice(endpoints('web', ['10.64.1.1', '10.64.1.5']));
    const r = tracker.take();
    let traced = '';
    const tracing = new NftablesBackend({
      ...common,
      port: {
        ...realA,
        apply: async (script) => {
          const out = await execFile('nsenter', [`--net=${nsA.path}`, 'strace', '-f', '-e', 'trace=sendto', 'nft', '-f', '-'], { input: script });
          traced = out.stderr;
        },
      },
    });
    // A fresh backend's first sync is full; give it the table's view with one full sync first.
    await tracing.sync({ full: true, state: r.state, changed: new Set() });
    tracker.updateEndpointSlice(endpoints('web', ['10.64.1.1', '10.64.1.6']));
    const r2 = tracker.take();
    const res = await tracing.sync({ full: false, state: r2.state, changed: r2.changed });
    t.equal(res.full, false);
    t.match(traced, /NFT_MSG_GETGEN/, 'strace decoded nft\'s netlink messages');
    t.notMatch(traced, /NFT_MSG_GETCHAIN|NFT_MSG_GETSET/, 'no chain or set dump');
  });
});

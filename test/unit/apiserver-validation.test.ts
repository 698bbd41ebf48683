import t from 'tap';
import { metadataErrors, nameErrors, podSpecErrors, serviceSpecErrors } from '../../lab/apiserver/validation.js';
import { ClusterIPAllocator, PortAllocator } from '../../lab/apiserver/allocators.js';
import { parsePath, verbOf } from '../../lab/apiserver/routes.js';
import { humanDuration, toTable } from '../../lab/apiserver/tables.js';
import { findResource } from '../../lab/apiserver/resources.js';
import { parseTokenFile, authorize } from '../../lab/apiserver/auth.js';

t.test('names per rule', async (t) => {
  t.same(nameErrors('dns1123-subdomain', 'a.b-c'), []);
  t.equal(nameErrors('dns1123-subdomain', 'A').length, 1);
  t.equal(nameErrors('dns1123-label', 'a.b').length, 1);
  t.same(nameErrors('dns1123-label', '0abc'), []);
  t.equal(nameErrors('dns1035-label', '0abc').length, 1, 'services must start with a letter');
  t.equal(nameErrors('dns1123-label', 'a'.repeat(64)).length, 1);
  t.match(metadataErrors({ metadata: {} }, 'dns1123-subdomain'), [{ reason: 'FieldValueRequired', field: 'metadata.name' }]);
  t.match(metadataErrors({ metadata: { name: 'ok', labels: { 'bad key': 'x', good: 'no spaces' } } }, 'dns1123-subdomain'), [
    { field: 'metadata.labels' },
    { field: 'metadata.labels' },
  ]);
});

t.test('pod and service specs', async (t) => {
  t.same(podSpecErrors({ containers: [{ name: 'a', image: 'i' }] }), []);
  t.match(podSpecErrors({ containers: [] }), [{ field: 'spec.containers' }]);
  t.match(podSpecErrors({ containers: [{ name: 'a' }, { name: 'a', image: 'i' }] }), [{ field: 'spec.containers[0].image' }, { field: 'spec.containers[1].name' }]);
  const range = { min: 30000, max: 32767 };
  t.same(serviceSpecErrors({ ports: [{ port: 80 }] }, range), []);
  t.match(serviceSpecErrors({ ports: [{ port: 0 }] }, range), [{ field: 'spec.ports[0].port' }]);
  t.match(serviceSpecErrors({ ports: [{ port: 80, name: 'a' }, { port: 81 }] }, range), [{ field: 'spec.ports[1].name' }]);
  t.match(serviceSpecErrors({ type: 'NodePort', ports: [{ port: 80, nodePort: 80 }] }, range), [{ field: 'spec.ports[0].nodePort' }]);
  t.match(serviceSpecErrors({ ports: [{ port: 80, protocol: 'ICMP' }] }, range), [{ field: 'spec.ports[0].protocol' }]);
  t.match(serviceSpecErrors({ type: 'Weird', ports: [{ port: 1 }] }, range), [{ field: 'spec.type' }]);
});

t.test('allocators', async (t) => {
  const ips = new ClusterIPAllocator('10.96.0.0/29');
  t.equal(ips.first(), '10.96.0.1');
  t.ok(ips.claim('10.96.0.1'));
  t.notOk(ips.claim('10.96.0.1'), 'taken');
  t.notOk(ips.claim('10.97.0.1'), 'outside');
  const got = [ips.allocate(), ips.allocate(), ips.allocate(), ips.allocate(), ips.allocate()];
  t.same(got.sort(), ['10.96.0.2', '10.96.0.3', '10.96.0.4', '10.96.0.5', '10.96.0.6']);
  t.throws(() => ips.allocate(), { code: 'RANGE_FULL' });
  ips.release('10.96.0.4');
  t.equal(ips.allocate(), '10.96.0.4');
  const ports = new PortAllocator(30000, 30001);
  t.equal(ports.allocate(), 30000);
  t.ok(ports.claim(30001));
  t.throws(() => ports.allocate(), { code: 'RANGE_FULL' });
  ports.release(30000);
  t.equal(ports.allocate(), 30000);
});

t.test('paths and verbs', async (t) => {
  t.match(parsePath('/api/v1/namespaces/ns1/pods/p/status'), { kind: 'resource', path: { group: '', version: 'v1', namespace: 'ns1', resource: 'pods', name: 'p', subresource: 'status' } });
  t.match(parsePath('/api/v1/namespaces/ns1'), { kind: 'resource', path: { resource: 'namespaces', name: 'ns1' } });
  t.match(parsePath('/api/v1/namespaces/ns1/finalize'), { kind: 'resource', path: { resource: 'namespaces', name: 'ns1', subresource: 'finalize' } });
  t.match(parsePath('/apis/apps/v1/namespaces/d/deployments/x/scale'), { kind: 'resource', path: { group: 'apps', resource: 'deployments', subresource: 'scale' } });
  t.match(parsePath('/api/v1/watch/pods'), { kind: 'resource', path: { resource: 'pods', watchPrefix: true } });
  t.match(parsePath('/apis/apps'), { kind: 'discovery', group: 'apps' });
  t.match(parsePath('/healthz'), { kind: 'other' });
  const p = { group: '', version: 'v1', resource: 'pods', watchPrefix: false };
  t.equal(verbOf('GET', p, false), 'list');
  t.equal(verbOf('GET', p, true), 'watch');
  t.equal(verbOf('GET', { ...p, name: 'x' }, false), 'get');
  t.equal(verbOf('DELETE', p, false), 'deletecollection');
  t.equal(verbOf('OPTIONS', p, false), undefined);
});

t.test('tables', async (t) => {
  t.equal(humanDuration(5_000), '5s');
  t.equal(humanDuration(185_000), '3m5s');
  t.equal(humanDuration(3 * 3600_000 + 60_000), '3h1m');
  t.equal(humanDuration(3 * 86400_000), '3d');
  const pods = findResource('', 'v1', 'pods')!;
  const table = toTable(pods, [
    {
      metadata: { name: 'p', creationTimestamp: new Date().toISOString() },
      spec: { containers: [{ name: 'a' }], nodeName: 'n1' },
      status: { phase: 'Running', podIP: '10.244.1.5', containerStatuses: [{ name: 'a', ready: true, restartCount: 2, state: { running: {} } }] },
    },
  ], {}) as { columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] };
  t.same(table.columnDefinitions.map((c) => c.name).slice(0, 7), ['Name', 'Ready', 'Status', 'Restarts', 'Age', 'IP', 'Node']);
  t.match(table.rows[0]!.cells, ['p', '1/1', 'Running', '2', /s$/, '10.244.1.5', 'n1']);
  const withSidecar = toTable(pods, [
    {
      metadata: { name: 'q', creationTimestamp: new Date().toISOString() },
      spec: { initContainers: [{ name: 'side', restartPolicy: 'Always' }, { name: 'init' }], containers: [{ name: 'a' }], nodeName: 'n1' },
      status: {
        phase: 'Running',
        initContainerStatuses: [
          { name: 'side', ready: true, started: true, restartCount: 1, state: { running: {} } },
          { name: 'init', ready: false, restartCount: 0, state: { terminated: { exitCode: 0, reason: 'Completed' } } },
        ],
        containerStatuses: [{ name: 'a', ready: true, restartCount: 0, state: { running: {} } }],
      },
    },
  ], {}) as { rows: { cells: unknown[] }[] };
  t.match(withSidecar.rows[0]!.cells, ['q', '2/2', 'Running', '1'], 'a sidecar counts as a container of the pod (kubectl printer)');
});

t.test('token file and authorization rules', async (t) => {
  const tokens = parseTokenFile('# comment\nabc,kube-proxy,u1,"system:node-proxier,extra"\nxyz,bob\n');
  t.same(tokens.get('abc'), { name: 'kube-proxy', uid: 'u1', groups: ['system:node-proxier', 'extra'] });
  t.same(tokens.get('xyz'), { name: 'bob', groups: [] });
  const node = { name: 'system:node:n1', groups: ['system:nodes', 'system:authenticated'] };
  const admin = { name: 'admin', groups: ['system:masters'] };
  const bob = { name: 'bob', groups: ['system:authenticated'] };
  const res = (verb: string, resource: string, extra: Record<string, string> = {}) => ({ verb, resourceRequest: true, group: '', resource, ...extra });
  t.ok(authorize(admin, res('delete', 'nodes')).allowed);
  t.ok(authorize(node, res('watch', 'pods')).allowed);
  t.ok(authorize(node, res('patch', 'nodes', { name: 'n1', subresource: 'status' })).allowed);
  t.notOk(authorize(node, res('patch', 'nodes', { name: 'n2', subresource: 'status' })).allowed, 'not another node');
  t.ok(authorize(node, res('update', 'leases', { namespace: 'kube-node-lease', name: 'n1' })).allowed);
  t.notOk(authorize(node, res('update', 'leases', { namespace: 'kube-node-lease', name: 'n2' })).allowed);
  t.ok(authorize(node, res('patch', 'pods', { subresource: 'status', name: 'x', namespace: 'd' })).allowed);
  t.notOk(authorize(node, res('create', 'services')).allowed);
  t.ok(authorize(tokens.get('abc')!, res('list', 'endpointslices')).allowed);
  t.notOk(authorize(bob, res('list', 'pods')).allowed);
  t.ok(authorize(bob, { verb: 'get', resourceRequest: false, path: '/api/v1' }).allowed, 'discovery for every authenticated user');
});

import t from 'tap';
import { renderEndpointGroups, renderEndpointSubsets, resolveTargetPort } from '../../lab/controllers/endpoints-render.js';
import { renderSlice } from '../../lab/controllers/endpointslice.js';
import type { Node, Pod, Service } from '../../lab/controllers/types.js';

const svc: Service = {
  metadata: { name: 'web', namespace: 'ns', uid: 'svc-uid', labels: { tier: 'front' } },
  spec: {
    selector: { app: 'web' },
    ports: [
      { name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' },
      { name: 'raw', port: 81, targetPort: 9000, protocol: 'TCP' },
    ],
  },
};

function pod(name: string, opts: { ip?: string; ready?: boolean; terminating?: boolean; httpPort?: number; node?: string; phase?: string } = {}): Pod {
  return {
    metadata: { name, namespace: 'ns', uid: `${name}-uid`, labels: { app: 'web' }, ...(opts.terminating ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}) },
    spec: {
      nodeName: opts.node ?? 'n1',
      containers: [{ name: 'c', ports: opts.httpPort === undefined ? [] : [{ name: 'http', containerPort: opts.httpPort, protocol: 'TCP' }] }],
    },
    status: {
      phase: opts.phase ?? 'Running',
      podIP: opts.ip,
      conditions: [{ type: 'Ready', status: opts.ready === false ? 'False' : 'True' }],
    },
  };
}

const nodes = new Map<string, Node>([['n1', { metadata: { name: 'n1', labels: { 'topology.kubernetes.io/zone': 'z1' } } }]]);

t.test('targetPort resolution', async (t) => {
  const p = pod('a', { httpPort: 8080 });
  t.equal(resolveTargetPort({ port: 80, targetPort: 'http' }, p), 8080, 'named');
  t.equal(resolveTargetPort({ port: 80, targetPort: 'http', protocol: 'UDP' }, p), undefined, 'protocol must match');
  t.equal(resolveTargetPort({ port: 80, targetPort: 8081 }, p), 8081, 'number');
  t.equal(resolveTargetPort({ port: 80 }, p), 80, 'unset → port');
  t.equal(resolveTargetPort({ port: 80, targetPort: 'nope' }, p), undefined);
});

t.test('slices: conditions, nodeName, zone, targetRef; pods without IP or finished are left out', async (t) => {
  const pods = [
    pod('a', { ip: '10.0.0.1', httpPort: 8080 }),
    pod('b', { ip: '10.0.0.2', httpPort: 8080, ready: false }),
    pod('c', { ip: '10.0.0.3', httpPort: 8080, terminating: true }),
    pod('d', { httpPort: 8080 }),
    pod('e', { ip: '10.0.0.5', httpPort: 8080, phase: 'Succeeded' }),
  ];
  const groups = renderEndpointGroups(svc, pods, nodes);
  t.equal(groups.length, 1);
  t.same(groups[0]!.ports, [
    { name: 'http', port: 8080, protocol: 'TCP' },
    { name: 'raw', port: 9000, protocol: 'TCP' },
  ]);
  t.same(groups[0]!.endpoints, [
    {
      addresses: ['10.0.0.1'],
      conditions: { ready: true, serving: true, terminating: false },
      targetRef: { kind: 'Pod', namespace: 'ns', name: 'a', uid: 'a-uid' },
      nodeName: 'n1',
      zone: 'z1',
    },
    {
      addresses: ['10.0.0.2'],
      conditions: { ready: false, serving: false, terminating: false },
      targetRef: { kind: 'Pod', namespace: 'ns', name: 'b', uid: 'b-uid' },
      nodeName: 'n1',
      zone: 'z1',
    },
    {
      addresses: ['10.0.0.3'],
      conditions: { ready: false, serving: true, terminating: true },
      targetRef: { kind: 'Pod', namespace: 'ns', name: 'c', uid: 'c-uid' },
      nodeName: 'n1',
      zone: 'z1',
    },
  ]);
  const slice = renderSlice(svc, groups[0]!);
  t.equal(slice.metadata.generateName, 'web-');
  t.equal(slice.addressType, 'IPv4');
  t.same(slice.metadata.labels, { tier: 'front', 'kubernetes.io/service-name': 'web', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' });
  t.same(slice.metadata.ownerReferences, [{ apiVersion: 'v1', kind: 'Service', name: 'web', uid: 'svc-uid', controller: true, blockOwnerDeletion: true }]);
});

t.test('pods whose named port resolves differently go to different slices', async (t) => {
  const groups = renderEndpointGroups(svc, [pod('a', { ip: '10.0.0.1', httpPort: 8080 }), pod('b', { ip: '10.0.0.2', httpPort: 8081 }), pod('c', { ip: '10.0.0.3' })], nodes);
  t.equal(groups.length, 3);
  const c = groups.find((g) => g.endpoints[0]!.targetRef!.name === 'c')!;
  t.same(c.ports, [{ name: 'raw', port: 9000, protocol: 'TCP' }], 'an unresolvable named port is left out for that pod');
});

t.test('publishNotReadyAddresses', async (t) => {
  const s: Service = { ...svc, spec: { ...svc.spec, publishNotReadyAddresses: true } };
  const groups = renderEndpointGroups(s, [pod('b', { ip: '10.0.0.2', httpPort: 8080, ready: false })], nodes);
  t.same(groups[0]!.endpoints[0]!.conditions, { ready: true, serving: true, terminating: false });
});

t.test('v1 Endpoints: ready, not ready, terminating left out', async (t) => {
  const subsets = renderEndpointSubsets(svc, [
    pod('b', { ip: '10.0.0.2', httpPort: 8080, ready: false }),
    pod('a', { ip: '10.0.0.1', httpPort: 8080 }),
    pod('c', { ip: '10.0.0.3', httpPort: 8080, terminating: true }),
  ]);
  t.same(subsets, [
    {
      ports: [
        { name: 'http', port: 8080, protocol: 'TCP' },
        { name: 'raw', port: 9000, protocol: 'TCP' },
      ],
      addresses: [{ ip: '10.0.0.1', nodeName: 'n1', targetRef: { kind: 'Pod', namespace: 'ns', name: 'a', uid: 'a-uid' } }],
      notReadyAddresses: [{ ip: '10.0.0.2', nodeName: 'n1', targetRef: { kind: 'Pod', namespace: 'ns', name: 'b', uid: 'b-uid' } }],
    },
  ]);
  t.same(renderEndpointSubsets(svc, []), []);
});

/** The pod status patch: conditions others own survive, fields that went away are cleared, foreign fields untouched. */
import t from 'tap';
import type { V1PodStatus } from '@kubernetes/client-node';
import { mergePodStatus, podStatusPatch } from '../../agent/pods/status-patch.js';

const T = new Date('2026-11-23T10:00:00Z');
const ours: V1PodStatus = {
  phase: 'Running',
  conditions: [
    { type: 'PodScheduled', status: 'True', lastTransitionTime: T },
    { type: 'Ready', status: 'True', lastTransitionTime: T },
  ],
  hostIP: '10.0.0.1',
  containerStatuses: [],
};

t.test('conditions the kubelet does not own are kept, after its own; its own come from the agent', async (t) => {
  const api: V1PodStatus = {
    phase: 'Pending',
    conditions: [
      { type: 'Ready', status: 'False', lastTransitionTime: T },
      { type: 'example.com/gate', status: 'True', lastTransitionTime: T },
      { type: 'DisruptionTarget', status: 'True', lastTransitionTime: T },
    ],
  };
  const merged = mergePodStatus(api, ours);
  t.same(merged.conditions?.map((c) => `${c.type}=${c.status}`), ['PodScheduled=True', 'Ready=True', 'example.com/gate=True', 'DisruptionTarget=True']);
  t.equal(mergePodStatus(undefined, ours), ours, 'nothing to carry over: the agent status as is');
});

t.test('top-level fields the apiserver has and the agent no longer has are set to null', async (t) => {
  const api: V1PodStatus = { phase: 'Pending', reason: 'Evicted', message: 'old', podIP: '10.1.0.5', podIPs: [{ ip: '10.1.0.5' }], hostIP: '10.0.0.1' };
  const patch = podStatusPatch('u1', api, ours);
  t.same(patch.metadata, { uid: 'u1' });
  t.equal(patch.status['reason'], null);
  t.equal(patch.status['message'], null);
  t.equal(patch.status['podIP'], null);
  t.equal(patch.status['podIPs'], null);
  t.equal(patch.status['phase'], 'Running');
  t.equal(patch.status['hostIP'], '10.0.0.1');
});

t.test('fields other components own are neither written nor cleared', async (t) => {
  const api: V1PodStatus = { phase: 'Pending', nominatedNodeName: 'n2' };
  const patch = podStatusPatch('u1', api, { ...ours, nominatedNodeName: 'x' });
  t.notOk('nominatedNodeName' in patch.status);
});

t.test('no apiserver status: the patch is the agent status', async (t) => {
  t.same(podStatusPatch('u1', undefined, ours).status, ours);
});

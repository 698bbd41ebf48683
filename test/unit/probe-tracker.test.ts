/** The probe worker's decisions (upstream prober/worker.go doProbe): thresholds, startup gating, holds, initial results. */
import t from 'tap';
import type { V1Container, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { resolveProbe, type ProbeType } from '../../agent/pods/probes/spec.js';
import { initialResult, ProbeResults, ProbeTracker, type ProbeView } from '../../agent/pods/probes/tracker.js';
import { probeView, runtimeId } from '../../agent/pods/probes/manager.js';

function tracker(type: ProbeType, extra: Record<string, number> = {}): { tr: ProbeTracker; results: ProbeResults; changes: () => number } {
  const c: V1Container = { name: 'app', [`${type}Probe`]: { exec: { command: ['true'] }, ...extra } };
  const results = new ProbeResults();
  let n = 0;
  const tr = new ProbeTracker(resolveProbe(c, type)!, results, () => n++);
  return { tr, results, changes: () => n };
}

function view(over: Partial<NonNullable<ProbeView['container']>> = {}, pod: Partial<ProbeView> = {}): ProbeView {
  return { phase: 'Running', restartPolicy: 'Always', deleting: false, nowMs: 100_000, container: { id: 'c1', running: true, terminated: false, startedAtMs: 0, started: true, ...over }, ...pod };
}

const fail = { result: 'failure' as const, output: 'no' };
const ok = { result: 'success' as const, output: '' };

t.test('initial results: readiness failure, liveness success, startup unknown', async (t) => {
  t.equal(initialResult('readiness'), 'failure');
  t.equal(initialResult('liveness'), 'success');
  t.equal(initialResult('startup'), 'unknown');
  const { tr, results } = tracker('readiness');
  t.same(tr.tick(view()), { action: 'probe', containerId: 'c1' });
  t.equal(results.get('c1'), 'failure', 'not ready until the first success');
});

t.test('liveness: failureThreshold consecutive failures publish failure, then hold until a new container', async (t) => {
  const { tr, results, changes } = tracker('liveness');
  tr.tick(view());
  t.equal(results.get('c1'), 'success');
  tr.record('c1', fail);
  tr.record('c1', fail);
  t.equal(results.get('c1'), 'success', 'two failures: below the threshold of 3');
  tr.record('c1', ok);
  tr.record('c1', fail);
  tr.record('c1', fail);
  t.equal(results.get('c1'), 'success', 'a success in between resets the run');
  tr.record('c1', fail);
  t.equal(results.get('c1'), 'failure', 'third consecutive failure');
  t.same(tr.tick(view()), { action: 'wait', why: 'on hold until the container is restarted' });
  t.same(tr.tick(view({ id: 'c2' })), { action: 'probe', containerId: 'c2' }, 'a new container resumes probing');
  t.equal(results.get('c1'), undefined, 'the old container result is removed');
  t.equal(results.get('c2'), 'success');
  t.ok(changes() >= 3, 'changes reported');
});

t.test('errors are not counted; results of another container id are ignored', async (t) => {
  const { tr, results } = tracker('liveness', { failureThreshold: 1 });
  tr.tick(view());
  tr.record('c1', { result: 'error', output: 'port x not found' });
  t.equal(results.get('c1'), 'success');
  tr.record('old', fail);
  t.equal(results.get('c1'), 'success');
  tr.record('c1', fail);
  t.equal(results.get('c1'), 'failure');
});

t.test('readiness: successThreshold, flips both ways, never holds', async (t) => {
  const { tr, results } = tracker('readiness', { successThreshold: 2, failureThreshold: 1 });
  tr.tick(view());
  tr.record('c1', ok);
  t.equal(results.get('c1'), 'failure', 'one success of two');
  tr.record('c1', ok);
  t.equal(results.get('c1'), 'success', 'ready');
  tr.record('c1', fail);
  t.equal(results.get('c1'), 'failure', 'unready after one failure');
  t.same(tr.tick(view()), { action: 'probe', containerId: 'c1' }, 'readiness keeps probing');
  tr.record('c1', ok);
  tr.record('c1', ok);
  t.equal(results.get('c1'), 'success');
});

t.test('startup gates liveness and readiness; startup stops once started', async (t) => {
  const live = tracker('liveness');
  t.same(live.tr.tick(view({ started: false })), { action: 'wait', why: 'not started' });
  const ready = tracker('readiness');
  t.same(ready.tr.tick(view({ started: false })), { action: 'wait', why: 'not started' });
  const st = tracker('startup', { failureThreshold: 2 });
  t.same(st.tr.tick(view({ started: false })), { action: 'probe', containerId: 'c1' });
  t.equal(st.results.get('c1'), 'unknown');
  st.tr.record('c1', ok);
  t.equal(st.results.get('c1'), 'success', 'started');
  t.same(st.tr.tick(view({ started: true })), { action: 'wait', why: 'started' });
  t.same(live.tr.tick(view({ started: true })), { action: 'probe', containerId: 'c1' });
  const st2 = tracker('startup', { failureThreshold: 2 });
  st2.tr.tick(view({ started: false }));
  st2.tr.record('c1', fail);
  st2.tr.record('c1', fail);
  t.equal(st2.results.get('c1'), 'failure', 'startup failure: the container will be killed');
  t.equal(st2.tr.tick(view({ started: false })).action, 'wait', 'held');
});

t.test('initial delay, not running, terminating, done pods', async (t) => {
  const { tr, results } = tracker('liveness', { initialDelaySeconds: 5 });
  t.same(tr.tick(view({ startedAtMs: 96_000 })), { action: 'wait', why: 'initial delay' });
  t.same(tr.tick(view({ startedAtMs: 95_000 })), { action: 'probe', containerId: 'c1' });
  t.same(tr.tick(view({}, { deleting: true })), { action: 'wait', why: 'pod terminating' });
  t.same(tr.tick(view({ running: false, terminated: true })), { action: 'wait', why: 'container not running' });
  t.equal(results.get('c1'), 'failure', 'a stopped container reads as failed');
  t.same(tr.tick(view({ running: false, terminated: true }, { restartPolicy: 'Never' })), { action: 'stop' }, 'Never: it will not come back');
  t.same(tr.tick(view({}, { phase: 'Succeeded' })), { action: 'stop' });
  t.same(tr.tick({ ...view(), container: undefined }), { action: 'wait', why: 'container not created' });
  const r = tracker('readiness');
  r.tr.tick(view());
  t.equal(r.tr.tick(view({}, { deleting: true })).action, 'probe', 'readiness keeps probing while the pod terminates');
  r.tr.forget();
  t.equal(r.results.get('c1'), undefined, 'forget removes the result');
});

t.test('probeView reads the container from the pod status', async (t) => {
  const pod: V1Pod = { metadata: { name: 'p' }, spec: { restartPolicy: 'OnFailure', containers: [{ name: 'app' }] } };
  const status: V1PodStatus = {
    phase: 'Running',
    containerStatuses: [{ name: 'app', image: 'i', imageID: '', ready: false, restartCount: 0, started: true, containerID: 'containerd://abc', state: { running: { startedAt: new Date(5000) } } }],
  };
  t.same(probeView(pod, status, 'app', 9000), { phase: 'Running', restartPolicy: 'OnFailure', deleting: false, container: { id: 'abc', running: true, terminated: false, startedAtMs: 5000, started: true }, nowMs: 9000 });
  t.equal(probeView(pod, status, 'other', 0).container, undefined);
  t.equal(probeView(pod, undefined, 'app', 0).phase, '');
  t.equal(runtimeId('docker://x'), 'x');
});

/**
 * PodProbes orchestration with a fake ExecSync (pure logic around real timers):
 * loops start with the container, results feed planInputs/readiness/started,
 * onChange fires, events are worded as upstream, stop() ends the loops.
 */
import t from 'tap';
import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { PodProbes } from '../../agent/pods/probes/manager.js';
import { directDialer } from '../../agent/pods/probes/dial.js';
import { createLogger } from '../../lib/log.js';

function setUp(exitCodes: Map<string, number>): { probes: PodProbes; events: string[]; changes: () => number; execs: () => number } {
  const events: string[] = [];
  let changes = 0;
  let execs = 0;
  const probes = new PodProbes(pod, {
    runtime: {
      execSync: async (_id, cmd) => {
        execs++;
        return { stdout: Buffer.from(''), stderr: Buffer.from(`${cmd.join(' ')} said no`), exitCode: exitCodes.get(cmd[0]!) ?? 0 };
      },
    },
    dial: directDialer,
    userAgent: 'kube-probe/1.32',
    event: (type, reason, message, container) => events.push(`${type} ${reason} ${container}: ${message}`),
    onChange: () => changes++,
    now: Date.now,
    logger: createLogger({ component: 'test', level: 'error' }),
  });
  t.teardown(() => probes.stop());
  return { probes, events, changes: () => changes, execs: () => execs };
}

const pod: V1Pod = {
  metadata: { name: 'p', uid: 'u1' },
  spec: {
    containers: [
      {
        name: 'app',
        livenessProbe: { exec: { command: ['live'] }, periodSeconds: 1, failureThreshold: 1 },
        readinessProbe: { exec: { command: ['ready'] }, periodSeconds: 1 },
      },
    ],
  },
};

function status(id: string, started = true): V1PodStatus {
  return {
    phase: 'Running',
    podIP: '10.0.0.5',
    containerStatuses: [{ name: 'app', image: 'i', imageID: '', ready: false, restartCount: 0, started, containerID: `containerd://${id}`, state: { running: { startedAt: new Date(0) } } }],
  };
}

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('readiness success and liveness failure reach the pod worker', async (t) => {
  const { probes, events, changes } = setUp(new Map([['live', 1]]));
  t.same(probes.readiness(), new Map(), 'nothing before the first status');
  probes.update(pod, status('c1'));
  await until('ready', () => probes.readiness().get('c1') === true);
  await until('liveness failed', () => probes.planInputs().livenessFailed?.has('c1') === true);
  t.ok(changes() >= 2, 'onChange fired');
  t.ok(events.includes('Warning Unhealthy app: Liveness probe failed: live said no'), events.join('\n'));
  t.same(probes.planInputs().startupFailed, new Set());
  // The worker restarts it: a new container id resets the results.
  probes.update(pod, status('c2'));
  await until('new container probed', () => probes.readiness().get('c2') === true);
  t.equal(probes.readiness().has('c1'), false, 'old container forgotten');
  await probes.stop();
  t.same(probes.readiness(), new Map(), 'results gone after stop');
});

t.test('startup gating: started stays false until the startup probe passes; liveness waits', async (t) => {
  const codes = new Map([['start', 1], ['live', 1]]);
  const { probes, events, execs } = setUp(codes);
  const withStartup: V1Pod = { ...pod, spec: { containers: [{ ...pod.spec!.containers[0]!, startupProbe: { exec: { command: ['start'] }, periodSeconds: 1, failureThreshold: 100 } }] } };
  probes.update(withStartup, status('c1', false));
  await until('two startup runs', () => events.filter((e) => e.includes('Startup probe failed')).length >= 2);
  t.equal(probes.started().get('c1'), false);
  t.notOk(events.some((e) => e.includes('Liveness')), 'no liveness run while not started');
  t.ok(execs() >= 2);
  codes.set('start', 0);
  await until('started', () => probes.started().get('c1') === true);
  probes.update(withStartup, status('c1', true));
  await until('liveness runs once started', () => probes.planInputs().livenessFailed?.has('c1') === true);
});

t.test('an unusable probe is reported once and skipped', async (t) => {
  const { probes, events } = setUp(new Map());
  const bad: V1Pod = { ...pod, spec: { containers: [{ name: 'app', livenessProbe: {} }] } };
  probes.update(bad, status('c1'));
  probes.update(bad, status('c1'));
  t.same(events, ['Warning Unhealthy app: Liveness probe errored: probe has no handler (exec, httpGet, tcpSocket or grpc)']);
});

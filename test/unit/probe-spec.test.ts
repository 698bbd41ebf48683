/** Probes, the pure part: defaults, handlers, named ports, the httpGet request, HTTP status verdicts, kill grace periods. */
import t from 'tap';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { isKnodeError } from '../../lib/errors.js';
import {
  classifyHttpStatus,
  followRedirect,
  httpProbeRequest,
  probeKillGracePeriod,
  probeTypeName,
  probeUserAgent,
  resolveProbe,
  resolveProbePort,
} from '../../agent/pods/probes/spec.js';
import { probeVerdict } from '../../agent/pods/probes/prober.js';

const web: V1Container = { name: 'web', image: 'x', ports: [{ name: 'http', containerPort: 8080 }, { name: 'metrics', containerPort: 9090 }] };

t.test('upstream defaults: period 10, timeout 1, success 1, failure 3, delay 0', async (t) => {
  const p = resolveProbe({ ...web, livenessProbe: { exec: { command: ['true'] } } }, 'liveness')!;
  t.match(p, { type: 'liveness', handler: { kind: 'exec', command: ['true'] }, initialDelaySeconds: 0, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3, terminationGracePeriodSeconds: undefined });
  t.equal(resolveProbe(web, 'readiness'), undefined, 'no probe: undefined');
  const r = resolveProbe({ ...web, readinessProbe: { tcpSocket: { port: 'http' }, periodSeconds: 2, timeoutSeconds: 3, successThreshold: 2, failureThreshold: 5, initialDelaySeconds: 4 } }, 'readiness')!;
  t.match(r, { periodSeconds: 2, timeoutSeconds: 3, successThreshold: 2, failureThreshold: 5, initialDelaySeconds: 4 });
  const s = resolveProbe({ ...web, startupProbe: { grpc: { port: 9000 }, successThreshold: 3, periodSeconds: 0, terminationGracePeriodSeconds: 7 } }, 'startup')!;
  t.equal(s.successThreshold, 1, 'startup (and liveness) count one success');
  t.equal(s.periodSeconds, 10, 'a zero period takes the default');
  t.equal(s.terminationGracePeriodSeconds, 7);
  t.match(s.handler, { kind: 'grpc', port: 9000, service: '' });
});

t.test('handlers: exactly one, known schemes', async (t) => {
  t.throws(() => resolveProbe({ ...web, livenessProbe: {} }, 'liveness'), /no handler/);
  t.throws(() => resolveProbe({ ...web, livenessProbe: { exec: { command: ['a'] }, tcpSocket: { port: 1 } } }, 'liveness'), /more than one/);
  try {
    resolveProbe({ ...web, livenessProbe: { httpGet: { port: 80, scheme: 'FTP' } } }, 'liveness');
    t.fail('FTP accepted');
  } catch (err) {
    t.ok(isKnodeError(err, 'INVALID_PROBE'), 'INVALID_PROBE');
  }
  t.match(resolveProbe({ ...web, livenessProbe: { httpGet: { port: 'http', scheme: 'HTTPS', path: '/x' } } }, 'liveness')!.handler, { kind: 'httpGet', scheme: 'https', path: '/x', host: undefined });
  t.equal(probeTypeName('liveness'), 'Liveness');
});

t.test('named ports resolve from the container ports; numbers as strings; range checked', async (t) => {
  t.equal(resolveProbePort('http', web), 8080);
  t.equal(resolveProbePort('metrics', web), 9090);
  t.equal(resolveProbePort(81, web), 81);
  t.equal(resolveProbePort('8081', web), 8081, 'an int stored as a string');
  t.throws(() => resolveProbePort('admin', web), /port admin not found/);
  t.throws(() => resolveProbePort(0, web), /invalid port number: 0/);
  t.throws(() => resolveProbePort(70000, web), /invalid port number: 70000/);
});

t.test('httpGet request: URL, default and overriding headers, Host', async (t) => {
  const h = { kind: 'httpGet' as const, host: undefined, port: 8080, path: '/healthz?full=1', scheme: 'http' as const, headers: [] };
  const r = httpProbeRequest(h, '10.0.0.5', 8080, 'kube-probe/1.32');
  t.equal(r.url.href, 'http://10.0.0.5:8080/healthz?full=1');
  t.same(r.headers, [['User-Agent', 'kube-probe/1.32'], ['Accept', '*/*']]);
  t.equal(httpProbeRequest({ ...h, path: '' }, 'fd00::5', 8081, 'ua').url.href, 'http://[fd00::5]:8081/', 'IPv6 in brackets, empty path is /');
  t.equal(httpProbeRequest({ ...h, path: 'ready' }, '10.0.0.5', 80, 'ua').url.pathname, '/ready');
  const custom = httpProbeRequest({ ...h, headers: [{ name: 'user-agent', value: 'mine' }, { name: 'Accept', value: '' }, { name: 'Host', value: 'example.test' }, { name: 'X-Custom', value: 'v' }] }, '10.0.0.5', 8080, 'ua');
  t.same(custom.headers, [['user-agent', 'mine'], ['Host', 'example.test'], ['X-Custom', 'v']], 'own User-Agent kept, empty Accept removed, Host passed on');
  t.equal(probeUserAgent('v1.32.0-knode'), 'kube-probe/1.32');
});

t.test('HTTP status verdicts: 2xx success, 3xx warning, others failure', async (t) => {
  t.same(classifyHttpStatus(200, 'ok\n'), { result: 'success', output: 'ok\n' });
  t.same(classifyHttpStatus(204, ''), { result: 'success', output: '' });
  t.same(classifyHttpStatus(302, 'moved'), { result: 'warning', output: 'Probe terminated redirects, Response body: moved' });
  t.same(classifyHttpStatus(399, ''), { result: 'warning', output: 'Probe terminated redirects, Response body: ' });
  t.same(classifyHttpStatus(404, 'nope'), { result: 'failure', output: 'HTTP probe failed with statuscode: 404' });
  t.same(classifyHttpStatus(500, ''), { result: 'failure', output: 'HTTP probe failed with statuscode: 500' });
  t.same(classifyHttpStatus(199, ''), { result: 'failure', output: 'HTTP probe failed with statuscode: 199' });
  const from = new URL('http://10.0.0.5:8080/a');
  t.equal(followRedirect(from, new URL('http://10.0.0.5:8080/b'), 1), 'follow');
  t.equal(followRedirect(from, new URL('http://10.0.0.5:9090/b'), 1), 'follow', 'same host, other port: followed');
  t.equal(followRedirect(from, new URL('http://example.test/b'), 1), 'stop', 'another host: not followed');
  t.equal(followRedirect(from, new URL('http://10.0.0.5:8080/b'), 10), 'too-many');
});

t.test('verdicts become events: Unhealthy on failure and error, ProbeWarning on a redirect', async (t) => {
  const live = resolveProbe({ ...web, livenessProbe: { exec: { command: ['x'] } } }, 'liveness')!;
  t.same(probeVerdict(live, { result: 'failure', output: 'boom' }), { outcome: { result: 'failure', output: 'boom' }, event: { reason: 'Unhealthy', message: 'Liveness probe failed: boom' } });
  t.same(probeVerdict(live, { result: 'success', output: 'ok' }), { outcome: { result: 'success', output: 'ok' }, event: undefined });
  t.same(probeVerdict(live, { result: 'warning', output: 'r' }).event, { reason: 'ProbeWarning', message: 'Liveness probe warning: r' });
  t.same(probeVerdict(live, { result: 'warning', output: 'r' }).outcome.result, 'success', 'a warning counts as success');
  t.equal(probeVerdict(live, { result: 'error', output: 'no running task found', silent: true }).event, undefined, 'a container gone under the probe: no event');
  t.same(probeVerdict(live, { result: 'error', output: 'port admin not found' }), { outcome: { result: 'error', output: 'port admin not found' }, event: { reason: 'Unhealthy', message: 'Liveness probe errored: port admin not found' } });
});

t.test('kill grace period after a probe failure', async (t) => {
  const c: V1Container = { ...web, livenessProbe: { exec: { command: ['x'] }, terminationGracePeriodSeconds: 3 }, startupProbe: { exec: { command: ['x'] } } };
  const pod: V1Pod = { metadata: { name: 'p' }, spec: { terminationGracePeriodSeconds: 20, containers: [c] } };
  t.equal(probeKillGracePeriod(pod, c, 'LivenessFailed'), 3, 'the probe-level value');
  t.equal(probeKillGracePeriod(pod, c, 'StartupFailed'), 20, 'the pod value when the probe has none');
  t.equal(probeKillGracePeriod({ ...pod, metadata: { deletionGracePeriodSeconds: 1 } }, c, 'LivenessFailed'), 1, 'a deletion grace period wins');
  t.equal(probeKillGracePeriod({ metadata: {}, spec: { containers: [] } }, undefined, 'LivenessFailed'), 30, 'default 30');
});

/**
 * The Docker backend's direct streams against a real dockerd (a throw-away
 * dockerd in a throw-away `knode-t-<random>` namespace, reference CNI bridge
 * 10.253.0.0/24): exec (stdout, stderr, stdin and its end, exit code, a TTY),
 * attach to a running container's output and stdin, and port-forward's
 * connection made inside the pod's network namespace to the app's port.
 *
 * Teardown: test/helpers/dockerd.ts removes the containers, then
 * test/helpers/containerd.ts removes processes, mounts, the cgroup parent,
 * the namespace and the temp dir.
 */
import t from 'tap';
import { join } from 'node:path';
import type { ContainerConfig, PodSandboxConfig, StdioSession } from '../../agent/runtime/types.js';
import { imageRefs } from '../../lab/paths.js';
import { createTestEnv } from '../helpers/containerd.js';
import { startDockerRuntime } from '../helpers/dockerd.js';
import { requireLabImages } from '../helpers/lab-images.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}
requireLabImages(['docker']);

const env = await createTestEnv(t, 'docker-streams');
const { rand, tmp } = env;
const { rt, cgroupParent } = await startDockerRuntime(env, { subnet: '10.253.0.0/24', component: 'docker-streams-test', requestTimeoutMs: 30_000 });
t.teardown(() => rt.close());
const streams = rt.directStreams;

const uid = `uid-${rand}`;
const sandboxConfig: PodSandboxConfig = {
  metadata: { name: 'web', namespace: 'default', uid, attempt: 0 },
  hostname: 'web',
  logDirectory: join(tmp, 'pod-logs'),
  labels: { 'io.kubernetes.pod.uid': uid },
  annotations: {},
  linux: { cgroupParent },
};
const containerConfig = (name: string, extra: Partial<ContainerConfig> = {}): ContainerConfig => ({
  metadata: { name, attempt: 0 },
  image: { image: imageRefs.app },
  envs: [{ key: 'PORT', value: '8080' }],
  logPath: `${name}/0.log`,
  labels: { 'io.kubernetes.pod.uid': uid, 'io.kubernetes.container.name': name },
  annotations: {},
  ...extra,
});

const sandboxId = await rt.runPodSandbox(sandboxConfig);
t.teardown(() => rt.removePodSandbox(sandboxId));
const appId = await rt.createContainer(sandboxId, containerConfig('app'), sandboxConfig);
await rt.startContainer(appId);

/** Collects a session's output and exit code (after writing `input` and ending stdin, when given). */
async function collect(s: StdioSession, input?: string): Promise<{ stdout: string; stderr: string; exitCode: number | undefined }> {
  let stdout = '';
  let stderr = '';
  s.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  s.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  if (input !== undefined) {
    s.stdin?.write(input);
    s.stdin?.end();
  }
  const exitCode = await s.wait();
  return { stdout, stderr, exitCode };
}

t.test('exec: stdout, stderr, exit code; stdin and its end; a TTY', async (t) => {
  const r = await collect(await streams.execStream(appId, { cmd: ['sh', '-c', 'echo out; echo err >&2; exit 3'], stdout: true, stderr: true }));
  t.same(r, { stdout: 'out\n', stderr: 'err\n', exitCode: 3 });
  const input = 'z'.repeat(300_000);
  const wc = await collect(await streams.execStream(appId, { cmd: ['wc', '-c'], stdin: true, stdout: true, stderr: true }), input);
  t.equal(wc.stdout.trim(), String(input.length), 'stdin reaches the process; its end closes it');
  t.equal(wc.exitCode, 0);
  const tty = await collect(await streams.execStream(appId, { cmd: ['sh', '-c', 'test -t 1 && echo tty; stty size'], tty: true, stdout: true, stderr: true }));
  t.match(tty.stdout, /^tty\r?\n/, 'a TTY, output on stdout');
  await t.rejects(streams.execStream(appId, { cmd: [], stdout: true }), { code: 'INVALID_ARGUMENT' });
  await t.rejects(streams.execStream('no-such-container', { cmd: ['true'], stdout: true }), { code: 'NOT_FOUND' });
});

t.test('attach: output of a running container, its stdin', async (t) => {
  const catId = await rt.createContainer(sandboxId, containerConfig('cat', { command: ['sh', '-c', 'echo started; while read l; do echo "got $l"; done; echo eof'], stdin: true }), sandboxConfig);
  await rt.startContainer(catId);
  const s = await streams.attachStream(catId, { stdin: true, stdout: true, stderr: true });
  let out = '';
  s.stdout.on('data', (d: Buffer) => (out += d.toString()));
  s.stdin?.write('one\ntwo\n');
  for (let i = 0; i < 200 && !out.includes('got two'); i++) await new Promise((r) => setTimeout(r, 25));
  t.match(out, /got one\ngot two\n/, 'stdin to the container, its output back');
  s.close();
  t.equal(await s.wait(), undefined, 'attach has no exit code');
  const tickId = await rt.createContainer(sandboxId, containerConfig('tick', { command: ['sh', '-c', 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done'] }), sandboxConfig);
  await rt.startContainer(tickId);
  const a = await streams.attachStream(tickId, { stdout: true, stderr: true });
  let ticks = '';
  a.stdout.on('data', (d: Buffer) => (ticks += d.toString()));
  for (let i = 0; i < 200 && !/tick \d+\n.*tick \d+\n/s.test(ticks); i++) await new Promise((r) => setTimeout(r, 25));
  t.match(ticks, /tick \d+\n/, 'the running container\'s output');
  a.close();
  await t.rejects(streams.attachStream(tickId, { stdin: true, stdout: true }), { code: 'INVALID_ARGUMENT' }, 'stdin of a container without OpenStdin');
});

t.test('port-forward: a connection inside the pod network namespace', async (t) => {
  const get = async (): Promise<string> => {
    const sock = await streams.portForwardConnect(sandboxId, 8080);
    let body = '';
    sock.on('data', (d: Buffer) => (body += d.toString()));
    sock.write('GET /hostname HTTP/1.0\r\nHost: x\r\n\r\n');
    await new Promise((r) => sock.once('close', r));
    return body;
  };
  let body = '';
  for (let i = 0; i < 100 && !body.includes('200'); i++) {
    body = await get().catch(() => '');
    if (!body.includes('200')) await new Promise((r) => setTimeout(r, 100));
  }
  t.match(body, /^HTTP\/1\.[01] 200/, 'HTTP to 127.0.0.1:8080 of the pod');
  t.match(body, /\r\n\r\nweb\n?$/, 'the pod\'s hostname');
  await t.rejects(streams.portForwardConnect(sandboxId, 8081), { code: 'CONNECT_FAILED', message: /connection refused/ }, 'a closed port');
  await t.rejects(streams.portForwardConnect(sandboxId, 0), { code: 'INVALID_ARGUMENT' });
});

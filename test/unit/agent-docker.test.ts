/** Pure parts of the Docker backend: names, labels, create options, CNI inputs, log lines, frames. */
import t from 'tap';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { resolveConfig } from '../../agent/config/index.js';
import { cniEnv, parseNetworkConfig, pluginInput, primaryIPs, selectConfig, type CniArgs } from '../../agent/runtime/docker/cni.js';
import {
  bindToMount,
  containerCreateOptions,
  containerTimes,
  dockerAuth,
  exitReason,
  fromDockerLabels,
  mountToBind,
  nanosToRfc3339,
  parseName,
  pullReference,
  renderResolvConf,
  rfc3339ToNanos,
  sandboxCreateOptions,
  sandboxName,
} from '../../agent/runtime/docker/convert.js';
import { FrameParser } from '../../agent/runtime/docker/frames.js';
import { LogCopier, criLogLine } from '../../agent/runtime/docker/logs.js';
import { createLogger } from '../../lib/log.js';
import type { PodSandboxConfig } from '../../agent/runtime/types.js';

const sandbox: PodSandboxConfig = {
  metadata: { name: 'web', namespace: 'default', uid: 'u1', attempt: 2 },
  hostname: 'web',
  labels: { app: 'web' },
  annotations: { note: 'x' },
  dnsConfig: { servers: ['10.96.0.10'], searches: ['a.svc', 'svc'], options: ['ndots:5'] },
  linux: { cgroupParent: '/pods' },
};

t.test('names and labels round-trip', async (t) => {
  t.equal(sandboxName(sandbox.metadata), 'k8s_POD_web_default_u1_2');
  t.same(parseName('/k8s_app_web_default_u1_3'), { name: 'app', pod: 'web', namespace: 'default', uid: 'u1', attempt: 3 });
  t.equal(parseName('/random'), undefined);
  const create = sandboxCreateOptions({ config: sandbox, pauseImage: 'pause:1', defaultCgroupParent: undefined });
  t.equal(create.Labels?.['io.kubernetes.docker.type'], 'podsandbox');
  t.equal(create.Labels?.['annotation.note'], 'x');
  t.same(fromDockerLabels(create.Labels), {
    labels: { app: 'web', 'io.kubernetes.pod.name': 'web', 'io.kubernetes.pod.namespace': 'default', 'io.kubernetes.pod.uid': 'u1', 'io.kubernetes.container.name': 'POD' },
    annotations: { note: 'x' },
  });
  t.same([create.HostConfig?.NetworkMode, create.HostConfig?.IpcMode, create.HostConfig?.CgroupParent, create.Hostname], ['none', 'shareable', '/pods', 'web']);
  const host = sandboxCreateOptions({ config: { ...sandbox, linux: { securityContext: { namespaceOptions: { network: 'node' } } } }, pauseImage: 'p', defaultCgroupParent: '/d' });
  t.same([host.HostConfig?.NetworkMode, host.Hostname, host.HostConfig?.CgroupParent], ['host', undefined, '/d'], 'host network: no hostname, default cgroup parent');
});

t.test('app container create options', async (t) => {
  const c = containerCreateOptions({
    sandboxId: 'abc',
    sandbox,
    config: {
      metadata: { name: 'app', attempt: 0 },
      image: { image: 'img' },
      command: ['/bin/sh'],
      args: ['-c', 'x'],
      envs: [{ key: 'A', value: '1=2' }],
      mounts: [{ hostPath: '/h', containerPath: '/c', readonly: true, propagation: 'hostToContainer' }],
      linux: {
        resources: { cpuShares: 512, cpuQuota: 50000, cpuPeriod: 100000, memoryLimitInBytes: 1 << 26, oomScoreAdj: -997 },
        securityContext: { runAsUser: 1000, runAsGroup: 3000, capabilities: { add: ['NET_ADMIN'], drop: ['ALL'] }, readonlyRootfs: true, namespaceOptions: { pid: 'pod' } },
      },
    },
    image: 'img',
    logPath: '/logs/app/0.log',
    defaultCgroupParent: undefined,
    minOomScoreAdj: 0,
  });
  t.same([c.name, c.Entrypoint, c.Cmd, c.Env, c.User], ['k8s_app_web_default_u1_0', ['/bin/sh'], ['-c', 'x'], ['A=1=2'], '1000:3000']);
  const h = c.HostConfig!;
  t.same([h.NetworkMode, h.IpcMode, h.PidMode], ['container:abc', 'container:abc', 'container:abc']);
  t.same(h.Binds, ['/h:/c:ro,rslave']);
  t.same([h.CpuShares, h.CpuQuota, h.CpuPeriod, h.Memory, h.MemorySwap, h.OomScoreAdj], [512, 50000, 100000, 1 << 26, 1 << 26, 0]);
  t.same([h.CapAdd, h.CapDrop, h.ReadonlyRootfs, h.CgroupParent], [['NET_ADMIN'], ['ALL'], true, '/pods']);
  t.equal(c.Labels?.['io.kubernetes.container.logpath'], '/logs/app/0.log');
  t.same(bindToMount(mountToBind({ hostPath: '/a', containerPath: '/b', propagation: 'bidirectional' })), { hostPath: '/a', containerPath: '/b', readonly: false, propagation: 'bidirectional' });
  t.same([exitReason('exited', 0, false), exitReason('exited', 1, false), exitReason('exited', 137, true), exitReason('running', 0, false)], ['Completed', 'Error', 'OOMKilled', '']);
});

t.test('time, resolv.conf, pull references and auth', async (t) => {
  t.equal(rfc3339ToNanos('2026-11-23T12:40:01.123456789Z'), 1795437601123456789n);
  t.equal(rfc3339ToNanos('2026-11-23T12:40:01.5Z'), 1795437601500000000n);
  t.equal(rfc3339ToNanos('0001-01-01T00:00:00Z'), 0n);
  t.equal(nanosToRfc3339(1795437601000000042n), '2026-11-23T12:40:01.000000042Z');
  t.equal(renderResolvConf(sandbox.dnsConfig), 'nameserver 10.96.0.10\nsearch a.svc svc\noptions ndots:5\n');
  t.equal(renderResolvConf({}), undefined);
  t.same(['busybox', 'a.io:5000/x', 'a.io:5000/x:1', 'x@sha256:00'].map(pullReference), ['busybox:latest', 'a.io:5000/x:latest', 'a.io:5000/x:1', 'x@sha256:00']);
  t.same(dockerAuth({ auth: Buffer.from('u:p:q').toString('base64') }, '127.0.0.1:5001/k/app:1'), { username: 'u', password: 'p:q', serveraddress: '127.0.0.1:5001' });
  t.equal(dockerAuth({ username: 'u', password: 'p' }, 'library/x').serveraddress, 'docker.io');
});

t.test('container times: an exit docker stamped before the start is clamped to the start', async (t) => {
  const started = '2026-11-23T14:00:00.500000000Z';
  t.same(containerTimes('exited', started, '2026-11-23T14:00:00.499000000Z'), { startedAt: rfc3339ToNanos(started), finishedAt: rfc3339ToNanos(started) });
  t.same(containerTimes('exited', started, '2026-11-23T14:00:01Z'), { startedAt: rfc3339ToNanos(started), finishedAt: rfc3339ToNanos('2026-11-23T14:00:01Z') });
  t.same(containerTimes('running', started, '0001-01-01T00:00:00Z'), { startedAt: rfc3339ToNanos(started), finishedAt: 0n });
  t.same(containerTimes('created', '0001-01-01T00:00:00Z', '0001-01-01T00:00:00Z'), { startedAt: 0n, finishedAt: 0n });
});

t.test('CNI inputs', async (t) => {
  t.equal(selectConfig(['99-b.conf', '20-a.conflist', '.hidden.conflist', '10-c.conflist']), '10-c.conflist');
  t.equal(selectConfig(['x.conf', 'readme']), 'x.conf');
  t.equal(selectConfig([]), undefined);
  t.throws(() => parseNetworkConfig('/d/a.conflist', '{"name":"n","plugins":[{"type":"../evil"}]}'), { code: 'CNI_CONFIG_INVALID' });
  const net = parseNetworkConfig('/d/a.conflist', JSON.stringify({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'bridge' }, { type: 'portmap', capabilities: { portMappings: true } }] }));
  const args: CniArgs = { containerId: 'c1', netns: '/proc/1/ns/net', ifName: 'eth0', podName: 'p', podNamespace: 'ns', podUid: 'u', portMappings: [{ containerPort: 80, hostPort: 8080 }, { containerPort: 81 }] };
  t.same(pluginInput(net, net.plugins[0]!, args, undefined), { type: 'bridge', name: 'n', cniVersion: '1.0.0' });
  t.same(pluginInput(net, net.plugins[1]!, args, { ips: [] }), {
    type: 'portmap',
    name: 'n',
    cniVersion: '1.0.0',
    runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] },
    prevResult: { ips: [] },
  });
  t.equal(cniEnv('ADD', args, '/opt/cni/bin').CNI_ARGS, 'IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=u');
  t.same(primaryIPs({ ips: [{ address: 'fd00::5/64' }, { address: '10.1.0.5/24' }] }), { ip: '10.1.0.5', additional: ['fd00::5'] });
  t.same(primaryIPs({}), { ip: '', additional: [] });
});

t.test('log lines and stream frames', async (t) => {
  const full = criLogLine(Buffer.from('2026-11-23T12:40:01.5Z hello\n'), 'stdout', 0n);
  t.equal(full?.line.toString(), '2026-11-23T12:40:01.500000000Z stdout F hello\n');
  t.equal(criLogLine(Buffer.from('2026-11-23T12:40:01.5Z part'), 'stderr', 0n)?.line.toString(), '2026-11-23T12:40:01.500000000Z stderr P part\n');
  t.equal(criLogLine(Buffer.from('2026-11-23T12:40:01.5Z old\n'), 'stdout', full!.ns), undefined, 'not newer: skipped');
  const p = new FrameParser();
  const frame = (type: number, text: string): Buffer => {
    const head = Buffer.alloc(8);
    head[0] = type;
    head.writeUInt32BE(Buffer.byteLength(text), 4);
    return Buffer.concat([head, Buffer.from(text)]);
  };
  const bytes = Buffer.concat([frame(1, 'out'), frame(2, 'err')]);
  t.same(p.push(bytes.subarray(0, 5)), []);
  t.same(p.push(bytes.subarray(5)).map((f) => [f.stream, f.payload.toString()]), [['stdout', 'out'], ['stderr', 'err']]);
  t.equal(p.pending, 0);
});

t.test('--container-runtime selects the backend and its default endpoint', async (t) => {
  const pick = (argv: string[]): { kind: string; endpoint: string } => {
    const r = resolveConfig({ argv, hostname: 'n1' });
    if (r.help) throw new Error('help');
    return { kind: r.config.containerRuntime, endpoint: r.config.containerRuntimeEndpoint };
  };
  t.same(pick([]), { kind: 'cri', endpoint: 'unix:///run/containerd/containerd.sock' });
  t.same(pick(['--container-runtime', 'docker']), { kind: 'docker', endpoint: 'unix:///var/run/docker.sock' });
  t.same(pick(['--container-runtime-endpoint', '/run/x/docker.sock']), { kind: 'docker', endpoint: 'unix:///run/x/docker.sock' });
  t.same(pick(['--container-runtime=remote', '--container-runtime-endpoint', '/run/x/docker.sock']), { kind: 'cri', endpoint: 'unix:///run/x/docker.sock' });
  t.throws(() => resolveConfig({ argv: ['--container-runtime', 'rkt'], hostname: 'n1' }), { code: 'CONFIG_INVALID' });
});

function frame(type: number, text: string): Buffer {
  const head = Buffer.alloc(8);
  head[0] = type;
  head.writeUInt32BE(Buffer.byteLength(text), 4);
  return Buffer.concat([head, Buffer.from(text)]);
}

t.test('LogCopier: copies a multiplexed stream, resumes without duplicates, survives a bad path', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'knode-logcopier-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const warnings: string[] = [];
  const log = createLogger({ component: 't', write: (l) => void warnings.push(l) });
  const path = join(dir, 'app', '0.log');
  const messages = [frame(1, '2026-11-23T12:00:00.1Z one\n'), frame(2, '2026-11-23T12:00:01.2Z two\n')];
  const since: number[] = [];
  const open = (all: Buffer[]) => async (s: number): Promise<Readable> => {
    since.push(s);
    return Readable.from(all);
  };
  const first = new LogCopier(log);
  first.ensure('c1', path, false, open(messages));
  await first.whenCopied('c1', 5000);
  const text = '2026-11-23T12:00:00.100000000Z stdout F one\n2026-11-23T12:00:01.200000000Z stderr F two\n';
  t.equal(await readFile(path, 'utf8'), text);
  first.ensure('c1', path, false, open(messages));
  t.same(since, [0], 'a finished copy is not started again');
  // A new instance (agent restart): asks from the last second on, skips what the file has.
  const second = new LogCopier(log);
  second.ensure('c1', path, false, open([...messages, frame(1, '2026-11-23T12:00:02Z three\n')]));
  await second.whenCopied('c1', 5000);
  t.same(since, [0, Math.floor(Date.parse('2026-11-23T12:00:01Z') / 1000)]);
  t.equal(await readFile(path, 'utf8'), text + '2026-11-23T12:00:02.000000000Z stdout F three\n');
  const bad = new LogCopier(log);
  bad.ensure('c2', '/dev/null/x/0.log', false, open(messages));
  await bad.whenCopied('c2', 5000);
  t.match(warnings.join(''), /copying the container log failed/, 'a bad path is a warning, not a crash');
});

/**
 * The CRI client's pure parts: the embedded proto (in sync with api.proto, upstream
 * field numbers), request encoding and response decoding through the very
 * serializers grpc-js uses, int64 nanosecond precision, enums, errors, endpoints.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MethodDefinition } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { criApiProto } from '../../agent/runtime/cri/api-proto.js';
import { criPackageDefinition } from '../../agent/runtime/cri/client.js';
import {
  conditionTrue,
  containerConfigToWire,
  containerFilterToWire,
  containerStateFromWire,
  containerStatusFromWire,
  criError,
  dateToNanos,
  grpcStatusName,
  grpcTarget,
  imageFromWire,
  int64ToWire,
  nanosFromWire,
  nanosToDate,
  sandboxConfigToWire,
  sandboxFilterToWire,
  sandboxStateFromWire,
  sandboxStatusFromWire,
  statusFromWire,
  type WireContainerStatus,
  type WireImage,
  type WirePodSandboxStatus,
  type WireStatusResponse,
} from '../../agent/runtime/cri/convert.js';
import { createRuntime, isAvailableRuntime, runtimeBackends } from '../../agent/runtime/index.js';
import { isKnodeError, KnodeError } from '../../lib/errors.js';
import type { ContainerConfig, PodSandboxConfig } from '../../agent/runtime/types.js';

const here = dirname(fileURLToPath(import.meta.url));
const protoPath = join(here, '..', '..', 'agent', 'runtime', 'cri', 'api.proto');
const root = protobuf.parse(criApiProto, { keepCase: true }).root;

function type(name: string): protobuf.Type {
  return root.lookupType(`runtime.v1.${name}`);
}

function method(service: string, name: string): MethodDefinition<object, unknown> {
  const svc = criPackageDefinition()[`runtime.v1.${service}`] as unknown as Record<string, MethodDefinition<object, unknown>>;
  return svc[name]!;
}

t.test('api-proto.ts embeds api.proto verbatim', async (t) => {
  t.equal(criApiProto, readFileSync(protoPath, 'utf8'), 'run: node agent/runtime/cri/embed-proto.mjs');
});

t.test('field numbers are upstream CRI v1 numbers', async (t) => {
  // Spot checks of fields where a slip is easy (non-sequential numbers upstream).
  const expected: [string, string, number][] = [
    ['PodSandboxConfig', 'metadata', 1],
    ['PodSandboxConfig', 'log_directory', 3],
    ['PodSandboxConfig', 'port_mappings', 5],
    ['PodSandboxConfig', 'annotations', 7],
    ['PodSandboxConfig', 'linux', 8],
    ['LinuxPodSandboxConfig', 'sysctls', 3],
    ['LinuxSandboxSecurityContext', 'namespace_options', 1],
    ['LinuxSandboxSecurityContext', 'run_as_user', 3],
    ['LinuxSandboxSecurityContext', 'run_as_group', 8],
    ['LinuxSandboxSecurityContext', 'readonly_rootfs', 4],
    ['LinuxSandboxSecurityContext', 'privileged', 6],
    ['LinuxSandboxSecurityContext', 'seccomp', 9],
    ['LinuxContainerSecurityContext', 'capabilities', 1],
    ['LinuxContainerSecurityContext', 'privileged', 2],
    ['LinuxContainerSecurityContext', 'namespace_options', 3],
    ['LinuxContainerSecurityContext', 'run_as_user', 5],
    ['LinuxContainerSecurityContext', 'run_as_username', 6],
    ['LinuxContainerSecurityContext', 'readonly_rootfs', 7],
    ['LinuxContainerSecurityContext', 'no_new_privs', 11],
    ['LinuxContainerSecurityContext', 'run_as_group', 12],
    ['LinuxContainerSecurityContext', 'seccomp', 15],
    ['LinuxContainerResources', 'cpu_period', 1],
    ['LinuxContainerResources', 'oom_score_adj', 5],
    ['LinuxContainerResources', 'memory_swap_limit_in_bytes', 10],
    ['ContainerConfig', 'envs', 6],
    ['ContainerConfig', 'log_path', 11],
    ['ContainerConfig', 'tty', 14],
    ['ContainerConfig', 'linux', 15],
    ['ImageSpec', 'user_specified_image', 18],
    ['ImageSpec', 'runtime_handler', 19],
    ['ContainerStatus', 'exit_code', 7],
    ['ContainerStatus', 'reason', 10],
    ['ContainerStatus', 'log_path', 15],
    ['ContainerStatus', 'image_id', 17],
    ['Container', 'image_id', 10],
    ['PodSandboxStatus', 'network', 5],
    ['PodSandboxStatus', 'runtime_handler', 9],
    ['PodSandboxNetworkStatus', 'additional_ips', 2],
    ['Namespace', 'options', 2],
    ['PodSandboxFilter', 'label_selector', 3],
    ['ContainerFilter', 'label_selector', 4],
    ['UpdateContainerResourcesRequest', 'annotations', 4],
    ['AuthConfig', 'server_address', 4],
    ['AuthConfig', 'registry_token', 6],
    ['PullImageRequest', 'sandbox_config', 3],
    ['Image', 'uid', 5],
    ['Image', 'pinned', 8],
    ['ExecSyncRequest', 'timeout', 3],
    ['ExecSyncResponse', 'exit_code', 3],
    ['AttachRequest', 'tty', 3],
    ['AttachRequest', 'stdout', 4],
    ['ImageFsInfoResponse', 'container_filesystems', 2],
  ];
  for (const [msg, field, id] of expected) t.equal(type(msg).fields[field]?.id, id, `${msg}.${field} = ${id}`);
  t.equal(root.lookupEnum('runtime.v1.ContainerState').values.CONTAINER_EXITED, 2);
  t.equal(root.lookupEnum('runtime.v1.NamespaceMode').values.NODE, 2);
  t.equal(root.lookupEnum('runtime.v1.MountPropagation').values.PROPAGATION_BIDIRECTIONAL, 2);
  t.equal(root.lookupEnum('runtime.v1.PodSandboxState').values.SANDBOX_NOTREADY, 1);
  t.equal(method('RuntimeService', 'RunPodSandbox').path, '/runtime.v1.RuntimeService/RunPodSandbox');
  t.equal(method('ImageService', 'PullImage').path, '/runtime.v1.ImageService/PullImage');
});

const sandboxConfig: PodSandboxConfig = {
  metadata: { name: 'web', uid: 'u-1', namespace: 'default', attempt: 2 },
  hostname: 'web',
  logDirectory: '/var/log/pods/default_web_u-1',
  dnsConfig: { servers: ['10.96.0.10'], searches: ['default.svc.cluster.local'], options: ['ndots:5'] },
  portMappings: [{ protocol: 'UDP', containerPort: 53, hostPort: 5353 }, { containerPort: 8080 }],
  labels: { 'io.kubernetes.pod.name': 'web' },
  annotations: { a: 'b' },
  linux: {
    cgroupParent: '/kubepods/besteffort/podu-1',
    securityContext: { namespaceOptions: { network: 'pod', pid: 'container', ipc: 'node' }, runAsUser: 1000, runAsGroup: 0, supplementalGroups: [5, 6] },
    sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' },
  },
};

t.test('RunPodSandbox request encodes as upstream expects', async (t) => {
  const m = method('RuntimeService', 'RunPodSandbox');
  const buf = m.requestSerialize({ config: sandboxConfigToWire(sandboxConfig), runtimeHandler: '' });
  const decoded = type('RunPodSandboxRequest').toObject(type('RunPodSandboxRequest').decode(buf), { longs: String, enums: Number }) as {
    config: {
      metadata: { attempt: number; uid: string };
      log_directory: string;
      dns_config: { options: string[] };
      port_mappings: { protocol?: number; container_port: number; host_port?: number }[];
      linux: {
        cgroup_parent: string;
        sysctls: Record<string, string>;
        security_context: {
          namespace_options: { network?: number; pid: number; ipc: number };
          run_as_user: { value: string };
          run_as_group: { value?: string };
          supplemental_groups: string[];
        };
      };
    };
  };
  const c = decoded.config;
  t.equal(c.metadata.attempt, 2);
  t.equal(c.log_directory, '/var/log/pods/default_web_u-1');
  t.same(c.dns_config.options, ['ndots:5']);
  t.equal(c.port_mappings[0]!.protocol, 1, 'UDP = 1');
  t.equal(c.port_mappings[0]!.host_port, 5353);
  t.equal(c.port_mappings[1]!.protocol ?? 0, 0, 'TCP by default');
  t.equal(c.linux.cgroup_parent, '/kubepods/besteffort/podu-1');
  t.same(c.linux.sysctls, { 'net.ipv4.ip_unprivileged_port_start': '0' });
  const sc = c.linux.security_context;
  t.equal(sc.namespace_options.network ?? 0, 0, 'POD');
  t.equal(sc.namespace_options.pid, 1, 'CONTAINER');
  t.equal(sc.namespace_options.ipc, 2, 'NODE');
  t.equal(sc.run_as_user.value, '1000');
  t.ok(sc.run_as_group !== undefined, 'run_as_group 0 is sent as a set wrapper (root group, not "unset")');
  t.same(sc.supplemental_groups, ['5', '6']);
});

t.test('CreateContainer request: command, env, mounts, resources, security', async (t) => {
  const config: ContainerConfig = {
    metadata: { name: 'app', attempt: 0 },
    image: { image: 'knode.local/app:1.0' },
    args: ['-p', '8080'],
    workingDir: '/srv',
    envs: [{ key: 'A', value: '1' }],
    mounts: [{ containerPath: '/data', hostPath: '/tmp/d', readonly: true, propagation: 'hostToContainer' }],
    logPath: 'app/0.log',
    linux: {
      resources: { cpuPeriod: 100000, cpuQuota: 50000, cpuShares: 512, memoryLimitInBytes: 64 * 1024 * 1024, oomScoreAdj: -997 },
      securityContext: { capabilities: { add: ['NET_ADMIN'], drop: ['ALL'] }, privileged: false, readonlyRootfs: true, runAsUser: 0 },
    },
  };
  const m = method('RuntimeService', 'CreateContainer');
  const buf = m.requestSerialize({ podSandboxId: 'sb', config: containerConfigToWire(config), sandboxConfig: sandboxConfigToWire(sandboxConfig) });
  const T = type('CreateContainerRequest');
  const d = T.toObject(T.decode(buf), { longs: String, enums: String, defaults: true }) as {
    pod_sandbox_id: string;
    config: {
      command: string[];
      args: string[];
      working_dir: string;
      envs: { key: string; value: string }[];
      mounts: { readonly: boolean; propagation: string }[];
      log_path: string;
      image: { image: string };
      linux: {
        resources: { cpu_period: string; cpu_quota: string; cpu_shares: string; memory_limit_in_bytes: string; oom_score_adj: string };
        security_context: { capabilities: { add_capabilities: string[]; drop_capabilities: string[] }; readonly_rootfs: boolean; run_as_user: { value: string } | null };
      };
    };
  };
  t.equal(d.pod_sandbox_id, 'sb');
  t.same(d.config.command, [], 'no command: the image entrypoint stays');
  t.same(d.config.args, ['-p', '8080']);
  t.equal(d.config.image.image, 'knode.local/app:1.0');
  t.same(d.config.envs, [{ key: 'A', value: '1' }]);
  t.equal(d.config.mounts[0]!.propagation, 'PROPAGATION_HOST_TO_CONTAINER');
  t.equal(d.config.mounts[0]!.readonly, true);
  t.equal(d.config.log_path, 'app/0.log');
  t.same(d.config.linux.resources, { cpu_period: '100000', cpu_quota: '50000', cpu_shares: '512', memory_limit_in_bytes: '67108864', oom_score_adj: '-997', cpuset_cpus: '', cpuset_mems: '', hugepage_limits: [], unified: {}, memory_swap_limit_in_bytes: '0' });
  t.same(d.config.linux.security_context.capabilities.add_capabilities, ['NET_ADMIN']);
  t.same(d.config.linux.security_context.capabilities.drop_capabilities, ['ALL']);
  t.equal(d.config.linux.security_context.readonly_rootfs, true);
  t.same(d.config.linux.security_context.run_as_user, { value: '0' }, 'runAsUser 0 is explicit');
});

t.test('int64 nanosecond timestamps survive decoding exactly', async (t) => {
  const created = 1763900000123456789n; // far above 2^53
  const T = type('ContainerStatusResponse');
  const buf = Buffer.from(
    T.encode(
      T.fromObject({
        status: {
          id: 'c1',
          metadata: { name: 'app', attempt: 3 },
          state: 'CONTAINER_EXITED',
          created_at: created.toString(),
          started_at: (created + 1n).toString(),
          finished_at: (created + 2_000_000_001n).toString(),
          exit_code: 3,
          image: { image: 'knode.local/app:1.0' },
          image_ref: 'sha256:abc',
          reason: 'Error',
          labels: { l: 'v' },
          log_path: '/var/log/pods/x/app/0.log',
          mounts: [{ container_path: '/data', host_path: '/tmp/d', propagation: 'PROPAGATION_BIDIRECTIONAL' }],
          resources: { linux: { memory_limit_in_bytes: '67108864' } },
        },
      }),
    ).finish(),
  );
  const wire = method('RuntimeService', 'ContainerStatus').responseDeserialize(buf) as { status: WireContainerStatus };
  t.type(wire.status.createdAt, 'string', 'longs arrive as strings');
  const s = containerStatusFromWire(wire.status);
  t.equal(s.createdAt, created);
  t.equal(s.startedAt, created + 1n);
  t.equal(s.finishedAt, created + 2_000_000_001n);
  t.equal(s.state, 'exited');
  t.equal(s.exitCode, 3);
  t.equal(s.reason, 'Error');
  t.equal(s.message, '', 'absent strings are empty');
  t.same(s.metadata, { name: 'app', attempt: 3 });
  t.same(s.image, { image: 'knode.local/app:1.0' });
  t.same(s.labels, { l: 'v' });
  t.same(s.annotations, {});
  t.same(s.mounts, [{ containerPath: '/data', hostPath: '/tmp/d', readonly: false, selinuxRelabel: false, propagation: 'bidirectional' }]);
  t.same(s.resources, { memoryLimitInBytes: 67108864 });
  t.equal(nanosToDate(s.createdAt)?.toISOString(), '2025-11-23T12:13:20.123Z');
  t.equal(nanosToDate(0n), undefined, '0 = not set');
  t.equal(dateToNanos(new Date('2025-11-23T12:13:20.123Z')), 1763900000123000000n);
  t.equal(nanosFromWire(undefined), 0n);
  t.equal(nanosFromWire(12), 12n);
  t.throws(() => nanosFromWire(2 ** 60), { code: 'CRI_BAD_INT64' }, 'an inexact number is refused, not rounded');
  t.equal(int64ToWire(2n ** 62n), '4611686018427387904');
  t.throws(() => int64ToWire(1.5), { code: 'CRI_BAD_INT64' });
});

t.test('sandbox status: state, network, namespaces', async (t) => {
  const T = type('PodSandboxStatusResponse');
  const buf = Buffer.from(
    T.encode(
      T.fromObject({
        status: {
          id: 'sb1',
          metadata: { name: 'web', uid: 'u', namespace: 'ns', attempt: 0 },
          state: 'SANDBOX_NOTREADY',
          created_at: '1763900000000000001',
          network: { ip: '10.250.0.5', additional_ips: [{ ip: 'fd00::5' }] },
          linux: { namespaces: { options: { network: 'NODE', pid: 'CONTAINER' } } },
          labels: { app: 'web' },
        },
      }),
    ).finish(),
  );
  const wire = method('RuntimeService', 'PodSandboxStatus').responseDeserialize(buf) as { status: WirePodSandboxStatus };
  const s = sandboxStatusFromWire(wire.status);
  t.equal(s.state, 'notready');
  t.equal(s.createdAt, 1763900000000000001n);
  t.same(s.network, { ip: '10.250.0.5', additionalIps: ['fd00::5'] });
  t.same(s.namespaceOptions, { network: 'node', pid: 'container', ipc: 'pod' });
  t.same(s.labels, { app: 'web' });
  t.equal(s.runtimeHandler, '');
  // A sandbox with no network status (host network) has an empty ip.
  t.same(sandboxStatusFromWire({ id: 'x' }).network, { ip: '', additionalIps: [] });
});

t.test('enums: known names, zero values and unknown numbers', async (t) => {
  t.equal(containerStateFromWire('CONTAINER_RUNNING'), 'running');
  t.equal(containerStateFromWire(undefined), 'created', 'proto3 zero value');
  t.equal(containerStateFromWire(0), 'created');
  t.equal(containerStateFromWire(7), 'unknown', 'a value newer than this client');
  t.equal(sandboxStateFromWire('SANDBOX_READY'), 'ready');
  t.equal(sandboxStateFromWire(9), 'notready');
  t.same(containerFilterToWire({ state: 'running', labelSelector: { a: 'b' } }), { state: { state: 'CONTAINER_RUNNING' }, labelSelector: { a: 'b' } });
  t.same(sandboxFilterToWire({ state: 'ready' }), { state: { state: 'SANDBOX_READY' } });
  t.equal(sandboxFilterToWire(undefined), undefined);
});

t.test('runtime status and images', async (t) => {
  const wire: WireStatusResponse = {
    status: { conditions: [{ type: 'RuntimeReady', status: true }, { type: 'NetworkReady', status: false, reason: 'NetworkPluginNotReady', message: 'cni config uninitialized' }] },
    info: {},
  };
  const s = statusFromWire(wire);
  t.ok(conditionTrue(s, 'RuntimeReady'));
  t.notOk(conditionTrue(s, 'NetworkReady'));
  t.equal(s.conditions[1]!.reason, 'NetworkPluginNotReady');
  const img: WireImage = { id: 'sha256:1', repoTags: ['knode.local/app:1.0'], repoDigests: [], size: '1234567', uid: null, username: '', spec: null, pinned: false };
  t.same(imageFromWire(img), { id: 'sha256:1', repoTags: ['knode.local/app:1.0'], repoDigests: [], size: 1234567, uid: undefined, username: '', spec: undefined, pinned: false });
  t.equal(imageFromWire({ ...img, uid: { value: '65535' } }).uid, 65535);
});

t.test('errors carry the gRPC status name as code', async (t) => {
  t.equal(grpcStatusName(5), 'NOT_FOUND');
  t.equal(grpcStatusName(14), 'UNAVAILABLE');
  t.equal(grpcStatusName(4), 'DEADLINE_EXCEEDED');
  t.equal(grpcStatusName(99), 'UNKNOWN');
  t.equal(grpcStatusName('x'), 'UNKNOWN');
  const e = criError('ContainerStatus', Object.assign(new Error('5 NOT_FOUND: an error occurred'), { code: 5, details: 'container "x" not found' }));
  t.ok(isKnodeError(e, 'NOT_FOUND'));
  t.equal(e.message, 'CRI ContainerStatus: container "x" not found');
  t.same(e.details, { method: 'ContainerStatus', grpcCode: 5 });
  const k = new KnodeError('CANCELLED', 'x');
  t.equal(criError('Version', k), k, 'KnodeErrors pass through');
});

t.test('endpoints', async (t) => {
  t.equal(grpcTarget('unix:///run/containerd/containerd.sock'), 'unix:///run/containerd/containerd.sock');
  t.equal(grpcTarget('/run/containerd/containerd.sock'), 'unix:///run/containerd/containerd.sock');
  t.equal(grpcTarget('unix:/run/x.sock'), 'unix:///run/x.sock');
  for (const bad of ['tcp://127.0.0.1:1234', 'run/x.sock', 'unix://relative.sock', '']) t.throws(() => grpcTarget(bad), { code: 'INVALID_ENDPOINT' }, bad);
});

t.test('backend map', async (t) => {
  t.same(Object.keys(runtimeBackends), ['cri', 'docker']);
  t.ok(isAvailableRuntime('cri'));
  t.ok(isAvailableRuntime('docker'));
  t.notOk(isAvailableRuntime('rkt'));
  await t.rejects(createRuntime('rkt', { endpoint: '/x.sock' }), { code: 'RUNTIME_UNSUPPORTED' });
  const r = await createRuntime('cri', { endpoint: '/nonexistent/knode-t.sock' });
  t.equal(r.kind, 'cri');
  r.close();
  const d = await createRuntime('docker', { endpoint: 'unix:///nonexistent/knode-t-docker.sock' });
  t.equal(d.kind, 'docker');
  await t.rejects(d.version({ timeoutMs: 2000 }), { code: 'UNAVAILABLE' }, 'no dockerd: UNAVAILABLE');
  d.close();
  await t.rejects(createRuntime('docker', { endpoint: 'tcp://127.0.0.1:2375' }), { code: 'INVALID_ARGUMENT' }, 'docker: unix sockets only');
});

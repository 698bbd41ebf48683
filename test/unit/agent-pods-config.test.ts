/** V1Pod → PodSandboxConfig, V1Container → ContainerConfig, image names and pull policy, /etc/hosts. */
import t from 'tap';
import type { V1Pod, V1Secret } from '@kubernetes/client-node';
import { containerConfig, containerResources, milliCpuToQuota, milliCpuToShares, oomScoreAdj, podDNSConfig, podSandboxConfig, type SandboxOptions } from '../../agent/pods/config.js';
import { renderEtcHosts, wantsManagedEtcHosts } from '../../agent/pods/etc-hosts.js';
import { containerHash } from '../../agent/pods/hash.js';
import { credentialsFromSecrets, defaultPullPolicy, parseImageName, pullPolicy } from '../../agent/pods/images.js';

const opts: SandboxOptions = { podLogsRoot: '/var/log/pods', clusterDNS: ['10.96.0.10'], clusterDomain: 'cluster.local', cgroupParent: '/kubepods' };
const GiB = 1024 ** 3;

function pod(): V1Pod {
  return {
    metadata: { name: 'web', namespace: 'shop', uid: 'u-42', labels: { app: 'web' }, annotations: { note: 'x' } },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'knode.local/app:1.0',
          command: ['/bin/httpd', '-p', '$(PORT)'],
          args: ['-h', '$(ROOT)'],
          workingDir: '/srv',
          ports: [{ containerPort: 8080, hostPort: 30080, protocol: 'TCP' }, { containerPort: 53, protocol: 'UDP' }],
          resources: { requests: { cpu: '250m', memory: '64Mi' }, limits: { cpu: '500m', memory: '128Mi' } },
          securityContext: { runAsUser: 1000, privileged: false, readOnlyRootFilesystem: true, capabilities: { add: ['NET_ADMIN'], drop: ['ALL'] }, allowPrivilegeEscalation: false },
        },
      ],
      securityContext: { runAsUser: 2000, runAsGroup: 3000, supplementalGroups: [4000] },
      terminationGracePeriodSeconds: 12,
    },
  };
}

t.test('sandbox config', async (t) => {
  const c = podSandboxConfig(pod(), 2, opts);
  t.same(c.metadata, { name: 'web', namespace: 'shop', uid: 'u-42', attempt: 2 });
  t.equal(c.hostname, 'web');
  t.equal(c.logDirectory, '/var/log/pods/shop_web_u-42');
  t.same(c.dnsConfig, { servers: ['10.96.0.10'], searches: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local'], options: ['ndots:5'] });
  t.same(c.portMappings, [{ protocol: 'TCP', containerPort: 8080, hostPort: 30080 }, { protocol: 'UDP', containerPort: 53 }]);
  t.same(c.labels, { app: 'web', 'io.kubernetes.pod.name': 'web', 'io.kubernetes.pod.namespace': 'shop', 'io.kubernetes.pod.uid': 'u-42' });
  t.same(c.annotations, { note: 'x' });
  t.equal(c.linux?.cgroupParent, '/kubepods');
  t.same(c.linux?.securityContext, { namespaceOptions: { network: 'pod', pid: 'container', ipc: 'pod' }, runAsUser: 2000, runAsGroup: 3000, supplementalGroups: [4000] });

  const host = pod();
  host.spec!.hostNetwork = true;
  host.spec!.hostPID = true;
  host.spec!.hostname = 'ignored';
  const hc = podSandboxConfig(host, 0, { ...opts, hostDNS: { servers: ['1.1.1.1'], searches: ['lan'], options: ['edns0'] } });
  t.equal(hc.hostname, undefined, 'host network: the node hostname');
  t.same(hc.linux?.securityContext?.namespaceOptions, { network: 'node', pid: 'node', ipc: 'pod' });
  t.same(hc.dnsConfig, { servers: ['1.1.1.1'], searches: ['lan'], options: ['edns0'] }, 'ClusterFirst on the host network: Default');
  const named = pod();
  named.spec!.hostname = 'custom';
  t.equal(podSandboxConfig(named, 0, opts).hostname, 'custom');
});

t.test('DNS policies', async (t) => {
  const p = pod();
  p.spec!.dnsPolicy = 'None';
  p.spec!.dnsConfig = { nameservers: ['9.9.9.9'], searches: ['a.example'], options: [{ name: 'ndots', value: '2' }, { name: 'rotate' }] };
  t.same(podDNSConfig(p, opts), { servers: ['9.9.9.9'], searches: ['a.example'], options: ['ndots:2', 'rotate'] });
  const merged = pod();
  merged.spec!.dnsConfig = { searches: ['extra.example'], options: [{ name: 'ndots', value: '1' }] };
  t.same(podDNSConfig(merged, opts), {
    servers: ['10.96.0.10'],
    searches: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local', 'extra.example'],
    options: ['ndots:1'],
  });
  t.same(podDNSConfig(pod(), { ...opts, clusterDNS: [], hostDNS: { servers: ['192.0.2.53'] } }), { servers: ['192.0.2.53'], searches: [], options: [] }, 'no cluster DNS: Default');
});

t.test('container config', async (t) => {
  const p = pod();
  const spec = p.spec!.containers[0]!;
  const env = [{ name: 'PORT', value: '8080' }, { name: 'ROOT', value: '/srv/www' }];
  const c = containerConfig(p, spec, { restartCount: 3, imageRef: 'sha256:abc', env, mounts: [{ containerPath: '/data', hostPath: '/x', readonly: false }], memoryCapacity: 4 * GiB });
  t.same(c.metadata, { name: 'app', attempt: 3 });
  t.same(c.image, { image: 'sha256:abc', userSpecifiedImage: 'knode.local/app:1.0' });
  t.same(c.command, ['/bin/httpd', '-p', '8080'], 'command → entrypoint, expanded');
  t.same(c.args, ['-h', '/srv/www'], 'args → cmd, expanded');
  t.equal(c.workingDir, '/srv');
  t.same(c.envs, [{ key: 'PORT', value: '8080' }, { key: 'ROOT', value: '/srv/www' }]);
  t.same(c.mounts, [{ containerPath: '/data', hostPath: '/x', readonly: false }]);
  t.equal(c.logPath, 'app/3.log');
  t.same(c.labels, { 'io.kubernetes.pod.name': 'web', 'io.kubernetes.pod.namespace': 'shop', 'io.kubernetes.pod.uid': 'u-42', 'io.kubernetes.container.name': 'app' });
  t.match(c.annotations, {
    'io.kubernetes.container.hash': containerHash(spec),
    'io.kubernetes.container.restartCount': '3',
    'io.kubernetes.container.terminationMessagePath': '/dev/termination-log',
    'io.kubernetes.pod.terminationGracePeriod': '12',
  });
  t.same(c.linux?.resources, { cpuShares: 256, oomScoreAdj: 985, cpuPeriod: 100000, cpuQuota: 50000, memoryLimitInBytes: 128 * 1024 * 1024 });
  t.same(c.linux?.securityContext, {
    namespaceOptions: { network: 'pod', pid: 'container', ipc: 'pod' },
    privileged: false,
    readonlyRootfs: true,
    runAsUser: 1000,
    runAsGroup: 3000,
    supplementalGroups: [4000],
    capabilities: { add: ['NET_ADMIN'], drop: ['ALL'] },
    noNewPrivs: true,
  });
  const bare = containerConfig(p, { name: 'b', image: 'busybox' }, { restartCount: 0, imageRef: 'x', env: [], mounts: [], memoryCapacity: GiB });
  t.equal(bare.command, undefined, 'no command: the image entrypoint');
  t.equal(bare.args, undefined);
  t.equal(containerHash({ name: 'a', image: 'x', env: [{ name: 'K', value: 'v' }] }), containerHash({ env: [{ value: 'v', name: 'K' }], image: 'x', name: 'a' }), 'hash ignores key order');
  t.equal(containerHash({ name: 'a', image: 'x' }), containerHash({ name: 'a', image: 'x', resources: { limits: { cpu: '1' } } }), 'hash ignores resources');
  t.not(containerHash({ name: 'a', image: 'x' }), containerHash({ name: 'a', image: 'y' }));
});

t.test('cpu shares, quota, oom score', async (t) => {
  t.same([0, 1, 2, 100, 250, 1000, 1500].map(milliCpuToShares), [2, 2, 2, 102, 256, 1024, 1536]);
  t.same([0, 1, 10, 250, 1000, 2500].map((m) => milliCpuToQuota(m)), [0, 1000, 1000, 25000, 100000, 250000]);
  const p = pod();
  const c = p.spec!.containers[0]!;
  c.resources = { limits: { cpu: '1', memory: '1Gi' } };
  t.same(containerResources(p, c, 4 * GiB), { cpuShares: 1024, oomScoreAdj: -997, cpuPeriod: 100000, cpuQuota: 100000, memoryLimitInBytes: GiB }, 'Guaranteed: request defaults to the limit');
  c.resources = {};
  t.same(containerResources(p, c, 4 * GiB), { cpuShares: 2, oomScoreAdj: 1000 }, 'BestEffort');
  c.resources = { requests: { memory: '2Gi' } };
  t.equal(oomScoreAdj(p, c, 4 * GiB), 500, 'Burstable: 1000 - 1000*req/capacity');
  c.resources = { requests: { memory: '4Gi' } };
  t.equal(oomScoreAdj(p, c, 4 * GiB), 3, 'clamped above Guaranteed');
  c.resources = { requests: { cpu: '1m' } };
  t.equal(oomScoreAdj(p, c, 4 * GiB), 999, 'never BestEffort-high');
});

t.test('image names and pull policy', async (t) => {
  t.equal(defaultPullPolicy('busybox'), 'Always');
  t.equal(defaultPullPolicy('busybox:latest'), 'Always');
  t.equal(defaultPullPolicy('busybox:1.36'), 'IfNotPresent');
  t.equal(defaultPullPolicy('localhost:5000/app'), 'Always');
  t.equal(defaultPullPolicy('localhost:5000/app:2'), 'IfNotPresent');
  t.equal(defaultPullPolicy(`busybox@sha256:${'a'.repeat(64)}`), 'IfNotPresent');
  t.equal(pullPolicy({ name: 'x', image: 'busybox', imagePullPolicy: 'Never' }), 'Never');
  for (const bad of ['', 'Busybox', 'knode.local/App:1', 'busybox:', 'busy box', 'a//b', 'busybox:-x', '-x', 'x@sha256:12']) {
    t.equal(parseImageName(bad), undefined, `invalid: ${JSON.stringify(bad)}`);
  }
  t.match(parseImageName('127.0.0.1:5001/knode/pause:3.9'), { repository: '127.0.0.1:5001/knode/pause', tag: '3.9', registry: '127.0.0.1:5001' });
  t.match(parseImageName('library/nginx'), { registry: 'docker.io', tag: undefined });
});

t.test('imagePullSecrets → AuthConfig for the image registry', async (t) => {
  const doc = { auths: { '127.0.0.1:5001': { username: 'knode', password: 'pw', auth: Buffer.from('knode:pw').toString('base64') }, 'https://index.docker.io/v1/': { auth: 'ZDpk' } } };
  const secret: V1Secret = { metadata: { name: 'reg' }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': Buffer.from(JSON.stringify(doc)).toString('base64') } };
  t.same(credentialsFromSecrets('127.0.0.1:5001/knode/pause:3.9', [secret]), [{ username: 'knode', password: 'pw', auth: 'a25vZGU6cHc=' }]);
  t.same(credentialsFromSecrets('nginx', [secret]), [{ auth: 'ZDpk' }]);
  t.same(credentialsFromSecrets('127.0.0.1:5000/x:1', [secret]), []);
});

t.test('kubelet-managed /etc/hosts', async (t) => {
  const p = pod();
  t.equal(
    renderEtcHosts(p, ['10.1.2.3'], 'cluster.local'),
    '# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n10.1.2.3\tweb\n',
  );
  p.spec!.hostname = 'web-0';
  p.spec!.subdomain = 'nginx';
  p.spec!.hostAliases = [{ ip: '192.0.2.1', hostnames: ['foo.local', 'bar.local'] }];
  t.match(renderEtcHosts(p, ['10.1.2.3'], 'cluster.local'), /\n10\.1\.2\.3\tweb-0\.nginx\.shop\.svc\.cluster\.local\tweb-0\n\n# Entries added by HostAliases\.\n192\.0\.2\.1\tfoo\.local\tbar\.local\n$/);
  const c = p.spec!.containers[0]!;
  t.equal(wantsManagedEtcHosts(p, c, ['10.1.2.3']), true);
  t.equal(wantsManagedEtcHosts(p, { ...c, volumeMounts: [{ name: 'h', mountPath: '/etc/hosts' }] }, ['10.1.2.3']), false, 'the container brings its own');
  t.equal(wantsManagedEtcHosts({ ...p, spec: { ...p.spec!, hostNetwork: true } }, c, ['10.1.2.3']), false, 'host network: the node file');
});

/**
 * knode-agent configuration: flags, the KubeletConfiguration file, precedence,
 * defaults and validation (KnodeError CONFIG_INVALID listing every problem).
 */
import t from 'tap';
import { configExitCode, defaultConfig, leaseRenewIntervalMs, loadAgentConfig, resolveConfig, usage } from '../../agent/config/index.js';
import type { AgentConfig } from '../../agent/config/index.js';
import { parseDuration, parseLabels, parseTaints, parseUnixEndpoint } from '../../agent/config/values.js';
import { isKnodeError } from '../../lib/errors.js';

function resolve(argv: string[], fileText?: string): AgentConfig {
  const r = resolveConfig({ argv, hostname: 'My-Host', ...(fileText === undefined ? {} : { fileText }) });
  if (r.help) throw new Error('unexpected help');
  return r.config;
}

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (isKnodeError(err, 'CONFIG_INVALID')) return err.details!.problems as string[];
    throw err;
  }
  throw new Error('expected CONFIG_INVALID');
}

t.test('defaults', async (t) => {
  const c = resolve([]);
  t.equal(c.nodeName, 'my-host', 'hostname, lower-cased');
  t.equal(c.containerRuntimeEndpoint, 'unix:///run/containerd/containerd.sock');
  t.equal(c.rootDir, '/var/lib/knode');
  t.equal(c.maxPods, 110);
  t.equal(c.clusterDomain, 'cluster.local');
  t.same(c.clusterDNS, []);
  t.equal(c.nodeStatusUpdateFrequencyMs, 10_000);
  t.equal(c.nodeStatusReportFrequencyMs, 300_000);
  t.equal(c.nodeLeaseDurationSeconds, 40);
  t.equal(leaseRenewIntervalMs(c), 10_000, 'lease renewed every 10 s by default');
  t.equal(c.logLevel, 'info');
  t.equal(c.registerNode, true);
  t.equal(configExitCode, 2);
  t.equal(defaultConfig.maxPods, 110);
});

t.test('every flag, both spellings', async (t) => {
  const c = resolve([
    '--kubeconfig=/etc/knode/kubelet.kubeconfig',
    '--hostname-override',
    'node-1',
    '--node-ip=10.0.0.5',
    '--container-runtime-endpoint=/run/k.sock',
    '--pod-manifest-path=/etc/kubernetes/manifests',
    '--root-dir=/tmp/knode-root',
    '--cluster-dns=10.96.0.10',
    '--cluster-dns=10.96.0.11,fd00::a',
    '--cluster-domain=example.local',
    '--node-labels=role=worker,topology.kubernetes.io/zone=z1',
    '--node-labels=extra=1',
    '--register-with-taints=dedicated=gpu:NoSchedule,maintenance:NoExecute',
    '--max-pods=50',
    '-v=4',
  ]);
  t.equal(c.kubeconfig, '/etc/knode/kubelet.kubeconfig');
  t.equal(c.nodeName, 'node-1');
  t.same(c.nodeIPs, ['10.0.0.5']);
  t.equal(c.containerRuntimeEndpoint, 'unix:///run/k.sock', 'bare path → unix://');
  t.equal(c.podManifestPath, '/etc/kubernetes/manifests');
  t.equal(c.rootDir, '/tmp/knode-root');
  t.same(c.clusterDNS, ['10.96.0.10', '10.96.0.11', 'fd00::a'], 'repeatable and comma lists');
  t.equal(c.clusterDomain, 'example.local');
  t.same(c.nodeLabels, { role: 'worker', 'topology.kubernetes.io/zone': 'z1', extra: '1' });
  t.same(c.registerWithTaints, [
    { key: 'dedicated', value: 'gpu', effect: 'NoSchedule' },
    { key: 'maintenance', effect: 'NoExecute' },
  ]);
  t.equal(c.maxPods, 50);
  t.equal(c.logLevel, 'debug', '-v=4 is debug');
  t.equal(resolve(['--log-level', 'warn']).logLevel, 'warn');
  t.equal(resolve(['--v=2']).logLevel, 'info');
});

const file = `
kind: KubeletConfiguration
apiVersion: kubelet.config.k8s.io/v1beta1
clusterDNS: [10.96.0.10]
clusterDomain: file.local
maxPods: 30
staticPodPath: /etc/static
nodeStatusUpdateFrequency: 5s
nodeStatusReportFrequency: 1m0s
nodeLeaseDurationSeconds: 20
registerWithTaints:
  - key: a
    value: b
    effect: PreferNoSchedule
cgroupDriver: systemd
`;

t.test('config file, and flags override it', async (t) => {
  const r = resolveConfig({ argv: ['--config=/etc/knode/config.yaml'], fileText: file, hostname: 'h' });
  if (r.help) throw new Error('help');
  const c = r.config;
  t.equal(c.configFile, '/etc/knode/config.yaml');
  t.same(c.clusterDNS, ['10.96.0.10']);
  t.equal(c.clusterDomain, 'file.local');
  t.equal(c.maxPods, 30);
  t.equal(c.podManifestPath, '/etc/static');
  t.equal(c.nodeStatusUpdateFrequencyMs, 5000);
  t.equal(c.nodeStatusReportFrequencyMs, 60_000);
  t.equal(c.nodeLeaseDurationSeconds, 20);
  t.equal(leaseRenewIntervalMs(c), 5000);
  t.same(c.registerWithTaints, [{ key: 'a', value: 'b', effect: 'PreferNoSchedule' }]);
  t.match(r.warnings, [/cgroupDriver is not supported/]);

  const o = resolve(['--config=/x.yaml', '--max-pods=7', '--cluster-domain=flag.local', '--cluster-dns=1.1.1.1'], file);
  t.equal(o.maxPods, 7, 'flag wins');
  t.equal(o.clusterDomain, 'flag.local');
  t.same(o.clusterDNS, ['1.1.1.1'], 'flag list replaces the file list');
  t.equal(o.podManifestPath, '/etc/static', 'file value kept where no flag');
});

t.test('loadAgentConfig reads the file and reports a missing one', async (t) => {
  const r = await loadAgentConfig(['--config', '/c.yaml'], { readFile: async () => 'maxPods: 9\n', hostname: () => 'host-a' });
  t.equal(!r.help && r.config.maxPods, 9);
  t.equal(!r.help && r.config.nodeName, 'host-a');
  const enoent = Object.assign(new Error('nope'), { code: 'ENOENT' });
  await t.rejects(
    loadAgentConfig(['--config=/missing.yaml'], {
      readFile: async () => {
        throw enoent;
      },
    }),
    { code: 'CONFIG_INVALID', message: /cannot read \/missing.yaml: no such file/ },
  );
  const help = await loadAgentConfig(['--help']);
  t.ok(help.help);
  t.match(usage(), /--container-runtime-endpoint/);
});

t.test('bad flags: every problem listed in one CONFIG_INVALID', async (t) => {
  const p = problems(() =>
    resolve([
      '--max-pods=zero',
      '--node-ip=10.0.0.300',
      '--node-labels=novalue',
      '--register-with-taints=k=v:Sometimes',
      '--container-runtime-endpoint=tcp://1.2.3.4:5',
      '--frobnicate',
      'positional',
      '--kubeconfig',
    ]),
  );
  t.equal(p.length, 8, p.join('\n'));
  t.match(p, [/--max-pods/, /--node-ip: "10.0.0.300" is not an IP/, /--node-labels/, /--register-with-taints: invalid taint effect "Sometimes"/, /--container-runtime-endpoint/, /unknown flag --frobnicate/, /unexpected argument "positional"/, /--kubeconfig needs a value/]);
  try {
    resolve(['--max-pods=-1']);
  } catch (err) {
    t.match((err as Error).message, /^invalid configuration:\n {2}- --max-pods/);
  }
});

t.test('TLS bootstrap flags', async (t) => {
  const c = resolve(['--kubeconfig=/etc/knode/kubeconfig', '--bootstrap-kubeconfig', '/etc/knode/bootstrap-kubeconfig']);
  t.equal(c.bootstrapKubeconfig, '/etc/knode/bootstrap-kubeconfig');
  t.equal(c.rotateCertificates, true, 'rotation on by default');
  t.equal(resolve(['--kubeconfig=/k', '--rotate-certificates=false']).rotateCertificates, false);
  t.equal(resolve(['--kubeconfig=/k', '--config=/f'], 'rotateCertificates: false\n').rotateCertificates, false);
  t.match(problems(() => resolve(['--bootstrap-kubeconfig=/b'])), [/--bootstrap-kubeconfig needs --kubeconfig/]);
  t.match(problems(() => resolve(['--kubeconfig=/k', '--config=/f'], 'rotateCertificates: yes please\n')), [/rotateCertificates: must be true or false/]);
});

t.test('validation of the merged result', async (t) => {
  t.match(problems(() => resolve(['--hostname-override=Bad_Name!'])), [/node name "bad_name!" is not a valid DNS subdomain/]);
  t.match(problems(() => resolve(['--root-dir=relative'])), [/--root-dir/]);
  t.match(problems(() => resolve(['--node-ip=1.2.3.4,5.6.7.8'])), [/at most one IPv4 and one IPv6/]);
  t.same(resolve(['--node-ip=1.2.3.4,fd00::1']).nodeIPs, ['1.2.3.4', 'fd00::1']);
  t.match(problems(() => resolve(['--register-with-taints=a:NoSchedule,a=b:NoSchedule'])), [/duplicate/]);
  t.match(problems(() => resolve(['--config=/f'], 'kind: Pod\nmaxPods: -3\nnodeStatusUpdateFrequency: soon\n')), [/kind must be KubeletConfiguration/, /maxPods: must be a positive integer/, /nodeStatusUpdateFrequency: "soon" is not a duration/]);
  t.match(problems(() => resolve(['--config=/f'], 'maxPods: [')), [/not valid YAML/]);
  t.match(problems(() => resolve(['--config=/f'], 'nodeStatusUpdateFrequency: 10m\nnodeStatusReportFrequency: 1m\n')), [/must not be shorter/]);
});

t.test('value parsers', async (t) => {
  t.equal(parseDuration('10s'), 10_000);
  t.equal(parseDuration('5m0s'), 300_000);
  t.equal(parseDuration('1h30m'), 5_400_000);
  t.equal(parseDuration('250ms'), 250);
  t.equal(parseDuration('1.5s'), 1500);
  t.throws(() => parseDuration('10'));
  t.same(parseLabels('a=1, b=, example.com/c=x'), { a: '1', b: '', 'example.com/c': 'x' });
  t.throws(() => parseLabels('a=1=2'), /invalid value/);
  t.throws(() => parseLabels('-a=1'), /invalid key/);
  t.throws(() => parseLabels('UPPER_case.example.com/x=1'), /prefix must be a DNS subdomain/);
  t.same(parseTaints('node-role.kubernetes.io/control-plane:NoSchedule'), [{ key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' }]);
  t.throws(() => parseTaints('k=v'), /key\[=value\]:Effect/);
  t.equal(parseUnixEndpoint('unix:///run/containerd/containerd.sock'), 'unix:///run/containerd/containerd.sock');
  t.throws(() => parseUnixEndpoint('unix://relative.sock'));
});

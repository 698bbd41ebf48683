import t from 'tap';
import { isKnodeError } from '../../lib/errors.js';
import { DEFAULTS, cidrContainsIP, parseGoDuration, parseProxyArgs, resolveNodePortAddresses, splitHostPort } from '../../proxy/config.js';

const noFile = { readFile: (p: string): string => {
  throw new Error(`ENOENT: ${p}`);
} };
const files = (map: Record<string, string>) => ({
  readFile: (p: string): string => {
    const v = map[p];
    if (v === undefined) throw new Error(`ENOENT: no such file ${p}`);
    return v;
  },
});

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (isKnodeError(err, 'PROXY_CONFIG_INVALID')) return (err.details?.problems as string[]) ?? [];
    throw err;
  }
  return [];
}

t.test('defaults are kube-proxy\'s', async (t) => {
  const c = parseProxyArgs([], noFile);
  t.equal(c.mode, 'iptables');
  t.equal(c.metricsBindAddress, '127.0.0.1:10249');
  t.equal(c.healthzBindAddress, '0.0.0.0:10256');
  t.equal(c.syncPeriodMs, 30_000);
  t.equal(c.minSyncPeriodMs, 1_000);
  t.equal(c.masqueradeBit, 14);
  t.equal(c.masqueradeAll, false);
  t.same(c.nodePortAddresses, []);
  t.equal(c.cleanup, false);
  t.ok(Object.isFrozen(c));
  t.same(DEFAULTS.nodePortAddresses, [], 'defaults untouched');
});

t.test('flags, both spellings', async (t) => {
  const c = parseProxyArgs(
    [
      '--kubeconfig', '/etc/kp.conf',
      '--proxy-mode=nftables',
      '--hostname-override', 'node-1',
      '--cluster-cidr=10.244.0.0/16',
      '--masquerade-all',
      '--metrics-bind-address', '0.0.0.0:10249',
      '--healthz-bind-address=[::]:10256',
      '--nodeport-addresses', '192.168.0.0/16, 10.0.0.0/8',
      '--iptables-sync-period', '1m0s',
      '--iptables-min-sync-period=500ms',
      '--v=4',
      '--cleanup=false',
    ],
    noFile,
  );
  t.equal(c.kubeconfig, '/etc/kp.conf');
  t.equal(c.mode, 'nftables');
  t.equal(c.hostnameOverride, 'node-1');
  t.equal(c.clusterCIDR, '10.244.0.0/16');
  t.equal(c.masqueradeAll, true);
  t.equal(c.metricsBindAddress, '0.0.0.0:10249');
  t.equal(c.healthzBindAddress, '[::]:10256');
  t.same(c.nodePortAddresses, ['192.168.0.0/16', '10.0.0.0/8']);
  t.equal(c.syncPeriodMs, 60_000);
  t.equal(c.minSyncPeriodMs, 500);
  t.equal(c.verbosity, 4);
  t.equal(c.cleanup, false);
  t.equal(parseProxyArgs(['--cleanup'], noFile).cleanup, true);
  t.equal(parseProxyArgs(['--proxy-mode', 'ipvs'], noFile).mode, 'ipvs');
  t.equal(parseProxyArgs(['--nodeport-addresses=primary'], noFile).nodePortAddresses[0], 'primary');
  t.equal(parseProxyArgs(['-h'], noFile).help, true);
});

const FILE = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clusterCIDR: 10.244.0.0/16
metricsBindAddress: 127.0.0.1:20249
healthzBindAddress: 127.0.0.1:20256
clientConnection:
  kubeconfig: /var/lib/knode/proxy.kubeconfig
iptables:
  masqueradeAll: false
  masqueradeBit: 14
  syncPeriod: 30s
  minSyncPeriod: 1s
nftables:
  masqueradeAll: true
  masqueradeBit: 15
  syncPeriod: 20s
  minSyncPeriod: 2s
nodePortAddresses: [primary]
conntrack:
  maxPerCore: 32768
  min: 131072
  tcpEstablishedTimeout: 24h0m0s
  tcpCloseWaitTimeout: 1h0m0s
  tcpBeLiberal: true
  udpTimeout: 30s
`;

t.test('config file, flags override it', async (t) => {
  const c = parseProxyArgs(['--config', '/etc/kp.yaml'], files({ '/etc/kp.yaml': FILE }));
  t.equal(c.configFile, '/etc/kp.yaml');
  t.equal(c.mode, 'nftables');
  t.equal(c.clusterCIDR, '10.244.0.0/16');
  t.equal(c.metricsBindAddress, '127.0.0.1:20249');
  t.equal(c.kubeconfig, '/var/lib/knode/proxy.kubeconfig');
  t.equal(c.masqueradeAll, true, 'the nftables section, the mode in use');
  t.equal(c.masqueradeBit, 15);
  t.equal(c.syncPeriodMs, 20_000);
  t.equal(c.minSyncPeriodMs, 2_000);
  t.same(c.nodePortAddresses, ['primary']);
  t.same(c.conntrack, {
    maxPerCore: 32768,
    min: 131072,
    tcpEstablishedTimeoutMs: 86_400_000,
    tcpCloseWaitTimeoutMs: 3_600_000,
    tcpBeLiberal: true,
    udpTimeoutMs: 30_000,
  });
  const o = parseProxyArgs(['--config=/etc/kp.yaml', '--proxy-mode', 'iptables', '--metrics-bind-address', '127.0.0.1:0'], files({ '/etc/kp.yaml': FILE }));
  t.equal(o.mode, 'iptables', 'flag wins over the file');
  t.equal(o.metricsBindAddress, '127.0.0.1:0');
  t.equal(o.masqueradeBit, 14, 'iptables section for iptables mode');
  const order = parseProxyArgs(['--proxy-mode', 'iptables', '--config=/etc/kp.yaml'], files({ '/etc/kp.yaml': FILE }));
  t.equal(order.mode, 'iptables', 'flags win whatever their position');
});

t.test('validation: clear errors, all at once', async (t) => {
  const p = problems(() =>
    parseProxyArgs(
      [
        '--proxy-mode', 'userspace',
        '--cluster-cidr', '10.244.0.0/33',
        '--metrics-bind-address', 'nowhere',
        '--nodeport-addresses', 'primary,10.0.0.0/8',
        '--iptables-sync-period', '1s',
        '--iptables-min-sync-period', '5s',
        '--iptables-masquerade-bit', '40',
        '--bogus',
        'stray',
      ],
      noFile,
    ),
  );
  t.match(p.join('\n'), /proxy mode "userspace": must be one of iptables, nftables, ipvs/);
  t.match(p.join('\n'), /cluster CIDR "10.244.0.0\/33" is not a CIDR/);
  t.match(p.join('\n'), /metrics bind address "nowhere" is not host:port/);
  t.match(p.join('\n'), /"primary" cannot be combined/);
  t.match(p.join('\n'), /min sync period \(5000 ms\) must be <= sync period \(1000 ms\)/);
  t.match(p.join('\n'), /masquerade bit 40/);
  t.match(p.join('\n'), /unknown flag --bogus/);
  t.match(p.join('\n'), /unexpected argument "stray"/);
  t.match(problems(() => parseProxyArgs(['--iptables-sync-period', 'soon'], noFile)), [/invalid duration "soon"/]);
  t.match(problems(() => parseProxyArgs(['--kubeconfig'], noFile)), [/--kubeconfig needs a value/]);
  t.match(problems(() => parseProxyArgs(['--config', '/nope'], noFile)), [/--config \/nope: ENOENT/]);
  t.match(problems(() => parseProxyArgs(['--config', '/f'], files({ '/f': 'kind: Pod\napiVersion: v1\n' }))), [
    /kind must be KubeProxyConfiguration/,
    /apiVersion must be kubeproxy.config.k8s.io\/v1alpha1/,
  ]);
  t.match(problems(() => parseProxyArgs(['--config', '/f'], files({ '/f': FILE.replace('syncPeriod: 20s', 'syncPeriod: 20 seconds') }))), [
    /nftables.syncPeriod: invalid duration/,
  ]);
  t.match(problems(() => parseProxyArgs(['--config', '/f'], files({ '/f': '{ not: yaml: [' }))), [/not YAML/]);
});

t.test('Go durations', async (t) => {
  t.equal(parseGoDuration('30s'), 30_000);
  t.equal(parseGoDuration('1m0s'), 60_000);
  t.equal(parseGoDuration('1h30m'), 5_400_000);
  t.equal(parseGoDuration('250ms'), 250);
  t.equal(parseGoDuration('1.5s'), 1500);
  t.equal(parseGoDuration('0'), 0);
  t.equal(parseGoDuration('10'), undefined);
  t.equal(parseGoDuration(''), undefined);
  t.equal(parseGoDuration('-1s'), undefined);
});

t.test('host:port and node port addresses', async (t) => {
  t.same(splitHostPort('127.0.0.1:10249'), { host: '127.0.0.1', port: 10249 });
  t.same(splitHostPort('[::1]:0'), { host: '::1', port: 0 });
  t.throws(() => splitHostPort('10249'), { code: 'PROXY_CONFIG_INVALID' });
  const node = { nodeIPs: ['192.168.50.1'], localIPs: ['127.0.0.1', '192.168.50.1', '10.244.0.1', 'fd00::1'] };
  t.same(resolveNodePortAddresses([], node), [], 'empty: every local address');
  t.same(resolveNodePortAddresses(['primary'], node), ['192.168.50.1']);
  t.same(resolveNodePortAddresses(['192.168.0.0/16', '127.0.0.0/8'], node), ['127.0.0.1', '192.168.50.1']);
  t.same(resolveNodePortAddresses(['fd00::/64'], node), ['fd00::1']);
  t.ok(cidrContainsIP('0.0.0.0/0', '8.8.8.8'));
  t.notOk(cidrContainsIP('10.0.0.0/8', '11.0.0.1'));
  t.notOk(cidrContainsIP('10.0.0.0/8', 'fd00::1'));
  t.ok(cidrContainsIP('fd00::/8', 'fdff:1::2'));
  t.ok(cidrContainsIP('::ffff:0:0/96', '::ffff:10.0.0.1'));
});

t.test('node IPs and eligibility (proxier helpers)', async (t) => {
  const { nodeHostIPs, nodeEligible } = await import('../../proxy/proxier.js');
  t.same(
    nodeHostIPs({
      status: {
        addresses: [
          { type: 'Hostname', address: 'n1' },
          { type: 'ExternalIP', address: '203.0.113.5' },
          { type: 'InternalIP', address: '192.168.50.1' },
          { type: 'InternalIP', address: '192.168.50.9' },
          { type: 'InternalIP', address: 'fd00::1' },
        ],
      },
    }),
    ['192.168.50.1', 'fd00::1'],
    'InternalIP first, one per family',
  );
  t.same(nodeHostIPs({ status: { addresses: [{ type: 'ExternalIP', address: '203.0.113.5' }] } }), ['203.0.113.5']);
  t.same(nodeHostIPs({}), []);
  t.equal(nodeEligible(undefined), true);
  t.equal(nodeEligible({ metadata: { name: 'n' } }), true);
  t.equal(nodeEligible({ metadata: { name: 'n', deletionTimestamp: new Date() } }), false);
  t.equal(nodeEligible({ spec: { taints: [{ key: 'ToBeDeletedByClusterAutoscaler', effect: 'NoSchedule' }] } }), false);
});

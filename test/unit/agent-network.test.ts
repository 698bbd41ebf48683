import t from 'tap';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Node } from '@kubernetes/client-node';
import { conflistName, hostGwRoutes, podCIDRv4, renderConflist, routeChanges, writeConflistIfChanged } from '../../agent/network/cni-config.js';
import { parseFlags } from '../../agent/config/flags.js';
import { resolveConfig } from '../../agent/config/index.js';

function node(name: string, cidr: string | undefined, ip: string | undefined): V1Node {
  return {
    metadata: { name },
    spec: cidr === undefined ? {} : { podCIDR: cidr, podCIDRs: [cidr] },
    status: { addresses: ip === undefined ? [{ type: 'Hostname', address: name }] : [{ type: 'InternalIP', address: ip }, { type: 'Hostname', address: name }] },
  };
}

t.test('renderConflist: bridge + portmap over the podCIDR', async (t) => {
  const text = renderConflist({ podCIDR: '10.244.1.0/24', ipamDataDir: '/var/lib/knode/cni/networks' });
  const c = JSON.parse(text) as { name: string; cniVersion: string; plugins: Record<string, unknown>[] };
  t.equal(c.name, 'knode');
  t.same(c.plugins.map((p) => p.type), ['bridge', 'portmap']);
  t.match(c.plugins[0], { bridge: 'cni0', isGateway: true, ipMasq: false, hairpinMode: true, ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24' }]], dataDir: '/var/lib/knode/cni/networks' } });
  t.same(c.plugins[1]?.capabilities, { portMappings: true });
  t.equal(renderConflist({ podCIDR: '10.244.1.0/24', ipamDataDir: '/var/lib/knode/cni/networks' }), text, 'stable');
});

t.test('writeConflistIfChanged writes atomically and only on change', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'knode-net-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const conf = join(dir, 'net.d');
  t.equal(await writeConflistIfChanged(conf, 'a\n'), true, 'first write (dir created)');
  const m1 = (await stat(join(conf, conflistName))).mtimeMs;
  t.equal(await writeConflistIfChanged(conf, 'a\n'), false, 'same content: no write');
  t.equal((await stat(join(conf, conflistName))).mtimeMs, m1);
  t.equal(await writeConflistIfChanged(conf, 'b\n'), true, 'new content');
  t.equal(await readFile(join(conf, conflistName), 'utf8'), 'b\n');
  t.same(await readdir(conf), [conflistName], 'no temp file left');
});

t.test('hostGwRoutes: one route per other node with a CIDR and an InternalIP', async (t) => {
  const nodes = [node('node-1', '10.244.0.0/24', '172.31.0.11'), node('node-3', '10.244.2.0/24', '172.31.0.13'), node('node-2', '10.244.1.0/24', '172.31.0.12'), node('node-4', undefined, '172.31.0.14'), node('node-5', '10.244.4.0/24', undefined)];
  t.same(hostGwRoutes(nodes, 'node-1'), [
    { dst: '10.244.1.0/24', via: '172.31.0.12' },
    { dst: '10.244.2.0/24', via: '172.31.0.13' },
  ]);
  t.equal(podCIDRv4({ spec: { podCIDRs: ['fd00::/64', '10.244.9.0/24'] } }), '10.244.9.0/24', 'the IPv4 one of a dual-stack node');
});

t.test('routeChanges: replace new/moved, remove gone', async (t) => {
  const current = [
    { dst: '10.244.1.0/24', via: '172.31.0.12' },
    { dst: '10.244.2.0/24', via: '172.31.0.13' },
    { dst: '10.244.3.0/24', via: '172.31.0.14' },
  ];
  const desired = [
    { dst: '10.244.1.0/24', via: '172.31.0.12' },
    { dst: '10.244.2.0/24', via: '172.31.0.23' },
    { dst: '10.244.5.0/24', via: '172.31.0.15' },
  ];
  t.same(routeChanges(current, desired), {
    replace: [
      { dst: '10.244.2.0/24', via: '172.31.0.23' },
      { dst: '10.244.5.0/24', via: '172.31.0.15' },
    ],
    remove: [{ dst: '10.244.3.0/24', via: '172.31.0.14' }],
  });
  t.same(routeChanges(desired, desired), { replace: [], remove: [] });
});

t.test('agent flags: --cni-conf-dir, --cgroup-root, --pod-logs-dir', async (t) => {
  const c = resolveConfig({ argv: ['--cni-conf-dir=/x/net.d', '--cgroup-root', '/lab/node-1', '--pod-logs-dir=/x/logs'], hostname: 'h' });
  if (c.help) throw new Error('unexpected help');
  t.equal(c.config.cniConfDir, '/x/net.d');
  t.equal(c.config.cgroupRoot, '/lab/node-1');
  t.equal(c.config.podLogsDir, '/x/logs');
  const d = resolveConfig({ argv: [], hostname: 'h' });
  if (d.help) throw new Error('unexpected help');
  t.equal(d.config.cniConfDir, '/etc/cni/net.d');
  t.equal(d.config.cgroupRoot, undefined);
  t.equal(d.config.podLogsDir, '/var/log/pods');
  const f = resolveConfig({ argv: ['--config=/c.yaml'], fileText: 'kind: KubeletConfiguration\ncgroupRoot: /from-file\npodLogsDir: /logs-from-file\n', hostname: 'h' });
  if (f.help) throw new Error('unexpected help');
  t.equal(f.config.cgroupRoot, '/from-file', 'cgroupRoot from the config file');
  t.equal(f.config.podLogsDir, '/logs-from-file', 'podLogsDir from the config file');
  t.match(parseFlags(['--cni-conf-dir=relative']).problems, [/--cni-conf-dir: "relative" must be an absolute path/]);
});

import t from 'tap';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULT_DATA_DIR,
  DEFAULT_SUBNET_FILE,
  parseFlannelConf,
  parseSubnetEnv,
  readScratch,
  renderDelegate,
  saveScratch,
  savedContainers,
  scratchPath,
} from '../../cni/flannel.js';
import { formatIpNet } from '../../cni/ip.js';
import { CniError } from '../../cni/types.js';
import type { JsonObject } from '../../cni/types.js';

const env = ['FLANNEL_NETWORK=10.244.0.0/16', 'FLANNEL_SUBNET=10.244.1.1/24', 'FLANNEL_MTU=1450', 'FLANNEL_IPMASQ=true', ''].join('\n');

function code(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof CniError ? err.cniCode : -1;
  }
  return undefined;
}

t.test('subnet.env parsing', async (t) => {
  const se = parseSubnetEnv(env);
  t.equal(formatIpNet(se.network!), '10.244.0.0/16');
  t.equal(formatIpNet(se.subnet!), '10.244.1.0/24', 'the lease .1/24 becomes its network, as net.ParseCIDR');
  t.equal(se.mtu, 1450);
  t.equal(se.ipMasq, true);
  t.equal(se.ip6Network, undefined);
  const v6 = parseSubnetEnv('FLANNEL_IPV6_NETWORK=fd10::/56\r\nFLANNEL_IPV6_SUBNET=fd10:0:0:1::1/64\r\nFLANNEL_MTU=1400\r\nFLANNEL_IPMASQ=false\r\n# comment\nOTHER=x\n');
  t.equal(formatIpNet(v6.ip6Subnet!), 'fd10:0:0:1::/64');
  t.equal(v6.ipMasq, false);
  t.equal(v6.subnet, undefined);
  t.equal(code(() => parseSubnetEnv('FLANNEL_NETWORK=10.0.0.0/8\n')), 7, 'missing keys');
  t.match(
    (() => {
      try {
        parseSubnetEnv('FLANNEL_NETWORK=10.0.0.0/8\nFLANNEL_SUBNET=10.0.1.1/24\n', '/x/subnet.env');
      } catch (err) {
        return (err as Error).message;
      }
      return '';
    })(),
    '/x/subnet.env is missing FLANNEL_MTU, FLANNEL_IPMASQ',
  );
  t.equal(code(() => parseSubnetEnv(env.replace('10.244.1.1/24', 'nope'))), 7, 'bad CIDR');
  t.equal(code(() => parseSubnetEnv(env.replace('1450', '-1'))), 7, 'bad MTU');
  t.equal(parseSubnetEnv(env.replace('IPMASQ=true', 'IPMASQ=TRUE')).ipMasq, false, 'only "true" is true, as upstream');
});

t.test('config defaults', async (t) => {
  t.same(parseFlannelConf({ name: 'n' }), {
    subnetFile: DEFAULT_SUBNET_FILE,
    dataDir: DEFAULT_DATA_DIR,
    delegate: undefined,
    ipam: undefined,
    runtimeConfig: undefined,
  });
  t.equal(DEFAULT_SUBNET_FILE, '/run/flannel/subnet.env');
  t.equal(DEFAULT_DATA_DIR, '/var/lib/cni/flannel');
  t.equal(code(() => parseFlannelConf({ name: 'n', dataDir: 'relative' })), 7);
  t.equal(code(() => parseFlannelConf({ name: 'n', delegate: 'bridge' })), 7);
});

t.test('delegate config as upstream renders it', async (t) => {
  const se = parseSubnetEnv(env);
  const d = renderDelegate(parseFlannelConf({ name: 'cbr0' }), 'cbr0', '1.0.0', se);
  t.same(d, {
    name: 'cbr0',
    type: 'knode-bridge',
    ipMasq: false,
    mtu: 1450,
    isGateway: true,
    cniVersion: '1.0.0',
    ipam: { type: 'knode-host-local', ranges: [[{ subnet: '10.244.1.0/24' }]], routes: [{ dst: '10.244.0.0/16' }] },
  });
  const conf = parseFlannelConf({
    name: 'cbr0',
    delegate: { type: 'bridge', hairpinMode: true, isDefaultGateway: true, ipMasq: true, mtu: 1400, isGateway: false },
    ipam: { type: 'host-local', dataDir: '/x', routes: [{ dst: '192.168.0.0/16' }] },
    runtimeConfig: { portMappings: [] },
  });
  const noMasq = parseSubnetEnv(env.replace('IPMASQ=true', 'IPMASQ=false'));
  t.same(renderDelegate(conf, 'cbr0', undefined, noMasq), {
    type: 'bridge',
    hairpinMode: true,
    isDefaultGateway: true,
    ipMasq: true,
    mtu: 1400,
    isGateway: false,
    runtimeConfig: { portMappings: [] },
    name: 'cbr0',
    ipam: {
      type: 'host-local',
      dataDir: '/x',
      ranges: [[{ subnet: '10.244.1.0/24' }]],
      routes: [{ dst: '192.168.0.0/16' }, { dst: '10.244.0.0/16' }],
    },
  });
  t.equal(renderDelegate(parseFlannelConf({ name: 'n' }), 'n', '1.0.0', noMasq).ipMasq, true, 'flannel not masquerading: the delegate does');
  const other = renderDelegate(parseFlannelConf({ name: 'n', delegate: { type: 'ipvlan' } }), 'n', '1.0.0', se);
  t.notOk('isGateway' in other, 'isGateway only for bridge delegates');
  const dual = parseSubnetEnv(env + 'FLANNEL_IPV6_NETWORK=fd10::/56\nFLANNEL_IPV6_SUBNET=fd10:0:0:1::1/64\n');
  const dd = renderDelegate(parseFlannelConf({ name: 'n' }), 'n', '1.0.0', dual);
  t.same((dd.ipam as JsonObject).ranges, [[{ subnet: '10.244.1.0/24' }], [{ subnet: 'fd10:0:0:1::/64' }]]);
  t.same((dd.ipam as JsonObject).routes, [{ dst: '10.244.0.0/16' }, { dst: 'fd10::/56' }]);
  const bads: JsonObject[] = [{ name: 'x' }, { ipam: {} }, { type: 3 }];
  for (const bad of bads) {
    t.equal(code(() => renderDelegate(parseFlannelConf({ name: 'n', delegate: bad }), 'n', '1.0.0', se)), 7, JSON.stringify(bad));
  }
  t.equal(code(() => renderDelegate(parseFlannelConf({ name: 'n', ipam: { routes: 'x' } }), 'n', '1.0.0', se)), 7, 'bad ipam.routes');
});

t.test('saved delegate configs stay inside dataDir', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'knode-t-flannel-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.equal(scratchPath(dir, 'abc123'), join(dir, 'abc123'));
  for (const id of ['', '.', '..', '../x', 'a/b', '/etc/passwd', 'a\\b', 'a\0b']) {
    t.equal(code(() => scratchPath(dir, id)), 4, JSON.stringify(id));
  }
  const data = join(dir, 'sub', 'flannel');
  saveScratch(data, 'ctr1', Buffer.from('{"type":"knode-bridge"}'));
  t.equal(readFileSync(join(data, 'ctr1'), 'utf8'), '{"type":"knode-bridge"}');
  t.equal(statSync(join(data, 'ctr1')).mode & 0o777, 0o600);
  t.equal(statSync(data).mode & 0o777, 0o700);
  t.same(readdirSync(data), ['ctr1'], 'no temp file left');
  t.equal(readScratch(data, 'ctr1')?.toString(), '{"type":"knode-bridge"}');
  t.equal(readScratch(data, 'missing'), undefined);
  t.equal(readScratch(join(dir, 'nope'), 'ctr1'), undefined, 'no dataDir at all');
  saveScratch(data, 'ctr2', Buffer.from('{"type":"knode-bridge","name":"other"}'));
  saveScratch(data, 'ctr3', Buffer.from('{"type":"knode-bridge","name":"mine"}'));
  saveScratch(data, 'ctr4', Buffer.from('not json'));
  t.same(savedContainers(data, 'mine'), ['ctr3'], 'GC only looks at configs of its own network');
  t.same(savedContainers(join(dir, 'nope'), 'mine'), []);
});

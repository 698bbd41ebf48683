import t from 'tap';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { invokePlugin, parseCniArgs } from '../../cni/skel.js';
import { hostLocalPlugin } from '../../cni/ipam/host-local.js';
import { formatResult, validateContainerId, validateIfName, validateNetworkName, CniError } from '../../cni/types.js';
import { formatIp, parseIp, parseIpNet } from '../../cni/ip.js';
import { createLogger } from '../../lib/log.js';

const quiet = createLogger({ component: 'test', write: () => undefined });
const dataDir = mkdtempSync(join(tmpdir(), 'knode-skel-'));
t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));

const env = (over: Record<string, string | undefined> = {}): Record<string, string | undefined> => ({
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: 'ctr1',
  CNI_NETNS: '/var/run/netns/x',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin',
  ...over,
});
const conf = (over: Record<string, unknown> = {}): Buffer =>
  Buffer.from(
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'skelnet',
      type: 'knode-host-local',
      ipam: { type: 'knode-host-local', dataDir, ranges: [[{ subnet: '10.7.0.0/24' }]] },
      ...over,
    }),
  );

async function call(e: Record<string, string | undefined>, stdin: Buffer): Promise<{ exitCode: number; out: Record<string, unknown> }> {
  const r = await invokePlugin(hostLocalPlugin, e, stdin, quiet);
  return { exitCode: r.exitCode, out: r.stdout === '' ? {} : (JSON.parse(r.stdout) as Record<string, unknown>) };
}

t.test('VERSION', async (t) => {
  const r = await call({ CNI_COMMAND: 'VERSION' }, Buffer.alloc(0));
  t.equal(r.exitCode, 0);
  t.same(r.out, { cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
});

t.test('ADD, CHECK, DEL through the skeleton', async (t) => {
  const add = await call(env(), conf());
  t.equal(add.exitCode, 0);
  t.same(add.out, { cniVersion: '1.0.0', ips: [{ address: '10.7.0.2/24', gateway: '10.7.0.1' }], dns: {} });
  const check = await call(env({ CNI_COMMAND: 'CHECK' }), conf({ prevResult: add.out }));
  t.same(check, { exitCode: 0, out: {} });
  const del = await call(env({ CNI_COMMAND: 'DEL', CNI_NETNS: undefined }), conf());
  t.same(del, { exitCode: 0, out: {} });
  const checkGone = await call(env({ CNI_COMMAND: 'CHECK' }), conf({ prevResult: add.out }));
  t.equal(checkGone.exitCode, 1);
  t.same(readdirSync(join(dataDir, 'skelnet')).filter((n) => n.startsWith('10.')), []);
});

t.test('0.4.0 results carry ips[].version', async (t) => {
  const add = await call(env({ CNI_CONTAINERID: 'old' }), conf({ cniVersion: '0.4.0' }));
  t.same(add.out.ips, [{ version: '4', address: '10.7.0.3/24', gateway: '10.7.0.1' }]);
  await call(env({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'old' }), conf({ cniVersion: '0.4.0' }));
});

t.test('error codes', async (t) => {
  const cases: [string, Record<string, string | undefined>, Buffer, number][] = [
    ['no command', env({ CNI_COMMAND: undefined }), conf(), 4],
    ['unknown command', env({ CNI_COMMAND: 'FOO' }), conf(), 4],
    ['missing netns on ADD', env({ CNI_NETNS: '' }), conf(), 4],
    ['missing path', env({ CNI_PATH: undefined }), conf(), 4],
    ['container id with slash', env({ CNI_CONTAINERID: '../../etc' }), conf(), 4],
    ['container id leading dot', env({ CNI_CONTAINERID: '.hidden' }), conf(), 4],
    ['ifname too long', env({ CNI_IFNAME: 'a'.repeat(16) }), conf(), 4],
    ['ifname with slash', env({ CNI_IFNAME: 'a/b' }), conf(), 4],
    ['ifname dotdot', env({ CNI_IFNAME: '..' }), conf(), 4],
    ['bad CNI_ARGS', env({ CNI_ARGS: 'noequals' }), conf(), 4],
    ['malformed stdin', env(), Buffer.from('{"cniVersion":'), 6],
    ['stdin not an object', env(), Buffer.from('[1]'), 6],
    ['unsupported version', env(), conf({ cniVersion: '9.9.9' }), 1],
    ['missing version', env(), conf({ cniVersion: undefined }), 1],
    ['CHECK on 0.3.1', env({ CNI_COMMAND: 'CHECK' }), conf({ cniVersion: '0.3.1' }), 1],
    ['GC on 1.0.0', env({ CNI_COMMAND: 'GC' }), conf(), 1],
    ['network name escapes', env(), conf({ name: '../x' }), 7],
    ['network name missing', env(), conf({ name: undefined }), 7],
    ['invalid ipam', env(), conf({ ipam: { ranges: [[{ subnet: '300.0.0.0/8' }]] } }), 7],
    ['wrong type', env(), conf({ ipam: { ranges: [[{ subnet: 5 }]] } }), 7],
    ['CHECK without prevResult', env({ CNI_COMMAND: 'CHECK' }), conf(), 7],
  ];
  for (const [what, e, stdin, code] of cases) {
    const r = await call(e, stdin);
    t.equal(r.exitCode, 1, `${what}: exit 1`);
    t.equal(r.out.code, code, `${what}: code ${code}`);
    t.type(r.out.msg, 'string');
    t.type(r.out.cniVersion, 'string');
  }
});

t.test('GC on 1.1.0 removes what is not valid', async (t) => {
  await call(env({ CNI_CONTAINERID: 'g1' }), conf({ cniVersion: '1.1.0' }));
  await call(env({ CNI_CONTAINERID: 'g2' }), conf({ cniVersion: '1.1.0' }));
  const r = await call(
    { CNI_COMMAND: 'GC', CNI_PATH: '/x' },
    conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'g2', ifname: 'eth0' }] }),
  );
  t.equal(r.exitCode, 0);
  const left = readdirSync(join(dataDir, 'skelnet')).filter((n) => n.startsWith('10.'));
  t.equal(left.length, 1);
  await call(env({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'g2' }), conf());
});

t.test('validators and args', async (t) => {
  t.same([...parseCniArgs('IgnoreUnknown=1;K8S_POD_NAME=a=b;')], [
    ['IgnoreUnknown', '1'],
    ['K8S_POD_NAME', 'a=b'],
  ]);
  t.doesNotThrow(() => validateContainerId('abc-1.2_3'));
  for (const bad of ['', '-a', 'a/b', 'a b', 'a\r\nb']) t.throws(() => validateContainerId(bad), CniError);
  for (const bad of ['', '.', '..', 'a:b', 'a b', 'x'.repeat(16), 'a/b']) t.throws(() => validateIfName(bad), CniError);
  t.doesNotThrow(() => validateIfName('eth0'));
  for (const bad of ['', '..', 'a/b', '.x', 5]) t.throws(() => validateNetworkName(bad), CniError);
});

t.test('result formatting and IP text', async (t) => {
  const r = formatResult(
    {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', mac: '0a:00:00:00:00:01', sandbox: '/var/run/netns/x' }],
      ips: [{ address: 'fd00::5/64', interface: 0 }],
      routes: [{ dst: '::/0', gw: 'fd00::1' }],
    },
    '1.1.0',
  );
  t.same(r, {
    cniVersion: '1.1.0',
    interfaces: [{ name: 'eth0', mac: '0a:00:00:00:00:01', sandbox: '/var/run/netns/x' }],
    ips: [{ address: 'fd00::5/64', interface: 0 }],
    routes: [{ dst: '::/0', gw: 'fd00::1' }],
    dns: {},
  });
  for (const [text, canon] of [
    ['fd00:0:0:0:0:0:0:1', 'fd00::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['::', '::'],
    ['::1', '::1'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['fe80::1:2', 'fe80::1:2'],
    ['10.0.0.255', '10.0.0.255'],
  ] as const) {
    t.equal(formatIp(parseIp(text)!), canon, `${text} → ${canon}`);
  }
  t.equal(parseIpNet('10.0.0.0/33'), undefined);
});

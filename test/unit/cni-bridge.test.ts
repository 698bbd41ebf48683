import t from 'tap';
import { parseBridgeConf, withDefaultRoutes } from '../../cni/bridge.js';
import { chainComment, chainName, jumpSources, renderMasq } from '../../cni/ipmasq.js';
import { CniError } from '../../cni/types.js';
import { parseIp, parseIpNet } from '../../cni/ip.js';
import { attr, cstr, parseAttrs, readCstr } from '../../lib/netlink/attrs.js';
import { formatMac, parseMac } from '../../lib/netlink/links.js';

t.test('bridge config defaults and options', async (t) => {
  const c = parseBridgeConf({ name: 'n', ipam: { type: 'knode-host-local' } });
  t.same(c, {
    bridge: 'cni0',
    isGateway: false,
    isDefaultGateway: false,
    forceAddress: false,
    ipMasq: false,
    mtu: undefined,
    hairpinMode: false,
    promiscMode: false,
    ipamType: 'knode-host-local',
  });
  const d = parseBridgeConf({ name: 'n', bridge: 'br9', isDefaultGateway: true, mtu: 1450, ipam: { type: 'host-local' } });
  t.equal(d.isGateway, true, 'isDefaultGateway implies isGateway');
  t.equal(d.mtu, 1450);
  t.equal(d.bridge, 'br9');
});

t.test('bridge config errors', async (t) => {
  const cases: [string, Record<string, unknown>, number][] = [
    ['no ipam', {}, 7],
    ['ipam without type', { ipam: {} }, 7],
    ['bridge name too long', { bridge: 'x'.repeat(16), ipam: { type: 'a' } }, 7],
    ['bridge name with slash', { bridge: '../x', ipam: { type: 'a' } }, 7],
    ['mtu string', { mtu: '1500', ipam: { type: 'a' } }, 7],
    ['isGateway string', { isGateway: 'yes', ipam: { type: 'a' } }, 7],
    ['vlan', { vlan: 10, ipam: { type: 'a' } }, 2],
    ['macspoofchk', { macspoofchk: true, ipam: { type: 'a' } }, 2],
  ];
  for (const [what, conf, code] of cases) {
    try {
      parseBridgeConf({ name: 'n', ...(conf as Record<string, never>) });
      t.fail(`${what}: should throw`);
    } catch (err) {
      t.ok(err instanceof CniError && err.cniCode === code, `${what} → ${code}`);
    }
  }
});

t.test('default routes for isDefaultGateway', async (t) => {
  const ips = [
    { net: parseIpNet('10.1.0.5/24')!, gateway: parseIp('10.1.0.1') },
    { net: parseIpNet('fd00::5/64')!, gateway: parseIp('fd00::1') },
  ];
  t.same(withDefaultRoutes([{ dst: '10.9.0.0/16' }], ips, true), [
    { dst: '10.9.0.0/16' },
    { dst: '0.0.0.0/0', gw: '10.1.0.1' },
    { dst: '::/0', gw: 'fd00::1' },
  ]);
  t.same(withDefaultRoutes([{ dst: '0.0.0.0/0', gw: '10.1.0.254' }], ips.slice(0, 1), true), [{ dst: '0.0.0.0/0', gw: '10.1.0.254' }]);
  t.same(withDefaultRoutes([], ips, false), []);
});

t.test('ipMasq rules are the reference ones', async (t) => {
  // sha512("mynet" + "ctr1"), first 24 hex chars, as utils.FormatChainName
  t.match(chainName('mynet', 'ctr1'), /^CNI-[0-9a-f]{24}$/);
  t.equal(chainName('mynet', 'ctr1').length, 28);
  t.equal(chainComment('mynet', 'ctr1'), 'name: "mynet" id: "ctr1"');
  const r = renderMasq(parseIpNet('10.1.0.5/24')!, 'mynet', 'ctr1');
  t.same(r.chainRules, [
    ['-d', '10.1.0.0/24', '-j', 'ACCEPT', '-m', 'comment', '--comment', 'name: "mynet" id: "ctr1"'],
    ['!', '-d', '224.0.0.0/4', '-j', 'MASQUERADE', '-m', 'comment', '--comment', 'name: "mynet" id: "ctr1"'],
  ]);
  t.same(r.jump, ['-s', '10.1.0.5', '-j', r.chain, '-m', 'comment', '--comment', 'name: "mynet" id: "ctr1"']);
  const v6 = renderMasq(parseIpNet('fd00::5/64')!, 'mynet', 'ctr1');
  t.equal(v6.chainRules[1]![2], 'ff00::/8');
  const saved = [
    '-P POSTROUTING ACCEPT',
    `-A POSTROUTING -s 10.1.0.5/32 -m comment --comment "name: \\"mynet\\" id: \\"ctr1\\"" -j ${r.chain}`,
    '-A POSTROUTING -s 10.1.0.6/32 -m comment --comment "x" -j CNI-other',
  ].join('\n');
  t.same(jumpSources(saved, r.chain), ['10.1.0.5']);
});

t.test('netlink attribute encoding round-trips', async (t) => {
  const buf = Buffer.concat([attr(3, cstr('eth0')), attr(18, attr(1, cstr('veth')), true)]);
  const m = parseAttrs(buf);
  t.equal(readCstr(m.get(3)), 'eth0');
  t.equal(readCstr(parseAttrs(m.get(18)!).get(1)), 'veth');
  t.equal(buf.readUInt16LE(2 + 12) & 0x8000, 0x8000, 'nested flag set');
  t.equal(formatMac(parseMac('0A:58:0a:01:00:05')), '0a:58:0a:01:00:05');
  t.throws(() => parseMac('0a:58'));
});

// lib/netns.ts and lib/netlink in-process, against throw-away namespaces (root only).
import t from 'tap';
import { readlinkSync } from 'node:fs';
import { CURRENT_NETNS, netnsId, sameNetns, withNetnsSync } from '../../lib/netns.js';
import { Rtnl, addAddress, addRoute, createBridge, getLinkByName, isNetlinkErrno, listAddresses, listLinks, listRoutes, readSysctl, setLinkUp, writeSysctl } from '../../lib/netlink/index.js';
import { formatIpNet, parseIp, parseIpNet } from '../../lib/netlink/ip.js';
import { isKnodeError } from '../../lib/errors.js';
import { createNetns, deleteNetns } from '../../cni/testing/harness.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

t.test('withNetnsSync enters and always leaves', async (t) => {
  const ns = await createNetns();
  t.teardown(() => deleteNetns(ns));
  const before = readlinkSync(CURRENT_NETNS);
  const inside = withNetnsSync(ns.path, () => readlinkSync(CURRENT_NETNS));
  t.not(inside, before, 'inside is another namespace');
  t.equal(`net:[${netnsId(ns.path)!.ino}]`, inside, 'inside is the target namespace');
  t.equal(readlinkSync(CURRENT_NETNS), before, 'back in the original namespace');
  t.throws(() => withNetnsSync(ns.path, () => {
    throw new Error('boom');
  }));
  t.equal(readlinkSync(CURRENT_NETNS), before, 'back after a throw');
  t.throws(() => withNetnsSync(ns.path, () => Promise.resolve(1)), { code: 'NETNS_ASYNC_FN' });
  t.equal(readlinkSync(CURRENT_NETNS), before, 'back after an async fn');
  try {
    withNetnsSync('/run/netns/knode-t-does-not-exist', () => 0);
    t.fail('should throw');
  } catch (err) {
    t.ok(isKnodeError(err, 'NETNS_NOT_FOUND'));
  }
  t.ok(sameNetns(ns.path, ns.path));
  t.notOk(sameNetns(ns.path, CURRENT_NETNS));
});

t.test('a socket opened in a namespace keeps working there from the host thread', async (t) => {
  const ns = await createNetns();
  t.teardown(() => deleteNetns(ns));
  const nl = Rtnl.openIn(ns.path);
  t.teardown(() => nl.close());
  const links = await listLinks(nl);
  t.same(links.map((l) => l.name), ['lo'], 'only lo in a fresh namespace');
  await createBridge(nl, { name: 'kbrx' });
  const err = await createBridge(nl, { name: 'kbrx' }).catch((e: unknown) => e);
  t.ok(isNetlinkErrno(err, 'EEXIST'), 'EEXIST by errno');
  const br = (await getLinkByName(nl, 'kbrx'))!;
  t.equal(br.kind, 'bridge');
  await setLinkUp(nl, br.index);
  await addAddress(nl, br.index, parseIpNet('10.44.0.1/24')!);
  await addAddress(nl, br.index, parseIpNet('fd44::1/64')!, { noDad: true });
  await addRoute(nl, { dst: parseIpNet('10.45.0.0/16')!, gw: parseIp('10.44.0.9')!, oif: br.index });
  await addRoute(nl, { dst: parseIpNet('10.46.0.0/16')!, gw: parseIp('192.0.2.1')!, oif: br.index, onlink: true });
  const addrs = await listAddresses(nl, { index: br.index });
  const texts = addrs.map((a) => formatIpNet(a.net));
  t.ok(texts.includes('10.44.0.1/24') && texts.includes('fd44::1/64'), `addresses listed: ${texts.join(' ')}`);
  const routes = await listRoutes(nl, { family: 4 });
  t.ok(routes.some((r) => r.dst.prefix === 16 && r.gw?.value === parseIp('192.0.2.1')!.value), 'onlink route present');
  t.equal(await getLinkByName(nl, 'nope'), undefined, 'missing link is undefined');
  // The root namespace did not get the bridge.
  const host = Rtnl.open();
  t.teardown(() => host.close());
  t.equal(await getLinkByName(host, 'kbrx'), undefined, 'nothing leaked into the calling namespace');
  writeSysctl('net/ipv4/conf/kbrx/forwarding', '1', ns.path);
  t.equal(readSysctl('net/ipv4/conf/kbrx/forwarding', ns.path), '1', 'sysctl written in the namespace');
});

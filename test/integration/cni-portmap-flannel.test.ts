// knode-portmap and knode-flannel as real processes in throw-away namespaces (a "host" netns plays
// the node; nothing touches the root netns): flannel → knode-bridge + knode-host-local from a
// subnet.env, DEL after the subnet file changed; a knode-bridge + knode-portmap chain serving
// hostPort 18080 → busybox httpd :8080 to a client netns and to the host itself; the reference
// portmap (/usr/lib/cni/portmap) rendering the very same nat table as knode-portmap, and each
// one's DEL removing what the other set up.
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { BIN_DIR, REFERENCE_DIR, buildDaemon, buildPlugin, buildPlugins, createNetns, deleteNetns, inNetns, runPlugin } from '../../cni/testing/harness.js';
import type { Netns, PluginOutcome } from '../../cni/testing/harness.js';
import { dnatChainName } from '../../cni/portmap.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}


/** The harness bundles bridge/host-local/loopback; this file also needs portmap, flannel and the daemon. */
let daemonBundle = '';
async function buildMine(): Promise<void> {
  await buildPlugins();
  await Promise.all(['knode-portmap', 'knode-flannel'].map((name) => buildPlugin(name, `cni/bin/${name}.ts`)));
  daemonBundle = await buildDaemon();
}

await buildMine();

type Tap = { teardown(fn: () => void | Promise<void>): void };

interface Env {
  host: Netns;
  dir: string;
  ns(): Promise<Netns>;
}

async function env(t: Tap): Promise<Env> {
  const host = await createNetns();
  const created: Netns[] = [host];
  const dir = mkdtempSync(join(tmpdir(), 'knode-t-pmfl-'));
  t.teardown(async () => {
    for (const ns of created.reverse()) await deleteNetns(ns);
    rmSync(dir, { recursive: true, force: true });
  });
  await inNetns(host, 'ip', ['link', 'set', 'lo', 'up'], false);
  return {
    host,
    dir,
    ns: async () => {
      const ns = await createNetns();
      created.push(ns);
      return ns;
    },
  };
}

// Daemon off: these calls must work as containerd runs them, with no knode-cni-daemon around.
const noDaemon = { KNODE_CNI_DAEMON: 'off' };

function call(e: Env, plugin: string, command: string, netns: string, id: string, config: unknown, dir = BIN_DIR): Promise<PluginOutcome> {
  return runPlugin({ plugin, dir, command, host: e.host, containerId: id, netns, ifName: 'eth0', config, env: noDaemon });
}

async function nat(ns: Netns): Promise<string> {
  return (await inNetns(ns, 'iptables', ['-w', '5', '-t', 'nat', '-S'], false)).stdout;
}

function ipFiles(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n)) : [];
}

function subnetEnv(subnet: string, ipMasq: boolean): string {
  return `FLANNEL_NETWORK=10.70.0.0/16\nFLANNEL_SUBNET=${subnet}\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=${ipMasq}\n`;
}

t.test('knode-flannel: subnet.env → knode-bridge + knode-host-local; DEL after subnet.env changed', async (t) => {
  const e = await env(t);
  const c = await e.ns();
  const subnetFile = join(e.dir, 'subnet.env');
  const dataDir = join(e.dir, 'flannel');
  const ipamDir = join(e.dir, 'ipam');
  writeFileSync(subnetFile, subnetEnv('10.70.3.1/24', false));
  const conf = { cniVersion: '1.0.0', name: 'knode-t-fl', type: 'knode-flannel', subnetFile, dataDir, delegate: { bridge: 'kfl0' }, ipam: { dataDir: ipamDir } };
  const add = await call(e, 'knode-flannel', 'ADD', c.path, 'flctr1', conf);
  t.equal(add.code, 0, `ADD ${add.stdout}${add.stderr}`);
  t.match(add.json, {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'kfl0' }, { name: /^veth/ }, { name: 'eth0', sandbox: c.path }],
    ips: [{ address: '10.70.3.2/24', gateway: '10.70.3.1' }],
    routes: [{ dst: '10.70.0.0/16' }],
  });
  t.ok(existsSync(join(dataDir, 'flctr1')), 'delegate config saved');
  t.same(ipFiles(join(ipamDir, 'knode-t-fl')), ['10.70.3.2']);
  const link = await inNetns(c, 'ip', ['-o', 'link', 'show', 'dev', 'eth0'], false);
  t.match(link.stdout, /mtu 1400/, 'FLANNEL_MTU');
  const routes = await inNetns(c, 'ip', ['route'], false);
  t.match(routes.stdout, /10\.70\.0\.0\/16 via 10\.70\.3\.1 dev eth0/, 'route to FLANNEL_NETWORK');
  t.match(await nat(e.host), /-A POSTROUTING -s 10\.70\.3\.2\/32 .* -j CNI-/, 'ipMasq = !FLANNEL_IPMASQ');
  t.equal((await inNetns(c, 'ping', ['-c', '1', '-W', '3', '10.70.3.1'])).code, 0, 'pod reaches its gateway');

  const chk = await call(e, 'knode-flannel', 'CHECK', c.path, 'flctr1', { ...conf, prevResult: add.json });
  t.equal(chk.code, 0, `CHECK ${chk.stdout}`);

  writeFileSync(subnetFile, subnetEnv('10.70.9.1/24', true));
  const del = await call(e, 'knode-flannel', 'DEL', c.path, 'flctr1', conf);
  t.equal(del.code, 0, `DEL ${del.stdout}${del.stderr}`);
  t.same(ipFiles(join(ipamDir, 'knode-t-fl')), [], 'IP released (the saved config named the old subnet)');
  t.notOk(existsSync(join(dataDir, 'flctr1')), 'saved config removed');
  t.notMatch(await nat(e.host), /CNI-/, 'masquerade chain removed');
  const gone = await inNetns(c, 'ip', ['link', 'show', 'dev', 'eth0']);
  t.not(gone.code, 0, 'container veth removed');
  const again = await call(e, 'knode-flannel', 'DEL', c.path, 'flctr1', conf);
  t.equal(again.code, 0, 'DEL again: no saved config, success');

  rmSync(subnetFile);
  const noFile = await call(e, 'knode-flannel', 'ADD', c.path, 'flctr2', conf);
  t.equal(noFile.code, 1);
  t.match(noFile.json, { code: 5, msg: /subnet file/ }, 'a missing subnet file is an I/O error');
});

t.test('knode-flannel delegating to the reference bridge + host-local (exec from CNI_PATH)', async (t) => {
  const e = await env(t);
  const c = await e.ns();
  const subnetFile = join(e.dir, 'subnet.env');
  writeFileSync(subnetFile, subnetEnv('10.70.4.1/24', true));
  const ipamDir = join(e.dir, 'ipam');
  const conf = {
    cniVersion: '1.0.0',
    name: 'knode-t-fl',
    type: 'knode-flannel',
    subnetFile,
    dataDir: join(e.dir, 'flannel'),
    delegate: { type: 'bridge', bridge: 'kfl1' },
    ipam: { type: 'host-local', dataDir: ipamDir },
  };
  const add = await call(e, 'knode-flannel', 'ADD', c.path, 'flref1', conf);
  t.equal(add.code, 0, `ADD ${add.stdout}${add.stderr}`);
  t.match(add.json, { ips: [{ address: '10.70.4.2/24', gateway: '10.70.4.1' }], routes: [{ dst: '10.70.0.0/16' }] });
  t.notMatch(await nat(e.host), /CNI-/, 'FLANNEL_IPMASQ=true: no ipMasq in the delegate');
  const del = await call(e, 'knode-flannel', 'DEL', c.path, 'flref1', conf);
  t.equal(del.code, 0, `DEL ${del.stdout}${del.stderr}`);
  t.same(ipFiles(join(ipamDir, 'knode-t-fl')), []);
  const bad = await call(e, 'knode-flannel', 'ADD', c.path, 'flref2', { ...conf, delegate: { type: 'no-such-plugin' } });
  t.equal(bad.code, 1);
  t.match(bad.json, { code: 7, msg: /failed to find plugin "no-such-plugin"/ });
});

t.test('GC (spec 1.1): knode-flannel and knode-portmap drop what is not in cni.dev/valid-attachments', async (t) => {
  const e = await env(t);
  const ca = await e.ns();
  const cb = await e.ns();
  const subnetFile = join(e.dir, 'subnet.env');
  const dataDir = join(e.dir, 'flannel');
  const ipamDir = join(e.dir, 'ipam');
  writeFileSync(subnetFile, subnetEnv('10.70.6.1/24', true));
  const fl = { cniVersion: '1.1.0', name: 'knode-t-gc', type: 'knode-flannel', subnetFile, dataDir, delegate: { bridge: 'kfl3' }, ipam: { dataDir: ipamDir } };
  const pm = { cniVersion: '1.1.0', name: 'knode-t-gc', type: 'knode-portmap', runtimeConfig: { portMappings: [{ hostPort: 18090, containerPort: 80, protocol: 'tcp' }] } };
  for (const [id, ns] of [['gca', ca], ['gcb', cb]] as const) {
    const a = await call(e, 'knode-flannel', 'ADD', ns.path, id, fl);
    t.equal(a.code, 0, `flannel ADD ${id} ${a.stdout}${a.stderr}`);
    const p = await call(e, 'knode-portmap', 'ADD', ns.path, id, { ...pm, prevResult: a.json });
    t.equal(p.code, 0, `portmap ADD ${id} ${p.stdout}${p.stderr}`);
  }
  t.equal(ipFiles(join(ipamDir, 'knode-t-gc')).length, 2);
  const valid = { 'cni.dev/valid-attachments': [{ containerID: 'gca', ifname: 'eth0' }] };
  const gc = (plugin: string, conf: Record<string, unknown>): Promise<PluginOutcome> =>
    runPlugin({ plugin, command: 'GC', host: e.host, config: { ...conf, ...valid }, env: noDaemon });
  const g1 = await gc('knode-flannel', fl);
  t.equal(g1.code, 0, `flannel GC ${g1.stdout}${g1.stderr}`);
  const g2 = await gc('knode-portmap', pm);
  t.equal(g2.code, 0, `portmap GC ${g2.stdout}${g2.stderr}`);
  t.same(ipFiles(join(ipamDir, 'knode-t-gc')), ['10.70.6.2'], 'only the valid attachment keeps its IP');
  t.same(readdirSync(dataDir), ['gca'], 'stale saved config removed');
  const rules = await nat(e.host);
  t.match(rules, dnatChainName('knode-t-gc', 'gca'), 'valid container keeps its port mapping');
  t.notMatch(rules, dnatChainName('knode-t-gc', 'gcb'), 'stale port mapping removed');
  for (const [id, ns] of [['gca', ca], ['gcb', cb]] as const) {
    t.equal((await call(e, 'knode-portmap', 'DEL', ns.path, id, pm)).code, 0);
    t.equal((await call(e, 'knode-flannel', 'DEL', ns.path, id, fl)).code, 0);
  }
  t.same(ipFiles(join(ipamDir, 'knode-t-gc')), []);
  t.notMatch(await nat(e.host), 'CNI-DN-');
});

t.test('knode-portmap ADD deletes stale UDP conntrack entries to its hostPorts (only those)', async (t) => {
  const e = await env(t);
  // Conntrack runs in a namespace once a rule needs it.
  await inNetns(e.host, 'iptables', ['-w', '5', '-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'ACCEPT'], false);
  const udpTo = (port: number): Promise<unknown> => inNetns(e.host, 'sh', ['-c', `echo x | socat -T0.2 - UDP:127.0.0.1:${port}`]);
  const entries = async (): Promise<string> => (await inNetns(e.host, 'conntrack', ['-L', '-p', 'udp'])).stdout;
  for (const port of [15353, 15354]) await udpTo(port);
  const before = await entries();
  t.match(before, /dport=15353 /, 'a UDP entry to the future hostPort exists');
  t.match(before, /dport=15354 /, 'and one to another port');
  const prevResult = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: '/x' }], ips: [{ address: '10.66.0.2/24', interface: 0 }] };
  const pm = {
    cniVersion: '1.0.0',
    name: 'knode-t-pmct',
    type: 'knode-portmap',
    runtimeConfig: { portMappings: [{ hostPort: 15353, containerPort: 53, protocol: 'udp' }, { hostPort: 15354, containerPort: 80, protocol: 'tcp' }] },
    prevResult,
  };
  const add = await call(e, 'knode-portmap', 'ADD', '/x', 'ct1', pm);
  t.equal(add.code, 0, `ADD ${add.stdout}${add.stderr}`);
  const after = await entries();
  t.notMatch(after, /dport=15353 /, 'the UDP entry to the mapped hostPort is gone');
  t.match(after, /dport=15354 /, 'the UDP entry to a port mapped for TCP only stays');
  t.equal((await call(e, 'knode-portmap', 'ADD', '/x', 'ct1', pm)).code, 0, 'nothing to delete: still a success');
  t.equal((await call(e, 'knode-portmap', 'DEL', '/x', 'ct1', pm)).code, 0);
  t.notMatch(await nat(e.host), 'CNI-DN-');
});

t.test('knode-portmap DEL removes a container chain left without its jump (an ADD cut short)', async (t) => {
  const e = await env(t);
  const chain = dnatChainName('knode-t-pmo', 'orphan1');
  await inNetns(e.host, 'iptables', ['-w', '5', '-t', 'nat', '-N', chain], false);
  await inNetns(e.host, 'iptables', ['-w', '5', '-t', 'nat', '-A', chain, '-p', 'tcp', '--dport', '1', '-j', 'DNAT', '--to-destination', '10.1.1.1:1'], false);
  const d = await call(e, 'knode-portmap', 'DEL', '', 'orphan1', { cniVersion: '1.0.0', name: 'knode-t-pmo', type: 'knode-portmap' });
  t.equal(d.code, 0, `DEL ${d.stdout}${d.stderr}`);
  t.notMatch(await nat(e.host), chain);
});

function spawnIn(ns: Netns, cmd: string, args: string[]): ChildProcess {
  return spawn('nsenter', [`--net=${ns.path}`, cmd, ...args], { stdio: 'ignore' });
}

async function fetchIn(ns: Netns, url: string): Promise<{ code: number; body: string }> {
  const r = await inNetns(ns, 'timeout', ['5', 'busybox', 'wget', '-q', '-O', '-', url]);
  return { code: r.code, body: r.stdout };
}

async function waitFor(fn: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('knode-bridge + knode-portmap: hostPort 18080 → httpd :8080 from a client and from the host', async (t) => {
  const e = await env(t);
  const c = await e.ns();
  const client = await e.ns();
  // client <-> host link: the host's address 10.99.0.1 is the "node IP".
  const peer = `kpc${Math.random().toString(16).slice(2, 8)}`;
  await inNetns(e.host, 'ip', ['link', 'add', 'kph0', 'type', 'veth', 'peer', 'name', peer], false);
  await inNetns(e.host, 'ip', ['link', 'set', peer, 'netns', client.path], false);
  await inNetns(e.host, 'ip', ['addr', 'add', '10.99.0.1/24', 'dev', 'kph0'], false);
  await inNetns(e.host, 'ip', ['link', 'set', 'kph0', 'up'], false);
  await inNetns(client, 'ip', ['addr', 'add', '10.99.0.2/24', 'dev', peer], false);
  await inNetns(client, 'ip', ['link', 'set', peer, 'up'], false);
  await inNetns(client, 'ip', ['link', 'set', 'lo', 'up'], false);

  const ipamDir = join(e.dir, 'ipam');
  const bridge = {
    cniVersion: '1.0.0',
    name: 'knode-t-pm',
    type: 'knode-bridge',
    bridge: 'kpm0',
    isGateway: true,
    isDefaultGateway: true,
    ipMasq: true,
    hairpinMode: true,
    ipam: { type: 'knode-host-local', dataDir: ipamDir, ranges: [[{ subnet: '10.71.0.0/24' }]] },
  };
  const mappings = { portMappings: [{ hostPort: 18080, containerPort: 8080, protocol: 'tcp' }] };
  const portmap = { cniVersion: '1.0.0', name: 'knode-t-pm', type: 'knode-portmap', runtimeConfig: mappings };
  const id = 'pmctr1';
  const a = await call(e, 'knode-bridge', 'ADD', c.path, id, bridge);
  t.equal(a.code, 0, `bridge ADD ${a.stdout}${a.stderr}`);
  const p = await call(e, 'knode-portmap', 'ADD', c.path, id, { ...portmap, prevResult: a.json });
  t.equal(p.code, 0, `portmap ADD ${p.stdout}${p.stderr}`);
  t.same(p.json, a.json, 'prevResult passed through');
  const noPrev = await call(e, 'knode-portmap', 'ADD', c.path, id, portmap);
  t.match(noPrev.json, { code: 7, msg: 'must be called as chained plugin' });

  const chain = dnatChainName('knode-t-pm', id);
  const rules = await nat(e.host);
  t.match(rules, `-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"knode-t-pm\\" id: \\"${id}\\"" -m multiport --dports 18080 -j ${chain}`);
  t.match(rules, `-A ${chain} -p tcp -m tcp --dport 18080 -j DNAT --to-destination 10.71.0.2:8080`);
  t.match(rules, '-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT');
  t.match(rules, '-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT');
  const route = await inNetns(e.host, 'cat', ['/proc/sys/net/ipv4/conf/kpm0/route_localnet'], false);
  t.equal(route.stdout.trim(), '1', 'route_localnet on the bridge');

  const www = join(e.dir, 'www');
  mkdirSync(www);
  writeFileSync(join(www, 'index.html'), 'hello from the pod\n');
  await inNetns(c, 'ip', ['link', 'set', 'lo', 'up'], false);
  const httpd = spawnIn(c, 'busybox', ['httpd', '-f', '-p', '8080', '-h', www]);
  t.teardown(() => {
    httpd.kill('SIGKILL');
  });
  t.ok(await waitFor(async () => (await fetchIn(c, 'http://127.0.0.1:8080/')).code === 0), 'httpd is up in the pod');

  const fromClient = await fetchIn(client, 'http://10.99.0.1:18080/');
  t.equal(fromClient.code, 0, 'client → node IP:18080');
  t.equal(fromClient.body, 'hello from the pod\n');
  const fromHost = await fetchIn(e.host, 'http://10.99.0.1:18080/');
  t.equal(fromHost.code, 0, 'host → its own address:18080');
  t.equal(fromHost.body, 'hello from the pod\n');
  const fromLocalhost = await fetchIn(e.host, 'http://127.0.0.1:18080/');
  t.equal(fromLocalhost.code, 0, 'host → 127.0.0.1:18080 (route_localnet + masquerade mark)');
  const hairpin = await fetchIn(c, 'http://10.99.0.1:18080/');
  t.equal(hairpin.code, 0, 'pod → node IP:18080 → itself (hairpin mark)');

  const chk = await call(e, 'knode-portmap', 'CHECK', c.path, id, { ...portmap, prevResult: a.json });
  t.equal(chk.code, 0, `CHECK ${chk.stdout}`);

  // DEL as a runtime may send it: no prevResult, no runtimeConfig, the netns already gone.
  const { runtimeConfig: _omit, ...bare } = portmap;
  const d = await call(e, 'knode-portmap', 'DEL', '/run/netns/knode-t-gone', id, bare);
  t.equal(d.code, 0, `portmap DEL ${d.stdout}${d.stderr}`);
  const after = await nat(e.host);
  t.notMatch(after, chain, 'chain and its jumps removed');
  t.notMatch(after, /CNI-HOSTPORT-DNAT -p/, 'no per-container jump left');
  const chkGone = await call(e, 'knode-portmap', 'CHECK', c.path, id, { ...portmap, prevResult: a.json });
  t.not(chkGone.code, 0, 'CHECK fails once the chain is gone');
  t.not((await fetchIn(client, 'http://10.99.0.1:18080/')).code, 0, 'hostPort no longer forwarded');
  t.equal((await call(e, 'knode-portmap', 'DEL', c.path, id, portmap)).code, 0, 'DEL twice');
  t.equal((await call(e, 'knode-bridge', 'DEL', c.path, id, bridge)).code, 0);
  t.same(ipFiles(join(ipamDir, 'knode-t-pm')), []);
});

/** `iptables -t nat -S` of the CNI part, with the container chain's rules order-insensitive. */
function cniRules(listing: string): string[] {
  return listing
    .split('\n')
    .filter((l) => l.includes('CNI-'))
    .sort();
}

t.test('interop: the reference portmap and knode-portmap write the same nat table and undo each other', async (t) => {
  const eRef = await env(t);
  const eKnode = await env(t);
  const prevResult = {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'kx0' }, { name: 'vethx' }, { name: 'eth0', sandbox: '/run/netns/knode-t-x' }],
    ips: [
      { address: '10.72.0.5/24', gateway: '10.72.0.1', interface: 2 },
      { address: 'fd72::5/64', gateway: 'fd72::1', interface: 2 },
    ],
  };
  const conf = {
    cniVersion: '1.0.0',
    name: 'knode-t-pmi',
    type: 'portmap',
    runtimeConfig: {
      portMappings: [
        { hostPort: 18080, containerPort: 8080, protocol: 'tcp' },
        { hostPort: 18443, containerPort: 443, protocol: 'tcp', hostIP: '10.72.0.1' },
        { hostPort: 15353, containerPort: 53, protocol: 'udp' },
      ],
    },
    prevResult,
  };
  const id = 'interop-ctr-0123456789abcdef';
  const ref = await runPlugin({ plugin: 'portmap', dir: REFERENCE_DIR, command: 'ADD', host: eRef.host, containerId: id, netns: '/x', ifName: 'eth0', config: conf });
  t.equal(ref.code, 0, `reference ADD ${ref.stdout}`);
  const mine = await call(eKnode, 'knode-portmap', 'ADD', '/x', id, { ...conf, type: 'knode-portmap' });
  t.equal(mine.code, 0, `knode ADD ${mine.stdout}${mine.stderr}`);
  const refRules = await nat(eRef.host);
  const myRules = await nat(eKnode.host);
  const refChain = /-N (CNI-DN-[0-9a-f]+)/.exec(refRules)?.[1];
  t.equal(refChain, dnatChainName('knode-t-pmi', id), 'chain name: reference = knode');
  t.same(cniRules(myRules), cniRules(refRules), 'identical CNI rules');
  const nat6 = async (ns: Netns): Promise<string> => (await inNetns(ns, 'ip6tables', ['-w', '5', '-t', 'nat', '-S'], false)).stdout;
  t.same(cniRules(await nat6(eKnode.host)), cniRules(await nat6(eRef.host)), 'identical CNI rules (ip6tables)');
  t.match(await nat6(eKnode.host), '--to-destination [fd72::5]:8080');
  t.equal(myRules.split('\n').filter((l) => l.startsWith(`-A ${refChain ?? 'x'} `)).join('\n'), refRules.split('\n').filter((l) => l.startsWith(`-A ${refChain ?? 'x'} `)).join('\n'), 'same rule order in the container chain');

  // The reference CHECK (1.1.1) looks for each address's rules in both iptables and ip6tables, so
  // it fails even on its own rules: it must give the same verdict on knode's rules.
  const refCheck = (e: Env): Promise<PluginOutcome> =>
    runPlugin({ plugin: 'portmap', dir: REFERENCE_DIR, command: 'CHECK', host: e.host, containerId: id, netns: '/x', ifName: 'eth0', config: conf });
  const onRef = await refCheck(eRef);
  const onKnode = await refCheck(eKnode);
  t.same({ code: onKnode.code, json: onKnode.json }, { code: onRef.code, json: onRef.json }, `reference CHECK: same verdict on both (${onRef.stdout.replace(/\s+/g, ' ')})`);
  const myCheck = await call(eRef, 'knode-portmap', 'CHECK', '/x', id, { ...conf, type: 'knode-portmap' });
  t.equal(myCheck.code, 0, `knode CHECK on reference rules ${myCheck.stdout}${myCheck.stderr}`);

  // Each DEL removes the other's rules.
  const myDel = await call(eRef, 'knode-portmap', 'DEL', '/x', id, { ...conf, type: 'knode-portmap' });
  t.equal(myDel.code, 0);
  t.notMatch(await nat(eRef.host), 'CNI-DN-', 'knode DEL removed the reference chain');
  const refDel = await runPlugin({ plugin: 'portmap', dir: REFERENCE_DIR, command: 'DEL', host: eKnode.host, containerId: id, netns: '/x', ifName: 'eth0', config: conf });
  t.equal(refDel.code, 0);
  t.notMatch(await nat(eKnode.host), 'CNI-DN-', 'reference DEL removed the knode chain');
  t.notMatch(await nat6(eRef.host), 'CNI-DN-', 'knode DEL removed the reference ip6tables chain');
  t.notMatch(await nat6(eKnode.host), 'CNI-DN-', 'reference DEL removed the knode ip6tables chain');
});

t.test('through knode-cni-daemon: knode-flannel ADD and knode-portmap ADD/DEL served by the daemon', async (t) => {
  const e = await env(t);
  const c = await e.ns();
  const socket = join(e.dir, 'cni.sock');
  const logs: string[] = [];
  const daemon = spawn('nsenter', [`--net=${e.host.path}`, process.execPath, daemonBundle, '--socket', socket], {
    env: { ...process.env, KNODE_LOG_LEVEL: 'debug' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  daemon.stderr!.on('data', (b: Buffer) => logs.push(b.toString('utf8')));
  const exited = new Promise<void>((resolve) => daemon.once('exit', () => resolve()));
  t.teardown(async () => {
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
    await exited;
  });
  const up = await waitFor(async () => logs.join('').includes('"listening"'));
  t.ok(up, up ? 'daemon listening' : `daemon did not start: ${logs.join('')}`);
  const viaDaemon = (plugin: string, command: string, netns: string, config: unknown): Promise<PluginOutcome> =>
    runPlugin({ plugin, command, host: e.host, containerId: 'dmctr1', netns, ifName: 'eth0', config, env: { KNODE_CNI_SOCKET: socket } });

  const subnetFile = join(e.dir, 'subnet.env');
  writeFileSync(subnetFile, subnetEnv('10.70.5.1/24', true));
  const fl = { cniVersion: '1.0.0', name: 'knode-t-fld', type: 'knode-flannel', subnetFile, dataDir: join(e.dir, 'flannel'), delegate: { bridge: 'kfl2' }, ipam: { dataDir: join(e.dir, 'ipam') } };
  const add = await viaDaemon('knode-flannel', 'ADD', c.path, fl);
  t.equal(add.code, 0, `flannel ADD ${add.stdout}${add.stderr}`);
  t.match(add.json, { ips: [{ address: '10.70.5.2/24' }] });
  const pm = { cniVersion: '1.0.0', name: 'knode-t-fld', type: 'knode-portmap', runtimeConfig: { portMappings: [{ hostPort: 18081, containerPort: 80, protocol: 'tcp' }] } };
  const p = await viaDaemon('knode-portmap', 'ADD', c.path, { ...pm, prevResult: add.json });
  t.equal(p.code, 0, `portmap ADD ${p.stdout}${p.stderr}`);
  t.match(await nat(e.host), `--to-destination 10.70.5.2:80`);
  t.equal((await viaDaemon('knode-portmap', 'DEL', c.path, pm)).code, 0);
  t.notMatch(await nat(e.host), 'CNI-DN-');
  t.equal((await viaDaemon('knode-flannel', 'DEL', c.path, fl)).code, 0);
  t.same(ipFiles(join(e.dir, 'ipam', 'knode-t-fld')), []);
  const served = logs.join('');
  t.match(served, /"plugin":"knode-flannel"/, 'the daemon served knode-flannel');
  t.match(served, /"plugin":"knode-portmap"/, 'the daemon served knode-portmap');
});

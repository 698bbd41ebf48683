/**
 * knode-proxy in IPVS mode, for real: this machine's kernel has no IPVS, so the test boots
 * Debian's linux-image-amd64 kernel in qemu (TCG) with an initramfs built now from host files
 * (test/vm/initramfs.ts), loads ip_vs & co., and runs dist/knode-proxy.mjs --proxy-mode ipvs in
 * the guest against the lab apiserver running on the host's loopback.
 *
 * - The guest reaches the apiserver only through a qemu `guestfwd` (10.0.2.100:6443 → a
 *   `busybox nc 127.0.0.1:<port>` per connection) on a `restrict=on` user network: it can reach
 *   nothing else, and has no default route.
 * - Background programs get stdin from /dev/null and are waited for when stopped.
 * - Busybox's shell prefers its applets: iproute2 is called by its path (/usr/bin/ip).
 * - Inside the guest: two network-namespace "pods" (veth into the guest's root namespace)
 *   serve their name with busybox httpd on :8080.
 * - Asserted with `ipvsadm -Ln`, `ipset list`, `ip addr show kube-ipvs0`, and HTTP (nc) from the
 *   guest's root namespace to the ClusterIP and the NodePort; then an endpoint is removed and a
 *   service deleted, and the kernel state follows. Before that, iptables mode runs once: the
 *   switch to ipvs must remove its chains; after it, a switch to iptables mode must remove IPVS
 *   mode's leftovers, and `--cleanup` everything.
 *
 * Needs root, qemu-system-x86_64, linux-image-amd64 (scripts/setup installs both) and a built
 * dist/ (npm run build).
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, DiscoveryV1Api, KubeConfig, type V1EndpointSlice } from '@kubernetes/client-node';
import { buildInitramfs, debianKernel } from '../vm/initramfs.js';
import { SerialVm } from '../vm/qemu.js';
import { freePort, until as pollUntil } from '../helpers/poll.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const kernel = debianKernel();
const onPath = (prog: string): boolean => (process.env.PATH ?? '').split(':').some((d) => d !== '' && existsSync(join(d, prog)));
const haveQemu = onPath('qemu-system-x86_64');
const skip =
  process.getuid?.() !== 0
    ? 'needs root'
    : !haveQemu
      ? 'qemu-system-x86_64 is not installed (scripts/setup installs qemu-system-x86)'
      : !kernel
        ? 'no Debian kernel with modules (scripts/setup installs linux-image-amd64)'
        : !onPath('cpio') || !onPath('ipvsadm')
          ? 'cpio or ipvsadm is not installed (scripts/setup installs them)'
          : !existsSync(join(repo, 'dist/knode-proxy.mjs')) || !existsSync(join(repo, 'dist/knode-lab.mjs'))
            ? 'dist/knode-proxy.mjs or dist/knode-lab.mjs is missing (npm run build)'
            : false;


/** test/helpers/poll.ts's until, timeout first (the VM's waits read better so). */
function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  return pollUntil(what, fn, timeoutMs);
}

function slice(name: string, ips: string[]): V1EndpointSlice {
  return {
    metadata: { namespace: 'default', name: `${name}-vm`, labels: { 'kubernetes.io/service-name': name } },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], nodeName: 'knode-vm', conditions: { ready: true } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

/** The lines of one virtual server's block in `ipvsadm -Ln` output ("TCP  10.96.0.10:80 rr" + its "->" lines). */
function block(ipvsadm: string, head: string): string[] | undefined {
  const lines = ipvsadm.split('\n');
  const i = lines.findIndex((l) => l.startsWith(head));
  if (i < 0) return undefined;
  const out = [lines[i]!];
  for (let j = i + 1; j < lines.length && lines[j]!.startsWith('  ->'); j++) out.push(lines[j]!);
  return out;
}

/** SIGTERM to the proxy, and wait until it is gone. */
const STOP_PROXY = 'kill $(pidof node); while pidof node >/dev/null; do sleep 0.2; done';

const GUEST_INIT = `
/usr/bin/ip link set eth0 up
/usr/bin/ip addr add 10.0.2.15/24 dev eth0
for i in 1 2; do
  /usr/bin/ip netns add pod$i
  /usr/bin/ip link add veth$i type veth peer name eth0 netns pod$i
  /usr/bin/ip addr add 10.244.$i.1/24 dev veth$i
  /usr/bin/ip link set veth$i up
  /usr/bin/ip netns exec pod$i /usr/bin/ip link set lo up
  /usr/bin/ip netns exec pod$i /usr/bin/ip addr add 10.244.$i.2/24 dev eth0
  /usr/bin/ip netns exec pod$i /usr/bin/ip link set eth0 up
  /usr/bin/ip netns exec pod$i /usr/bin/ip route add default via 10.244.$i.1
  mkdir -p /srv/pod$i
  echo pod$i > /srv/pod$i/index.html
  /usr/bin/ip netns exec pod$i httpd -p 8080 -h /srv/pod$i
done
`;

t.test('knode-proxy IPVS mode in a qemu VM', { skip, timeout: 170_000 }, async (t) => {
  const started = Date.now();
  const work = await mkdtemp(join(tmpdir(), 'knode-t-ipvs-vm-'));
  t.teardown(() => rm(work, { recursive: true, force: true }));

  // the lab apiserver on the host's loopback
  const port = await freePort();
  const dataDir = join(work, 'apiserver');
  const api: ChildProcess = spawn(process.execPath, [join(repo, 'dist/knode-lab.mjs'), 'apiserver', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, '--san', '10.0.2.100'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let apiLog = '';
  api.stderr!.on('data', (b: Buffer) => (apiLog += b.toString()));
  t.teardown(() => {
    api.kill('SIGTERM');
  });
  const adminPath = join(dataDir, 'admin.kubeconfig');
  await until('the apiserver kubeconfig', 20_000, async () => (existsSync(adminPath) ? true : undefined));
  const kc = new KubeConfig();
  kc.loadFromFile(adminPath);
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  await until('the apiserver', 20_000, async () => (await core.listNamespace(), true));

  await core.createNode({ body: { metadata: { name: 'knode-vm' }, status: { addresses: [{ type: 'InternalIP', address: '10.0.2.15' }] } } });
  const node = await core.readNode({ name: 'knode-vm' });
  if (!node.status?.addresses?.length) {
    await core.replaceNodeStatus({ name: 'knode-vm', body: { ...node, status: { addresses: [{ type: 'InternalIP', address: '10.0.2.15' }] } } });
  }
  await core.createNamespacedService({
    namespace: 'default',
    body: { metadata: { name: 'web' }, spec: { type: 'NodePort', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] } },
  });
  await core.createNamespacedService({
    namespace: 'default',
    body: {
      metadata: { name: 'sticky' },
      spec: { clusterIP: '10.96.0.11', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
    },
  });
  await discovery.createNamespacedEndpointSlice({ namespace: 'default', body: slice('web', ['10.244.1.2', '10.244.2.2']) });
  await discovery.createNamespacedEndpointSlice({ namespace: 'default', body: slice('sticky', ['10.244.1.2', '10.244.2.2']) });

  // the guest: kubeconfig pointing at the forwarded apiserver address
  const guestKubeconfig = (await readFile(adminPath, 'utf8')).replace(/https:\/\/127\.0\.0\.1:\d+/g, 'https://10.0.2.100:6443');
  t.match(guestKubeconfig, /https:\/\/10\.0\.2\.100:6443/, 'guest kubeconfig points at the forward');
  const initrd = await buildInitramfs({
    dir: join(work, 'initramfs'),
    kernel: kernel!,
    repo,
    files: { '/etc/knode/kubeconfig': guestKubeconfig },
    initScript: GUEST_INIT,
  });
  let consoleLog = '';
  const vm = SerialVm.start({
    kernel: kernel!.vmlinuz,
    initrd,
    forwards: [{ guest: '10.0.2.100:6443', cmd: `busybox nc 127.0.0.1 ${port}` }],
    onOutput: (s) => {
      consoleLog += s;
      if (process.env.KNODE_VM_CONSOLE) process.stderr.write(s);
    },
  });
  t.teardown(() => vm.stop());
  t.teardown(() => {
    if (t.passing()) return;
    t.comment(`guest console (tail):\n${consoleLog.slice(-4000)}`);
    t.comment(`apiserver log (tail):\n${apiLog.slice(-2000)}`);
  });
  await vm.waitFor(/@@READY/, 90_000);
  t.notMatch(vm.console, /@@MODPROBE-FAILED/, 'every kernel module loaded');
  t.equal((await vm.sh('/usr/bin/ip netns exec pod1 hget 127.0.0.1 8080')).trim(), 'pod1', 'pod1 serves');

  // iptables mode first, then a switch to ipvs: its leftovers must go
  await vm.sh('cd /opt/knode && (node dist/knode-proxy.mjs --proxy-mode iptables --kubeconfig /etc/knode/kubeconfig --hostname-override knode-vm </dev/null >/tmp/proxy-iptables.log 2>&1 &)');
  await until('iptables mode rules', 60_000, async () => ((await vm.sh('iptables-save -t nat')).includes(':KUBE-SVC-') ? true : undefined));
  await vm.sh(STOP_PROXY);

  await vm.sh('cd /opt/knode && (node dist/knode-proxy.mjs --proxy-mode ipvs --kubeconfig /etc/knode/kubeconfig --hostname-override knode-vm </dev/null >/tmp/proxy.log 2>&1 &)');
  t.teardown(async () => {
    if (!t.passing()) t.comment(`proxy log:\n${(await vm.run('tail -c 3000 /tmp/proxy.log').catch(() => ({ out: '' }))).out}`);
  });

  const ipvs = await until('virtual servers in ipvsadm -Ln', 90_000, async () => {
    const out = await vm.sh('ipvsadm -Ln');
    const web = block(out, 'TCP  10.96.0.10:80');
    return web && web.length === 3 && block(out, 'TCP  10.0.2.15:30080') && block(out, 'TCP  10.96.0.11:80') ? out : undefined;
  });
  t.comment(ipvs);
  const web = block(ipvs, 'TCP  10.96.0.10:80')!;
  t.match(web[0], /^TCP {2}10\.96\.0\.10:80 rr\s*$/, 'ClusterIP virtual server, rr');
  t.match(web[1], /-> 10\.244\.1\.2:8080\s+Masq\s+1\s/, 'real server 1: masq, weight 1');
  t.match(web[2], /-> 10\.244\.2\.2:8080\s+Masq\s+1\s/, 'real server 2');
  const nodePort = block(ipvs, 'TCP  10.0.2.15:30080')!;
  t.equal(nodePort.length, 3, 'NodePort virtual server on the node IP with both real servers');
  t.match(block(ipvs, 'TCP  10.96.0.11:80')![0], /rr persistent 600/, 'ClientIP affinity → persistence 600 s');

  t.equal((await vm.sh('hget 127.0.0.1 10249 /proxyMode')).trim(), 'ipvs', '/proxyMode says ipvs');
  t.notMatch(await vm.sh('iptables-save'), /KUBE-SVC-|KUBE-SEP-|KUBE-NODEPORTS|KUBE-PROXY-CANARY/, 'iptables mode leftovers removed by the switch to ipvs');
  t.match(await vm.sh('/usr/bin/ip -4 addr show kube-ipvs0'), /10\.96\.0\.10\/32[\s\S]*10\.96\.0\.11\/32/, 'service IPs on kube-ipvs0');
  t.match(await vm.sh('ipset list KUBE-CLUSTER-IP'), /10\.96\.0\.10,tcp:80/, 'ipset KUBE-CLUSTER-IP');
  t.match(await vm.sh('iptables-save -t nat'), /-A KUBE-SERVICES .*--match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ/, 'iptables rules match the ipsets');

  // real traffic from the guest's root namespace
  const get = async (hostPort: string, n: number): Promise<string[]> => {
    const out = await vm.sh(`for i in $(seq ${n}); do echo "$(hget ${hostPort.replace(':', ' ')})"; done`, 60_000);
    return out.split('\n').map((l) => (l.trim() === '' ? 'FAIL' : l.trim())).slice(0, n);
  };
  const cluster = await get('10.96.0.10:80', 6);
  t.same([...new Set(cluster)].sort(), ['pod1', 'pod2'], `ClusterIP balanced over both pods (${cluster.join(' ')})`);
  const np = await get('10.0.2.15:30080', 4);
  t.same([...new Set(np)].sort(), ['pod1', 'pod2'], `NodePort answers from both pods (${np.join(' ')})`);
  const sticky = await get('10.96.0.11:80', 5);
  t.equal(new Set(sticky).size, 1, `affinity sticks to one pod (${sticky.join(' ')})`);
  t.notOk(sticky.includes('FAIL'), 'every affinity request answered');

  // an endpoint goes: its real server goes, traffic follows
  await discovery.replaceNamespacedEndpointSlice({ namespace: 'default', name: 'web-vm', body: slice('web', ['10.244.1.2']) });
  const after = await until('10.244.2.2 removed from 10.96.0.10', 30_000, async () => {
    const out = await vm.sh('ipvsadm -Ln');
    const b = block(out, 'TCP  10.96.0.10:80');
    return b && b.length === 2 ? out : undefined;
  });
  t.match(block(after, 'TCP  10.96.0.10:80')![1], /10\.244\.1\.2:8080/, 'the remaining real server');
  t.equal(block(after, 'TCP  10.0.2.15:30080')!.length, 2, 'the NodePort follows');
  t.same([...new Set(await get('10.96.0.10:80', 3))], ['pod1'], 'only pod1 answers now');

  // a service changes: its virtual servers are updated in place (SET_SERVICE)
  const webSvc = await core.readNamespacedService({ namespace: 'default', name: 'web' });
  await core.replaceNamespacedService({ namespace: 'default', name: 'web', body: { ...webSvc, spec: { ...webSvc.spec, sessionAffinity: 'ClientIP' } } });
  const updated = await until('10.96.0.10 persistent', 30_000, async () => {
    const head = block(await vm.sh('ipvsadm -Ln'), 'TCP  10.96.0.10:80');
    return head && /persistent 10800/.test(head[0]!) ? head : undefined;
  });
  t.equal(updated.length, 2, 'updated in place: real servers kept');

  // a service goes: its virtual server, its kube-ipvs0 address and its ipset entry go
  await core.deleteNamespacedService({ namespace: 'default', name: 'sticky' });
  await until('10.96.0.11 gone', 30_000, async () => (block(await vm.sh('ipvsadm -Ln'), 'TCP  10.96.0.11:80') ? undefined : true));
  t.notMatch(await vm.sh('/usr/bin/ip -4 addr show kube-ipvs0'), /10\.96\.0\.11/, 'address removed from kube-ipvs0');
  t.notMatch(await vm.sh('ipset list KUBE-CLUSTER-IP'), /10\.96\.0\.11/, 'ipset entry removed');
  t.match(await vm.sh('ipvsadm -Ln'), /TCP {2}10\.96\.0\.10:80/, 'the other service stays');

  // switch to iptables mode: IPVS mode's own leftovers go, the Service keeps working
  await vm.sh(STOP_PROXY);
  const startProxy = (mode: string): Promise<string> =>
    vm.sh(`cd /opt/knode && (node dist/knode-proxy.mjs --proxy-mode ${mode} --kubeconfig /etc/knode/kubeconfig --hostname-override knode-vm </dev/null >/tmp/proxy-${mode.split(' ')[0]}.log 2>&1 &)`);
  await startProxy('iptables');
  await until('kube-ipvs0 removed by iptables mode', 60_000, async () => ((await vm.run('/usr/bin/ip link show kube-ipvs0')).code !== 0 ? true : undefined));
  t.notMatch(await vm.sh('ipvsadm -Ln'), /^(TCP|UDP|SCTP) /m, 'iptables mode flushed the IPVS virtual servers');
  // kube-ipvs0 goes first, the ipsets last (after the iptables rules that use them): wait for them too.
  await until('the ipsets destroyed by iptables mode', 60_000, async () => ((await vm.run('ipset list KUBE-CLUSTER-IP')).code !== 0 ? true : undefined));
  t.pass('and destroyed the ipsets');
  const natAfterSwitch = await vm.sh('iptables-save -t nat');
  t.notMatch(natAfterSwitch, /:KUBE-NODE-PORT |:KUBE-LOAD-BALANCER /, 'IPVS-only chains removed');
  t.match(natAfterSwitch, /:KUBE-SVC-/, 'iptables mode rules in place');
  // (by NodePort: the guest has no route to the service range without kube-ipvs0 or a default route)
  t.same([...new Set(await get('10.0.2.15:30080', 2))], ['pod1'], 'the Service answers through iptables mode');
  await vm.sh(STOP_PROXY);

  // back to ipvs, then --cleanup removes everything IPVS mode programmed
  await startProxy('ipvs --ipvs-scheduler lc');
  const again = await until('IPVS mode again', 60_000, async () => block(await vm.sh('ipvsadm -Ln'), 'TCP  10.96.0.10:80'));
  t.match(again[0], /^TCP {2}10\.96\.0\.10:80 lc /, '--ipvs-scheduler lc');
  await vm.sh(STOP_PROXY);
  const cleanup = await vm.run('cd /opt/knode && node dist/knode-proxy.mjs --cleanup </dev/null 2>&1', 60_000);
  t.equal(cleanup.code, 0, `knode-proxy --cleanup exits 0\n${cleanup.out}`);
  t.notMatch(await vm.sh('ipvsadm -Ln'), /^(TCP|UDP|SCTP) /m, 'no virtual servers after --cleanup');
  t.equal((await vm.run('/usr/bin/ip link show kube-ipvs0')).code === 0, false, 'kube-ipvs0 deleted');
  t.equal((await vm.run('ipset list KUBE-CLUSTER-IP')).code === 0, false, 'ipsets destroyed');
  // KUBE-FIREWALL is the kubelet's chain (iptables mode ensures it, as upstream; cleanup leaves it)
  t.notMatch(await vm.sh('iptables-save'), /:KUBE-(?!FIREWALL )/, 'no kube-proxy chains left');
  t.comment(`VM test wall time ${Math.round((Date.now() - started) / 1000)} s`);
});

/**
 * The real install, booted: a Debian 12 root (debootstrap) with Debian's kernel, knode installed
 * into it by scripts/install-node from a release of this repository, imaged to ext4 and booted
 * under qemu (TCG) with systemd as PID 1. knode-agent.service and knode-proxy.service must start
 * under systemd (Type=notify: "active" only after READY=1, i.e. the Node registered) and the agent
 * must register with a lab apiserver (with the lab controllers, so the Node gets a podCIDR and
 * the agent writes its CNI config) and become Ready.
 *
 * Network safety: the guest has qemu user networking with restrict=on (no way out), and one
 * guestfwd: connections to 10.0.2.100:6443 in the guest run `socat - TCP:127.0.0.1:<port>` on the
 * host, the lab apiserver on loopback. Nothing else leaves the VM.
 *
 * The Debian root with the kernel installed is cached in /var/cache/knode (one apt run per
 * machine); the knode install itself runs fresh every time.
 */
import t from 'tap';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createDebianRoot, run } from '../helpers/debian-root.js';
import { freePort } from '../helpers/poll.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const repo = join(import.meta.dirname, '..', '..');
const NODE = 'vm-node-1';
const GUEST_APISERVER = '10.0.2.100';
const KERNEL_PACKAGES = ['linux-image-amd64', 'initramfs-tools', 'systemd-sysv', 'udev', 'kmod', 'iproute2'];
const KERNEL_CACHE = `/var/cache/knode/vm-root-bookworm-${KERNEL_PACKAGES.join('+')}.tar`;


function stop(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

t.test('knode installed by install-node boots under systemd and registers its Node', { timeout: 590_000 }, async (t) => {
  const debian = createDebianRoot('install-vm');
  const { work, root, at } = debian;
  const procs: { apiserver?: ChildProcess; qemu?: ChildProcess } = {};
  t.teardown(async () => {
    await stop(procs.qemu);
    await stop(procs.apiserver);
    debian.destroy();
  });

  // 1. The kernel and an init inside the root (cached: it is the same for every run).
  if (existsSync(KERNEL_CACHE)) {
    execFileSync('tar', ['-C', root, '-xf', KERNEL_CACHE, './boot', './usr', './etc', './var']);
  } else {
    const r = debian.chroot(['bash', '-c', `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${KERNEL_PACKAGES.join(' ')}`]);
    t.equal(r.code, 0, `kernel packages install\n${r.stderr.slice(-2000)}`);
    if (r.code !== 0) return;
    execFileSync('tar', ['-C', root, '-cf', `${KERNEL_CACHE}.tmp`, './boot', './usr', './etc', './var']);
    execFileSync('mv', [`${KERNEL_CACHE}.tmp`, KERNEL_CACHE]);
  }
  const kernel = readdirSync(at('boot')).find((f) => f.startsWith('vmlinuz-'));
  const initrd = readdirSync(at('boot')).find((f) => f.startsWith('initrd.img-'));
  if (kernel === undefined || initrd === undefined) {
    t.fail(`no kernel/initrd in the root's /boot: ${readdirSync(at('boot')).join(' ')}`);
    return;
  }

  // 2. A lab apiserver with the lab controllers on loopback, and a node kubeconfig naming the
  //    address the guest reaches it at.
  const port = await freePort();
  const apiDir = join(work, 'apiserver');
  mkdirSync(apiDir);
  procs.apiserver = spawn(
    process.execPath,
    [join(repo, 'dist/knode-lab.mjs'), 'apiserver', '--data-dir', apiDir, '--listen', `127.0.0.1:${port}`, '--san', GUEST_APISERVER,
      '--node', NODE, '--node-server', `https://${GUEST_APISERVER}:6443`, '--controllers'],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } },
  );
  const admin = join(apiDir, 'admin.kubeconfig');
  const nodeKubeconfig = join(apiDir, 'nodes', `${NODE}.kubeconfig`);
  for (let i = 0; i < 100 && !(existsSync(admin) && existsSync(nodeKubeconfig)); i++) await sleep(100);
  t.ok(existsSync(nodeKubeconfig), 'the apiserver wrote the node kubeconfig');

  // 3. install-node, as on a real machine (Debian packages from the mirror included).
  const tarball = execFileSync(join(repo, 'scripts/release'), ['--out', join(work, 'release')], { encoding: 'utf8' }).trim().split('\n').at(-1)!;
  execFileSync('cp', [tarball, at('root/knode.tar.gz')]);
  execFileSync('cp', [join(repo, 'scripts/install-node'), at('root/install-node')]);
  execFileSync('cp', [nodeKubeconfig, at('root/node.kubeconfig')]);
  const install = debian.chroot(['/root/install-node', '--release', '/root/knode.tar.gz', '--kubeconfig', '/root/node.kubeconfig', '--node-name', NODE, '--node-ip', '10.0.2.15']);
  t.equal(install.code, 0, `install-node\n${install.stderr.slice(-2000)}`);
  if (install.code !== 0) return;

  // 4. What makes the root a machine: name, address, root fs, and a one-shot unit that prints
  //    the services' states on the console once both have started (After= waits for READY=1).
  writeFileSync(at('etc/hostname'), `${NODE}\n`);
  writeFileSync(at('etc/hosts'), `127.0.0.1 localhost\n127.0.1.1 ${NODE}\n`);
  mkdirSync(at('etc/systemd/network'), { recursive: true });
  writeFileSync(at('etc/systemd/network/10-qemu.network'), '[Match]\nType=ether\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\n');
  writeFileSync(at('etc/fstab'), '/dev/vda / ext4 rw,errors=remount-ro 0 1\n');
  writeFileSync(
    at('etc/systemd/system/knode-report.service'),
    [
      '[Unit]',
      'Description=print the knode services states on the console (install-vm test)',
      'After=knode-agent.service knode-proxy.service',
      '[Service]',
      'Type=oneshot',
      'StandardOutput=tty',
      'TTYPath=/dev/ttyS0',
      `ExecStart=/bin/sh -c 'echo "KNODE-REPORT agent=$(systemctl show -p ActiveState --value knode-agent)/$(systemctl show -p SubState --value knode-agent) proxy=$(systemctl show -p ActiveState --value knode-proxy)/$(systemctl show -p SubState --value knode-proxy) status=$(systemctl show -p StatusText --value knode-agent | tr " " _)"'`,
      '[Install]',
      'WantedBy=multi-user.target',
      '',
    ].join('\n'),
  );
  const enable = debian.chroot(['systemctl', 'enable', 'systemd-networkd.service', 'knode-report.service']);
  t.equal(enable.code, 0, enable.stderr);
  execFileSync('rm', ['-f', at('usr/sbin/policy-rc.d')]);
  debian.unmount();
  const image = join(work, 'root.img');
  execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'root', '-d', root, image, '3G']);

  // 5. Boot it.
  const consoleLog: Buffer[] = [];
  const qemu = (procs.qemu = spawn(
    'qemu-system-x86_64',
    [
      '-accel', 'tcg', '-m', '1536', '-smp', '1', '-nographic', '-no-reboot', '-vga', 'none',
      '-kernel', at(`boot/${kernel}`), '-initrd', at(`boot/${initrd}`),
      '-append', 'root=/dev/vda rw console=ttyS0 panic=-1 net.ifnames=0 systemd.journald.forward_to_console=1',
      '-drive', `file=${image},if=virtio,format=raw`,
      '-netdev', `user,id=n0,restrict=on,guestfwd=tcp:${GUEST_APISERVER}:6443-cmd:socat - TCP:127.0.0.1:${port}`,
      '-device', 'virtio-net-pci,netdev=n0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  ));
  qemu.stdout!.on('data', (b: Buffer) => consoleLog.push(b));
  qemu.stderr!.on('data', (b: Buffer) => consoleLog.push(b));
  const consoleText = (): string => Buffer.concat(consoleLog).toString('utf8');

  // 6. The Node becomes Ready (registered, runtime up, CNI config written from its podCIDR) and
  //    systemd reports both services active: READY=1 reached it.
  // Within the file's 600 s tap timeout: a cold start under TCG takes 1–3 min here.
  const deadline = Date.now() + 480_000;
  let node: { status?: { conditions?: { type: string; status: string }[]; nodeInfo?: { kubeletVersion?: string; containerRuntimeVersion?: string } }; spec?: { podCIDR?: string } } | undefined;
  let report: string | undefined;
  while (Date.now() < deadline && (report === undefined || node?.status?.conditions?.find((c) => c.type === 'Ready')?.status !== 'True')) {
    if (qemu.exitCode !== null) break;
    const r = run('kubectl', ['--kubeconfig', admin, 'get', 'node', NODE, '-o', 'json']);
    if (r.code === 0) node = JSON.parse(r.stdout) as typeof node;
    report = /KNODE-REPORT [^\r\n]*/.exec(consoleText())?.[0];
    await sleep(2000);
  }
  const tail = consoleText().slice(-3000);
  t.equal(qemu.exitCode, null, `the VM is still running\n${tail}`);
  t.equal(node?.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True', `Node ${NODE} Ready\n${tail}`);
  t.match(node?.spec?.podCIDR, /^10\.244\.\d+\.0\/24$/, 'podCIDR allocated by the lab node-ipam controller');
  t.match(node?.status?.nodeInfo?.containerRuntimeVersion, /^containerd:\/\//, 'the VM containerd, through CRI');
  t.match(report, /agent=active\/running proxy=active\/running status=node_vm-node-1_registered/, `systemd: both units active, READY=1 received\n${tail}`);
});

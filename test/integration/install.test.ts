/**
 * scripts/release + scripts/install-node in a fresh Debian 12 root (debootstrap),
 * for real: Debian packages installed by apt inside the root, the release
 * unpacked, the programs run from their installed place, the units verified by
 * systemd-analyze against that root, a re-run that changes nothing, an upgrade,
 * and an uninstall that leaves nothing of knode.
 *
 * The root is made once per machine with debootstrap (minbase + systemd) and kept
 * as a tarball in /var/cache/knode; every run unpacks a fresh copy. Phases that
 * could touch the network (uninstall deletes links and runs knode-proxy --cleanup)
 * run inside a throw-away network namespace, so the machine's own is never touched.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanEnv, createDebianRoot, run } from '../helpers/debian-root.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root');
  process.exit(0);
}

const repo = join(import.meta.dirname, '..', '..');
const netns = `knode-t-install-${process.pid}`;
const debian = createDebianRoot('install');
const { work, root, at } = debian;
t.teardown(() => {
  spawnSync('ip', ['netns', 'del', netns]);
  debian.destroy();
});
execFileSync('ip', ['netns', 'add', netns]);

// The release, from this repository's sources.
const releaseDir = join(work, 'release');
const tarball = execFileSync(join(repo, 'scripts/release'), ['--out', releaseDir], { encoding: 'utf8' }).trim().split('\n').at(-1)!;
execFileSync('cp', [tarball, join(root, 'root/knode.tar.gz')]);
execFileSync('cp', [join(repo, 'scripts/install-node'), join(root, 'root/install-node')]);
writeFileSync(
  join(root, 'root/node.kubeconfig'),
  'apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: "https://192.0.2.1:6443"}\nusers:\n- name: u\n  user: {token: "t0ken"}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n',
);

const installArgs = ['/root/install-node', '--release', '/root/knode.tar.gz', '--kubeconfig', '/root/node.kubeconfig', '--proxy-mode', 'nftables', '--node-ip', '192.0.2.10', '--node-name', 'worker-1'];
/** chroot into the root; `inNetns` runs it inside the throw-away network namespace. */
const inRoot = (args: string[], inNetns = false, env?: NodeJS.ProcessEnv): ReturnType<typeof run> => debian.chroot(args, { netns: inNetns ? netns : undefined, env });

t.test('install: packages, programs, configuration, units', async (t) => {
  const r = inRoot(installArgs);
  t.equal(r.code, 0, `install-node exits 0\n${r.stderr}`);
  t.match(r.stderr, /installing Debian packages: .*containerd/);
  t.match(r.stderr, /systemd is not running here: services enabled, not started/);
  const dpkg = inRoot(['dpkg-query', '-W', '-f', '${Package} ${Status}\n', 'containerd', 'runc', 'nftables', 'iptables', 'conntrack', 'socat']);
  t.equal(dpkg.stdout.split('\n').filter((l) => l.endsWith('install ok installed')).length, 6, 'runtime, rule packages and socat (the CNI launcher) installed');

  t.equal(readFileSync(at('usr/lib/knode/VERSION'), 'utf8').trim(), JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).version);
  t.equal(readlinkSync(at('usr/local/bin/knode-agent')), '/usr/lib/knode/dist/knode-agent.mjs');
  // The plugins: the sh launcher (cni/launcher.sh rendered for /usr/lib/knode), the names linked to it.
  const launcher = readFileSync(at('opt/cni/bin/knode-cni-launcher'), 'utf8');
  t.match(launcher, /^#!\/bin\/sh\n# knode CNI plugin launcher, made from cni\/launcher.sh by install-node/);
  t.match(launcher, "node='/usr/lib/knode/bin/node'\ndist='/usr/lib/knode/dist'\nsocat='/usr/bin/socat'\n");
  t.match(launcher, "sock=${KNODE_CNI_SOCKET:-'/run/knode/cni.sock'}");
  t.notMatch(launcher, /@[A-Z]+@/, 'every placeholder rendered');
  t.equal(lstatSync(at('opt/cni/bin/knode-cni-launcher')).mode & 0o777, 0o755);
  for (const p of ['knode-bridge', 'knode-host-local', 'knode-loopback', 'knode-portmap', 'knode-flannel']) {
    t.equal(readlinkSync(at(`opt/cni/bin/${p}`)), 'knode-cni-launcher', `${p} in /opt/cni/bin`);
  }
  t.equal(readlinkSync(at('opt/cni/bin/loopback')), 'knode-cni-launcher', 'loopback for containerd');
  // Debian's containerd names /usr/lib/cni in its config.toml: the plugins are linked there too.
  t.match(readFileSync(at('etc/containerd/config.toml'), 'utf8'), /bin_dir = "\/usr\/lib\/cni"/, "containerd's config is left alone");
  t.equal(readlinkSync(at('usr/lib/cni/knode-flannel')), 'knode-cni-launcher', "plugins in containerd's bin_dir");
  t.equal(readFileSync(at('usr/lib/cni/knode-cni-launcher'), 'utf8'), launcher);
  t.equal(readlinkSync(at('usr/lib/cni/loopback')), 'knode-cni-launcher');
  t.equal(lstatSync(at('etc/knode/kubeconfig')).mode & 0o777, 0o600, 'kubeconfig is 0600');
  t.match(readFileSync(at('etc/knode/proxy.yaml'), 'utf8'), /mode: nftables\n[^]*hostnameOverride: worker-1/);
  t.match(readFileSync(at('etc/knode/agent.yaml'), 'utf8'), /containerRuntimeEndpoint: unix:\/\/\/run\/containerd\/containerd.sock/);
  t.match(readFileSync(at('etc/default/knode-agent'), 'utf8'), /KNODE_AGENT_ARGS="--node-ip=192.0.2.10 --hostname-override=worker-1"/);
  // The links point into the root (/etc/systemd/system/...), so they are read, not followed.
  t.equal(readlinkSync(at('etc/systemd/system/multi-user.target.wants/knode-agent.service')), '/etc/systemd/system/knode-agent.service', 'knode-agent enabled');
  t.equal(readlinkSync(at('etc/systemd/system/multi-user.target.wants/knode-proxy.service')), '/etc/systemd/system/knode-proxy.service', 'knode-proxy enabled');
  t.equal(
    readlinkSync(at('etc/systemd/system/multi-user.target.wants/knode-cni-daemon.service')),
    '/etc/systemd/system/knode-cni-daemon.service',
    'knode-cni-daemon enabled',
  );
  t.match(readFileSync(at('etc/systemd/system/knode-agent.service.d/10-runtime.conf'), 'utf8'), /After=containerd.service/);
});

t.test('the installed programs run from their place, native addons included', async (t) => {
  const help = inRoot(['/usr/local/bin/knode-agent', '--help']);
  t.equal(help.code, 0, help.stderr);
  t.match(help.stdout, /--kubeconfig/);
  t.equal(inRoot(['/usr/local/bin/knode-proxy', '--help']).code, 0);
  const version = inRoot(['/opt/cni/bin/knode-bridge'], false, { ...cleanEnv, CNI_COMMAND: 'VERSION' });
  t.equal(version.code, 0, version.stderr);
  t.match(JSON.parse(version.stdout), { cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  const natives = inRoot(['/usr/lib/knode/bin/node', '-e', "require('/usr/lib/knode/node_modules/netlink'); require('/usr/lib/knode/node_modules/koffi').load('libc.so.6'); console.log('loaded')"]);
  t.equal(natives.stdout.trim(), 'loaded', natives.stderr);
});

t.test('systemd-analyze verify accepts the installed units', async (t) => {
  const r = run('systemd-analyze', [
    'verify',
    `--root=${root}`,
    '/etc/systemd/system/knode-agent.service',
    '/etc/systemd/system/knode-proxy.service',
    '/etc/systemd/system/knode-cni-daemon.service',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr.trim(), '', 'no warnings');
});

t.test('a second run with the same release and flags changes nothing', async (t) => {
  const r = inRoot(installArgs, true);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /\(0 change\(s\)\)/);
  t.notMatch(r.stderr, /installing Debian packages/, 'no package installed twice');
});

t.test('upgrade in place: a newer release replaces the programs, configuration kept', async (t) => {
  const unpack = join(work, 'upgrade');
  mkdirSync(unpack);
  execFileSync('tar', ['-C', unpack, '-xzf', tarball]);
  writeFileSync(join(unpack, 'knode/VERSION'), '9.9.9\n');
  execFileSync('tar', ['-C', unpack, '-czf', join(root, 'root/knode-next.tar.gz'), 'knode']);
  const args = [...installArgs];
  args[2] = '/root/knode-next.tar.gz';
  args.splice(3, 2); // no --kubeconfig: the installed one is kept
  const r = inRoot(args, true);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /installing knode 9\.9\.9 into \/usr\/lib\/knode \(was: \d+\.\d+\.\d+\)/);
  t.match(r.stderr, /keeping the installed \/etc\/knode\/kubeconfig/);
  t.equal(readFileSync(at('usr/lib/knode/VERSION'), 'utf8').trim(), '9.9.9');
  t.notOk(existsSync(at('usr/lib/knode.old')) || existsSync(at('usr/lib/knode.new')), 'no half-swapped copies left');
  t.equal(inRoot(['/usr/local/bin/knode-agent', '--help']).code, 0, 'the upgraded agent runs');
});

t.test('TLS bootstrap: --bootstrap-token writes a bootstrap kubeconfig and the agent flag', async (t) => {
  writeFileSync(join(root, 'root/ca.crt'), '-----BEGIN CERTIFICATE-----\nTUlJ\n-----END CERTIFICATE-----\n');
  const bad = inRoot(['/root/install-node', '--release', '/root/knode-next.tar.gz', '--apiserver', 'https://192.0.2.1:6443', '--bootstrap-token', 'not-a-token', '--ca-cert', '/root/ca.crt'], true);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--bootstrap-token must look like abcdef\.0123456789abcdef/);
  const args = ['/root/install-node', '--release', '/root/knode-next.tar.gz', '--apiserver', 'https://192.0.2.1:6443', '--bootstrap-token', 'abcdef.0123456789abcdef', '--ca-cert', '/root/ca.crt', '--node-name', 'worker-1'];
  const r = inRoot(args, true);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /removed the earlier \/etc\/knode\/kubeconfig/);
  t.notOk(existsSync(at('etc/knode/kubeconfig')), 'the agent writes its kubeconfig itself');
  t.equal(lstatSync(at('etc/knode/bootstrap-kubeconfig')).mode & 0o777, 0o600, 'bootstrap kubeconfig is 0600');
  const boot = readFileSync(at('etc/knode/bootstrap-kubeconfig'), 'utf8');
  t.match(boot, /server: https:\/\/192\.0\.2\.1:6443/);
  t.match(boot, /token: abcdef\.0123456789abcdef/);
  t.match(boot, new RegExp(`certificate-authority-data: ${Buffer.from(readFileSync(join(root, 'root/ca.crt'))).toString('base64')}`));
  t.match(readFileSync(at('etc/default/knode-agent'), 'utf8'), /KNODE_AGENT_ARGS="--bootstrap-kubeconfig=\/etc\/knode\/bootstrap-kubeconfig --hostname-override=worker-1"/);
  const again = inRoot([...args.slice(0, 3), ...args.slice(9)], true);
  t.equal(again.code, 0, again.stderr);
  t.match(again.stderr, /keeping the installed \/etc\/knode\/bootstrap-kubeconfig/);
  t.match(again.stderr, /\(0 change\(s\)\)/, 'a re-run without the token changes nothing');
});

t.test('bad arguments: exit 2 with a clear message, nothing changed', async (t) => {
  const r = inRoot(['/root/install-node', '--runtime', 'cri-o'], true);
  t.equal(r.code, 2);
  t.match(r.stderr, /--runtime must be containerd or docker/);
  t.equal(readFileSync(at('usr/lib/knode/VERSION'), 'utf8').trim(), '9.9.9');
});

t.test('uninstall leaves nothing of knode', async (t) => {
  const r = inRoot(['/root/install-node', '--uninstall'], true);
  t.equal(r.code, 0, r.stderr);
  for (const p of [
    'usr/lib/knode', 'etc/knode', 'var/lib/knode', 'usr/local/bin/knode-agent', 'usr/local/bin/knode-proxy', 'opt/cni/bin/knode-bridge',
    'etc/systemd/system/knode-agent.service', 'etc/systemd/system/knode-proxy.service', 'etc/systemd/system/knode-agent.service.d',
    'etc/systemd/system/multi-user.target.wants/knode-agent.service', 'etc/default/knode-agent', 'opt/cni/bin/loopback',
    'usr/lib/cni/knode-flannel', 'usr/lib/cni/loopback', 'etc/systemd/system/knode-cni-daemon.service', 'opt/cni/bin/knode-cni-launcher',
    'usr/lib/cni/knode-cni-launcher', 'etc/systemd/system/multi-user.target.wants/knode-cni-daemon.service',
  ]) {
    t.notOk(existsSync(at(p)) || isLink(at(p)), `${p} removed`);
  }
  const again = inRoot(['/root/install-node', '--uninstall'], true);
  t.equal(again.code, 0, 'uninstall twice is fine');
});

function isLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

t.test('the Vagrantfile is valid and provisions workers with this install script', async (t) => {
  const vagrantDir = join(repo, 'vagrant');
  const ruby = run('ruby', ['-c', join(vagrantDir, 'Vagrantfile')]);
  t.equal(ruby.code, 0, ruby.stderr);
  t.match(ruby.stdout, /Syntax OK/);
  // `vagrant validate -p` loads the whole configuration without needing a provider (no VM here).
  const vagrantHome = join(work, 'vagrant-home');
  const validate = spawnSync('vagrant', ['validate', '-p'], {
    cwd: vagrantDir,
    encoding: 'utf8',
    env: { ...cleanEnv, VAGRANT_HOME: vagrantHome, VAGRANT_DOTFILE_PATH: join(work, 'vagrant-dot'), VAGRANT_CHECKPOINT_DISABLE: '1' },
  });
  t.equal(validate.status, 0, validate.stderr);
  t.match(validate.stdout, /Vagrantfile validated successfully/);
  for (const script of ['control-plane.sh', 'worker.sh']) {
    t.equal(run('bash', ['-n', join(vagrantDir, 'provision', script)]).code, 0, `${script} parses`);
  }
  const worker = readFileSync(join(vagrantDir, 'provision/worker.sh'), 'utf8');
  t.match(worker, /^\/knode\/scripts\/install-node /m, 'workers run scripts/install-node, the script tested above');
});

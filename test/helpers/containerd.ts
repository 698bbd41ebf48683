/**
 * A throw-away world for integration tests that run real daemons: one temp dir,
 * one `knode-t-<random>` network namespace, daemons started in it through
 * `nsenter --net` (network namespace only: runc needs the host's /sys cgroup
 * mounts), and a containerd with its own root, state, sockets and runc root
 * under the temp dir, with or without its CRI plugin.
 *
 * Teardown (registered with t.teardown, so it runs when the test fails too):
 * hooks registered by the test, then the processes running under our shims,
 * then every process whose command line names the temp dir (daemons, shims,
 * registries) TERM then KILL, then the mounts under the temp dir deepest
 * first, cgroup dirs the test named, CNI result-cache files of the test's
 * network, the namespace and the temp dir.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { errnoCode } from '../../lib/errors.js';
import { execFile, type ExecResult } from '../../lib/exec.js';
import { imageArchive, imageRefs, type ImageName } from '../../lab/paths.js';
import { until } from './poll.js';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `fn` every 100 ms until it returns something other than undefined (errors count as "not yet"). */
export function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  return until(what, fn, timeoutMs, 100);
}

export interface ProcInfo {
  pid: number;
  ppid: number;
  state: string;
  cmdline: string;
}

export async function processes(): Promise<ProcInfo[]> {
  const out: ProcInfo[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const [statText, cmdline] = await Promise.all([readFile(`/proc/${name}/stat`, 'utf8'), readFile(`/proc/${name}/cmdline`, 'utf8')]);
      const rest = statText.slice(statText.lastIndexOf(')') + 2).split(' ');
      out.push({ pid: Number(name), state: rest[0]!, ppid: Number(rest[1]), cmdline: cmdline.split('\0').join(' ') });
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT' && errnoCode(err) !== 'ESRCH') throw err;
    }
  }
  return out;
}

export function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if (errnoCode(err) !== 'ESRCH') throw err;
  }
}

/** The part of tap's `t` the harness needs. */
export interface Teardownable {
  teardown(fn: () => unknown): void;
}

export interface TestEnv {
  /** 6 hex chars, unique to this run. */
  rand: string;
  netns: string;
  netnsPath: string;
  /** The temp dir everything lives in. */
  tmp: string;
  children: ChildProcess[];
  /** Run a command inside the test's network namespace. */
  inNetns(file: string, args: string[], options?: { allowFailure?: boolean; timeoutMs?: number }): Promise<ExecResult>;
  /** curl -s --max-time 3 from inside the namespace (never throws; check .code). */
  curl(url: string, extra?: string[]): Promise<ExecResult>;
  /** Start a daemon in the namespace, logging to <tmp>/<name>.log; killed in teardown. */
  startDaemon(name: string, file: string, args: string[]): ChildProcess;
  /** Run `fn` first thing in teardown (e.g. stop registries cleanly). */
  onTeardown(fn: () => Promise<unknown>): void;
  /** Remove this cgroup path (e.g. '/knode-t-abc123') from every hierarchy in teardown. */
  cleanupCgroup(path: string): void;
  /** Remove libcni's cached results of this network name (/var/lib/cni/results/<name>-*) in teardown; files naming the temp dir always go. */
  cleanupCniCache(network: string): void;
}

/**
 * Creates the namespace (lo up) and the temp dir, and registers the teardown.
 * Root only.
 */
export async function createTestEnv(t: Teardownable, name: string): Promise<TestEnv> {
  const rand = randomBytes(3).toString('hex');
  const netns = `knode-t-${rand}`;
  const netnsPath = `/var/run/netns/${netns}`;
  const tmp = await mkdtemp(join(tmpdir(), `knode-t-${name}-${rand}-`));
  const children: ChildProcess[] = [];
  const hooks: (() => Promise<unknown>)[] = [];
  const cgroups: string[] = [];
  const cniNetworks: string[] = [];
  let netnsCreated = false;

  const inNetns: TestEnv['inNetns'] = (file, args, options = {}) =>
    execFile('nsenter', [`--net=${netnsPath}`, file, ...args], { timeoutMs: options.timeoutMs ?? 60_000, allowFailure: options.allowFailure ?? false });

  const teardown = async (): Promise<void> => {
    for (const hook of hooks) await hook().catch(() => undefined);
    await destroyTestEnv({ tmp, netns: netnsCreated ? netns : undefined, children, cgroups, cniNetworks });
  };
  t.teardown(teardown);

  try {
    await execFile('ip', ['netns', 'add', netns]);
    netnsCreated = true;
    await execFile('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  } catch (err) {
    await teardown(); // a throw here ends the test file before t.teardown would run
    throw err;
  }

  return {
    rand,
    netns,
    netnsPath,
    tmp,
    children,
    inNetns,
    curl: (url, extra = []) => inNetns('curl', ['-s', '--max-time', '3', ...extra, url], { allowFailure: true }),
    startDaemon(name, file, args) {
      const log = openSync(join(tmp, `${name}.log`), 'a');
      const child = spawn('nsenter', [`--net=${netnsPath}`, file, ...args], { stdio: ['ignore', log, log] });
      children.push(child);
      return child;
    },
    onTeardown: (fn) => hooks.push(fn),
    cleanupCgroup: (path) => cgroups.push(path),
    cleanupCniCache: (network) => cniNetworks.push(network),
  };
}

/** What a test env owns; `destroyTestEnv` removes it all (also usable by hand after a crashed run). */
export interface TestEnvResources {
  tmp: string;
  /** The namespace to delete (only `knode-t-*`). */
  netns?: string | undefined;
  children?: ChildProcess[];
  cgroups?: string[];
  cniNetworks?: string[];
}

/**
 * Kills what runs under the env's shims, then every process whose command line
 * names the temp dir (TERM, then KILL after 5 s), unmounts under the temp dir
 * deepest first, removes the cgroups and CNI cache files, the namespace and the dir.
 */
export async function destroyTestEnv(r: TestEnvResources): Promise<void> {
  const { tmp } = r;
  if (!basename(tmp).startsWith('knode-t-')) throw new Error(`destroyTestEnv: ${tmp} is not a test dir`);
  let procs = await processes();
  const ours = procs.filter((p) => p.cmdline.includes(tmp) && p.pid !== process.pid);
  for (const shim of ours.filter((p) => p.cmdline.includes('containerd-shim'))) for (const p of procs.filter((q) => q.ppid === shim.pid)) kill(p.pid, 'SIGKILL');
  for (const child of r.children ?? []) if (child.exitCode === null && child.pid !== undefined) kill(child.pid, 'SIGTERM');
  for (const p of ours) kill(p.pid, 'SIGTERM');
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    procs = await processes();
    if (!procs.some((p) => p.cmdline.includes(tmp) && p.pid !== process.pid && p.state !== 'Z')) break;
    await sleep(100);
  }
  for (const p of await processes()) if (p.cmdline.includes(tmp) && p.pid !== process.pid) kill(p.pid, 'SIGKILL');
  await sleep(200);
  // Mounts under the temp dir (rootfs overlays, shm, pod netns bind mounts), deepest first.
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const mounts = mountinfo
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => m !== undefined && (m === tmp || m.startsWith(tmp + '/')))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await execFile('umount', ['-l', m], { allowFailure: true });
  for (const cg of r.cgroups ?? []) await removeCgroup(cg);
  await removeCniCache(r.cniNetworks ?? [], tmp);
  if (r.netns !== undefined && r.netns.startsWith('knode-t-')) await execFile('ip', ['netns', 'del', r.netns], { allowFailure: true });
  await keepLogs(tmp);
  await rm(tmp, { recursive: true, force: true });
}

/** With KNODE_TEST_KEEP_LOGS=<dir>, the daemons' logs (<tmp>/*.log) are copied there before the temp dir goes. */
async function keepLogs(tmp: string): Promise<void> {
  const dest = process.env.KNODE_TEST_KEEP_LOGS;
  if (dest === undefined || dest === '') return;
  await mkdir(dest, { recursive: true });
  for (const f of await readdir(tmp).catch(() => [] as string[])) {
    if (f.endsWith('.log')) await copyFile(join(tmp, f), join(dest, `${basename(tmp)}-${f}`)).catch(() => undefined);
  }
}

/** rmdir a cgroup and everything below it, deepest first, in every mounted hierarchy. */
async function removeCgroup(path: string): Promise<void> {
  if (!/^\/knode-t-[0-9a-f]+$/.test(path)) return; // only what a test named
  const roots: string[] = [];
  for (const entry of await readdir('/sys/fs/cgroup', { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) roots.push(join('/sys/fs/cgroup', entry.name));
  }
  roots.push('/sys/fs/cgroup');
  const remove = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw err;
    }
    for (const e of entries) if (e.isDirectory()) await remove(join(dir, e.name));
    await rmdir(dir).catch(() => undefined);
  };
  for (const root of roots) await remove(join(root, path));
}

/**
 * libcni caches each ADD in /var/lib/cni/results/<network>-<container>-<ifname>
 * (containerd cannot move it); DEL removes it, a killed run does not. Removes the
 * files of the test's networks and any (e.g. containerd's cni-loopback) that name the temp dir.
 */
async function removeCniCache(networks: readonly string[], tmp: string): Promise<void> {
  const dir = '/var/lib/cni/results';
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    const path = join(dir, f);
    const named = networks.some((n) => n.startsWith('knode-t-') && f.startsWith(`${n}-`));
    const mentions = !named && (await readFile(path, 'utf8').catch(() => '')).includes(tmp + '/');
    if (named || mentions) await rm(path, { force: true });
  }
}

export interface CriConfig {
  /** Directory of CNI configs (the first one is used). */
  cniConfDir: string;
  cniBinDir?: string;
  /** hosts.toml per registry (containerd's config_path). */
  registryConfigDir?: string;
  sandboxImage?: string;
}

export interface TestContainerd {
  dir: string;
  socket: string;
  runcRoot: string;
  /** `ctr --address <socket> -n k8s.io ...` inside the namespace. */
  ctr(args: string[], allowFailure?: boolean): Promise<ExecResult>;
  /** Import the lab images' OCI archives (default: lab/paths imageArchive) into k8s.io. */
  importImages(names: readonly ImageName[], archive?: (name: ImageName) => string): Promise<void>;
}

const q = (s: string): string => JSON.stringify(s);

/** containerd's config.toml for a test: everything under `dir`; CRI only when `cri` is given. Pure. */
export function renderTestContainerdConfig(dir: string, cri: CriConfig | undefined): string {
  const lines = [
    'version = 2',
    `root = ${q(join(dir, 'root'))}`,
    `state = ${q(join(dir, 'state'))}`,
    '[grpc]',
    `  address = ${q(join(dir, 'containerd.sock'))}`,
    '[ttrpc]',
    `  address = ${q(join(dir, 'containerd.sock.ttrpc'))}`,
    '[metrics]',
    '  address = ""',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${q(join(dir, 'opt'))}`,
  ];
  if (cri === undefined) {
    lines.splice(3, 0, 'disabled_plugins = ["io.containerd.grpc.v1.cri"]');
  } else {
    lines.push(
      '[plugins."io.containerd.grpc.v1.cri"]',
      `  sandbox_image = ${q(cri.sandboxImage ?? imageRefs.pause)}`,
      '  stream_server_address = "127.0.0.1"',
      '  stream_server_port = "0"',
      '  enable_selinux = false',
      '  netns_mounts_under_state_dir = true',
      // No CAP_SYS_RESOURCE here: a negative oom_score_adj (sandboxes get -998) cannot be
      // set, and runc init dies. Clamp to containerd's own value instead.
      '  restrict_oom_score_adj = true',
      '  [plugins."io.containerd.grpc.v1.cri".containerd]',
      '    snapshotter = "overlayfs"',
      '    default_runtime_name = "runc"',
      '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
      '      runtime_type = "io.containerd.runc.v2"',
      '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
      '        SystemdCgroup = false',
      `        Root = ${q(join(dir, 'runc'))}`,
      '  [plugins."io.containerd.grpc.v1.cri".cni]',
      `    bin_dir = ${q(cri.cniBinDir ?? '/usr/lib/cni')}`,
      `    conf_dir = ${q(cri.cniConfDir)}`,
    );
    if (cri.registryConfigDir !== undefined) lines.push('  [plugins."io.containerd.grpc.v1.cri".registry]', `    config_path = ${q(cri.registryConfigDir)}`);
  }
  return lines.join('\n') + '\n';
}

/** hosts.toml for a plain-HTTP registry at host:port. Pure. */
export function renderPlainHttpHosts(host: string): string {
  return `server = "http://${host}"\n\n[host."http://${host}"]\n  capabilities = ["pull", "resolve"]\n`;
}

/** Starts a containerd in the env's namespace (under <tmp>/<name>) and waits until `ctr version` answers. */
export async function startContainerd(env: TestEnv, options: { name?: string; cri?: CriConfig } = {}): Promise<TestContainerd> {
  const dir = join(env.tmp, options.name ?? 'containerd');
  await mkdir(dir, { recursive: true });
  const socket = join(dir, 'containerd.sock');
  const config = join(dir, 'config.toml');
  await writeFile(config, renderTestContainerdConfig(dir, options.cri));
  const child = env.startDaemon(options.name ?? 'containerd', 'containerd', ['--config', config]);
  const ctr = (args: string[], allowFailure = false): Promise<ExecResult> => env.inNetns('ctr', ['--address', socket, '-n', 'k8s.io', ...args], { allowFailure });
  await waitFor('containerd', async () => {
    if (child.exitCode !== null) throw new Error(`containerd exited with ${child.exitCode}; see ${join(env.tmp, `${options.name ?? 'containerd'}.log`)}`);
    return (await ctr(['version'], true)).code === 0 ? true : undefined;
  });
  return {
    dir,
    socket,
    runcRoot: join(dir, 'runc'),
    ctr,
    async importImages(names, archive = (n) => imageArchive(n, 'oci')) {
      for (const n of names) await ctr(['images', 'import', archive(n)]);
    },
  };
}

/**
 * A conflist for the reference bridge + host-local in <tmp>/cni/net.d (bridge `kt-<rand>`,
 * network `knode-t-<rand>`, the IPAM store under <tmp>), only ever run inside the test's
 * namespace. Resolves to the conf dir.
 */
export async function writeBridgeConflist(env: TestEnv, subnet: string): Promise<string> {
  const cniConfDir = join(env.tmp, 'cni', 'net.d');
  await mkdir(cniConfDir, { recursive: true });
  await writeFile(
    join(cniConfDir, '10-test.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: `knode-t-${env.rand}`,
      plugins: [{ type: 'bridge', bridge: `kt-${env.rand}`, isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet }]], dataDir: join(env.tmp, 'cni', 'ipam') } }],
    }),
  );
  return cniConfDir;
}

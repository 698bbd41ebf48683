/**
 * Pod network setup latency: CNI ADD and DEL, p50/p99, side by side in one run, for
 *   ref          the reference bridge + host-local (/usr/lib/cni, Go)
 *   knode        knode-bridge (+ knode-host-local in-process), a Node process per call, no daemon
 *   knode+daemon the same knode-bridge program, which hands the request to knode-cni-daemon
 *   launcher+daemon the installed form: the sh launcher (cni/launcher.sh) named knode-bridge,
 *                which hands the request to knode-cni-daemon with socat (no Node process)
 *   launcher     the same launcher with no daemon: it execs the knode-bridge bundle
 *   daemon-direct one request straight over the daemon socket from this process (no plugin
 *                process: the floor of the daemon path, what a runtime speaking to the daemon
 *                directly would see)
 * plus a start-up table (CNI VERSION, and `node -e 0` as the floor of any Node program).
 *
 * Design notes
 * - Same config for every variant: a bridge in a throw-away "host" netns (knode-t-<rand>), a /24
 *   per variant (own bridge, own IPAM dir so variants do not share state), isGateway, ipMasq false.
 * - The outer process (root namespace) creates the host namespace and one container namespace
 *   per variant, then re-runs this program inside the host namespace (`nsenter --net`): plugins
 *   are then exec'd directly, as containerd would, with no nsenter in the timed path, and the
 *   daemon started by the inner process lives in the host namespace like a real node's would.
 *   The outer process removes every namespace and directory in `finally`, even on failure.
 * - Rounds: each round runs ADD then DEL once per variant, the variant order rotating per round,
 *   so machine drift (a shared, noisy 2-core box) hits every variant alike. A few warm-up rounds
 *   are not recorded. Every ADD must return an IP and every DEL succeed, or the bench aborts.
 * - Plugin programs are esbuild bundles of cni/bin/*.ts with the `#!/usr/bin/env node` banner of
 *   scripts/build.mjs, exec'd directly by path.
 *
 * Usage (root): scripts/bench-cni [--n 100] [--warmup 5]
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execFile } from '../lib/exec.js';
import { requestDaemon } from '../cni/daemon/client.js';
import { requestFromEnv } from '../cni/daemon/protocol.js';
import { installLauncher } from '../cni/launcher.js';

const here = dirname(fileURLToPath(import.meta.url));
const REFERENCE_DIR = '/usr/lib/cni';

interface Options {
  n: number;
  warmup: number;
  /** Set in the inner process: the repo root (bundles), the work directory, container netns paths. */
  inner?: { root: string; work: string; containers: string[] };
}

// ---- statistics ------------------------------------------------------------

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

interface Stats {
  p50: number;
  p99: number;
  n: number;
}

function stats(samples: readonly number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), n: s.length };
}

const fmt = (ms: number): string => (Number.isNaN(ms) ? '–' : ms < 10 ? ms.toFixed(2) : ms.toFixed(1));
const ratio = (x: number, ref: number): string => `${(x / ref).toFixed(2)}×`;

// ---- variants ----------------------------------------------------------------

interface Variant {
  name: string;
  /** Time one call; throws on a failed call. */
  call(command: 'ADD' | 'DEL', containerId: string): Promise<number>;
}

interface ProcOutcome {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

async function timedExec(file: string, args: string[], env: NodeJS.ProcessEnv, input: string): Promise<ProcOutcome> {
  const started = performance.now();
  const r = await execFile(file, args, { env, input, allowFailure: true, timeoutMs: 60_000 });
  return { ...r, ms: performance.now() - started };
}

function netConf(variant: number, bridgeType: string, ipamType: string, dataDir: string): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: `knode-bench-${variant}`,
    type: bridgeType,
    bridge: `kbench${variant}`,
    isGateway: true,
    ipMasq: false,
    ipam: { type: ipamType, dataDir, ranges: [[{ subnet: `10.77.${variant}.0/24` }]] },
  });
}

function checkOutcome(name: string, command: string, code: number, out: { stdout: string; stderr: string }): void {
  if (code !== 0) throw new Error(`${name} ${command} failed (exit ${code}): ${out.stdout}${out.stderr}`);
  if (command !== 'ADD') return;
  let ip: unknown;
  try {
    ip = (JSON.parse(out.stdout) as { ips?: { address?: unknown }[] }).ips?.[0]?.address;
  } catch {
    ip = undefined;
  }
  if (typeof ip !== 'string' || !ip.startsWith('10.77.')) throw new Error(`${name} ADD returned no IP: ${out.stdout}`);
}

function pluginEnv(command: string, containerId: string, netns: string, cniPath: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerId,
    CNI_NETNS: netns,
    CNI_IFNAME: 'eth0',
    CNI_PATH: cniPath,
    ...extra,
  };
}

function processVariant(name: string, file: string, conf: string, netns: string, cniPath: string, extra: Record<string, string>): Variant {
  return {
    name,
    async call(command, containerId) {
      const out = await timedExec(file, [], pluginEnv(command, containerId, netns, cniPath, extra), conf);
      checkOutcome(name, command, out.code, out);
      return out.ms;
    },
  };
}

// ---- inner: runs inside the host namespace ------------------------------------

async function buildBundles(root: string, outDir: string): Promise<Record<string, string>> {
  const { build } = await import('esbuild');
  const banner = [
    '#!/usr/bin/env node',
    "import { createRequire as __knodeCreateRequire } from 'node:module';",
    'const require = __knodeCreateRequire(import.meta.url);',
  ].join('\n');
  const entries: Record<string, string> = {
    'knode-bridge': 'cni/bin/knode-bridge.ts',
    'knode-cni-daemon': 'cni/bin/knode-cni-daemon.ts',
  };
  const out: Record<string, string> = {};
  mkdirSync(outDir, { recursive: true });
  for (const [name, entry] of Object.entries(entries)) {
    const outfile = join(outDir, `${name}.mjs`);
    await build({
      entryPoints: [join(root, entry)],
      outfile,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      external: ['koffi', 'netlink'],
      banner: { js: banner },
      logLevel: 'warning',
    });
    chmodSync(outfile, 0o755);
    out[name] = outfile;
  }
  return out;
}

async function startDaemon(bundle: string, socket: string): Promise<ChildProcess> {
  const proc = spawn(process.execPath, [bundle, '--socket', socket], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, KNODE_LOG_LEVEL: 'warn' },
  });
  for (let i = 0; i < 400; i++) {
    const o = await requestDaemon(socket, requestFromEnv('knode-bridge', { CNI_COMMAND: 'VERSION' }, ''), { timeoutMs: 1000 });
    if (o.kind === 'response') return proc;
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  proc.kill('SIGKILL');
  throw new Error('knode-cni-daemon did not come up');
}

async function inner(opts: Options): Promise<void> {
  const { root, work, containers } = opts.inner!;
  const bundles = await buildBundles(root, join(root, 'build', 'bench', 'bin'));
  const socket = join(work, 'cni.sock');
  const absentSocket = join(work, 'absent.sock');
  const daemon = await startDaemon(bundles['knode-cni-daemon']!, socket);
  // The outer process kills it by this pid should this process die first.
  writeFileSync(join(work, 'daemon.pid'), String(daemon.pid ?? ''));
  try {
    const knodePath = `${dirname(bundles['knode-bridge']!)}:${REFERENCE_DIR}`;
    // The launcher as install-node makes it: one file, the plugin names linked to it.
    const launcherDir = join(work, 'launcher');
    await installLauncher(
      launcherDir,
      { node: process.execPath, dist: dirname(bundles['knode-bridge']!), socket, generator: 'bench-cni' },
      join(root, 'cni', 'launcher.sh'),
    );
    const launcher = join(launcherDir, 'knode-bridge');
    const confs = [0, 1, 2, 3, 4, 5].map((i) =>
      i === 0 ? netConf(i, 'bridge', 'host-local', join(work, `ipam${i}`)) : netConf(i, 'knode-bridge', 'knode-host-local', join(work, `ipam${i}`)),
    );
    const direct: Variant = {
      name: 'knode daemon, direct socket request',
      async call(command, containerId) {
        const req = requestFromEnv(
          'knode-bridge',
          { CNI_COMMAND: command, CNI_CONTAINERID: containerId, CNI_NETNS: containers[5]!, CNI_IFNAME: 'eth0', CNI_PATH: knodePath },
          confs[5]!,
        );
        const started = performance.now();
        const o = await requestDaemon(socket, req, { timeoutMs: 60_000 });
        const ms = performance.now() - started;
        if (o.kind !== 'response') throw new Error(`direct ${command}: ${JSON.stringify(o)}`);
        checkOutcome('direct', command, o.response.exitCode, o.response);
        return ms;
      },
    };
    const variants: Variant[] = [
      processVariant('reference bridge + host-local (Go)', join(REFERENCE_DIR, 'bridge'), confs[0]!, containers[0]!, REFERENCE_DIR, {}),
      processVariant('knode, no daemon (process per call)', bundles['knode-bridge']!, confs[1]!, containers[1]!, knodePath, {
        KNODE_CNI_SOCKET: absentSocket,
      }),
      processVariant('knode via daemon (shim process)', bundles['knode-bridge']!, confs[2]!, containers[2]!, knodePath, { KNODE_CNI_SOCKET: socket }),
      processVariant('knode via sh launcher + daemon (socat)', launcher, confs[3]!, containers[3]!, knodePath, {}),
      processVariant('knode via sh launcher, no daemon', launcher, confs[4]!, containers[4]!, knodePath, { KNODE_CNI_SOCKET: absentSocket }),
      direct,
    ];

    const adds = variants.map((): number[] => []);
    const dels = variants.map((): number[] => []);
    const total = opts.warmup + opts.n;
    process.stderr.write(`bench-cni: ${total} rounds (${opts.warmup} warm-up) × ${variants.length} variants, ADD then DEL\n`);
    for (let round = 0; round < total; round++) {
      for (let k = 0; k < variants.length; k++) {
        const i = (round + k) % variants.length;
        const v = variants[i]!;
        const id = `bench-${i}-${round}`;
        const a = await v.call('ADD', id);
        const d = await v.call('DEL', id);
        if (round >= opts.warmup) {
          adds[i]!.push(a);
          dels[i]!.push(d);
        }
      }
      if ((round + 1) % 20 === 0) process.stderr.write(`bench-cni: round ${round + 1}/${total}\n`);
    }

    // Start-up: a CNI VERSION call per program, interleaved the same way.
    const versionEnv = (extra: Record<string, string>): NodeJS.ProcessEnv => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: 'VERSION', ...extra });
    const startups: { name: string; run(): Promise<number> }[] = [
      { name: '`node -e 0` (floor of any Node program)', run: async () => (await timedExec(process.execPath, ['-e', '0'], versionEnv({}), '')).ms },
      {
        name: 'reference bridge VERSION',
        run: async () => versionOk(await timedExec(join(REFERENCE_DIR, 'bridge'), [], versionEnv({}), '')),
      },
      {
        name: 'knode-bridge VERSION, no daemon',
        run: async () => versionOk(await timedExec(bundles['knode-bridge']!, [], versionEnv({ KNODE_CNI_SOCKET: absentSocket }), '')),
      },
      {
        name: 'knode-bridge VERSION, via daemon',
        run: async () => versionOk(await timedExec(bundles['knode-bridge']!, [], versionEnv({ KNODE_CNI_SOCKET: socket }), '')),
      },
      {
        name: 'knode-bridge VERSION, sh launcher + daemon',
        run: async () => versionOk(await timedExec(launcher, [], versionEnv({}), '')),
      },
    ];
    const startupSamples = startups.map((): number[] => []);
    for (let round = 0; round < total; round++) {
      for (let k = 0; k < startups.length; k++) {
        const i = (round + k) % startups.length;
        const ms = await startups[i]!.run();
        if (round >= opts.warmup) startupSamples[i]!.push(ms);
      }
    }

    printReport(opts, variants, adds, dels, startups, startupSamples);
  } finally {
    daemon.kill('SIGTERM');
  }
}

function versionOk(o: ProcOutcome): number {
  if (o.code !== 0 || !o.stdout.includes('supportedVersions')) throw new Error(`VERSION failed: ${o.stdout}${o.stderr}`);
  return o.ms;
}

function printReport(
  opts: Options,
  variants: Variant[],
  adds: number[][],
  dels: number[][],
  startups: { name: string }[],
  startupSamples: number[][],
): void {
  const lines: string[] = [];
  const refAdd = stats(adds[0]!);
  const refDel = stats(dels[0]!);
  lines.push(`N=${opts.n} per variant (+${opts.warmup} warm-up rounds), ${cpus().length} CPUs, Node ${process.version}, ${new Date().toISOString()}`);
  lines.push('');
  lines.push('| variant | ADD p50 ms | ADD p99 ms | DEL p50 ms | DEL p99 ms | ADD p50 vs ref | DEL p50 vs ref |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|');
  variants.forEach((v, i) => {
    const a = stats(adds[i]!);
    const d = stats(dels[i]!);
    lines.push(`| ${v.name} | ${fmt(a.p50)} | ${fmt(a.p99)} | ${fmt(d.p50)} | ${fmt(d.p99)} | ${ratio(a.p50, refAdd.p50)} | ${ratio(d.p50, refDel.p50)} |`);
  });
  lines.push('');
  lines.push('| start-up (CNI VERSION) | p50 ms | p99 ms |');
  lines.push('|---|---:|---:|');
  startups.forEach((s, i) => {
    const st = stats(startupSamples[i]!);
    lines.push(`| ${s.name} | ${fmt(st.p50)} | ${fmt(st.p99)} |`);
  });
  process.stdout.write(lines.join('\n') + '\n');
}

// ---- outer: namespaces and clean-up, in the root namespace ---------------------

async function outer(opts: Options): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench-cni needs root (network namespaces)');
  const root = join(here, '..', '..');
  const name = (): string => `knode-t-${randomBytes(4).toString('hex')}`;
  const host = name();
  const containers = [name(), name(), name(), name(), name(), name()];
  const work = mkdtempSync(join(tmpdir(), 'knode-t-bench-'));
  const created: string[] = [];
  try {
    for (const ns of [host, ...containers]) {
      await execFile('ip', ['netns', 'add', ns]);
      created.push(ns);
    }
    await execFile('nsenter', [`--net=/run/netns/${host}`, 'ip', 'link', 'set', 'lo', 'up']);
    const args = [
      `--net=/run/netns/${host}`,
      process.execPath,
      process.argv[1]!,
      '--n',
      String(opts.n),
      '--warmup',
      String(opts.warmup),
      '--inner-root',
      root,
      '--inner-work',
      work,
      '--inner-containers',
      containers.map((c) => `/run/netns/${c}`).join(','),
    ];
    const code = await new Promise<number>((resolve) => {
      const child = spawn('nsenter', args, { stdio: 'inherit' });
      child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
    });
    if (code !== 0) throw new Error(`bench-cni: the inner run failed (exit ${code})`);
  } finally {
    try {
      const pid = Number(readFileSync(join(work, 'daemon.pid'), 'utf8'));
      if (pid > 0) process.kill(pid, 'SIGKILL');
    } catch {
      // no pid file, or the daemon is gone already
    }
    for (const ns of created.reverse()) await execFile('ip', ['netns', 'del', ns], { allowFailure: true });
    rmSync(work, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      n: { type: 'string', default: '100' },
      warmup: { type: 'string', default: '5' },
      'inner-root': { type: 'string' },
      'inner-work': { type: 'string' },
      'inner-containers': { type: 'string' },
    },
    strict: true,
  });
  const opts: Options = { n: Number(values.n), warmup: Number(values.warmup) };
  if (!Number.isInteger(opts.n) || opts.n < 1 || !Number.isInteger(opts.warmup) || opts.warmup < 0) throw new Error('bench-cni: bad --n/--warmup');
  if (values['inner-root'] && values['inner-work'] && values['inner-containers']) {
    opts.inner = { root: values['inner-root'], work: values['inner-work'], containers: values['inner-containers'].split(',') };
    await inner(opts);
  } else {
    await outer(opts);
  }
}

try {
  await main();
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}

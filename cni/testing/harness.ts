/**
 * Test harness for the CNI plugins (used by test/integration/cni-*.test.ts only).
 * - `buildPlugins()` bundles the plugin entry points with esbuild into build/cni-test/ (inside the
 *   repo so node_modules resolves for the external koffi/netlink) and writes a tiny
 *   `#!/bin/sh exec node <bundle>` wrapper per plugin, so they can be exec'd like real plugins.
 * - `buildDaemon()` bundles knode-cni-daemon the same way (the daemon and launcher tests).
 * - `createNetns()` makes a throw-away `knode-t-<random>` namespace; callers delete it in
 *   t.teardown.
 * - `runPlugin()` runs a plugin process inside a "host" namespace (nsenter --net), never in the
 *   root namespace.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { build } from 'esbuild';
import { execFile } from '../../lib/exec.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN_DIR = join(root, 'build', 'cni-test', 'bin');
export const REFERENCE_DIR = '/usr/lib/cni';

const entries: Record<string, string> = {
  'knode-bridge': 'cni/bin/knode-bridge.ts',
  'knode-host-local': 'cni/bin/knode-host-local.ts',
  'knode-loopback': 'cni/bin/knode-loopback.ts',
};

const banner = [
  "import { createRequire as __knodeCreateRequire } from 'node:module';",
  'const require = __knodeCreateRequire(import.meta.url);',
].join('\n');

let built: Promise<void> | undefined;
let daemonBuilt: Promise<string> | undefined;

/** One esbuild bundle of a CNI entry point (ESM, koffi and netlink external, as scripts/build.mjs). */
function bundle(entry: string, outfile: string): Promise<unknown> {
  return build({
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
}

/** Bundles knode-cni-daemon into build/cni-test/knode-cni-daemon.mjs (next to the plugin bundles); resolves to its path. */
export function buildDaemon(): Promise<string> {
  daemonBuilt ??= (async () => {
    const outfile = join(root, 'build', 'cni-test', 'knode-cni-daemon.mjs');
    await bundle('cni/bin/knode-cni-daemon.ts', outfile);
    return outfile;
  })();
  return daemonBuilt;
}

/** Bundles one plugin entry (e.g. 'cni/bin/knode-portmap.ts') and writes its `exec node` wrapper into BIN_DIR. */
export async function buildPlugin(name: string, entry: string): Promise<void> {
  mkdirSync(BIN_DIR, { recursive: true });
  const outfile = join(root, 'build', 'cni-test', `${name}.mjs`);
  await bundle(entry, outfile);
  const wrapper = join(BIN_DIR, name);
  writeFileSync(wrapper, `#!/bin/sh\nexec node ${outfile} "$@"\n`);
  chmodSync(wrapper, 0o755);
}

export function buildPlugins(): Promise<void> {
  built ??= (async () => {
    await Promise.all(Object.entries(entries).map(([name, entry]) => buildPlugin(name, entry)));
  })();
  return built;
}

export function randomName(prefix = 'knode-t-'): string {
  return prefix + randomBytes(4).toString('hex');
}

export interface Netns {
  name: string;
  path: string;
}

export async function createNetns(): Promise<Netns> {
  const name = randomName();
  await execFile('ip', ['netns', 'add', name]);
  return { name, path: `/run/netns/${name}` };
}

export async function deleteNetns(ns: Netns): Promise<void> {
  await execFile('ip', ['netns', 'del', ns.name], { allowFailure: true });
}

/** Run a command inside a namespace (network only). */
export function inNetns(ns: Netns, cmd: string, args: string[], allowFailure = true): ReturnType<typeof execFile> {
  return execFile('nsenter', [`--net=${ns.path}`, cmd, ...args], { allowFailure });
}

export interface PluginCall {
  plugin: string;
  /** Directory the plugin binary is taken from (BIN_DIR or REFERENCE_DIR). */
  dir?: string;
  command: string;
  host: Netns;
  containerId?: string;
  netns?: string;
  ifName?: string;
  config: unknown;
  cniPath?: string;
  cniArgs?: string;
  env?: Record<string, string>;
}

export interface PluginOutcome {
  code: number;
  stdout: string;
  stderr: string;
  json: Record<string, unknown> | undefined;
  ms: number;
}

export async function runPlugin(call: PluginCall): Promise<PluginOutcome> {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: call.command,
    CNI_PATH: call.cniPath ?? `${BIN_DIR}:${REFERENCE_DIR}`,
    ...call.env,
  };
  if (call.containerId !== undefined) env.CNI_CONTAINERID = call.containerId;
  if (call.netns !== undefined) env.CNI_NETNS = call.netns;
  if (call.ifName !== undefined) env.CNI_IFNAME = call.ifName;
  if (call.cniArgs !== undefined) env.CNI_ARGS = call.cniArgs;
  const input = typeof call.config === 'string' ? call.config : JSON.stringify(call.config);
  const started = performance.now();
  const res = await execFile('nsenter', [`--net=${call.host.path}`, join(call.dir ?? BIN_DIR, call.plugin)], {
    env,
    input,
    allowFailure: true,
    timeoutMs: 120_000,
  });
  const ms = performance.now() - started;
  let json: Record<string, unknown> | undefined;
  try {
    json = res.stdout.trim() ? (JSON.parse(res.stdout) as Record<string, unknown>) : undefined;
  } catch {
    json = undefined;
  }
  return { code: res.code, stdout: res.stdout, stderr: res.stderr, json, ms };
}

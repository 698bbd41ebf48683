/**
 * A small libcni: runs the pod network's CNI plugins for the Docker backend
 * (containerd's CRI does this itself; with docker the kubelet side must, as
 * cri-dockerd does).
 *
 * Design notes:
 * - The network is the first `*.conflist` (else `*.conf` / `*.json`) in the
 *   conf dir, by file name, as libcni picks it. It is read on every ADD, so a
 *   rewritten conflist (the agent's network part writes it) applies to the
 *   next pod.
 * - ADD runs the plugins in order, each given the previous one's result as
 *   `prevResult`; DEL runs them in reverse with the cached ADD result. Plugins
 *   that declare `capabilities.portMappings` get `runtimeConfig.portMappings`.
 * - Each ADD is cached as JSON (config + result + args) under the cache dir,
 *   keyed by sandbox id, like libcni's /var/lib/cni/results: DEL uses the
 *   cached config (the conf dir may have changed since), the pod IP comes
 *   from the cached result, and DEL of an uncached sandbox is a no-op
 *   (idempotent). The cache goes only when DEL succeeded.
 * - Plugins run with a deadline; a failure is KnodeError 'CNI_FAILED' with the
 *   plugin's own `{code, msg, details}` when it printed one.
 * - Pure parts (`selectConfig`, `pluginInput`, `cniEnv`, `primaryIP`) are
 *   separate from the exec and file parts.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KnodeError, errnoCode, errorMessage } from '../../../lib/errors.js';
import { execFile } from '../../../lib/exec.js';
import type { PortMapping } from '../types.js';

export type JsonObject = Record<string, unknown>;

export interface NetworkConfig {
  name: string;
  cniVersion: string;
  plugins: JsonObject[];
  /** The file it came from. */
  file: string;
}

export interface CniArgs {
  containerId: string;
  netns: string;
  ifName: string;
  podName: string;
  podNamespace: string;
  podUid: string;
  portMappings: PortMapping[];
}

export interface CniCacheEntry {
  config: NetworkConfig;
  args: CniArgs;
  result: JsonObject;
}

export interface CniOptions {
  confDir: string;
  binDir: string;
  cacheDir: string;
  /** Network namespace (path) the plugins run in; default the agent's own (the node's). */
  hostNetns?: string;
  timeoutMs?: number;
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses a .conflist, or a single-plugin .conf/.json, into a NetworkConfig. Pure. */
export function parseNetworkConfig(file: string, text: string): NetworkConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new KnodeError('CNI_CONFIG_INVALID', `${file}: not JSON: ${errorMessage(err)}`);
  }
  if (!isObject(doc) || typeof doc.name !== 'string' || doc.name === '') throw new KnodeError('CNI_CONFIG_INVALID', `${file}: no network name`);
  const cniVersion = typeof doc.cniVersion === 'string' ? doc.cniVersion : '0.4.0';
  const plugins = file.endsWith('.conflist') ? doc.plugins : [doc];
  if (!Array.isArray(plugins) || plugins.length === 0 || !plugins.every((p) => isObject(p) && typeof p.type === 'string' && /^[A-Za-z0-9._-]+$/.test(p.type))) {
    throw new KnodeError('CNI_CONFIG_INVALID', `${file}: plugins must be a non-empty list of objects with a plain "type"`);
  }
  return { name: doc.name, cniVersion, plugins: plugins as JsonObject[], file };
}

/** The file libcni would use: the first .conflist by name, else the first .conf/.json. Pure. */
export function selectConfig(files: readonly string[]): string | undefined {
  const sorted = [...files].filter((f) => !f.startsWith('.')).sort();
  return sorted.find((f) => f.endsWith('.conflist')) ?? sorted.find((f) => f.endsWith('.conf') || f.endsWith('.json'));
}

/** Reads the network config from the conf dir; undefined when there is none yet. */
export async function loadNetworkConfig(confDir: string): Promise<NetworkConfig | undefined> {
  let files: string[];
  try {
    files = await readdir(confDir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  const file = selectConfig(files);
  if (file === undefined) return undefined;
  return parseNetworkConfig(join(confDir, file), await readFile(join(confDir, file), 'utf8'));
}

/** A plugin's stdin: its config plus name, cniVersion, runtimeConfig and prevResult. Pure. */
export function pluginInput(net: NetworkConfig, plugin: JsonObject, args: CniArgs, prevResult: JsonObject | undefined): JsonObject {
  const input: JsonObject = { ...plugin, name: net.name, cniVersion: net.cniVersion };
  const caps = isObject(plugin.capabilities) ? plugin.capabilities : {};
  delete input.capabilities;
  if (caps.portMappings === true && args.portMappings.length > 0) {
    input.runtimeConfig = {
      portMappings: args.portMappings
        .filter((p) => (p.hostPort ?? 0) > 0)
        .map((p) => ({ hostPort: p.hostPort, containerPort: p.containerPort, protocol: (p.protocol ?? 'TCP').toLowerCase(), ...(p.hostIp ? { hostIP: p.hostIp } : {}) })),
    };
  }
  if (prevResult !== undefined) input.prevResult = prevResult;
  return input;
}

/** The CNI_* environment of one invocation. Pure. */
export function cniEnv(command: 'ADD' | 'DEL' | 'CHECK', args: CniArgs, binDir: string): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: args.containerId,
    CNI_NETNS: args.netns,
    CNI_IFNAME: args.ifName,
    CNI_PATH: binDir,
    CNI_ARGS: [
      'IgnoreUnknown=1',
      `K8S_POD_NAMESPACE=${args.podNamespace}`,
      `K8S_POD_NAME=${args.podName}`,
      `K8S_POD_INFRA_CONTAINER_ID=${args.containerId}`,
      `K8S_POD_UID=${args.podUid}`,
    ].join(';'),
  };
}

/** The first IPv4 address of a CNI result (else the first one), without its prefix length. Pure. */
export function primaryIPs(result: JsonObject): { ip: string; additional: string[] } {
  const ips = Array.isArray(result.ips) ? result.ips : [];
  const addrs = ips
    .map((e: unknown) => (isObject(e) && typeof e.address === 'string' ? e.address.split('/')[0]! : undefined))
    .filter((a): a is string => a !== undefined && a !== '');
  const v4 = addrs.filter((a) => !a.includes(':'));
  const ordered = [...v4, ...addrs.filter((a) => a.includes(':'))];
  return { ip: ordered[0] ?? '', additional: ordered.slice(1) };
}

export class CniRunner {
  private readonly timeoutMs: number;

  constructor(private readonly o: CniOptions) {
    this.timeoutMs = o.timeoutMs ?? 120_000;
  }

  /** Whether a network config is there (NetworkReady). */
  async ready(): Promise<{ ok: boolean; message: string }> {
    try {
      const net = await loadNetworkConfig(this.o.confDir);
      return net === undefined ? { ok: false, message: `no network config found in ${this.o.confDir}` } : { ok: true, message: '' };
    } catch (err) {
      return { ok: false, message: errorMessage(err) };
    }
  }

  private async invoke(command: 'ADD' | 'DEL', net: NetworkConfig, plugin: JsonObject, args: CniArgs, prev: JsonObject | undefined): Promise<JsonObject | undefined> {
    const type = String(plugin.type);
    const input = JSON.stringify(pluginInput(net, plugin, args, prev));
    const pluginPath = join(this.o.binDir, type);
    const [file, argv] = this.o.hostNetns === undefined ? [pluginPath, []] : ['nsenter', [`--net=${this.o.hostNetns}`, pluginPath]];
    const r = await execFile(file, argv, {
      input,
      env: { ...cniEnv(command, args, this.o.binDir), PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
      timeoutMs: this.timeoutMs,
      allowFailure: true,
    }).catch((err: unknown) => {
      throw new KnodeError('CNI_FAILED', `CNI ${command} ${type}: ${errorMessage(err)}`, { cause: err });
    });
    let out: unknown;
    try {
      out = r.stdout.trim() === '' ? undefined : JSON.parse(r.stdout);
    } catch {
      out = undefined;
    }
    if (r.code !== 0) {
      const detail = isObject(out) && typeof out.msg === 'string' ? `${out.msg}${typeof out.details === 'string' && out.details !== '' ? `: ${out.details}` : ''} (code ${String(out.code)})` : r.stderr.trim() || r.stdout.trim() || `exit code ${r.code}`;
      throw new KnodeError('CNI_FAILED', `CNI ${command} of ${args.podNamespace}/${args.podName} failed in plugin ${type}: ${detail}`, {
        details: { plugin: type, command, code: r.code },
      });
    }
    if (command === 'DEL') return undefined;
    if (!isObject(out)) throw new KnodeError('CNI_FAILED', `CNI ADD: plugin ${type} printed no result: ${r.stdout.trim()}`);
    return out;
  }

  private cacheFile(sandboxId: string): string {
    if (!/^[0-9a-f]+$/.test(sandboxId)) throw new KnodeError('INVALID_ARGUMENT', `bad sandbox id ${JSON.stringify(sandboxId)}`);
    return join(this.o.cacheDir, `${sandboxId}.json`);
  }

  async cached(sandboxId: string): Promise<CniCacheEntry | undefined> {
    try {
      const doc: unknown = JSON.parse(await readFile(this.cacheFile(sandboxId), 'utf8'));
      return isObject(doc) && isObject(doc.result) && isObject(doc.config) && isObject(doc.args) ? (doc as unknown as CniCacheEntry) : undefined;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || err instanceof SyntaxError) return undefined;
      throw err;
    }
  }

  /** ADD on the network of the conf dir; caches and returns the final result. */
  async add(sandboxId: string, args: CniArgs): Promise<CniCacheEntry> {
    const net = await loadNetworkConfig(this.o.confDir);
    if (net === undefined) throw new KnodeError('CNI_NOT_READY', `no CNI network config in ${this.o.confDir}`);
    let prev: JsonObject | undefined;
    for (const plugin of net.plugins) prev = await this.invoke('ADD', net, plugin, args, prev);
    const entry: CniCacheEntry = { config: net, args, result: prev ?? {} };
    await mkdir(this.o.cacheDir, { recursive: true, mode: 0o700 });
    const file = this.cacheFile(sandboxId);
    await writeFile(`${file}.tmp`, JSON.stringify(entry));
    await rename(`${file}.tmp`, file);
    return entry;
  }

  /**
   * DEL with the cached ADD (its config, args and result); `netns` may be ''
   * when the namespace is gone. No cache: nothing to do. Idempotent.
   */
  async del(sandboxId: string, netns: string): Promise<boolean> {
    const entry = await this.cached(sandboxId);
    if (entry === undefined) return false;
    const args = { ...entry.args, netns };
    for (const plugin of [...entry.config.plugins].reverse()) await this.invoke('DEL', entry.config, plugin, args, entry.result);
    await rm(this.cacheFile(sandboxId), { force: true });
    return true;
  }
}

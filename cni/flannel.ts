/**
 * knode-flannel: the flannel CNI meta plugin (flannel-io/cni-plugin). It reads the node's subnet
 * file (flannel's subnet.env), renders a delegate config (bridge + host-local on the node's pod
 * subnet), saves that config per container and delegates to it.
 *
 * Config: subnetFile (default /run/flannel/subnet.env), dataDir (default /var/lib/cni/flannel),
 * delegate (map merged into the delegate config), ipam (map used as the delegate's ipam, as
 * upstream), runtimeConfig (passed on to the delegate).
 *
 * Delegate config, as upstream doCmdAdd/getDelegateIPAM renders it:
 *   name and cniVersion from this config; type defaults to knode-bridge (upstream: "bridge");
 *   ipMasq = !FLANNEL_IPMASQ and mtu = FLANNEL_MTU unless the delegate map sets them;
 *   isGateway true for a bridge delegate unless set; ipam = the top-level ipam map with type
 *   defaulting to knode-host-local (upstream: "host-local"), ranges [[{subnet: FLANNEL_SUBNET}],
 *   [{subnet: FLANNEL_IPV6_SUBNET}]], routes = ipam.routes + [{dst: FLANNEL_NETWORK}, {dst:
 *   FLANNEL_IPV6_NETWORK}]. The knode defaults are on-disk and rule compatible with the reference
 *   bridge/host-local; set delegate.type "bridge" / ipam.type "host-local" to use those.
 *
 * Design notes
 * - The rendered config is written to <dataDir>/<containerID> (0600, via a temp file + rename)
 *   before the delegate ADD, as upstream; DEL reads that file (so it works after the subnet file
 *   changed), delegates DEL with it, and removes it only when the delegate DEL succeeded. A
 *   missing file makes DEL a success (upstream: "resources already removed").
 * - The container ID is validated by cni/skel.ts (no '/', no leading '.'), and the path is
 *   checked to stay inside dataDir anyway.
 * - knode-bridge as the delegate runs in-process through cni/skel.ts invokePlugin (the same
 *   code path and result as the separate program, without a second Node start-up); any other
 *   type is executed from CNI_PATH (cni/ipam/delegate.ts findPlugin) with the caller's env.
 * - CHECK delegates CHECK with the saved config plus prevResult (upstream's CHECK is a no-op).
 * - GC (not upstream): delegate GC with the valid attachments, then drop stale saved configs.
 */
import { mkdirSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { errnoCode } from '../lib/errors.js';
import { execFile } from '../lib/exec.js';
import { formatIpNet, parseIpNet } from '../lib/netlink/ip.js';
import type { IpNet } from '../lib/netlink/ip.js';
import { findPlugin } from './ipam/delegate.js';
import { invokePlugin } from './skel.js';
import type { CmdArgs, CniCommand, CniPlugin } from './skel.js';
import { CniCode, CniError, isObject, optObject, optString, parseResult } from './types.js';
import type { CniResult, Json, JsonObject } from './types.js';

export const DEFAULT_SUBNET_FILE = '/run/flannel/subnet.env';
export const DEFAULT_DATA_DIR = '/var/lib/cni/flannel';
export const DEFAULT_DELEGATE_TYPE = 'knode-bridge';
export const DEFAULT_IPAM_TYPE = 'knode-host-local';

export interface SubnetEnv {
  network: IpNet | undefined;
  subnet: IpNet | undefined;
  ip6Network: IpNet | undefined;
  ip6Subnet: IpNet | undefined;
  mtu: number | undefined;
  ipMasq: boolean | undefined;
}

function cidr(key: string, value: string, file: string): IpNet {
  const net = parseIpNet(value.trim());
  if (!net) throw new CniError(CniCode.InvalidConfig, `${file}: invalid ${key} "${value}"`);
  // Go's net.ParseCIDR returns the network: 10.244.1.1/24 → 10.244.1.0/24.
  const bits = net.ip.family === 4 ? 32n : 128n;
  const host = (1n << (bits - BigInt(net.prefix))) - 1n;
  return { ip: { family: net.ip.family, value: net.ip.value & ~host }, prefix: net.prefix };
}

/** Parse subnet.env text as upstream loadFlannelSubnetEnv does (pure). */
export function parseSubnetEnv(text: string, file = 'subnet.env'): SubnetEnv {
  const se: SubnetEnv = { network: undefined, subnet: undefined, ip6Network: undefined, ip6Subnet: undefined, mtu: undefined, ipMasq: undefined };
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/\r$/, '');
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    switch (key) {
      case 'FLANNEL_NETWORK':
        se.network = cidr(key, value, file);
        break;
      case 'FLANNEL_SUBNET':
        se.subnet = cidr(key, value, file);
        break;
      case 'FLANNEL_IPV6_NETWORK':
        se.ip6Network = cidr(key, value, file);
        break;
      case 'FLANNEL_IPV6_SUBNET':
        se.ip6Subnet = cidr(key, value, file);
        break;
      case 'FLANNEL_MTU': {
        if (!/^\d+$/.test(value) || Number(value) > 0xffffffff) throw new CniError(CniCode.InvalidConfig, `${file}: invalid FLANNEL_MTU "${value}"`);
        se.mtu = Number(value);
        break;
      }
      case 'FLANNEL_IPMASQ':
        se.ipMasq = value === 'true';
        break;
    }
  }
  const missing: string[] = [];
  if (!se.network && !se.ip6Network) missing.push('FLANNEL_NETWORK', 'FLANNEL_IPV6_NETWORK');
  if (!se.subnet && !se.ip6Subnet) missing.push('FLANNEL_SUBNET', 'FLANNEL_IPV6_SUBNET');
  if (se.mtu === undefined) missing.push('FLANNEL_MTU');
  if (se.ipMasq === undefined) missing.push('FLANNEL_IPMASQ');
  if (missing.length) throw new CniError(CniCode.InvalidConfig, `${file} is missing ${missing.join(', ')}`);
  return se;
}

export function loadSubnetEnv(file: string): SubnetEnv {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CniError(CniCode.Io, `cannot read the subnet file ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseSubnetEnv(text, file);
}

export interface FlannelConf {
  subnetFile: string;
  dataDir: string;
  delegate: JsonObject | undefined;
  ipam: JsonObject | undefined;
  runtimeConfig: JsonObject | undefined;
}

export function parseFlannelConf(conf: JsonObject): FlannelConf {
  const subnetFile = optString(conf, 'subnetFile') || DEFAULT_SUBNET_FILE;
  const dataDir = optString(conf, 'dataDir') || DEFAULT_DATA_DIR;
  if (!isAbsolute(dataDir)) throw new CniError(CniCode.InvalidConfig, `dataDir must be an absolute path: "${dataDir}"`);
  return {
    subnetFile,
    dataDir,
    delegate: optObject(conf, 'delegate'),
    ipam: optObject(conf, 'ipam'),
    runtimeConfig: optObject(conf, 'runtimeConfig'),
  };
}

function has(obj: JsonObject, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(obj, key);
}

/** Upstream cmdAdd + doCmdAdd + getDelegateIPAM (pure). */
export function renderDelegate(conf: FlannelConf, name: string, cniVersion: string | undefined, se: SubnetEnv): JsonObject {
  const d: JsonObject = { ...(conf.delegate ?? {}) };
  if (conf.delegate) {
    if (has(d, 'type') && typeof d.type !== 'string') {
      throw new CniError(CniCode.InvalidConfig, "'delegate' dictionary, if present, must have (string) 'type' field");
    }
    if (has(d, 'name')) throw new CniError(CniCode.InvalidConfig, "'delegate' dictionary must not have 'name' field, it'll be set by flannel");
    if (has(d, 'ipam')) throw new CniError(CniCode.InvalidConfig, "'delegate' dictionary must not have 'ipam' field, it'll be set by flannel");
  }
  if (conf.runtimeConfig) d.runtimeConfig = conf.runtimeConfig;
  d.name = name;
  if (!has(d, 'type')) d.type = DEFAULT_DELEGATE_TYPE;
  if (!has(d, 'ipMasq')) d.ipMasq = !se.ipMasq;
  if (!has(d, 'mtu') && se.mtu !== undefined) d.mtu = se.mtu;
  if ((d.type === 'bridge' || d.type === 'knode-bridge') && !has(d, 'isGateway')) d.isGateway = true;
  if (cniVersion) d.cniVersion = cniVersion;

  const ipam: JsonObject = { ...(conf.ipam ?? {}) };
  if (!has(ipam, 'type')) ipam.type = DEFAULT_IPAM_TYPE;
  const ranges: Json[] = [];
  if (se.subnet) ranges.push([{ subnet: formatIpNet(se.subnet) }]);
  if (se.ip6Subnet) ranges.push([{ subnet: formatIpNet(se.ip6Subnet) }]);
  ipam.ranges = ranges;
  const routes: Json[] = [];
  const given = ipam.routes;
  if (given !== undefined && given !== null) {
    if (!Array.isArray(given)) throw new CniError(CniCode.InvalidConfig, 'failed to read IPAM routes: ipam.routes must be an array');
    for (const r of given) {
      if (!isObject(r) || typeof r.dst !== 'string') throw new CniError(CniCode.InvalidConfig, 'failed to read IPAM routes: each route needs a dst');
      routes.push(r);
    }
  }
  if (se.network) routes.push({ dst: formatIpNet(se.network) });
  if (se.ip6Network) routes.push({ dst: formatIpNet(se.ip6Network) });
  ipam.routes = routes;
  d.ipam = ipam;
  return d;
}

/** <dataDir>/<containerID>, refusing anything that would leave dataDir (pure). */
export function scratchPath(dataDir: string, containerId: string): string {
  if (containerId === '' || containerId === '.' || containerId === '..' || /[/\\\0]/.test(containerId)) {
    throw new CniError(CniCode.InvalidEnv, 'invalid characters in containerID', { details: containerId });
  }
  const dir = resolve(dataDir);
  const path = join(dir, containerId);
  const rel = relative(dir, path);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel) || rel.includes('/')) {
    throw new CniError(CniCode.InvalidEnv, 'containerID escapes the data directory', { details: containerId });
  }
  return path;
}

export function saveScratch(dataDir: string, containerId: string, bytes: Buffer): void {
  const path = scratchPath(dataDir, containerId);
  mkdirSync(resolve(dataDir), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    writeFileSync(tmp, bytes, { mode: 0o600 });
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // not created
    }
    throw new CniError(CniCode.Io, `cannot save the delegate config for ${containerId}: ${(err as Error).message}`, { cause: err });
  }
}

/** The saved config, or undefined when there is none. */
export function readScratch(dataDir: string, containerId: string): Buffer | undefined {
  try {
    return readFileSync(scratchPath(dataDir, containerId));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    if (err instanceof CniError) throw err;
    throw new CniError(CniCode.Io, `cannot read the saved delegate config of ${containerId}: ${(err as Error).message}`, { cause: err });
  }
}

function removeScratch(dataDir: string, containerId: string): void {
  try {
    unlinkSync(scratchPath(dataDir, containerId));
  } catch {
    // gone already: fine for DEL
  }
}

// ---- delegation -------------------------------------------------------------------------------

/** Delegate types run in this process (loaded lazily: the bridge pulls in netlink). */
const inProcess: Record<string, () => Promise<CniPlugin>> = {
  'knode-bridge': async () => (await import('./bridge.js')).bridgePlugin,
};

function errorFromOutput(type: string, command: CniCommand, code: number, stdout: string, stderr: string): CniError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    parsed = undefined;
  }
  if (isObject(parsed) && typeof parsed.code === 'number' && typeof parsed.msg === 'string') {
    const opts: { details?: string } = {};
    if (typeof parsed.details === 'string') opts.details = parsed.details;
    return new CniError(parsed.code, command === 'ADD' ? `failed to delegate add: ${parsed.msg}` : parsed.msg, opts);
  }
  return new CniError(CniCode.Internal, `delegate ${type} ${command} failed (exit ${code}): ${stderr.trim() || stdout.trim()}`);
}

/** Run the delegate `type` with `stdin` (returns its stdout); errors carry the delegate's code. */
export async function delegate(args: CmdArgs, type: string, command: CniCommand, stdin: Buffer): Promise<string> {
  const env: Record<string, string | undefined> = { ...args.env, CNI_COMMAND: command };
  const load = inProcess[type];
  if (load) {
    const outcome = await invokePlugin(await load(), env, stdin, args.log.child({ delegate: type }));
    if (outcome.exitCode !== 0) throw errorFromOutput(type, command, outcome.exitCode, outcome.stdout, '');
    return outcome.stdout;
  }
  const file = findPlugin(type, args.path);
  const procEnv: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) procEnv[k] = v;
  const res = await execFile(file, [], { input: stdin, env: procEnv, allowFailure: true, timeoutMs: 60_000 });
  if (res.code !== 0) throw errorFromOutput(type, command, res.code, res.stdout, res.stderr);
  return res.stdout;
}

function delegateType(raw: Buffer): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    return '';
  }
  return isObject(parsed) && typeof parsed.type === 'string' ? parsed.type : '';
}

async function add(args: CmdArgs): Promise<CniResult> {
  const conf = parseFlannelConf(args.conf);
  const se = loadSubnetEnv(conf.subnetFile);
  const cniVersion = typeof args.conf.cniVersion === 'string' ? args.conf.cniVersion : undefined;
  const d = renderDelegate(conf, args.name, cniVersion, se);
  const bytes = Buffer.from(JSON.stringify(d));
  args.log.debug('delegate config', { delegate: d });
  saveScratch(conf.dataDir, args.containerId, bytes);
  const out = await delegate(args, d.type as string, 'ADD', bytes);
  let raw: unknown;
  try {
    raw = JSON.parse(out);
  } catch (err) {
    throw new CniError(CniCode.Decode, `cannot decode the result of delegate ${String(d.type)}`, { cause: err });
  }
  return parseResult(raw, `${String(d.type)} result`);
}

async function del(args: CmdArgs): Promise<void> {
  const conf = parseFlannelConf(args.conf);
  const saved = readScratch(conf.dataDir, args.containerId);
  if (!saved) return;
  const type = delegateType(saved);
  if (type === '') {
    // Upstream: an unreadable saved config is logged and DEL succeeds (the file stays).
    args.log.warn('saved delegate config is not valid JSON with a type; nothing delegated', { containerId: args.containerId });
    return;
  }
  let bytes = saved;
  if (conf.runtimeConfig) {
    const obj = JSON.parse(saved.toString('utf8')) as JsonObject;
    obj.runtimeConfig = conf.runtimeConfig;
    bytes = Buffer.from(JSON.stringify(obj));
  }
  await delegate(args, type, 'DEL', bytes);
  removeScratch(conf.dataDir, args.containerId);
}

async function check(args: CmdArgs): Promise<void> {
  const conf = parseFlannelConf(args.conf);
  const saved = readScratch(conf.dataDir, args.containerId);
  if (!saved) throw new CniError(CniCode.Internal, `no saved delegate config for ${args.containerId} in ${conf.dataDir}`);
  const type = delegateType(saved);
  if (type === '') throw new CniError(CniCode.Decode, `the saved delegate config of ${args.containerId} is invalid`);
  const obj = JSON.parse(saved.toString('utf8')) as JsonObject;
  if (args.conf.prevResult !== undefined) obj.prevResult = args.conf.prevResult;
  await delegate(args, type, 'CHECK', Buffer.from(JSON.stringify(obj)));
}

/** Container IDs with a saved delegate config of `network` in dataDir. */
export function savedContainers(dataDir: string, network: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dataDir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw new CniError(CniCode.Io, `cannot list ${dataDir}: ${(err as Error).message}`, { cause: err });
  }
  const out: string[] = [];
  for (const id of names) {
    if (id.includes('.tmp-')) continue;
    let saved: Buffer | undefined;
    try {
      saved = readScratch(dataDir, id);
    } catch {
      continue; // not a container ID
    }
    if (!saved) continue;
    try {
      const obj: unknown = JSON.parse(saved.toString('utf8'));
      if (isObject(obj) && obj.name === network) out.push(id);
    } catch {
      // not ours to judge
    }
  }
  return out;
}

/**
 * GC (spec 1.1; upstream has none): the delegate (rendered from the current subnet file, else
 * from a saved config of this network) gets GC with the same valid attachments, so its IPAM drops
 * stale reservations; then saved configs of this network for containers that are not valid are
 * removed. A delegate that does not speak 1.1 (code 1) is skipped.
 */
async function gc(args: CmdArgs): Promise<void> {
  const conf = parseFlannelConf(args.conf);
  const raw = args.conf['cni.dev/valid-attachments'];
  const valid = new Set<string>();
  if (Array.isArray(raw)) for (const a of raw) if (isObject(a) && typeof a.containerID === 'string') valid.add(a.containerID);
  const saved = savedContainers(conf.dataDir, args.name);
  let d: JsonObject | undefined;
  try {
    d = renderDelegate(conf, args.name, args.cniVersion, loadSubnetEnv(conf.subnetFile));
  } catch (err) {
    const fallback = saved.map((id) => readScratch(conf.dataDir, id)).find((b) => b !== undefined);
    if (!fallback) {
      args.log.debug('gc: no delegate config to collect with', { err });
    } else {
      d = JSON.parse(fallback.toString('utf8')) as JsonObject;
      d.cniVersion = args.cniVersion;
    }
  }
  if (d && typeof d.type === 'string') {
    d['cni.dev/valid-attachments'] = raw ?? [];
    try {
      await delegate(args, d.type, 'GC', Buffer.from(JSON.stringify(d)));
    } catch (err) {
      if (!(err instanceof CniError && err.cniCode === CniCode.IncompatibleVersion)) throw err;
      args.log.debug('gc: delegate does not support GC', { type: d.type });
    }
  }
  for (const id of saved) if (!valid.has(id)) removeScratch(conf.dataDir, id);
}

export const flannelPlugin: CniPlugin = {
  name: 'knode-flannel',
  add,
  del,
  check,
  gc,
  status: async () => undefined,
};

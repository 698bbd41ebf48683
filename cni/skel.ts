/**
 * The plugin framework: what every knode CNI plugin shares.
 *
 * Design notes
 * - `invokePlugin` is a pure-ish function of (env, stdin) → (exit code, stdout text) so that the
 *   whole env/stdin contract (required variables, version negotiation, error JSON and codes) is
 *   unit-tested without processes; `runPlugin` binds it to the real process, and the CNI daemon
 *   (cni/daemon/) calls it with a request's env and stdin and a logger that captures stderr.
 * - stdout carries exactly one JSON document (result, version info or error); logs go to
 *   stderr through lib/log.ts.
 * - Every runtime-supplied name that could end up in a path (container ID, interface name,
 *   network name) is validated here, before any plugin code runs.
 */
import { createLogger } from '../lib/log.js';
import type { Logger } from '../lib/log.js';
import {
  CniCode,
  CniError,
  LATEST_VERSION,
  SUPPORTED_VERSIONS,
  errorJson,
  formatResult,
  isObject,
  optString,
  parseResult,
  validateContainerId,
  validateIfName,
  validateNetworkName,
  versionAtLeast,
} from './types.js';
import type { CniResult, JsonObject } from './types.js';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS';
const commands: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'];

export interface CmdArgs {
  command: CniCommand;
  containerId: string;
  /** CNI_NETNS; may be '' for DEL. */
  netns: string;
  ifName: string;
  /** CNI_ARGS, parsed ("K=V;K2=V2"). */
  args: Map<string, string>;
  /** CNI_PATH, split on ':'. */
  path: string[];
  /** The raw stdin bytes (delegated IPAM plugins receive them unchanged). */
  stdin: Buffer;
  conf: JsonObject;
  /** Validated network name. */
  name: string;
  cniVersion: string;
  prevResult: CniResult | undefined;
  /** The environment the plugin was called with (passed on to delegates). */
  env: Record<string, string | undefined>;
  log: Logger;
}

export interface CniPlugin {
  /** Program name, used in logs. */
  name: string;
  add(args: CmdArgs): Promise<CniResult>;
  del(args: CmdArgs): Promise<void>;
  check(args: CmdArgs): Promise<void>;
  gc?(args: CmdArgs): Promise<void>;
  status?(args: CmdArgs): Promise<void>;
}

export interface InvokeOutcome {
  exitCode: number;
  stdout: string;
}

const required: Record<CniCommand, readonly string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'],
  GC: ['CNI_PATH'],
  STATUS: ['CNI_PATH'],
  VERSION: [],
};

export function parseCniArgs(text: string): Map<string, string> {
  const out = new Map<string, string>();
  if (text === '') return out;
  for (const pair of text.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniError(CniCode.InvalidEnv, 'CNI_ARGS: invalid pair', { details: pair });
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

export function parseConfig(stdin: Buffer): JsonObject {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin.toString('utf8'));
  } catch (err) {
    throw new CniError(CniCode.Decode, `error decoding network config: ${(err as Error).message}`);
  }
  if (!isObject(raw)) throw new CniError(CniCode.Decode, 'error decoding network config: not a JSON object');
  return raw;
}

function configVersion(conf: JsonObject): string {
  const v = conf.cniVersion;
  if (v === undefined || v === null || v === '') return '0.1.0';
  if (typeof v !== 'string') throw new CniError(CniCode.Decode, 'cniVersion must be a string');
  return v;
}

function checkVersion(version: string, command: CniCommand): void {
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(version)) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      `incompatible CNI versions; config is "${version}", plugin supports [${SUPPORTED_VERSIONS.map((v) => `"${v}"`).join(' ')}]`,
    );
  }
  if (command === 'CHECK' && !versionAtLeast(version, '0.4.0')) {
    throw new CniError(CniCode.IncompatibleVersion, `config version "${version}" does not allow CHECK`);
  }
  if ((command === 'GC' || command === 'STATUS') && !versionAtLeast(version, '1.1.0')) {
    throw new CniError(CniCode.IncompatibleVersion, `config version "${version}" does not allow ${command}`);
  }
}

/** Run one plugin call. Never throws: failures become the spec's error JSON. */
export async function invokePlugin(
  plugin: CniPlugin,
  env: Record<string, string | undefined>,
  stdin: Buffer,
  log: Logger = createLogger({ component: plugin.name }),
): Promise<InvokeOutcome> {
  let version = LATEST_VERSION;
  try {
    const commandText = env.CNI_COMMAND ?? '';
    if (commandText === '') throw new CniError(CniCode.InvalidEnv, 'required env variables [CNI_COMMAND] missing');
    if (!(commands as readonly string[]).includes(commandText)) {
      throw new CniError(CniCode.InvalidEnv, `unknown CNI_COMMAND: ${commandText}`);
    }
    const command = commandText as CniCommand;
    if (command === 'VERSION') {
      // The config (if any) only tells which version the caller speaks; it may be empty.
      return {
        exitCode: 0,
        stdout: JSON.stringify({ cniVersion: LATEST_VERSION, supportedVersions: SUPPORTED_VERSIONS }),
      };
    }
    const missing = required[command].filter((k) => (env[k] ?? '') === '');
    if (missing.length) throw new CniError(CniCode.InvalidEnv, `required env variables [${missing.join(' ')}] missing`);
    const containerId = env.CNI_CONTAINERID ?? '';
    const ifName = env.CNI_IFNAME ?? '';
    if (command !== 'GC' && command !== 'STATUS') {
      validateContainerId(containerId);
      validateIfName(ifName);
    }
    const cniArgs = parseCniArgs(env.CNI_ARGS ?? '');

    const conf = parseConfig(stdin);
    version = typeof conf.cniVersion === 'string' && conf.cniVersion !== '' ? conf.cniVersion : LATEST_VERSION;
    checkVersion(configVersion(conf), command);
    version = configVersion(conf);
    const name = validateNetworkName(conf.name);
    optString(conf, 'type');
    const prevResult = conf.prevResult === undefined || conf.prevResult === null ? undefined : parseResult(conf.prevResult, 'prevResult');
    if (command === 'CHECK' && !prevResult) {
      throw new CniError(CniCode.InvalidConfig, 'CHECK requires prevResult');
    }
    const args: CmdArgs = {
      command,
      containerId,
      netns: env.CNI_NETNS ?? '',
      ifName,
      args: cniArgs,
      path: (env.CNI_PATH ?? '').split(':').filter((p) => p !== ''),
      stdin,
      conf,
      name,
      cniVersion: version,
      prevResult,
      env,
      log: log.child({ command, containerId, ifName, network: name }),
    };
    switch (command) {
      case 'ADD': {
        const result = await plugin.add(args);
        return { exitCode: 0, stdout: JSON.stringify(formatResult(result, version)) };
      }
      case 'DEL':
        await plugin.del(args);
        return { exitCode: 0, stdout: '' };
      case 'CHECK':
        await plugin.check(args);
        return { exitCode: 0, stdout: '' };
      case 'GC':
        if (plugin.gc) await plugin.gc(args);
        return { exitCode: 0, stdout: '' };
      case 'STATUS':
        if (plugin.status) await plugin.status(args);
        return { exitCode: 0, stdout: '' };
    }
  } catch (err) {
    if (!(err instanceof CniError)) log.error('plugin failed', { err });
    return { exitCode: 1, stdout: JSON.stringify(errorJson(err, version)) };
  }
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Entry point for a plugin program: reads env and stdin, writes stdout, sets the exit code.
 * `stdin` is given when the caller read it already (the daemon shim, cni/daemon/shim.ts).
 */
export async function runPlugin(plugin: CniPlugin, stdinRead?: Buffer): Promise<void> {
  const stdin = stdinRead ?? (process.env.CNI_COMMAND === 'VERSION' && process.stdin.isTTY ? Buffer.alloc(0) : await readStdin());
  const outcome = await invokePlugin(plugin, process.env, stdin);
  if (outcome.stdout !== '') process.stdout.write(outcome.stdout + '\n');
  process.exitCode = outcome.exitCode;
}

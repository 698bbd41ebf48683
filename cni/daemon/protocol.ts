/**
 * The wire protocol between the CNI plugin shims and knode-cni-daemon.
 *
 * Design notes
 * - One request per connection on a unix stream socket: the client writes one JSON document and
 *   half-closes (EOF ends the request); the daemon answers with one JSON document and closes.
 *   No length prefix, no multiplexing: a plugin call is one process doing one request, and the
 *   framing cannot desynchronise.
 * - This module is imported by the shim on its start-up path, so it imports nothing (no
 *   lib/log.js, no cni/types.js): every millisecond of module loading is paid per pod.
 * - Only the CNI_* variables the spec defines (and KNODE_LOG_LEVEL) are forwarded and accepted:
 *   a request can never inject PATH, LD_PRELOAD or anything else into what the daemon runs.
 * - A malformed request is answered like a plugin would answer bad input: exit code 1 and the
 *   spec's error JSON on stdout (code 4 for a bad env, 6 for undecodable input, 7 otherwise).
 */

export const PROTOCOL_VERSION = 1;
export const DEFAULT_SOCKET = '/run/knode/cni.sock';
/** Env var (and flag --socket of the daemon) overriding DEFAULT_SOCKET, for shim and daemon. */
export const SOCKET_ENV = 'KNODE_CNI_SOCKET';
/** Largest request the daemon reads; a CNI config with a prevResult is a few KiB. */
export const MAX_REQUEST_BYTES = 1 << 20;

export const DAEMON_PLUGINS = ['knode-bridge', 'knode-host-local', 'knode-loopback', 'knode-portmap', 'knode-flannel'] as const;
export type DaemonPluginName = (typeof DAEMON_PLUGINS)[number];

/** The environment variables a request may carry. */
export const FORWARDED_ENV = [
  'CNI_COMMAND',
  'CNI_CONTAINERID',
  'CNI_NETNS',
  'CNI_IFNAME',
  'CNI_ARGS',
  'CNI_PATH',
  'KNODE_LOG_LEVEL',
] as const;

export interface DaemonRequest {
  v: number;
  plugin: DaemonPluginName;
  env: Record<string, string>;
  stdin: string;
}

/**
 * `fallback` tells the shim to do the work in-process instead: the daemon is in another network
 * namespace than the caller ('netns': the plugin's "host" namespace is the caller's, and the
 * daemon only ever configures its own), or speaks another protocol version ('protocol').
 */
export interface DaemonResponse {
  exitCode: number;
  stdout: string;
  stderr: string;
  fallback?: 'netns' | 'protocol';
}

/** Spec error codes used for malformed requests (same numbers as cni/types.ts CniCode). */
const CODE_INVALID_ENV = 4;
const CODE_DECODE = 6;
const CODE_INVALID_CONFIG = 7;
const CODE_INTERNAL = 999;
export const LATEST_CNI_VERSION = '1.1.0';

export function errorResponse(code: number, msg: string, details?: string): DaemonResponse {
  const body: Record<string, unknown> = { cniVersion: LATEST_CNI_VERSION, code, msg };
  if (details !== undefined) body.details = details;
  return { exitCode: 1, stdout: JSON.stringify(body), stderr: '' };
}

export function internalError(msg: string, details?: string): DaemonResponse {
  return errorResponse(CODE_INTERNAL, msg, details);
}

export type ParsedRequest = { ok: true; request: DaemonRequest } | { ok: false; response: DaemonResponse };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parse and validate one request (pure; never throws). */
export function parseRequest(raw: Buffer | string): ParsedRequest {
  const fail = (code: number, msg: string, details?: string): ParsedRequest => ({ ok: false, response: errorResponse(code, msg, details) });
  const size = typeof raw === 'string' ? Buffer.byteLength(raw) : raw.length;
  if (size > MAX_REQUEST_BYTES) return fail(CODE_DECODE, `daemon request too large (${size} bytes, limit ${MAX_REQUEST_BYTES})`);
  let doc: unknown;
  try {
    doc = JSON.parse(typeof raw === 'string' ? raw : raw.toString('utf8'));
  } catch (err) {
    return fail(CODE_DECODE, `error decoding daemon request: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!isRecord(doc)) return fail(CODE_DECODE, 'error decoding daemon request: not a JSON object');
  if (doc.v !== PROTOCOL_VERSION) {
    // Another shim version: let it do the work itself rather than guess.
    return { ok: false, response: { exitCode: 1, stdout: '', stderr: '', fallback: 'protocol' } };
  }
  const plugin = doc.plugin;
  if (typeof plugin !== 'string' || !(DAEMON_PLUGINS as readonly string[]).includes(plugin)) {
    return fail(CODE_INVALID_CONFIG, `daemon request: unknown plugin ${JSON.stringify(plugin)}`);
  }
  if (!isRecord(doc.env)) return fail(CODE_INVALID_ENV, 'daemon request: env must be an object of strings');
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(doc.env)) {
    if (!(FORWARDED_ENV as readonly string[]).includes(k)) return fail(CODE_INVALID_ENV, `daemon request: env variable ${k} is not accepted`);
    if (typeof v !== 'string') return fail(CODE_INVALID_ENV, `daemon request: env variable ${k} must be a string`);
    env[k] = v;
  }
  if (typeof doc.stdin !== 'string') return fail(CODE_DECODE, 'daemon request: stdin must be a string');
  for (const k of Object.keys(doc)) {
    if (!['v', 'plugin', 'env', 'stdin'].includes(k)) return fail(CODE_DECODE, `daemon request: unknown field ${k}`);
  }
  return { ok: true, request: { v: PROTOCOL_VERSION, plugin: plugin as DaemonPluginName, env, stdin: doc.stdin } };
}

/** Parse a daemon's answer (client side); undefined when it is not a response. */
export function parseResponse(raw: string): DaemonResponse | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (!isRecord(doc) || typeof doc.exitCode !== 'number' || typeof doc.stdout !== 'string' || typeof doc.stderr !== 'string') {
    return undefined;
  }
  const out: DaemonResponse = { exitCode: doc.exitCode, stdout: doc.stdout, stderr: doc.stderr };
  if (doc.fallback === 'netns' || doc.fallback === 'protocol') out.fallback = doc.fallback;
  return out;
}

/** The request a plugin process would make from its environment and stdin. */
export function requestFromEnv(plugin: DaemonPluginName, env: Record<string, string | undefined>, stdin: string): DaemonRequest {
  const forwarded: Record<string, string> = {};
  for (const k of FORWARDED_ENV) {
    const v = env[k];
    if (v !== undefined) forwarded[k] = v;
  }
  return { v: PROTOCOL_VERSION, plugin, env: forwarded, stdin };
}

export function socketPathFromEnv(env: Record<string, string | undefined>): string {
  const v = env[SOCKET_ENV];
  return v !== undefined && v !== '' ? v : DEFAULT_SOCKET;
}

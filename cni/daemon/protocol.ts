/**
 * The wire protocol between the CNI plugin launchers and knode-cni-daemon: KNODE-CNI/2.
 *
 * One request per connection on a unix stream socket. The clients are the POSIX sh launcher
 * (cni/launcher.sh, which talks through `socat`) and the Node shim (shim.ts/client.ts), so the
 * format is made for sh: line-based text with length-prefixed values, nothing a shell cannot
 * write with a here-document and no byte a shell variable cannot hold.
 *
 * Request (client → daemon; the client half-closes after it):
 *
 *     KNODE-CNI/2 <plugin>\n                 plugin: knode-bridge, knode-host-local, …
 *     <NAME> <length>\n<value>\n             zero or more, NAME one of FORWARDED_ENV, each once;
 *                                            length = bytes of value (which may hold newlines,
 *                                            quotes, anything but NUL); an empty value = unset
 *     stdin <length>\n<bytes>\n              the network config, exactly once, last
 *
 * Answer (daemon → client; the daemon closes after it):
 *
 *     KNODE-CNI/2 fallback <why>\n           do the work yourself, nothing was done: the caller
 *                                            is in another network namespace (why = netns) or
 *                                            speaks another version (why = protocol)
 *   or
 *     KNODE-CNI/2 ok\n                       the acknowledgement, sent as soon as the request is
 *                                            in; the work starts only once it was written, so a
 *                                            client that gave up (closed) never gets work done
 *     <exit code>\n                          the plugin's exit code, decimal
 *     <stdout>\n                             the plugin's stdout: one line of JSON, may be empty
 *     <stderr>\n                             the plugin's log lines, zero or more
 *     KNODE-CNI/2 end\n                      the trailer: the answer is complete
 *
 * A client that connected but got no complete answer (the daemon died or hung: the launcher's
 * socat timeout) must not redo the work (it may be partly done) and reports CNI error 11
 * ("try again later"); a client that could not connect, or got `fallback` or something that is
 * not KNODE-CNI/2, runs the plugin in-process. A malformed request is answered like a plugin
 * answers bad input: exit code 1 and the spec's error JSON (code 4 bad env, 6 undecodable).
 *
 * Design notes
 * - Imported by the Node shim on its start-up path, so it imports nothing.
 * - Only the CNI_* variables the spec defines (and KNODE_LOG_LEVEL) are accepted: a request can
 *   never inject PATH, LD_PRELOAD or anything else into what the daemon runs.
 * - History: version 1 was one JSON document each way (no acknowledgement); a v1 request is
 *   answered `fallback protocol` (its client then sees "not KNODE-CNI/2" and works in-process).
 */

export const PROTOCOL_VERSION = 2;
export const MAGIC = `KNODE-CNI/${PROTOCOL_VERSION}`;
export const DEFAULT_SOCKET = '/run/knode/cni.sock';
/** Env var overriding DEFAULT_SOCKET in the launcher, the shim and the daemon: for tests. */
export const SOCKET_ENV = 'KNODE_CNI_SOCKET';
/** Largest request the daemon reads; a CNI config with a prevResult is a few KiB. */
export const MAX_REQUEST_BYTES = 1 << 20;

export const DAEMON_PLUGINS = ['knode-bridge', 'knode-host-local', 'knode-loopback', 'knode-portmap', 'knode-flannel'] as const;
export type DaemonPluginName = (typeof DAEMON_PLUGINS)[number];

/** The environment variables a request may carry (the launcher sends them in this order). */
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
  plugin: DaemonPluginName;
  /** Only non-empty values. */
  env: Record<string, string>;
  stdin: Buffer;
}

export type FallbackReason = 'netns' | 'protocol';

export interface DaemonResponse {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Spec error codes used here (same numbers as cni/types.ts CniCode). */
const CODE_INVALID_ENV = 4;
const CODE_DECODE = 6;
export const CODE_TRY_AGAIN = 11;
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

// ---- request ---------------------------------------------------------------------------------

/** A request's bytes (what the launcher's here-document produces). */
export function encodeRequest(req: DaemonRequest): Buffer {
  const parts: Buffer[] = [Buffer.from(`${MAGIC} ${req.plugin}\n`)];
  for (const k of FORWARDED_ENV) {
    const v = req.env[k];
    if (v === undefined) continue;
    const b = Buffer.from(v);
    parts.push(Buffer.from(`${k} ${b.length}\n`), b, Buffer.from('\n'));
  }
  parts.push(Buffer.from(`stdin ${req.stdin.length}\n`), req.stdin, Buffer.from('\n'));
  return Buffer.concat(parts);
}

export type ParsedRequest = { ok: true; request: DaemonRequest } | { ok: false; fallback: FallbackReason } | { ok: false; response: DaemonResponse };

/** Parse and validate one request (pure; never throws). */
export function parseRequest(raw: Buffer): ParsedRequest {
  const fail = (code: number, msg: string): ParsedRequest => ({ ok: false, response: errorResponse(code, `knode-cni-daemon request: ${msg}`) });
  if (raw.length > MAX_REQUEST_BYTES) return fail(CODE_DECODE, `too large (${raw.length} bytes, limit ${MAX_REQUEST_BYTES})`);
  let pos = 0;
  const line = (): string | undefined => {
    const nl = raw.indexOf(0x0a, pos);
    if (nl < 0 || nl - pos > 256) return undefined;
    const s = raw.toString('latin1', pos, nl);
    pos = nl + 1;
    return s;
  };
  const first = line();
  if (first === undefined || !first.startsWith(`${MAGIC} `)) {
    // Another version of this protocol, or v1's JSON: that client can do the work itself.
    if (raw.subarray(0, 10).toString('latin1') === 'KNODE-CNI/' || raw[0] === 0x7b) return { ok: false, fallback: 'protocol' };
    return fail(CODE_DECODE, `not a ${MAGIC} request`);
  }
  const plugin = first.slice(MAGIC.length + 1);
  if (!(DAEMON_PLUGINS as readonly string[]).includes(plugin)) return fail(CODE_DECODE, `unknown plugin ${JSON.stringify(plugin)}`);
  const env: Record<string, string> = {};
  const seen = new Set<string>();
  for (;;) {
    const head = line();
    if (head === undefined) return fail(CODE_DECODE, 'truncated request (no stdin section)');
    const m = /^([A-Za-z_][A-Za-z0-9_]*) (0|[1-9][0-9]{0,7})$/.exec(head);
    if (!m) return fail(CODE_DECODE, `malformed line ${JSON.stringify(head)}`);
    const name = m[1]!;
    const len = Number(m[2]);
    if (pos + len + 1 > raw.length || raw[pos + len] !== 0x0a) return fail(CODE_DECODE, `value of ${name} is not ${len} bytes and a newline`);
    const value = raw.subarray(pos, pos + len);
    pos += len + 1;
    if (name === 'stdin') {
      if (pos !== raw.length) return fail(CODE_DECODE, 'data after the stdin section');
      return { ok: true, request: { plugin: plugin as DaemonPluginName, env, stdin: Buffer.from(value) } };
    }
    if (!(FORWARDED_ENV as readonly string[]).includes(name)) return { ok: false, response: errorResponse(CODE_INVALID_ENV, `knode-cni-daemon request: env variable ${name} is not accepted`) };
    if (seen.has(name)) return { ok: false, response: errorResponse(CODE_INVALID_ENV, `knode-cni-daemon request: env variable ${name} given twice`) };
    seen.add(name);
    if (value.includes(0)) return { ok: false, response: errorResponse(CODE_INVALID_ENV, `knode-cni-daemon request: env variable ${name} holds a NUL byte`) };
    if (len > 0) env[name] = value.toString('utf8');
  }
}

/** The request a plugin process would make from its environment and stdin. */
export function requestFromEnv(plugin: DaemonPluginName, env: Record<string, string | undefined>, stdin: Buffer | string): DaemonRequest {
  const forwarded: Record<string, string> = {};
  for (const k of FORWARDED_ENV) {
    const v = env[k];
    if (v !== undefined && v !== '') forwarded[k] = v;
  }
  return { plugin, env: forwarded, stdin: typeof stdin === 'string' ? Buffer.from(stdin) : stdin };
}

// ---- answer ----------------------------------------------------------------------------------

export const ACK = `${MAGIC} ok\n`;
export const TRAILER = `${MAGIC} end\n`;

export function encodeFallback(why: FallbackReason): string {
  return `${MAGIC} fallback ${why}\n`;
}

/** Everything after the ACK. stdout is one line (JSON.stringify output never has a raw newline). */
export function encodeResult(r: DaemonResponse): string {
  const stdout = r.stdout.replace(/\r?\n/g, ' ');
  const stderr = r.stderr === '' || r.stderr.endsWith('\n') ? r.stderr : r.stderr + '\n';
  return `${r.exitCode}\n${stdout}\n${stderr}${TRAILER}`;
}

export type ParsedAnswer =
  | { kind: 'response'; response: DaemonResponse }
  | { kind: 'fallback'; why: string }
  /** Acknowledged (or nothing at all) but no complete answer: the work may be partly done. */
  | { kind: 'incomplete' }
  /** Not KNODE-CNI/2: the daemon did nothing. */
  | { kind: 'foreign' };

/** Parse a daemon's whole answer (client side). */
export function parseAnswer(raw: string): ParsedAnswer {
  if (raw === '' || ACK.startsWith(raw)) return { kind: 'incomplete' };
  if (raw.startsWith(`${MAGIC} fallback `)) return { kind: 'fallback', why: raw.slice(MAGIC.length + 10).trim() };
  if (!raw.startsWith(ACK)) return { kind: 'foreign' };
  if (!raw.endsWith(`\n${TRAILER}`) && raw !== ACK + TRAILER) return { kind: 'incomplete' };
  const body = raw.slice(ACK.length, raw.length - TRAILER.length);
  const nl1 = body.indexOf('\n');
  const nl2 = nl1 < 0 ? -1 : body.indexOf('\n', nl1 + 1);
  const code = body.slice(0, nl1);
  if (nl2 < 0 || !/^[0-9]{1,3}$/.test(code)) return { kind: 'incomplete' };
  return { kind: 'response', response: { exitCode: Number(code), stdout: body.slice(nl1 + 1, nl2), stderr: body.slice(nl2 + 1) } };
}

export function socketPathFromEnv(env: Record<string, string | undefined>): string {
  const v = env[SOCKET_ENV];
  return v !== undefined && v !== '' ? v : DEFAULT_SOCKET;
}

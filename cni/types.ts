/**
 * CNI spec types (1.0.0 / 1.1.0, with the 0.3.x–0.4.0 result shape as a conversion),
 * the spec's error codes, and the pure formatting/validation helpers shared by all plugins.
 */
import { KnodeError } from '../lib/errors.js';

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export const LATEST_VERSION = '1.1.0';

/** Spec error codes (SPEC.md "Error"). */
export const CniCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnv: 4,
  Io: 5,
  Decode: 6,
  InvalidConfig: 7,
  TryAgain: 11,
  Internal: 999,
} as const;

const codeNames: Record<number, string> = {
  1: 'CNI_INCOMPATIBLE_VERSION',
  2: 'CNI_UNSUPPORTED_FIELD',
  3: 'CNI_UNKNOWN_CONTAINER',
  4: 'CNI_INVALID_ENV',
  5: 'CNI_IO',
  6: 'CNI_DECODE',
  7: 'CNI_INVALID_CONFIG',
  11: 'CNI_TRY_AGAIN',
  999: 'CNI_INTERNAL',
};

/** A KnodeError that also carries the numeric CNI code printed in the error JSON. */
export class CniError extends KnodeError {
  readonly cniCode: number;
  readonly cniDetails: string | undefined;

  constructor(cniCode: number, message: string, options: { details?: string; cause?: unknown } = {}) {
    super(codeNames[cniCode] ?? `CNI_${cniCode}`, message, { cause: options.cause });
    this.name = 'CniError';
    this.cniCode = cniCode;
    this.cniDetails = options.details;
  }
}

export interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export function errorJson(err: unknown, cniVersion: string): CniErrorJson {
  if (err instanceof CniError) {
    const out: CniErrorJson = { cniVersion, code: err.cniCode, msg: err.message };
    if (err.cniDetails !== undefined) out.details = err.cniDetails;
    return out;
  }
  const msg = err instanceof Error ? err.message : String(err);
  const out: CniErrorJson = { cniVersion, code: CniCode.Internal, msg };
  if (err instanceof KnodeError) out.details = err.code;
  return out;
}

// ---- results ---------------------------------------------------------------

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
}

export interface CniIpConfig {
  /** CIDR, host bits set: "10.1.0.5/24". */
  address: string;
  gateway?: string;
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIpConfig[];
  routes?: CniRoute[];
  dns?: CniDns;
}

/** Result as a given spec version prints it (0.3.x/0.4.0 add ips[].version). */
export function formatResult(result: CniResult, version: string): Record<string, unknown> {
  const out: Record<string, unknown> = { cniVersion: version };
  if (result.interfaces && result.interfaces.length) out.interfaces = result.interfaces;
  if (result.ips && result.ips.length) {
    out.ips = result.ips.map((ip) => {
      if (version.startsWith('0.')) return { version: ip.address.includes(':') ? '6' : '4', ...ip };
      return ip;
    });
  }
  if (result.routes && result.routes.length) out.routes = result.routes;
  out.dns = result.dns ?? {};
  return out;
}

// ---- validation of runtime-supplied names (nothing built from them may escape a directory)

const containerIdRe = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const networkNameRe = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function validateContainerId(id: string): void {
  if (id === '') throw new CniError(CniCode.InvalidEnv, 'missing containerID');
  if (!containerIdRe.test(id)) throw new CniError(CniCode.InvalidEnv, 'invalid characters in containerID', { details: id });
}

export function validateIfName(name: string): void {
  if (name === '') throw new CniError(CniCode.InvalidEnv, 'interface name is empty');
  if (Buffer.byteLength(name) > 15) throw new CniError(CniCode.InvalidEnv, 'interface name is too long', { details: name });
  if (name === '.' || name === '..') throw new CniError(CniCode.InvalidEnv, 'interface name is . or ..', { details: name });
  if (/[/:\s]/.test(name)) {
    throw new CniError(CniCode.InvalidEnv, 'interface name contains / or : or whitespace characters', { details: name });
  }
}

export function validateNetworkName(name: unknown): string {
  if (typeof name !== 'string' || name === '') throw new CniError(CniCode.InvalidConfig, 'missing network name');
  if (!networkNameRe.test(name)) throw new CniError(CniCode.InvalidConfig, 'invalid characters found in network name', { details: name });
  return name;
}

export function versionAtLeast(version: string, min: string): boolean {
  const a = version.split('.').map(Number);
  const b = min.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}

// ---- small typed readers for untyped JSON ----------------------------------

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(field: string, want: string): CniError {
  return new CniError(CniCode.InvalidConfig, `invalid config: ${field} must be ${want}`);
}

export function optString(obj: JsonObject, key: string, ctx = ''): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw invalid(ctx + key, 'a string');
  return v;
}

export function optBool(obj: JsonObject, key: string, ctx = ''): boolean | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw invalid(ctx + key, 'a boolean');
  return v;
}

export function optInt(obj: JsonObject, key: string, ctx = '', min = 0, max = 2 ** 31 - 1): number | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalid(ctx + key, `an integer in [${min}, ${max}]`);
  return v;
}

export function optObject(obj: JsonObject, key: string, ctx = ''): JsonObject | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw invalid(ctx + key, 'an object');
  return v;
}

export function optArray(obj: JsonObject, key: string, ctx = ''): Json[] | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw invalid(ctx + key, 'an array');
  return v;
}

/** Parse a CNI result (prevResult, or the stdout of a delegated plugin). */
export function parseResult(raw: unknown, what: string): CniResult {
  if (!isObject(raw)) throw new CniError(CniCode.Decode, `${what} is not a JSON object`);
  const version = optString(raw, 'cniVersion', `${what}.`) ?? LATEST_VERSION;
  const result: CniResult = { cniVersion: version };
  const ifaces = optArray(raw, 'interfaces', `${what}.`);
  if (ifaces) {
    result.interfaces = ifaces.map((i, n) => {
      if (!isObject(i)) throw invalid(`${what}.interfaces[${n}]`, 'an object');
      const name = optString(i, 'name', `${what}.interfaces[${n}].`) ?? '';
      const out: CniInterface = { name };
      const mac = optString(i, 'mac');
      if (mac !== undefined) out.mac = mac;
      const sandbox = optString(i, 'sandbox');
      if (sandbox !== undefined) out.sandbox = sandbox;
      const mtu = optInt(i, 'mtu');
      if (mtu !== undefined) out.mtu = mtu;
      return out;
    });
  }
  const ips = optArray(raw, 'ips', `${what}.`);
  if (ips) {
    result.ips = ips.map((i, n) => {
      if (!isObject(i)) throw invalid(`${what}.ips[${n}]`, 'an object');
      const address = optString(i, 'address', `${what}.ips[${n}].`);
      if (address === undefined) throw invalid(`${what}.ips[${n}].address`, 'a CIDR');
      const out: CniIpConfig = { address };
      const gateway = optString(i, 'gateway');
      if (gateway !== undefined) out.gateway = gateway;
      const iface = optInt(i, 'interface');
      if (iface !== undefined) out.interface = iface;
      return out;
    });
  }
  const routes = optArray(raw, 'routes', `${what}.`);
  if (routes) result.routes = routes.map((r, n) => parseRoute(r, `${what}.routes[${n}]`));
  const dns = optObject(raw, 'dns', `${what}.`);
  if (dns) result.dns = parseDns(dns);
  return result;
}

export function parseRoute(r: unknown, ctx: string): CniRoute {
  if (!isObject(r)) throw invalid(ctx, 'an object');
  const dst = optString(r, 'dst', `${ctx}.`);
  if (dst === undefined) throw invalid(`${ctx}.dst`, 'a CIDR');
  const out: CniRoute = { dst };
  const gw = optString(r, 'gw', `${ctx}.`);
  if (gw !== undefined) out.gw = gw;
  for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) {
    const v = optInt(r, k, `${ctx}.`);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function strings(obj: JsonObject, key: string): string[] | undefined {
  const arr = optArray(obj, key, 'dns.');
  if (!arr) return undefined;
  return arr.map((v) => {
    if (typeof v !== 'string') throw invalid(`dns.${key}`, 'an array of strings');
    return v;
  });
}

export function parseDns(obj: JsonObject): CniDns {
  const out: CniDns = {};
  const ns = strings(obj, 'nameservers');
  if (ns) out.nameservers = ns;
  const domain = optString(obj, 'domain', 'dns.');
  if (domain !== undefined) out.domain = domain;
  const search = strings(obj, 'search');
  if (search) out.search = search;
  const options = strings(obj, 'options');
  if (options) out.options = options;
  return out;
}

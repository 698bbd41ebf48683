/**
 * knode-proxy configuration: kube-proxy's command-line flags and its KubeProxyConfiguration file
 * (kubeproxy.config.k8s.io/v1alpha1), merged as kube-proxy does: defaults, then the file, then
 * the flags given explicitly on the command line.
 *
 * Design notes
 * - Pure: `parseProxyArgs(argv, { readFile })` returns a frozen config or throws KnodeError
 *   'PROXY_CONFIG_INVALID' listing every problem; main.ts prints those and exits 2.
 * - Durations use Go's syntax ("30s", "1m0s", "500ms", "1h") as in the upstream file.
 * - `--nodeport-addresses` keeps the CIDRs (or "primary"); resolving them to this node's IPs
 *   needs the node and its interfaces, which the proxier does (`resolveNodePortAddresses`).
 */
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { KnodeError, errorMessage } from '../lib/errors.js';

export type RequestedMode = 'iptables' | 'nftables' | 'ipvs';

export interface ProxyConfig {
  kubeconfig?: string;
  /** The mode asked for; the proxier may fall back (ipvs → iptables when the kernel lacks IPVS). */
  mode: RequestedMode;
  hostnameOverride?: string;
  clusterCIDR?: string;
  bindAddress?: string;
  masqueradeAll: boolean;
  masqueradeBit: number;
  metricsBindAddress: string;
  healthzBindAddress: string;
  /** CIDRs, or ["primary"] (the node's IPs); empty = every local address. */
  nodePortAddresses: readonly string[];
  syncPeriodMs: number;
  minSyncPeriodMs: number;
  localhostNodePorts: boolean;
  /** IPVS scheduler (--ipvs-scheduler, ipvs.scheduler); default rr. */
  ipvsScheduler: string;
  conntrack: {
    maxPerCore?: number;
    min?: number;
    tcpEstablishedTimeoutMs?: number;
    tcpCloseWaitTimeoutMs?: number;
    tcpBeLiberal: boolean;
    udpTimeoutMs?: number;
    udpStreamTimeoutMs?: number;
  };
  verbosity: number;
  cleanup: boolean;
  configFile?: string;
  help: boolean;
}

export const DEFAULTS: ProxyConfig = Object.freeze({
  mode: 'iptables',
  masqueradeAll: false,
  masqueradeBit: 14,
  metricsBindAddress: '127.0.0.1:10249',
  healthzBindAddress: '0.0.0.0:10256',
  nodePortAddresses: Object.freeze([]) as readonly string[],
  syncPeriodMs: 30_000,
  minSyncPeriodMs: 1_000,
  localhostNodePorts: true,
  ipvsScheduler: 'rr',
  conntrack: Object.freeze({ tcpBeLiberal: false }),
  verbosity: 0,
  cleanup: false,
  help: false,
});

export const USAGE = `Usage: knode-proxy [flags]
  --kubeconfig PATH              kubeconfig of the apiserver (default: in-cluster / $KUBECONFIG)
  --config PATH                  KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1)
  --proxy-mode MODE              iptables (default), nftables or ipvs (falls back to iptables without IPVS)
  --ipvs-scheduler NAME          IPVS scheduler: rr (default), wrr, lc, sh, … (ipvs mode)
  --hostname-override NAME       this node's name (default: the hostname)
  --cluster-cidr CIDR            pod CIDR: traffic from outside it to services is masqueraded
  --masquerade-all               masquerade all traffic to services
  --metrics-bind-address H:P     /metrics, /proxyMode, /healthz (default 127.0.0.1:10249)
  --healthz-bind-address H:P     /healthz and /livez (default 0.0.0.0:10256)
  --nodeport-addresses LIST      CIDRs (comma-separated) or "primary" for NodePorts
  --bind-address IP              kept for compatibility
  --iptables-masquerade-bit N    fwmark bit for masquerading (default 14)
  --iptables-sync-period D       at least this often (default 30s)
  --iptables-min-sync-period D   at most this often (default 1s)
  --cleanup                      remove everything knode-proxy programmed and exit
  --v N                          log verbosity (>= 4: debug)
  -h, --help`;

const GO_DURATION = /^([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)/;
const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go's time.ParseDuration (non-negative) in milliseconds; undefined if malformed. */
export function parseGoDuration(value: string): number | undefined {
  let s = value.trim();
  if (s === '0') return 0;
  if (s === '') return undefined;
  let total = 0;
  while (s.length > 0) {
    const m = GO_DURATION.exec(s);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    s = s.slice(m[0].length);
  }
  return total;
}

function isCidr(value: string): boolean {
  const [ip, bits, extra] = value.split('/');
  if (ip === undefined || bits === undefined || extra !== undefined || !/^\d+$/.test(bits)) return false;
  const fam = isIP(ip);
  return fam !== 0 && Number(bits) <= (fam === 4 ? 32 : 128);
}

/** "host:port" or "[v6]:port" with port 0..65535; "" disables the server. */
function validHostPort(value: string): boolean {
  if (value === '') return true;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d+)$/.exec(value);
  if (!m) return false;
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  return (isIP(host) !== 0 || host === 'localhost') && port >= 0 && port <= 65535;
}

export function splitHostPort(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d+)$/.exec(value);
  if (!m) throw new KnodeError('PROXY_CONFIG_INVALID', `not host:port: ${value}`);
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] extends readonly (infer U)[] ? U[] : T[K] extends object ? Mutable<T[K]> : T[K] };

interface Problems {
  list: string[];
}

function asRecord(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** Apply a KubeProxyConfiguration document onto `cfg`. */
function applyConfigFile(cfg: Mutable<ProxyConfig>, text: string, file: string, p: Problems, modeFlag: string | undefined): void {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    p.list.push(`${file}: not YAML: ${errorMessage(err)}`);
    return;
  }
  const o = asRecord(doc);
  if (!o) {
    p.list.push(`${file}: not a KubeProxyConfiguration object`);
    return;
  }
  if (o.kind !== 'KubeProxyConfiguration') p.list.push(`${file}: kind must be KubeProxyConfiguration, not ${JSON.stringify(o.kind)}`);
  if (o.apiVersion !== 'kubeproxy.config.k8s.io/v1alpha1') {
    p.list.push(`${file}: apiVersion must be kubeproxy.config.k8s.io/v1alpha1, not ${JSON.stringify(o.apiVersion)}`);
  }
  const str = (key: string, v: unknown, set: (s: string) => void): void => {
    if (v === undefined || v === null) return;
    if (typeof v !== 'string') p.list.push(`${file}: ${key} must be a string`);
    else set(v);
  };
  const bool = (key: string, v: unknown, set: (b: boolean) => void): void => {
    if (v === undefined || v === null) return;
    if (typeof v !== 'boolean') p.list.push(`${file}: ${key} must be true or false`);
    else set(v);
  };
  const int = (key: string, v: unknown, set: (n: number) => void): void => {
    if (v === undefined || v === null) return;
    if (typeof v !== 'number' || !Number.isInteger(v)) p.list.push(`${file}: ${key} must be an integer`);
    else set(v);
  };
  const dur = (key: string, v: unknown, set: (ms: number) => void): void => {
    if (v === undefined || v === null) return;
    const ms = typeof v === 'string' ? parseGoDuration(v) : undefined;
    if (ms === undefined) p.list.push(`${file}: ${key}: invalid duration ${JSON.stringify(v)}`);
    else set(ms);
  };
  str('mode', o.mode, (s) => {
    if (s !== '') cfg.mode = s as RequestedMode;
  });
  str('clusterCIDR', o.clusterCIDR, (s) => (cfg.clusterCIDR = s === '' ? undefined : s));
  str('bindAddress', o.bindAddress, (s) => (cfg.bindAddress = s === '' ? undefined : s));
  str('hostnameOverride', o.hostnameOverride, (s) => (cfg.hostnameOverride = s === '' ? undefined : s));
  str('metricsBindAddress', o.metricsBindAddress, (s) => (cfg.metricsBindAddress = s));
  str('healthzBindAddress', o.healthzBindAddress, (s) => (cfg.healthzBindAddress = s));
  const conn = asRecord(o.clientConnection);
  if (conn) str('clientConnection.kubeconfig', conn.kubeconfig, (s) => (cfg.kubeconfig = s === '' ? undefined : s));
  if (o.nodePortAddresses !== undefined && o.nodePortAddresses !== null) {
    if (!Array.isArray(o.nodePortAddresses) || !o.nodePortAddresses.every((x) => typeof x === 'string')) {
      p.list.push(`${file}: nodePortAddresses must be a list of strings`);
    } else cfg.nodePortAddresses = [...(o.nodePortAddresses as string[])];
  }
  // mode-specific sections: the one of the mode finally used (a --proxy-mode flag wins) overrides
  // iptables', which is the fallback.
  const mode = modeFlag ?? cfg.mode;
  for (const section of ['iptables', 'nftables', 'ipvs'] as const) {
    const s = asRecord(o[section]);
    if (!s) continue;
    if (section !== 'iptables' && section !== mode) continue;
    bool(`${section}.masqueradeAll`, s.masqueradeAll, (b) => (cfg.masqueradeAll = b));
    int(`${section}.masqueradeBit`, s.masqueradeBit, (n) => (cfg.masqueradeBit = n));
    dur(`${section}.syncPeriod`, s.syncPeriod, (ms) => (cfg.syncPeriodMs = ms));
    dur(`${section}.minSyncPeriod`, s.minSyncPeriod, (ms) => (cfg.minSyncPeriodMs = ms));
    bool(`${section}.localhostNodePorts`, s.localhostNodePorts, (b) => (cfg.localhostNodePorts = b));
    if (section === 'ipvs') str('ipvs.scheduler', s.scheduler, (v) => (cfg.ipvsScheduler = v === '' ? 'rr' : v));
  }
  const ct = asRecord(o.conntrack);
  if (ct) {
    int('conntrack.maxPerCore', ct.maxPerCore, (n) => (cfg.conntrack.maxPerCore = n));
    int('conntrack.min', ct.min, (n) => (cfg.conntrack.min = n));
    dur('conntrack.tcpEstablishedTimeout', ct.tcpEstablishedTimeout, (ms) => (cfg.conntrack.tcpEstablishedTimeoutMs = ms));
    dur('conntrack.tcpCloseWaitTimeout', ct.tcpCloseWaitTimeout, (ms) => (cfg.conntrack.tcpCloseWaitTimeoutMs = ms));
    bool('conntrack.tcpBeLiberal', ct.tcpBeLiberal, (b) => (cfg.conntrack.tcpBeLiberal = b));
    dur('conntrack.udpTimeout', ct.udpTimeout, (ms) => (cfg.conntrack.udpTimeoutMs = ms));
    dur('conntrack.udpStreamTimeout', ct.udpStreamTimeout, (ms) => (cfg.conntrack.udpStreamTimeoutMs = ms));
  }
}

interface FlagSpec {
  bool?: boolean;
  apply(cfg: Mutable<ProxyConfig>, value: string, p: Problems): void;
}

const boolValue = (flag: string, value: string, p: Problems): boolean => {
  if (value === 'true' || value === '') return true;
  if (value === 'false') return false;
  p.list.push(`--${flag}: expected true or false, got ${JSON.stringify(value)}`);
  return false;
};

const durFlag = (flag: string, set: (cfg: Mutable<ProxyConfig>, ms: number) => void): FlagSpec => ({
  apply(cfg, v, p) {
    const ms = parseGoDuration(v);
    if (ms === undefined) p.list.push(`--${flag}: invalid duration ${JSON.stringify(v)}`);
    else set(cfg, ms);
  },
});

const FLAGS: Record<string, FlagSpec> = {
  kubeconfig: { apply: (c, v) => (c.kubeconfig = v) },
  config: { apply: () => undefined },
  'proxy-mode': { apply: (c, v) => (c.mode = v as RequestedMode) },
  'hostname-override': { apply: (c, v) => (c.hostnameOverride = v === '' ? undefined : v) },
  'cluster-cidr': { apply: (c, v) => (c.clusterCIDR = v === '' ? undefined : v) },
  'bind-address': { apply: (c, v) => (c.bindAddress = v) },
  'ipvs-scheduler': { apply: (c, v) => (c.ipvsScheduler = v === '' ? 'rr' : v) },
  'masquerade-all': { bool: true, apply: (c, v, p) => (c.masqueradeAll = boolValue('masquerade-all', v, p)) },
  'metrics-bind-address': { apply: (c, v) => (c.metricsBindAddress = v) },
  'healthz-bind-address': { apply: (c, v) => (c.healthzBindAddress = v) },
  'nodeport-addresses': {
    apply: (c, v) =>
      (c.nodePortAddresses = v
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '')),
  },
  'iptables-masquerade-bit': {
    apply: (c, v, p) => {
      if (!/^-?\d+$/.test(v)) p.list.push(`--iptables-masquerade-bit: not an integer: ${JSON.stringify(v)}`);
      else c.masqueradeBit = Number(v);
    },
  },
  'iptables-sync-period': durFlag('iptables-sync-period', (c, ms) => (c.syncPeriodMs = ms)),
  'iptables-min-sync-period': durFlag('iptables-min-sync-period', (c, ms) => (c.minSyncPeriodMs = ms)),
  'conntrack-tcp-be-liberal': { bool: true, apply: (c, v, p) => (c.conntrack.tcpBeLiberal = boolValue('conntrack-tcp-be-liberal', v, p)) },
  cleanup: { bool: true, apply: (c, v, p) => (c.cleanup = boolValue('cleanup', v, p)) },
  v: {
    apply: (c, v, p) => {
      if (!/^\d+$/.test(v)) p.list.push(`--v: not a non-negative integer: ${JSON.stringify(v)}`);
      else c.verbosity = Number(v);
    },
  },
  help: { bool: true, apply: (c) => (c.help = true) },
};

function cloneDefaults(): Mutable<ProxyConfig> {
  return { ...DEFAULTS, nodePortAddresses: [], conntrack: { ...DEFAULTS.conntrack } };
}

function validate(cfg: ProxyConfig, p: Problems): void {
  if (cfg.mode !== 'iptables' && cfg.mode !== 'nftables' && cfg.mode !== 'ipvs') {
    p.list.push(`proxy mode ${JSON.stringify(cfg.mode)}: must be one of iptables, nftables, ipvs`);
  }
  if (cfg.clusterCIDR !== undefined) {
    for (const c of cfg.clusterCIDR.split(',')) if (!isCidr(c.trim())) p.list.push(`cluster CIDR ${JSON.stringify(c)} is not a CIDR`);
  }
  if (cfg.bindAddress !== undefined && cfg.bindAddress !== '' && isIP(cfg.bindAddress) === 0) {
    p.list.push(`bind address ${JSON.stringify(cfg.bindAddress)} is not an IP address`);
  }
  if (!Number.isInteger(cfg.masqueradeBit) || cfg.masqueradeBit < 0 || cfg.masqueradeBit > 31) {
    p.list.push(`masquerade bit ${cfg.masqueradeBit} must be within 0..31`);
  }
  if (!/^[a-z][a-z0-9]{0,14}$/.test(cfg.ipvsScheduler)) p.list.push(`IPVS scheduler ${JSON.stringify(cfg.ipvsScheduler)} is not a scheduler name (rr, wrr, lc, sh, …)`);
  if (!validHostPort(cfg.metricsBindAddress)) p.list.push(`metrics bind address ${JSON.stringify(cfg.metricsBindAddress)} is not host:port`);
  if (!validHostPort(cfg.healthzBindAddress)) p.list.push(`healthz bind address ${JSON.stringify(cfg.healthzBindAddress)} is not host:port`);
  const npa = cfg.nodePortAddresses;
  if (npa.includes('primary') && npa.length > 1) p.list.push('node port addresses: "primary" cannot be combined with CIDRs');
  for (const a of npa) if (a !== 'primary' && !isCidr(a)) p.list.push(`node port address ${JSON.stringify(a)} is not a CIDR`);
  if (cfg.syncPeriodMs <= 0) p.list.push('sync period must be greater than 0');
  if (cfg.minSyncPeriodMs < 0) p.list.push('min sync period must be >= 0');
  if (cfg.minSyncPeriodMs > cfg.syncPeriodMs) {
    p.list.push(`min sync period (${cfg.minSyncPeriodMs} ms) must be <= sync period (${cfg.syncPeriodMs} ms)`);
  }
}

/**
 * Parse kube-proxy's command line. `readFile` reads --config (injected: the function is pure).
 * Flags accept `--flag value`, `--flag=value`; boolean flags also bare `--flag`.
 */
export function parseProxyArgs(argv: readonly string[], opts: { readFile: (path: string) => string }): ProxyConfig {
  const p: Problems = { list: [] };
  const given: [string, string][] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h') {
      given.push(['help', '']);
      continue;
    }
    const m = /^--?([a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (!m) {
      p.list.push(`unexpected argument ${JSON.stringify(arg)}`);
      continue;
    }
    const name = m[1]!;
    const spec = FLAGS[name];
    if (!spec) {
      p.list.push(`unknown flag --${name}`);
      continue;
    }
    let value = m[2];
    if (value === undefined) {
      if (spec.bool) value = '';
      else if (i + 1 < argv.length) value = argv[++i]!;
      else {
        p.list.push(`flag --${name} needs a value`);
        continue;
      }
    }
    given.push([name, value]);
  }
  const cfg = cloneDefaults();
  const configFile = given.filter(([n]) => n === 'config').at(-1)?.[1];
  if (configFile !== undefined && configFile !== '') {
    cfg.configFile = configFile;
    let text: string | undefined;
    try {
      text = opts.readFile(configFile);
    } catch (err) {
      p.list.push(`--config ${configFile}: ${errorMessage(err)}`);
    }
    const modeFlag = given.filter(([n]) => n === 'proxy-mode').at(-1)?.[1];
    if (text !== undefined) applyConfigFile(cfg, text, configFile, p, modeFlag);
  }
  for (const [name, value] of given) FLAGS[name]!.apply(cfg, value, p);
  if (!cfg.help) validate(cfg, p);
  if (p.list.length > 0) {
    throw new KnodeError('PROXY_CONFIG_INVALID', `invalid configuration:\n  ${p.list.join('\n  ')}`, { details: { problems: p.list } });
  }
  return Object.freeze({ ...cfg, nodePortAddresses: Object.freeze([...cfg.nodePortAddresses]), conntrack: Object.freeze({ ...cfg.conntrack }) });
}

/**
 * --nodeport-addresses → the IPs NodePorts answer on (upstream NodePortAddresses): empty = all
 * (returned as []), "primary" = the node's IPs, CIDRs = the local addresses inside them.
 */
export function resolveNodePortAddresses(spec: readonly string[], node: { nodeIPs: readonly string[]; localIPs: readonly string[] }): string[] {
  if (spec.length === 0) return [];
  if (spec.includes('primary')) return [...node.nodeIPs];
  const out = node.localIPs.filter((ip) => spec.some((cidr) => cidrContainsIP(cidr, ip)));
  return [...new Set(out)];
}

function ipToBigInt(ip: string): { fam: 4 | 6; n: bigint } | undefined {
  const fam = isIP(ip);
  if (fam === 4) return { fam: 4, n: ip.split('.').reduce((a, o) => (a << 8n) | BigInt(Number(o)), 0n) };
  if (fam !== 6) return undefined;
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const parse = (s: string): number[] =>
    s === ''
      ? []
      : s.split(':').flatMap((g) => {
          if (g.includes('.')) {
            const o = g.split('.').map(Number);
            return [(o[0]! << 8) | o[1]!, (o[2]! << 8) | o[3]!];
          }
          return [parseInt(g, 16)];
        });
  const h = parse(head);
  const tl = tail === undefined ? [] : parse(tail);
  const groups = tail === undefined ? h : [...h, ...Array<number>(8 - h.length - tl.length).fill(0), ...tl];
  return { fam: 6, n: groups.reduce((a, g) => (a << 16n) | BigInt(g), 0n) };
}

export function cidrContainsIP(cidr: string, ip: string): boolean {
  const [base, bitsStr] = cidr.split('/');
  const b = ipToBigInt(base ?? '');
  const x = ipToBigInt(ip);
  if (!b || !x || b.fam !== x.fam) return false;
  const width = b.fam === 4 ? 32n : 128n;
  const bits = BigInt(Number(bitsStr ?? width));
  if (bits === 0n) return true;
  const shift = width - bits;
  return b.n >> shift === x.n >> shift;
}

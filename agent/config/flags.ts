/**
 * The kubelet's familiar command-line flags. Pure: argv in, a partial
 * configuration layer plus the problems found out. Accepts `--flag=value`,
 * `--flag value` and single-dash spellings (`-v=4`); repeated list flags
 * (--cluster-dns, --node-labels, --register-with-taints, --node-ip) accumulate.
 */
import type { LogLevel } from '../../lib/log.js';
import type { ConfigLayer } from './layer.js';
import { parseOverlayBackend, parseIPv4CIDR } from './overlay.js';
import { parseDuration, parseIP, parseIPList, parsePort, parseLabels, parsePositiveInt, parseTaints, parseUnixEndpoint } from './values.js';

export interface FlagResult {
  layer: ConfigLayer;
  configFile: string | undefined;
  help: boolean;
  problems: string[];
}

type Apply = (value: string, layer: ConfigLayer) => void;

interface FlagSpec {
  help: string;
  bool?: boolean;
  apply: Apply;
}

function nonEmpty(value: string): string {
  if (value.trim() === '') throw new Error('must not be empty');
  return value;
}

function absolute(value: string): string {
  if (!value.startsWith('/')) throw new Error(`"${value}" must be an absolute path`);
  return value;
}

function parseRuntimeKind(value: string): 'cri' | 'docker' {
  if (value === 'docker') return 'docker';
  if (value === 'remote' || value === 'cri') return 'cri';
  throw new Error(`"${value}" is not one of remote, cri, docker`);
}

function verbosityToLevel(v: number): LogLevel {
  return v >= 4 ? 'debug' : 'info';
}

function parseLogLevel(value: string): LogLevel {
  if (value === 'debug' || value === 'info' || value === 'warn' || value === 'error') return value;
  throw new Error(`"${value}" is not one of debug, info, warn, error`);
}

function parseBool(value: string): boolean {
  if (value === '' || value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new Error(`"${value}" is not a boolean`);
}

export const flagSpecs: Record<string, FlagSpec> = {
  config: { help: 'Path of a KubeletConfiguration YAML file; flags override its values.', apply: () => undefined },
  kubeconfig: { help: 'Path of the kubeconfig used to reach the apiserver.', apply: (v, l) => void (l.kubeconfig = nonEmpty(v)) },
  'bootstrap-kubeconfig': {
    help: 'Kubeconfig with bootstrap credentials (a bootstrap token): when --kubeconfig is missing or expired, a client certificate is requested with it and --kubeconfig is written.',
    apply: (v, l) => void (l.bootstrapKubeconfig = nonEmpty(v)),
  },
  'rotate-certificates': { help: 'Renew the client certificate from the TLS bootstrap before it expires (default true).', bool: true, apply: (v, l) => void (l.rotateCertificates = parseBool(v)) },
  'hostname-override': { help: 'Use this name for the Node instead of the hostname.', apply: (v, l) => void (l.hostnameOverride = nonEmpty(v).trim()) },
  'node-ip': { help: 'IP address(es) of the node (comma list, one per family).', apply: (v, l) => void (l.nodeIPs = [...(l.nodeIPs ?? []), ...parseIPList(v)]) },
  'container-runtime-endpoint': {
    help: 'CRI endpoint (default unix:///run/containerd/containerd.sock).',
    apply: (v, l) => void (l.containerRuntimeEndpoint = parseUnixEndpoint(v)),
  },
  'container-runtime': {
    help: "'remote' or 'cri' (a CRI endpoint, the default) or 'docker' (dockerd; default endpoint unix:///var/run/docker.sock).",
    apply: (v, l) => void (l.containerRuntime = parseRuntimeKind(v)),
  },
  'pod-infra-container-image': { help: 'Pause image of the sandboxes (docker runtime).', apply: (v, l) => void (l.podInfraContainerImage = nonEmpty(v).trim()) },
  'cni-bin-dir': { help: 'Directory of the CNI plugins (docker runtime; default /opt/cni/bin).', apply: (v, l) => void (l.cniBinDir = absolute(v)) },
  'pod-manifest-path': { help: 'Directory of static pod manifests.', apply: (v, l) => void (l.podManifestPath = nonEmpty(v)) },
  'root-dir': { help: 'Directory for the agent\'s files (default /var/lib/knode).', apply: (v, l) => void (l.rootDir = nonEmpty(v)) },
  'cluster-dns': { help: 'DNS server IP(s) for pods (repeatable, comma list).', apply: (v, l) => void (l.clusterDNS = [...(l.clusterDNS ?? []), ...parseIPList(v)]) },
  'cluster-domain': { help: 'Cluster DNS domain (default cluster.local).', apply: (v, l) => void (l.clusterDomain = nonEmpty(v).trim()) },
  'node-labels': { help: 'Labels to add when registering the node (k=v,k2=v2).', apply: (v, l) => void (l.nodeLabels = { ...l.nodeLabels, ...parseLabels(v) }) },
  'register-with-taints': {
    help: 'Taints to register the node with (k=v:Effect,...).',
    apply: (v, l) => void (l.registerWithTaints = [...(l.registerWithTaints ?? []), ...parseTaints(v)]),
  },
  'register-node': { help: 'Register the node with the apiserver (default true).', bool: true, apply: (v, l) => void (l.registerNode = parseBool(v)) },
  'max-pods': { help: 'Number of pods this node can run (default 110).', apply: (v, l) => void (l.maxPods = parsePositiveInt(v)) },
  'node-status-update-frequency': {
    help: 'How often the node status is computed (default 10s).',
    apply: (v, l) => void (l.nodeStatusUpdateFrequencyMs = parseDuration(v)),
  },
  'cgroup-root': { help: 'cgroup parent (cgroupfs path) of the pods; default: the runtime\'s.', apply: (v, l) => void (l.cgroupRoot = absolute(v)) },
  'cni-conf-dir': { help: 'Directory the agent writes the pod network\'s CNI config into (default /etc/cni/net.d).', apply: (v, l) => void (l.cniConfDir = absolute(v)) },
  'pod-logs-dir': { help: 'Root of the pods\' log directories (default /var/log/pods).', apply: (v, l) => void (l.podLogsDir = absolute(v)) },
  'overlay-backend': { help: 'Pod network between nodes: vxlan (default), host-gw or none.', apply: (v, l) => void (l.overlayBackend = parseOverlayBackend(v)) },
  'cluster-cidr': { help: 'The cluster\'s pod network, FLANNEL_NETWORK (default 10.244.0.0/16).', apply: (v, l) => void (l.clusterCIDR = parseIPv4CIDR(v)) },
  'flannel-subnet-file': { help: 'Where flannel\'s subnet.env is written (default /run/flannel/subnet.env).', apply: (v, l) => void (l.flannelSubnetFile = absolute(v)) },
  address: { help: 'IP address the kubelet server listens on (default 0.0.0.0).', apply: (v, l) => void (l.address = parseIP(v)) },
  port: { help: 'Port of the kubelet server (HTTPS, default 10250; 0 = off).', apply: (v, l) => void (l.port = parsePort(v)) },
  'healthz-bind-address': { help: 'IP address of the healthz server (default 127.0.0.1).', apply: (v, l) => void (l.healthzBindAddress = parseIP(v)) },
  'healthz-port': { help: 'Port of the healthz server (HTTP, default 10248; 0 = off).', apply: (v, l) => void (l.healthzPort = parsePort(v)) },
  'tls-cert-file': { help: 'Serving certificate of the kubelet server (default: self-signed, made at start).', apply: (v, l) => void (l.tlsCertFile = absolute(v)) },
  'tls-private-key-file': { help: 'Private key of --tls-cert-file.', apply: (v, l) => void (l.tlsPrivateKeyFile = absolute(v)) },
  'client-ca-file': { help: 'CA whose client certificates the kubelet server accepts.', apply: (v, l) => void (l.clientCAFile = absolute(v)) },
  v: { help: 'Log verbosity (0-10; 4 and above = debug).', apply: (v, l) => void (l.logLevel = verbosityToLevel(parsePositiveIntOrZero(v))) },
  'log-level': { help: 'debug, info, warn or error.', apply: (v, l) => void (l.logLevel = parseLogLevel(v)) },
  help: { help: 'Print the flags and exit.', bool: true, apply: () => undefined },
};

function parsePositiveIntOrZero(v: string): number {
  if (!/^\d+$/.test(v)) throw new Error(`"${v}" is not a number`);
  return Number(v);
}

export function parseFlags(argv: readonly string[]): FlagResult {
  const layer: ConfigLayer = {};
  const problems: string[] = [];
  let configFile: string | undefined;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--?([A-Za-z][-A-Za-z0-9]*)(=(.*))?$/s.exec(arg);
    if (!m) {
      problems.push(`unexpected argument "${arg}" (flags only)`);
      continue;
    }
    const name = m[1]!;
    const spec = Object.hasOwn(flagSpecs, name) ? flagSpecs[name] : undefined;
    if (spec === undefined) {
      problems.push(`unknown flag --${name}`);
      continue;
    }
    let value: string;
    if (m[2] !== undefined) value = m[3]!;
    else if (spec.bool) value = 'true';
    else if (i + 1 < argv.length) value = argv[++i]!;
    else {
      problems.push(`flag --${name} needs a value`);
      continue;
    }
    if (name === 'help') {
      help = true;
      continue;
    }
    if (name === 'config') {
      if (value.trim() === '') problems.push('--config: must not be empty');
      else configFile = value;
      continue;
    }
    try {
      spec.apply(value, layer);
    } catch (err) {
      problems.push(`--${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return { layer, configFile, help, problems };
}

export function usage(program = 'knode-agent'): string {
  const lines = [`Usage: ${program} [flags]`, '', 'Flags:'];
  for (const [name, spec] of Object.entries(flagSpecs)) lines.push(`  --${name.padEnd(30)} ${spec.help}`);
  return lines.join('\n') + '\n';
}

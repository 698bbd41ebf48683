/**
 * The config file: a KubeletConfiguration (kubelet.config.k8s.io/v1beta1) in
 * YAML or JSON. Pure: text in, a configuration layer, problems and warnings
 * out. Fields the agent does not implement are reported as warnings (the
 * kubelet is lenient the same way), wrong types and values are problems.
 */
import { parse as parseYaml } from 'yaml';
import type { LogLevel } from '../../lib/log.js';
import type { ConfigLayer } from './layer.js';
import type { Taint } from './types.js';
import { parseOverlayBackend, parseIPv4CIDR } from './overlay.js';
import { checkTaint, parseDuration, parseIP, parseIPList, parsePort, parseUnixEndpoint } from './values.js';

export interface FileResult {
  layer: ConfigLayer;
  problems: string[];
  warnings: string[];
}

export const kubeletConfigApiVersion = 'kubelet.config.k8s.io/v1beta1';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

type FieldParser = (value: unknown, layer: ConfigLayer) => void;

function str(v: unknown): string {
  if (typeof v !== 'string') throw new Error('must be a string');
  return v;
}

function absolutePath(v: unknown): string {
  const s = str(v);
  if (!s.startsWith('/')) throw new Error(`"${s}" must be an absolute path`);
  return s;
}

function positiveInt(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error('must be a positive integer');
  return v;
}

function duration(v: unknown): number {
  return parseDuration(str(v));
}

function taints(v: unknown): Taint[] {
  if (!Array.isArray(v)) throw new Error('must be a list of {key, value, effect}');
  return v.map((t: unknown) => {
    if (!isRecord(t)) throw new Error('each taint must be an object {key, value, effect}');
    const taint = { key: str(t.key), ...(t.value === undefined || t.value === '' ? {} : { value: str(t.value) }), effect: str(t.effect) } as Taint;
    checkTaint(taint);
    return taint;
  });
}

function verbosity(v: unknown): LogLevel {
  if (!isRecord(v)) throw new Error('must be an object');
  const n = v.verbosity;
  if (n === undefined) return 'info';
  if (typeof n !== 'number' || n < 0) throw new Error('verbosity must be a number ≥ 0');
  return n >= 4 ? 'debug' : 'info';
}

const fields: Record<string, FieldParser> = {
  clusterDNS: (v, l) => {
    if (!Array.isArray(v)) throw new Error('must be a list of IP addresses');
    l.clusterDNS = v.flatMap((ip) => parseIPList(str(ip)));
  },
  clusterDomain: (v, l) => void (l.clusterDomain = str(v)),
  maxPods: (v, l) => void (l.maxPods = positiveInt(v)),
  staticPodPath: (v, l) => void (l.podManifestPath = str(v)),
  nodeStatusUpdateFrequency: (v, l) => void (l.nodeStatusUpdateFrequencyMs = duration(v)),
  nodeStatusReportFrequency: (v, l) => void (l.nodeStatusReportFrequencyMs = duration(v)),
  nodeLeaseDurationSeconds: (v, l) => void (l.nodeLeaseDurationSeconds = positiveInt(v)),
  registerWithTaints: (v, l) => void (l.registerWithTaints = taints(v)),
  registerNode: (v, l) => {
    if (typeof v !== 'boolean') throw new Error('must be true or false');
    l.registerNode = v;
  },
  rotateCertificates: (v, l) => {
    if (typeof v !== 'boolean') throw new Error('must be true or false');
    l.rotateCertificates = v;
  },
  containerRuntimeEndpoint: (v, l) => void (l.containerRuntimeEndpoint = parseUnixEndpoint(str(v))),
  logging: (v, l) => void (l.logLevel = verbosity(v)),
  cgroupRoot: (v, l) => void (l.cgroupRoot = absolutePath(v)),
  podLogsDir: (v, l) => void (l.podLogsDir = absolutePath(v)),
  // knode's own keys (not KubeletConfiguration): the overlay, as the flags.
  overlayBackend: (v, l) => void (l.overlayBackend = parseOverlayBackend(str(v))),
  clusterCIDR: (v, l) => void (l.clusterCIDR = parseIPv4CIDR(str(v))),
  flannelSubnetFile: (v, l) => void (l.flannelSubnetFile = absolutePath(v)),
  address: (v, l) => void (l.address = parseIP(str(v))),
  port: (v, l) => void (l.port = port(v)),
  healthzBindAddress: (v, l) => void (l.healthzBindAddress = parseIP(str(v))),
  healthzPort: (v, l) => void (l.healthzPort = port(v)),
  tlsCertFile: (v, l) => void (l.tlsCertFile = absolutePath(v)),
  tlsPrivateKeyFile: (v, l) => void (l.tlsPrivateKeyFile = absolutePath(v)),
  authentication: (v, l) => {
    if (!isRecord(v)) throw new Error('must be an object');
    const x509 = v.x509;
    if (isRecord(x509) && x509.clientCAFile !== undefined && x509.clientCAFile !== '') l.clientCAFile = absolutePath(x509.clientCAFile);
  },
};

function port(v: unknown): number {
  return parsePort(String(typeof v === 'number' ? v : str(v)));
}

export function parseConfigFile(text: string, source = 'config file'): FileResult {
  const problems: string[] = [];
  const warnings: string[] = [];
  const layer: ConfigLayer = {};
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    return { layer, problems: [`${source}: not valid YAML: ${err instanceof Error ? err.message : String(err)}`], warnings };
  }
  if (doc === null || doc === undefined) return { layer, problems, warnings };
  if (!isRecord(doc)) return { layer, problems: [`${source}: must be a KubeletConfiguration object`], warnings };
  if (doc.kind !== undefined && doc.kind !== 'KubeletConfiguration') problems.push(`${source}: kind must be KubeletConfiguration, not ${JSON.stringify(doc.kind)}`);
  if (doc.apiVersion !== undefined && doc.apiVersion !== kubeletConfigApiVersion) {
    problems.push(`${source}: apiVersion must be ${kubeletConfigApiVersion}, not ${JSON.stringify(doc.apiVersion)}`);
  }
  for (const [key, value] of Object.entries(doc)) {
    if (key === 'kind' || key === 'apiVersion') continue;
    const parse = Object.hasOwn(fields, key) ? fields[key] : undefined;
    if (parse === undefined) {
      warnings.push(`${source}: field ${key} is not supported by knode-agent and is ignored`);
      continue;
    }
    if (value === null) continue;
    try {
      parse(value, layer);
    } catch (err) {
      problems.push(`${source}: ${key}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return { layer, problems, warnings };
}

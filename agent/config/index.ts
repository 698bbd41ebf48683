/**
 * knode-agent's configuration: defaults < config file (--config) < flags.
 *
 * `resolveConfig` is pure (argv, the file's text, the hostname in; a validated
 * AgentConfig or a KnodeError 'CONFIG_INVALID' listing every problem out);
 * `loadAgentConfig` adds the IO (reading the file, the hostname). Bad flags
 * exit with `configExitCode` (2), like the kubelet's flag errors.
 */
import { readFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { isIP } from 'node:net';
import { KnodeError, errnoCode, errorMessage } from '../../lib/errors.js';
import { parseConfigFile } from './file.js';
import { parseFlags, usage } from './flags.js';
import { mergeLayers } from './layer.js';
import type { ConfigLayer } from './layer.js';
import { defaultConfig } from './types.js';
import type { AgentConfig } from './types.js';
import { isDnsSubdomain } from './values.js';

export type { AgentConfig, Taint, TaintEffect } from './types.js';
export { defaultConfig, leaseRenewIntervalMs } from './types.js';
export { parseFlags, usage } from './flags.js';
export { parseConfigFile } from './file.js';

export const configExitCode = 2;

export interface ResolveInput {
  argv: readonly string[];
  /** Text of the --config file, when one was named. */
  fileText?: string;
  /** The machine's hostname (the Node name without --hostname-override). */
  hostname: string;
}

export type ResolveResult = { help: true; usage: string } | { help: false; config: AgentConfig; warnings: string[] };

function validate(c: AgentConfig): string[] {
  const problems: string[] = [];
  if (!isDnsSubdomain(c.nodeName)) problems.push(`node name "${c.nodeName}" is not a valid DNS subdomain (set --hostname-override)`);
  const families = c.nodeIPs.map((ip) => isIP(ip));
  if (c.nodeIPs.length > 2 || new Set(families).size !== families.length) problems.push('--node-ip: at most one IPv4 and one IPv6 address');
  if (!c.rootDir.startsWith('/')) problems.push(`--root-dir: "${c.rootDir}" must be an absolute path`);
  if (c.podManifestPath !== undefined && !c.podManifestPath.startsWith('/')) problems.push(`--pod-manifest-path: "${c.podManifestPath}" must be an absolute path`);
  if (!isDnsSubdomain(c.clusterDomain)) problems.push(`--cluster-domain: "${c.clusterDomain}" is not a DNS domain`);
  if (c.maxPods > 10_000) problems.push(`--max-pods: ${c.maxPods} is more than 10000`);
  if (c.nodeStatusUpdateFrequencyMs <= 0) problems.push('nodeStatusUpdateFrequency must be positive');
  if (c.nodeStatusReportFrequencyMs < c.nodeStatusUpdateFrequencyMs) problems.push('nodeStatusReportFrequency must not be shorter than nodeStatusUpdateFrequency');
  if (c.bootstrapKubeconfig !== undefined && c.kubeconfig === undefined) problems.push('--bootstrap-kubeconfig needs --kubeconfig (the path the agent writes)');
  if ((c.tlsCertFile === undefined) !== (c.tlsPrivateKeyFile === undefined)) problems.push('--tls-cert-file and --tls-private-key-file go together');
  const keys = c.registerWithTaints.map((t) => `${t.key}:${t.effect}`);
  if (new Set(keys).size !== keys.length) problems.push('--register-with-taints: duplicate key and effect');
  return problems;
}

/** Pure: merges defaults, the file and the flags and validates the result. Throws KnodeError 'CONFIG_INVALID'. */
export function resolveConfig(input: ResolveInput): ResolveResult {
  const flags = parseFlags(input.argv);
  if (flags.help) return { help: true, usage: usage() };
  const problems = [...flags.problems];
  const warnings: string[] = [];
  let fileLayer: ConfigLayer = {};
  if (flags.configFile !== undefined && input.fileText !== undefined) {
    const file = parseConfigFile(input.fileText, flags.configFile);
    problems.push(...file.problems);
    warnings.push(...file.warnings);
    fileLayer = file.layer;
  }
  const merged = mergeLayers(defaultConfig, fileLayer, flags.layer);
  const endpointGiven = flags.layer.containerRuntimeEndpoint ?? fileLayer.containerRuntimeEndpoint;
  const containerRuntime = merged.containerRuntime ?? (endpointGiven?.endsWith('/docker.sock') ? 'docker' : 'cri');
  const config: AgentConfig = {
    kubeconfig: merged.kubeconfig,
    bootstrapKubeconfig: merged.bootstrapKubeconfig,
    rotateCertificates: merged.rotateCertificates ?? defaultConfig.rotateCertificates,
    configFile: flags.configFile,
    hostnameOverride: merged.hostnameOverride,
    nodeName: (merged.hostnameOverride ?? input.hostname).trim().toLowerCase(),
    nodeIPs: merged.nodeIPs ?? [],
    containerRuntimeEndpoint: endpointGiven ?? (containerRuntime === 'docker' ? defaultConfig.dockerEndpoint : defaultConfig.containerRuntimeEndpoint),
    containerRuntime,
    podInfraContainerImage: merged.podInfraContainerImage ?? defaultConfig.podInfraContainerImage,
    cniBinDir: merged.cniBinDir ?? defaultConfig.cniBinDir,
    podManifestPath: merged.podManifestPath,
    rootDir: merged.rootDir ?? defaultConfig.rootDir,
    clusterDNS: merged.clusterDNS ?? [],
    clusterDomain: merged.clusterDomain ?? defaultConfig.clusterDomain,
    nodeLabels: merged.nodeLabels ?? {},
    registerWithTaints: merged.registerWithTaints ?? [],
    registerNode: merged.registerNode ?? defaultConfig.registerNode,
    maxPods: merged.maxPods ?? defaultConfig.maxPods,
    nodeStatusUpdateFrequencyMs: merged.nodeStatusUpdateFrequencyMs ?? defaultConfig.nodeStatusUpdateFrequencyMs,
    nodeStatusReportFrequencyMs: merged.nodeStatusReportFrequencyMs ?? defaultConfig.nodeStatusReportFrequencyMs,
    nodeLeaseDurationSeconds: merged.nodeLeaseDurationSeconds ?? defaultConfig.nodeLeaseDurationSeconds,
    logLevel: merged.logLevel ?? defaultConfig.logLevel,
    cgroupRoot: merged.cgroupRoot,
    cniConfDir: merged.cniConfDir ?? defaultConfig.cniConfDir,
    podLogsDir: merged.podLogsDir ?? defaultConfig.podLogsDir,
    overlayBackend: merged.overlayBackend ?? defaultConfig.overlayBackend,
    clusterCIDR: merged.clusterCIDR ?? defaultConfig.clusterCIDR,
    flannelSubnetFile: merged.flannelSubnetFile ?? defaultConfig.flannelSubnetFile,
    address: merged.address ?? defaultConfig.address,
    port: merged.port ?? defaultConfig.port,
    healthzBindAddress: merged.healthzBindAddress ?? defaultConfig.healthzBindAddress,
    healthzPort: merged.healthzPort ?? defaultConfig.healthzPort,
    tlsCertFile: merged.tlsCertFile,
    tlsPrivateKeyFile: merged.tlsPrivateKeyFile,
    clientCAFile: merged.clientCAFile,
  };
  if (problems.length === 0) problems.push(...validate(config));
  if (problems.length > 0) {
    throw new KnodeError('CONFIG_INVALID', `invalid configuration:\n  - ${problems.join('\n  - ')}`, { details: { problems } });
  }
  return { help: false, config, warnings };
}

/** Reads --config (if named) and the hostname, then resolves. Throws KnodeError 'CONFIG_INVALID'. */
export async function loadAgentConfig(argv: readonly string[], io: { readFile?: (path: string) => Promise<string>; hostname?: () => string } = {}): Promise<ResolveResult> {
  const read = io.readFile ?? ((p: string) => readFile(p, 'utf8'));
  const { configFile, help } = parseFlags(argv);
  let fileText: string | undefined;
  if (configFile !== undefined && !help) {
    try {
      fileText = await read(configFile);
    } catch (err) {
      const why = errnoCode(err) === 'ENOENT' ? 'no such file' : errorMessage(err);
      throw new KnodeError('CONFIG_INVALID', `invalid configuration:\n  - --config: cannot read ${configFile}: ${why}`, { cause: err, details: { problems: [`--config: cannot read ${configFile}: ${why}`] } });
    }
  }
  return resolveConfig({ argv, ...(fileText === undefined ? {} : { fileText }), hostname: (io.hostname ?? osHostname)() });
}

/**
 * V1Pod → CRI PodSandboxConfig and V1Container → CRI ContainerConfig, as the
 * kubelet's generatePodSandboxConfig / generateContainerConfig do, pure.
 *
 * - Sandbox: metadata (name, namespace, uid, attempt), hostname (spec.hostname
 *   or the pod name, none on the host network), log dir
 *   <logRoot>/<ns>_<name>_<uid>, DNS per dnsPolicy (ClusterFirst: the cluster
 *   DNS with `<ns>.svc.<domain> svc.<domain> <domain>` and ndots:5), every
 *   container port as a port mapping, the io.kubernetes.pod.* labels (how the
 *   worker finds the pod again) plus the pod's labels and annotations, cgroup
 *   parent, namespace modes (host network/PID/IPC), pod security context.
 * - Container: entrypoint = command, cmd = args (both `$(VAR)`-expanded),
 *   env, mounts, log path <name>/<restartCount>.log, labels and annotations
 *   (hash, restartCount, termination message, grace period, preStop),
 *   resources (cpu shares from requests, quota from limits, memory limit,
 *   oom_score_adj by QoS class), security context basics.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { ContainerConfig, DnsConfig, LinuxContainerResources, Mount, NamespaceMode, PodSandboxConfig, PortMapping, Protocol } from '../runtime/types.js';
import type { EnvVar } from './env.js';
import { expandCommandAndArgs } from './env.js';
import { containerHash } from './hash.js';
import {
  containerNameLabel,
  containerTypeAnnotation,
  containerHashAnnotation,
  gracePeriodAnnotation,
  podNameLabel,
  podNamespaceLabel,
  podUidLabel,
  portsAnnotation,
  preStopAnnotation,
  restartCountAnnotation,
  terminationMessagePathAnnotation,
  terminationMessagePolicyAnnotation,
} from './labels.js';
import { quantityMilli, quantityValue } from './quantity.js';
import { qosClass } from './status.js';

export interface SandboxOptions {
  /** Root of the pods' log dirs (upstream /var/log/pods). */
  podLogsRoot: string;
  /** --cluster-dns (may be empty: ClusterFirst then falls back to Default). */
  clusterDNS: string[];
  /** --cluster-domain */
  clusterDomain: string;
  /** The node's own resolver config (dnsPolicy Default). */
  hostDNS?: DnsConfig;
  /** Cgroup parent of the pod's sandbox and containers. */
  cgroupParent?: string;
}

export const defaultPodLogsRoot = '/var/log/pods';

export function podLogDirectory(root: string, pod: V1Pod): string {
  return `${root}/${pod.metadata?.namespace ?? 'default'}_${pod.metadata?.name ?? ''}_${pod.metadata?.uid ?? ''}`;
}

/** The io.kubernetes.pod.* labels (all the agent needs to find the pod's sandboxes and containers). */
export function podLabels(pod: V1Pod): Record<string, string> {
  return {
    [podNameLabel]: pod.metadata?.name ?? '',
    [podNamespaceLabel]: pod.metadata?.namespace ?? 'default',
    [podUidLabel]: pod.metadata?.uid ?? '',
  };
}

function dedupe(list: string[]): string[] {
  return [...new Set(list)];
}

/** upstream dns.go GetPodDNS, for the sandbox. undefined = the runtime's default. */
export function podDNSConfig(pod: V1Pod, options: SandboxOptions): DnsConfig | undefined {
  const ns = pod.metadata?.namespace ?? 'default';
  let policy = pod.spec?.dnsPolicy ?? 'ClusterFirst';
  const hostNetwork = pod.spec?.hostNetwork === true;
  if (policy === 'ClusterFirst' && hostNetwork) policy = 'Default';
  if (policy === 'ClusterFirstWithHostNet') policy = 'ClusterFirst';
  if (policy === 'ClusterFirst' && options.clusterDNS.length === 0) policy = 'Default';
  let dns: DnsConfig;
  switch (policy) {
    case 'None':
      dns = { servers: [], searches: [], options: [] };
      break;
    case 'ClusterFirst': {
      const d = options.clusterDomain;
      dns = {
        servers: [...options.clusterDNS],
        searches: dedupe([`${ns}.svc.${d}`, `svc.${d}`, d, ...(options.hostDNS?.searches ?? [])]).slice(0, 32),
        options: ['ndots:5'],
      };
      break;
    }
    default:
      dns = { servers: [...(options.hostDNS?.servers ?? [])], searches: [...(options.hostDNS?.searches ?? [])], options: [...(options.hostDNS?.options ?? [])] };
  }
  const extra = pod.spec?.dnsConfig;
  if (extra !== undefined) {
    dns.servers = dedupe([...(dns.servers ?? []), ...(extra.nameservers ?? [])]);
    dns.searches = dedupe([...(dns.searches ?? []), ...(extra.searches ?? [])]);
    // Options merge by name; later ones win.
    const opts = new Map<string, string>();
    for (const o of dns.options ?? []) opts.set(o.split(':')[0]!, o);
    for (const o of extra.options ?? []) opts.set(o.name ?? '', o.value === undefined ? (o.name ?? '') : `${o.name ?? ''}:${o.value}`);
    dns.options = [...opts.values()];
  }
  return dns;
}

function protocol(p: string | undefined): Protocol {
  return p === 'UDP' || p === 'SCTP' ? p : 'TCP';
}

export function portMappings(pod: V1Pod): PortMapping[] {
  const out: PortMapping[] = [];
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) {
      const m: PortMapping = { protocol: protocol(p.protocol), containerPort: p.containerPort };
      if (p.hostPort !== undefined && p.hostPort !== 0) m.hostPort = p.hostPort;
      if (p.hostIP !== undefined && p.hostIP !== '') m.hostIp = p.hostIP;
      out.push(m);
    }
  }
  return out;
}

export function namespaceModes(pod: V1Pod): { network: NamespaceMode; pid: NamespaceMode; ipc: NamespaceMode } {
  return {
    network: pod.spec?.hostNetwork === true ? 'node' : 'pod',
    pid: pod.spec?.hostPID === true ? 'node' : pod.spec?.shareProcessNamespace === true ? 'pod' : 'container',
    ipc: pod.spec?.hostIPC === true ? 'node' : 'pod',
  };
}

/** Hostname of the pod: spec.hostname or the name, cut to 63 characters (none on the host network). */
export function podHostname(pod: V1Pod): string | undefined {
  if (pod.spec?.hostNetwork === true) return undefined;
  const h = pod.spec?.hostname !== undefined && pod.spec.hostname !== '' ? pod.spec.hostname : (pod.metadata?.name ?? '');
  return h.slice(0, 63).replace(/[-.]+$/, '');
}

export function podSandboxConfig(pod: V1Pod, attempt: number, options: SandboxOptions): PodSandboxConfig {
  const md = pod.metadata ?? {};
  const sc = pod.spec?.securityContext;
  const config: PodSandboxConfig = {
    metadata: { name: md.name ?? '', namespace: md.namespace ?? 'default', uid: md.uid ?? '', attempt },
    logDirectory: podLogDirectory(options.podLogsRoot, pod),
    portMappings: portMappings(pod),
    labels: { ...(md.labels ?? {}), ...podLabels(pod) },
    annotations: { ...(md.annotations ?? {}) },
    linux: {
      securityContext: {
        namespaceOptions: namespaceModes(pod),
        ...(sc?.runAsUser !== undefined ? { runAsUser: sc.runAsUser } : {}),
        ...(sc?.runAsGroup !== undefined ? { runAsGroup: sc.runAsGroup } : {}),
        ...(sc?.supplementalGroups !== undefined ? { supplementalGroups: sc.supplementalGroups } : {}),
      },
    },
  };
  const hostname = podHostname(pod);
  if (hostname !== undefined) config.hostname = hostname;
  const dns = podDNSConfig(pod, options);
  if (dns !== undefined) config.dnsConfig = dns;
  if (options.cgroupParent !== undefined) config.linux!.cgroupParent = options.cgroupParent;
  if (sc?.sysctls !== undefined && sc.sysctls.length > 0) config.linux!.sysctls = Object.fromEntries(sc.sysctls.map((s) => [s.name, s.value]));
  return config;
}

// ---- containers -------------------------------------------------------------

const minShares = 2;
const sharesPerCpu = 1024;
const quotaPeriod = 100_000;
const minQuota = 1000;

/** upstream MilliCPUToShares */
export function milliCpuToShares(milli: number): number {
  if (milli === 0) return minShares;
  return Math.max(minShares, Math.floor((milli * sharesPerCpu) / 1000));
}

/** upstream MilliCPUToQuota (0 = no limit) */
export function milliCpuToQuota(milli: number, period = quotaPeriod): number {
  if (milli === 0) return 0;
  return Math.max(minQuota, Math.floor((milli * period) / 1000));
}

/** upstream GetContainerOOMScoreAdjust */
export function oomScoreAdj(pod: V1Pod, container: V1Container, memoryCapacity: number): number {
  const qos = qosClass(pod);
  if (qos === 'Guaranteed') return -997;
  if (qos === 'BestEffort') return 1000;
  const req = container.resources?.requests?.memory ?? container.resources?.limits?.memory;
  const request = req === undefined ? 0 : quantityValue(String(req));
  let adj = 1000 - Math.floor((1000 * request) / memoryCapacity);
  if (adj < 3) adj = 3;
  if (adj >= 1000) adj = 999;
  return adj;
}

export function containerResources(pod: V1Pod, container: V1Container, memoryCapacity: number): LinuxContainerResources {
  const req = container.resources?.requests ?? {};
  const lim = container.resources?.limits ?? {};
  const cpuReq = req.cpu ?? lim.cpu;
  const r: LinuxContainerResources = {
    cpuShares: milliCpuToShares(cpuReq === undefined ? 0 : quantityMilli(String(cpuReq))),
    oomScoreAdj: oomScoreAdj(pod, container, memoryCapacity),
  };
  if (lim.cpu !== undefined) {
    r.cpuPeriod = quotaPeriod;
    r.cpuQuota = milliCpuToQuota(quantityMilli(String(lim.cpu)));
  }
  if (lim.memory !== undefined) r.memoryLimitInBytes = quantityValue(String(lim.memory));
  return r;
}

export interface ContainerOptions {
  restartCount: number;
  /** Image id or reference the runtime resolved. */
  imageRef: string;
  env: EnvVar[];
  mounts: Mount[];
  /** Node memory capacity, for oom_score_adj of Burstable pods. */
  memoryCapacity: number;
  init?: boolean;
}

export function containerConfig(pod: V1Pod, container: V1Container, options: ContainerOptions): ContainerConfig {
  const { command, args } = expandCommandAndArgs(container, options.env);
  const psc = pod.spec?.securityContext;
  const sc = container.securityContext;
  const runAsUser = sc?.runAsUser ?? psc?.runAsUser;
  const runAsGroup = sc?.runAsGroup ?? psc?.runAsGroup;
  const annotations: Record<string, string> = {
    [containerHashAnnotation]: containerHash(container),
    [restartCountAnnotation]: String(options.restartCount),
    [terminationMessagePathAnnotation]: container.terminationMessagePath ?? '/dev/termination-log',
    [terminationMessagePolicyAnnotation]: container.terminationMessagePolicy ?? 'File',
    [gracePeriodAnnotation]: String(pod.spec?.terminationGracePeriodSeconds ?? 30),
  };
  if (options.init === true) annotations[containerTypeAnnotation] = 'init';
  if (container.lifecycle?.preStop !== undefined) annotations[preStopAnnotation] = JSON.stringify(container.lifecycle.preStop);
  if (container.ports !== undefined && container.ports.length > 0) annotations[portsAnnotation] = JSON.stringify(container.ports);
  const config: ContainerConfig = {
    metadata: { name: container.name, attempt: options.restartCount },
    image: { image: options.imageRef, userSpecifiedImage: container.image ?? '' },
    envs: options.env.map((e) => ({ key: e.name, value: e.value })),
    mounts: options.mounts,
    labels: { ...podLabels(pod), [containerNameLabel]: container.name },
    annotations,
    logPath: `${container.name}/${options.restartCount}.log`,
    stdin: container.stdin === true,
    stdinOnce: container.stdinOnce === true,
    tty: container.tty === true,
    linux: {
      resources: containerResources(pod, container, options.memoryCapacity),
      securityContext: {
        namespaceOptions: namespaceModes(pod),
        privileged: sc?.privileged === true,
        readonlyRootfs: sc?.readOnlyRootFilesystem === true,
        ...(runAsUser !== undefined ? { runAsUser } : {}),
        ...(runAsGroup !== undefined ? { runAsGroup } : {}),
        ...(psc?.supplementalGroups !== undefined ? { supplementalGroups: psc.supplementalGroups } : {}),
        ...(sc?.capabilities !== undefined ? { capabilities: { add: sc.capabilities.add ?? [], drop: sc.capabilities.drop ?? [] } } : {}),
        ...(sc?.allowPrivilegeEscalation === false ? { noNewPrivs: true } : {}),
      },
    },
  };
  if (command !== undefined && command.length > 0) config.command = command;
  if (args !== undefined && args.length > 0) config.args = args;
  if (container.workingDir !== undefined && container.workingDir !== '') config.workingDir = container.workingDir;
  return config;
}

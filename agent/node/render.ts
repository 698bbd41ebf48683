/**
 * The Node object and its status fields, rendered from what the agent knows.
 * Pure: facts in, client-node typed objects out.
 *
 * Choices (documented here and in the report):
 * - kubeletVersion is `v1.32.0-knode`: the Kubernetes minor knode follows (the
 *   lab apiserver reports the same gitVersion), marked as knode's.
 * - allocatable = capacity − system reserve − hard eviction threshold:
 *   cpu − 100m; memory − 100Mi (system) − 100Mi (memory.available);
 *   ephemeral-storage − 10 % (nodefs.available); pods unchanged. Upstream
 *   reserves nothing but the eviction thresholds by default; the 100m/100Mi
 *   system reserve keeps room for the agent, containerd and sshd.
 * - containerRuntimeVersion is `<runtimeName>://<runtimeVersion>` exactly as
 *   the runtime's Version call says (as the kubelet does).
 */
import type { V1Node, V1NodeAddress, V1NodeStatus, V1NodeSystemInfo, V1Taint } from '@kubernetes/client-node';
import type { RuntimeVersion } from '../runtime/types.js';
import type { Taint } from '../config/types.js';
import type { MachineInfo } from './machine.js';

export const kubeletVersion = 'v1.32.0-knode';
export const kubeletPort = 10250;
export const systemReserved = { cpuMillis: 100, memoryBytes: 100 * 1024 * 1024 } as const;
export const evictionHard = { memoryAvailableBytes: 100 * 1024 * 1024, nodefsAvailableFraction: 0.1 } as const;

export interface NodeFacts {
  nodeName: string;
  machine: MachineInfo;
  maxPods: number;
  nodeLabels: Record<string, string>;
  taints: readonly Taint[];
  internalIPs: readonly string[];
  /** undefined while the runtime has not answered Version. */
  runtimeVersion: RuntimeVersion | undefined;
}

export function containerRuntimeVersion(v: RuntimeVersion | undefined): string {
  return v === undefined ? '' : `${v.runtimeName}://${v.runtimeVersion}`;
}

const ki = (bytes: number): string => `${Math.floor(bytes / 1024)}Ki`;

export function renderCapacity(machine: MachineInfo, maxPods: number): Record<string, string> {
  return {
    cpu: String(machine.cpuCores),
    'ephemeral-storage': ki(machine.ephemeralStorageBytes),
    memory: ki(machine.memoryBytes),
    pods: String(maxPods),
  };
}

export function renderAllocatable(machine: MachineInfo, maxPods: number): Record<string, string> {
  const cpuMillis = Math.max(0, machine.cpuCores * 1000 - systemReserved.cpuMillis);
  const memory = Math.max(0, machine.memoryBytes - systemReserved.memoryBytes - evictionHard.memoryAvailableBytes);
  const storageKi = Math.floor(machine.ephemeralStorageBytes / 1024) * 1024;
  const storage = Math.max(0, Math.floor(storageKi * (1 - evictionHard.nodefsAvailableFraction)));
  return {
    cpu: cpuMillis % 1000 === 0 ? String(cpuMillis / 1000) : `${cpuMillis}m`,
    'ephemeral-storage': String(storage),
    memory: ki(memory),
    pods: String(maxPods),
  };
}

/** The labels the agent owns on its Node: well-known ones, then --node-labels. */
export function renderLabels(nodeName: string, machine: MachineInfo, nodeLabels: Record<string, string>): Record<string, string> {
  return {
    'beta.kubernetes.io/arch': machine.architecture,
    'beta.kubernetes.io/os': machine.operatingSystem,
    'kubernetes.io/arch': machine.architecture,
    'kubernetes.io/hostname': nodeName,
    'kubernetes.io/os': machine.operatingSystem,
    ...nodeLabels,
  };
}

export function renderAddresses(nodeName: string, internalIPs: readonly string[]): V1NodeAddress[] {
  return [...internalIPs.map((address) => ({ type: 'InternalIP', address })), { type: 'Hostname', address: nodeName }];
}

export function renderNodeInfo(f: NodeFacts): V1NodeSystemInfo {
  const m = f.machine;
  return {
    architecture: m.architecture,
    bootID: m.bootID,
    containerRuntimeVersion: containerRuntimeVersion(f.runtimeVersion),
    kernelVersion: m.kernelVersion,
    kubeProxyVersion: '',
    kubeletVersion,
    machineID: m.machineID,
    operatingSystem: m.operatingSystem,
    osImage: m.osImage,
    systemUUID: m.systemUUID,
  };
}

/** Everything in status except conditions (status.ts adds those). */
export function renderStatusFields(f: NodeFacts): V1NodeStatus {
  return {
    addresses: renderAddresses(f.nodeName, f.internalIPs),
    allocatable: renderAllocatable(f.machine, f.maxPods),
    capacity: renderCapacity(f.machine, f.maxPods),
    daemonEndpoints: { kubeletEndpoint: { Port: kubeletPort } },
    nodeInfo: renderNodeInfo(f),
  };
}

export function renderTaints(taints: readonly Taint[]): V1Taint[] {
  return taints.map((t) => ({ key: t.key, ...(t.value === undefined ? {} : { value: t.value }), effect: t.effect }));
}

/** The Node to create at registration. */
export function renderNode(f: NodeFacts): V1Node {
  const taints = renderTaints(f.taints);
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: f.nodeName,
      labels: renderLabels(f.nodeName, f.machine, f.nodeLabels),
      annotations: { 'volumes.kubernetes.io/controller-managed-attach-detach': 'true', 'node.alpha.kubernetes.io/ttl': '0' },
    },
    spec: taints.length > 0 ? { taints } : {},
    status: renderStatusFields(f),
  };
}

/**
 * When the Node already exists: the metadata patch that puts back the labels
 * the agent owns (as the kubelet reconciles its default labels); undefined
 * when nothing differs. Pure.
 */
export function reconcileLabelsPatch(existing: V1Node, desired: V1Node): { metadata: { labels: Record<string, string> } } | undefined {
  const have = existing.metadata?.labels ?? {};
  const want = desired.metadata?.labels ?? {};
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(want)) if (have[k] !== v) labels[k] = v;
  return Object.keys(labels).length > 0 ? { metadata: { labels } } : undefined;
}

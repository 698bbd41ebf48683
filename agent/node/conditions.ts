/**
 * Node conditions and the status-write decision. Pure.
 *
 * Ready follows the kubelet: True/KubeletReady "kubelet is posting ready
 * status" when the runtime answers with RuntimeReady and NetworkReady true;
 * otherwise False/KubeletNotReady with upstream's messages ("container runtime
 * is down", "container runtime not ready: RuntimeReady=false reason:…
 * message:…", "container runtime network not ready: NetworkReady=false
 * reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin
 * not initialized"), several errors joined as "[a, b]".
 *
 * Heartbeats: lastHeartbeatTime is stamped only when the status is written;
 * lastTransitionTime moves only when a condition's status changes. The status
 * is written when anything but the heartbeats differs from the Node, or when
 * nodeStatusReportFrequency (5 min) has passed since the last write.
 */
import type { V1NodeCondition, V1NodeStatus } from '@kubernetes/client-node';
import type { RuntimeCondition } from '../runtime/types.js';
import type { PressureSignals } from './pressure.js';

export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface ConditionCore {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
}

export type RuntimeHealth = { reachable: false; error: string } | { reachable: true; conditions: readonly RuntimeCondition[] };

function runtimeConditionString(c: RuntimeCondition): string {
  return `${c.type}=${c.status} reason:${c.reason} message:${c.message}`;
}

export function readyCondition(h: RuntimeHealth): ConditionCore {
  const errors: string[] = [];
  if (!h.reachable) errors.push('container runtime is down');
  else {
    const runtime = h.conditions.find((c) => c.type === 'RuntimeReady');
    const network = h.conditions.find((c) => c.type === 'NetworkReady');
    if (runtime === undefined) errors.push('container runtime not ready: <nil>');
    else if (!runtime.status) errors.push(`container runtime not ready: ${runtimeConditionString(runtime)}`);
    if (network === undefined) errors.push('container runtime network not ready: <nil>');
    else if (!network.status) errors.push(`container runtime network not ready: ${runtimeConditionString(network)}`);
  }
  if (errors.length === 0) return { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' };
  return { type: 'Ready', status: 'False', reason: 'KubeletNotReady', message: errors.length === 1 ? errors[0]! : `[${errors.join(', ')}]` };
}

export function pressureConditions(p: PressureSignals): ConditionCore[] {
  return [
    p.memory
      ? { type: 'MemoryPressure', status: 'True', reason: 'KubeletHasInsufficientMemory', message: 'kubelet has insufficient memory available' }
      : { type: 'MemoryPressure', status: 'False', reason: 'KubeletHasSufficientMemory', message: 'kubelet has sufficient memory available' },
    p.disk
      ? { type: 'DiskPressure', status: 'True', reason: 'KubeletHasDiskPressure', message: 'kubelet has disk pressure' }
      : { type: 'DiskPressure', status: 'False', reason: 'KubeletHasNoDiskPressure', message: 'kubelet has no disk pressure' },
    p.pid
      ? { type: 'PIDPressure', status: 'True', reason: 'KubeletHasInsufficientPID', message: 'kubelet has insufficient PID available' }
      : { type: 'PIDPressure', status: 'False', reason: 'KubeletHasSufficientPID', message: 'kubelet has sufficient PID available' },
  ];
}

/** In upstream's order: MemoryPressure, DiskPressure, PIDPressure, Ready. */
export function desiredConditions(h: RuntimeHealth, p: PressureSignals): ConditionCore[] {
  return [...pressureConditions(p), readyCondition(h)];
}

function toDate(v: Date | string | undefined): Date | undefined {
  if (v === undefined) return undefined;
  const d = v instanceof Date ? v : new Date(v);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/**
 * The conditions to write at `now`: heartbeat now, transition time kept from
 * the previous condition of the same type when its status did not change.
 * Conditions the agent does not own (e.g. NetworkUnavailable) are left alone
 * by the strategic merge patch and are not returned.
 */
export function stampConditions(previous: readonly V1NodeCondition[] | undefined, desired: readonly ConditionCore[], now: Date): V1NodeCondition[] {
  return desired.map((d) => {
    const prev = previous?.find((p) => p.type === d.type);
    const keep = prev !== undefined && prev.status === d.status ? toDate(prev.lastTransitionTime) : undefined;
    return { type: d.type, status: d.status, reason: d.reason, message: d.message, lastHeartbeatTime: now, lastTransitionTime: keep ?? now };
  });
}

export interface Transition {
  type: string;
  /** undefined when the Node had no such condition. */
  from: string | undefined;
  to: ConditionStatus;
}

/** Conditions whose status differs from the Node's (new ones included). */
export function transitions(previous: readonly V1NodeCondition[] | undefined, desired: readonly ConditionCore[]): Transition[] {
  const out: Transition[] = [];
  for (const d of desired) {
    const prev = previous?.find((p) => p.type === d.type);
    if (prev?.status !== d.status) out.push({ type: d.type, from: prev?.status, to: d.status });
  }
  return out;
}

/** The node event for a condition transition (upstream's reasons). */
export function transitionEvent(t: Transition, nodeName: string): { reason: string; message: string } | undefined {
  const table: Record<string, [string, string]> = {
    Ready: ['NodeReady', 'NodeNotReady'],
    MemoryPressure: ['NodeHasInsufficientMemory', 'NodeHasSufficientMemory'],
    DiskPressure: ['NodeHasDiskPressure', 'NodeHasNoDiskPressure'],
    PIDPressure: ['NodeHasInsufficientPID', 'NodeHasSufficientPID'],
  };
  const pair = table[t.type];
  if (pair === undefined || t.to === 'Unknown') return undefined;
  const reason = t.to === 'True' ? pair[0] : pair[1];
  return { reason, message: `Node ${nodeName} status is now: ${reason}` };
}

const sameJson = (a: unknown, b: unknown): boolean => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

function sortedMap(m: Record<string, string> | undefined): [string, string][] {
  return Object.entries(m ?? {}).sort(([a], [b]) => a.localeCompare(b));
}

/** Whether the Node's status differs from the desired one, heartbeats aside. */
export function statusDiffers(current: V1NodeStatus | undefined, fields: V1NodeStatus, conditions: readonly ConditionCore[]): boolean {
  if (current === undefined) return true;
  for (const d of conditions) {
    const c = current.conditions?.find((x) => x.type === d.type);
    if (c === undefined || c.status !== d.status || (c.reason ?? '') !== d.reason || (c.message ?? '') !== d.message) return true;
  }
  const addrs = (s: V1NodeStatus): string[] => (s.addresses ?? []).map((a) => `${a.type}=${a.address}`);
  if (!sameJson(addrs(current), addrs(fields))) return true;
  if (!sameJson(sortedMap(current.capacity), sortedMap(fields.capacity))) return true;
  if (!sameJson(sortedMap(current.allocatable), sortedMap(fields.allocatable))) return true;
  if (current.daemonEndpoints?.kubeletEndpoint?.Port !== fields.daemonEndpoints?.kubeletEndpoint?.Port) return true;
  const want = fields.nodeInfo;
  const have = current.nodeInfo;
  if (want !== undefined) {
    for (const k of Object.keys(want) as (keyof typeof want)[]) {
      if (k === 'kubeProxyVersion') continue;
      if ((have?.[k] ?? '') !== (want[k] ?? '')) return true;
    }
  }
  return false;
}

/** Write when changed, or when the report frequency has passed since the last write (or never written). */
export function shouldWriteStatus(o: { differs: boolean; lastWriteMs: number | undefined; nowMs: number; reportFrequencyMs: number }): { write: boolean; why: 'changed' | 'report' | 'none' } {
  if (o.differs) return { write: true, why: 'changed' };
  if (o.lastWriteMs === undefined || o.nowMs - o.lastWriteMs >= o.reportFrequencyMs) return { write: true, why: 'report' };
  return { write: false, why: 'none' };
}

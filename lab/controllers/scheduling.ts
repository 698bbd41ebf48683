/**
 * The scheduler's decisions as pure functions: which nodes a pod fits
 * (upstream's filter plugins NodeUnschedulable, TaintToleration, NodeAffinity,
 * NodePorts and NodeResourcesFit, in that order, the first failing one giving the
 * node's reasons), which of the fitting nodes to pick (fewest pods, then name),
 * and the upstream-shaped "0/N nodes are available: ..." message.
 *
 * A node that is not Ready counts as tainted node.kubernetes.io/not-ready:
 * NoSchedule (what upstream's node lifecycle controller adds), so tolerating
 * that taint schedules onto it as upstream.
 */
import { parseQuantity, requirementMatches } from './selectors.js';
import type { Node, NodeSelectorTerm, Pod, ResourceList, Taint, Toleration } from './types.js';

export interface Resources {
  /** millicores */
  cpu: number;
  /** bytes */
  memory: number;
}

export interface NodeInfo {
  node: Node;
  /** Pods bound to the node and not terminated (terminating ones still count). */
  pods: Pod[];
}

export type ScheduleResult = { node: string } | { unschedulable: string };

function listResources(list: ResourceList | undefined): Resources {
  return { cpu: Math.round(parseQuantity(list?.cpu) * 1000), memory: Math.ceil(parseQuantity(list?.memory)) };
}

/** Effective requests: max(sum of containers, each init container) + overhead (upstream's computePodResourceRequest). */
export function podRequests(pod: Pod): Resources {
  const sum: Resources = { cpu: 0, memory: 0 };
  for (const c of pod.spec.containers ?? []) {
    const r = listResources(c.resources?.requests);
    sum.cpu += r.cpu;
    sum.memory += r.memory;
  }
  // Upstream PodRequests: sidecars (restartable init containers) run beside the apps, so they add up;
  // a regular init container runs alone with the sidecars started before it.
  const sidecars: Resources = { cpu: 0, memory: 0 };
  const init: Resources = { cpu: 0, memory: 0 };
  for (const c of pod.spec.initContainers ?? []) {
    const r = listResources(c.resources?.requests);
    let peak: Resources;
    if (c.restartPolicy === 'Always') {
      sum.cpu += r.cpu;
      sum.memory += r.memory;
      sidecars.cpu += r.cpu;
      sidecars.memory += r.memory;
      peak = { ...sidecars };
    } else {
      peak = { cpu: r.cpu + sidecars.cpu, memory: r.memory + sidecars.memory };
    }
    init.cpu = Math.max(init.cpu, peak.cpu);
    init.memory = Math.max(init.memory, peak.memory);
  }
  sum.cpu = Math.max(sum.cpu, init.cpu);
  sum.memory = Math.max(sum.memory, init.memory);
  const o = listResources(pod.spec.overhead);
  return { cpu: sum.cpu + o.cpu, memory: sum.memory + o.memory };
}

export function isTerminated(pod: Pod): boolean {
  const phase = pod.status?.phase;
  return phase === 'Succeeded' || phase === 'Failed';
}

export function nodeReady(node: Node): boolean {
  return (node.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/** Upstream's Toleration.ToleratesTaint. */
export function tolerates(t: Toleration, taint: Taint): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if (t.key && t.key !== taint.key) return false;
  if (!t.key && t.operator !== 'Exists') return false;
  if (t.operator === 'Exists') return true;
  return (t.value ?? '') === (taint.value ?? '');
}

export function toleratesAll(tolerations: Toleration[] | undefined, taint: Taint): boolean {
  return (tolerations ?? []).some((t) => tolerates(t, taint));
}

function termMatches(term: NodeSelectorTerm, node: Node): boolean {
  const exprs = term.matchExpressions ?? [];
  const fields = term.matchFields ?? [];
  if (exprs.length === 0 && fields.length === 0) return false;
  return (
    exprs.every((r) => requirementMatches(r, node.metadata.labels)) &&
    fields.every((r) => r.key === 'metadata.name' && requirementMatches({ ...r, key: 'metadata.name' }, { 'metadata.name': node.metadata.name ?? '' }))
  );
}

export function matchesNodeSelectorAndAffinity(pod: Pod, node: Node): boolean {
  const labels = node.metadata.labels ?? {};
  for (const [k, v] of Object.entries(pod.spec.nodeSelector ?? {})) if (labels[k] !== v) return false;
  const required = pod.spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  if (required) {
    const terms = required.nodeSelectorTerms ?? [];
    if (!terms.some((t) => termMatches(t, node))) return false;
  }
  return true;
}

interface HostPort {
  ip: string;
  protocol: string;
  port: number;
}

function hostPorts(pod: Pod): HostPort[] {
  const out: HostPort[] = [];
  for (const c of [...(pod.spec.containers ?? []), ...(pod.spec.initContainers ?? [])]) {
    for (const p of c.ports ?? []) {
      if (p.hostPort && p.hostPort > 0) out.push({ ip: p.hostIP || '0.0.0.0', protocol: p.protocol ?? 'TCP', port: p.hostPort });
    }
  }
  return out;
}

/** Upstream's NodePorts: the same port and protocol conflict when either address is 0.0.0.0 or both are equal. */
export function hostPortsConflict(pod: Pod, others: Pod[]): boolean {
  const want = hostPorts(pod);
  if (want.length === 0) return false;
  const used = others.flatMap(hostPorts);
  return want.some((w) => used.some((u) => u.port === w.port && u.protocol === w.protocol && (u.ip === '0.0.0.0' || w.ip === '0.0.0.0' || u.ip === w.ip)));
}

/** The reasons `pod` does not fit `info` (empty: it fits). */
export function filterNode(pod: Pod, info: NodeInfo): string[] {
  const node = info.node;
  const tolerations = pod.spec.tolerations;
  if (node.spec?.unschedulable && !toleratesAll(tolerations, { key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' })) {
    return ['node(s) were unschedulable'];
  }
  const taints: Taint[] = [...(node.spec?.taints ?? [])];
  if (!nodeReady(node)) taints.push({ key: 'node.kubernetes.io/not-ready', effect: 'NoSchedule' });
  for (const taint of taints) {
    if (taint.effect !== 'NoSchedule' && taint.effect !== 'NoExecute') continue;
    if (!toleratesAll(tolerations, taint)) return [`node(s) had untolerated taint {${taint.key}: ${taint.value ?? ''}}`];
  }
  if (!matchesNodeSelectorAndAffinity(pod, node)) return ["node(s) didn't match Pod's node affinity/selector"];
  if (hostPortsConflict(pod, info.pods)) return ["node(s) didn't have free ports for the requested pod ports"];
  const alloc = node.status?.allocatable ?? node.status?.capacity ?? {};
  const allocatable = listResources(alloc);
  const maxPods = alloc.pods === undefined ? 110 : parseQuantity(alloc.pods);
  const reasons: string[] = [];
  if (info.pods.length + 1 > maxPods) reasons.push('Too many pods');
  const want = podRequests(pod);
  const used: Resources = { cpu: 0, memory: 0 };
  for (const p of info.pods) {
    const r = podRequests(p);
    used.cpu += r.cpu;
    used.memory += r.memory;
  }
  if (want.cpu > 0 && want.cpu > allocatable.cpu - used.cpu) reasons.push('Insufficient cpu');
  if (want.memory > 0 && want.memory > allocatable.memory - used.memory) reasons.push('Insufficient memory');
  return reasons;
}

/** Upstream's FitError message: "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) ...". */
export function unschedulableMessage(total: number, reasons: Map<string, number>): string {
  if (total === 0) return 'no nodes available to schedule pods';
  const parts = [...reasons].map(([r, n]) => `${n} ${r}`).sort();
  return `0/${total} nodes are available: ${parts.join(', ')}.`;
}

export function schedule(pod: Pod, nodes: NodeInfo[]): ScheduleResult {
  const reasons = new Map<string, number>();
  const fitting: NodeInfo[] = [];
  for (const info of nodes) {
    const why = filterNode(pod, info);
    if (why.length === 0) fitting.push(info);
    for (const r of why) reasons.set(r, (reasons.get(r) ?? 0) + 1);
  }
  if (fitting.length === 0) return { unschedulable: unschedulableMessage(nodes.length, reasons) };
  fitting.sort((a, b) => a.pods.length - b.pods.length || (a.node.metadata.name ?? '').localeCompare(b.node.metadata.name ?? ''));
  return { node: fitting[0]!.node.metadata.name ?? '' };
}

/** Pods this scheduler is responsible for. */
export function needsScheduling(pod: Pod): boolean {
  const sched = pod.spec.schedulerName;
  return !pod.spec.nodeName && (sched === undefined || sched === '' || sched === 'default-scheduler') && !pod.metadata.deletionTimestamp && !isTerminated(pod);
}

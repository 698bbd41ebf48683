/**
 * The node status loop. Every nodeStatusUpdateFrequency (10 s): read the Node,
 * ask the runtime for its status, read the machine's pressure signals, render
 * the status and the conditions; PATCH nodes/<name>/status (strategic merge)
 * only when something differs from the Node or nodeStatusReportFrequency
 * (5 min) has passed since the last write (decisions in conditions.ts).
 * Records NodeReady / NodeNotReady (and the pressure events) on transitions.
 * A Node deleted under the agent is registered again. Every error is logged
 * and the next tick retries.
 */
import type { V1Node, V1NodeStatus } from '@kubernetes/client-node';
import { errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { Runtime } from '../runtime/types.js';
import { apiErrorSummary, isNotFound, strategicMergePatch } from '../kube/client.js';
import type { KubeClient } from '../kube/client.js';
import type { EventRecorder, InvolvedObject } from '../kube/events.js';
import { desiredConditions, shouldWriteStatus, stampConditions, statusDiffers, transitionEvent, transitions } from './conditions.js';
import type { RuntimeHealth } from './conditions.js';
import { pressureSignals, withTransitionPeriod } from './pressure.js';
import type { PressureMemory, PressureObservation } from './pressure.js';
import { renderStatusFields } from './render.js';
import type { NodeFacts } from './render.js';
import { sleep } from '../../lib/sleep.js';

export interface StatusLoopOptions {
  client: Pick<KubeClient, 'core'>;
  nodeName: string;
  nodeRef: InvolvedObject;
  runtime: Pick<Runtime, 'status' | 'version'>;
  /** The current facts; the loop refreshes runtimeVersion in them. */
  facts: NodeFacts;
  readPressure: () => Promise<PressureObservation>;
  /** Re-detects the node's InternalIPs each tick (they follow the default route unless --node-ip). */
  readNodeIPs?: () => Promise<string[]>;
  /** Registers the Node again when it was deleted; returns it. */
  reregister: () => Promise<V1Node>;
  recorder: EventRecorder;
  updateFrequencyMs: number;
  reportFrequencyMs: number;
  runtimeTimeoutMs?: number;
  signal: AbortSignal;
  logger: Logger;
  now?: () => Date;
}

export interface StatusLoopStats {
  ticks: number;
  writes: number;
  reregistrations: number;
  lastWhy: string;
}

export interface StatusLoop {
  done: Promise<void>;
  stats(): StatusLoopStats;
}

/** The status body for the PATCH (plain JSON; addresses replaced as a whole so a changed IP does not linger). */
export function statusPatchBody(status: V1NodeStatus): { status: Record<string, unknown> } {
  // JSON round trip: Dates become RFC 3339 strings and undefined fields vanish, as client-node's serializer did.
  const json = JSON.parse(JSON.stringify(status)) as Record<string, unknown>;
  if (Array.isArray(json.addresses)) json.addresses = [{ $patch: 'replace' }, ...(json.addresses as unknown[])];
  return { status: json };
}

export async function probeRuntime(runtime: Pick<Runtime, 'status'>, timeoutMs: number): Promise<RuntimeHealth> {
  try {
    const s = await runtime.status({ timeoutMs });
    return { reachable: true, conditions: s.conditions };
  } catch (err) {
    return { reachable: false, error: errorMessage(err) };
  }
}

export function startStatusLoop(o: StatusLoopOptions): StatusLoop {
  const now = o.now ?? (() => new Date());
  const stats: StatusLoopStats = { ticks: 0, writes: 0, reregistrations: 0, lastWhy: '' };
  let lastWriteMs: number | undefined;
  let pressureMemory: PressureMemory = {};
  const timeoutMs = o.runtimeTimeoutMs ?? 5000;

  const tick = async (): Promise<void> => {
    let node: V1Node;
    try {
      node = await o.client.core.readNode({ name: o.nodeName });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      o.logger.warn('node not found; registering it again', { node: o.nodeName });
      node = await o.reregister();
      stats.reregistrations++;
      lastWriteMs = undefined;
    }
    const health = await probeRuntime(o.runtime, timeoutMs);
    if (health.reachable) {
      // As the kubelet: the version is asked every time (a runtime upgrade shows up).
      o.facts.runtimeVersion = (await o.runtime.version({ timeoutMs }).catch(() => undefined)) ?? o.facts.runtimeVersion;
    }
    if (o.readNodeIPs) {
      const ips = await o.readNodeIPs().catch(() => [] as string[]);
      if (ips.length > 0) o.facts.internalIPs = ips;
    }
    const at = now();
    const observed = pressureSignals(await o.readPressure());
    const held = withTransitionPeriod(pressureMemory, observed, at.getTime());
    pressureMemory = held.memory;
    const fields = renderStatusFields(o.facts);
    const desired = desiredConditions(health, held.pressure);
    const decision = shouldWriteStatus({ differs: statusDiffers(node.status, fields, desired), lastWriteMs, nowMs: at.getTime(), reportFrequencyMs: o.reportFrequencyMs });
    if (!decision.write) return;
    const previous = node.status?.conditions;
    const status: V1NodeStatus = { ...fields, conditions: stampConditions(previous, desired, at) };
    await o.client.core.patchNodeStatus({ name: o.nodeName, body: statusPatchBody(status) }, strategicMergePatch);
    lastWriteMs = at.getTime();
    stats.writes++;
    stats.lastWhy = decision.why;
    const changes = transitions(previous, desired);
    o.logger.info('node status written', { why: decision.why, ready: desired.find((c) => c.type === 'Ready')?.status, transitions: changes.map((t) => `${t.type}=${t.to}`) });
    for (const t of changes) {
      const ev = transitionEvent(t, o.nodeName);
      if (ev) o.recorder.event(o.nodeRef, 'Normal', ev.reason, ev.message);
    }
  };

  const run = async (): Promise<void> => {
    while (!o.signal.aborted) {
      stats.ticks++;
      try {
        await tick();
      } catch (err) {
        o.logger.warn('node status update failed; retrying at the next tick', { err: apiErrorSummary(err) });
      }
      await sleep(o.updateFrequencyMs, o.signal);
    }
  };
  return { done: run(), stats: () => ({ ...stats }) };
}

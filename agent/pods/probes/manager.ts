/**
 * The probes of one pod (upstream prober_manager + one worker per container
 * and probe type): loops that tick every periodSeconds, decide with
 * tracker.ts, run prober.ts, and keep the results the pod worker reads.
 *
 * Design notes:
 * - The pod worker feeds `update(pod, status)` after each sync with the status
 *   it just computed; the loops read that snapshot (upstream reads the status
 *   manager's) and tick at once when their container got a new id.
 * - The pod worker reads back `planInputs()` (liveness/startup failures, for
 *   the kill-and-restart decision in plan.ts) and `readiness()` / `started()`
 *   (for status.ts). A changed result calls `onChange` so the pod syncs now
 *   instead of at the next relist.
 * - Loops start with the first status that shows their container and stop
 *   with `stop()` (pod terminated, agent shutdown) or when the pod is done.
 *   A probe spec the agent cannot use (no handler, bad scheme) is logged once
 *   and skipped: the pod keeps running, as with a probe that never fails.
 * - Probed containers are spec.containers and the sidecars (init containers
 *   with restartPolicy Always, upstream's AddPod); regular init containers
 *   have no probes (the API rejects them).
 */
import type { V1Container, V1ContainerStatus, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { errorMessage } from '../../../lib/errors.js';
import type { Logger } from '../../../lib/log.js';
import { sleep } from '../../../lib/sleep.js';
import type { EventType } from '../types.js';
import type { PlanInputs } from '../plan.js';
import { isRestartableInitContainer, restartPolicy } from '../plan.js';
import { runProbe, type ProberDeps } from './prober.js';
import { probeTypeName, probeTypes, resolveProbe, type ProbeType, type ResolvedProbe } from './spec.js';
import { ProbeResults, ProbeTracker, type ProbeView } from './tracker.js';

export interface PodProbesOptions extends ProberDeps {
  event(type: EventType, reason: string, message: string, container: string): void;
  /** A published result changed: the pod should sync soon. */
  onChange(): void;
  now(): number;
  logger: Logger;
}

/** The runtime id of a `<runtime>://<id>` containerID. */
export function runtimeId(containerID: string | undefined): string {
  if (containerID === undefined) return '';
  const i = containerID.indexOf('://');
  return i < 0 ? containerID : containerID.slice(i + 3);
}

/** The containers that get probes: the regular ones, then the sidecars. */
export function probedContainers(pod: V1Pod): V1Container[] {
  return [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? []).filter(isRestartableInitContainer)];
}

/** The status of a probed container: containerStatuses, else initContainerStatuses (as upstream's worker looks). */
function probedStatus(status: V1PodStatus | undefined, container: string): V1ContainerStatus | undefined {
  const cs = status?.containerStatuses?.find((c) => c.name === container);
  if (cs !== undefined && runtimeId(cs.containerID) !== '') return cs;
  return status?.initContainerStatuses?.find((c) => c.name === container);
}

/** A probe worker's view of its container, from a pod and its last computed status. Pure. */
export function probeView(pod: V1Pod, status: V1PodStatus | undefined, container: string, nowMs: number): ProbeView {
  const cs = probedStatus(status, container);
  const startedAt = cs?.state?.running?.startedAt;
  const sidecar = (pod.spec?.initContainers ?? []).some((c) => c.name === container && isRestartableInitContainer(c));
  return {
    phase: status?.phase ?? '',
    // A sidecar is restarted whatever the pod's policy.
    restartPolicy: sidecar ? 'Always' : restartPolicy(pod),
    deleting: pod.metadata?.deletionTimestamp !== undefined,
    container:
      cs === undefined || runtimeId(cs.containerID) === ''
        ? undefined
        : {
            id: runtimeId(cs.containerID),
            running: cs.state?.running !== undefined,
            terminated: cs.state?.terminated !== undefined,
            startedAtMs: startedAt === undefined ? undefined : new Date(startedAt).getTime(),
            started: cs.started === true,
          },
    nowMs,
  };
}

class ProbeLoop {
  readonly tracker: ProbeTracker;
  private stopped = false;
  private wakeUp: (() => void) | undefined;
  private kicked = false;
  done: Promise<void> = Promise.resolve();

  constructor(
    readonly container: string,
    readonly probe: ResolvedProbe,
    results: ProbeResults,
    private readonly owner: PodProbes,
    private readonly o: PodProbesOptions,
  ) {
    this.tracker = new ProbeTracker(probe, results, o.onChange);
  }

  start(): void {
    this.done = this.run().catch((err: unknown) => this.o.logger.error('probe loop failed', { err, container: this.container, probe: this.probe.type }));
  }

  wake(): void {
    this.kicked = true;
    this.wakeUp?.();
  }

  stop(): Promise<void> {
    this.stopped = true;
    this.wakeUp?.();
    return this.done;
  }

  private async run(): Promise<void> {
    const periodMs = this.probe.periodSeconds * 1000;
    while (!this.stopped) {
      const began = this.o.now();
      this.kicked = false;
      const d = this.tracker.tick(this.owner.view(this.container));
      if (d.action === 'stop') break;
      if (d.action === 'probe') {
        const verdict = await runProbe(this.o, this.probe, { container: this.owner.containerSpec(this.container) ?? { name: this.container }, containerId: d.containerId, podIP: this.owner.podIP() });
        if (this.stopped) break;
        if (verdict.event !== undefined) this.o.event('Warning', verdict.event.reason, verdict.event.message, this.container);
        if (verdict.outcome.result !== 'success') this.o.logger.info('probe failed', { container: this.container, probe: this.probe.type, result: verdict.outcome.result, output: verdict.outcome.output });
        this.tracker.record(d.containerId, verdict.outcome);
      }
      if (this.stopped || this.kicked) continue;
      const ac = new AbortController();
      this.wakeUp = () => ac.abort();
      await sleep(Math.max(0, periodMs - (this.o.now() - began)), ac.signal);
      this.wakeUp = undefined;
    }
    this.tracker.forget();
  }
}

export class PodProbes {
  private pod: V1Pod;
  private status: V1PodStatus | undefined;
  private readonly results: Record<ProbeType, ProbeResults> = { liveness: new ProbeResults(), readiness: new ProbeResults(), startup: new ProbeResults() };
  private readonly loops = new Map<string, ProbeLoop>();
  private readonly invalid = new Set<string>();
  private stopped = false;

  constructor(
    pod: V1Pod,
    private readonly o: PodProbesOptions,
  ) {
    this.pod = pod;
  }

  view(container: string): ProbeView {
    return probeView(this.pod, this.status, container, this.o.now());
  }

  containerSpec(name: string): V1Container | undefined {
    return probedContainers(this.pod).find((c) => c.name === name);
  }

  podIP(): string {
    return this.status?.podIP ?? '';
  }

  /** New pod spec and/or status: start the loops of probes that appeared, tick the ones whose container changed. */
  update(pod: V1Pod, status: V1PodStatus): void {
    if (this.stopped) return;
    this.pod = pod;
    this.status = status;
    for (const c of probedContainers(pod)) {
      const cs = probedStatus(status, c.name);
      if (cs === undefined || runtimeId(cs.containerID) === '') continue;
      for (const type of probeTypes) {
        const key = `${c.name}\0${type}`;
        const loop = this.loops.get(key);
        if (loop !== undefined) {
          if (loop.tracker.current !== runtimeId(cs.containerID)) loop.wake();
          continue;
        }
        let probe: ResolvedProbe | undefined;
        try {
          probe = resolveProbe(c, type);
        } catch (err) {
          if (!this.invalid.has(key)) {
            this.invalid.add(key);
            this.o.event('Warning', 'Unhealthy', `${probeTypeName(type)} probe errored: ${errorMessage(err)}`, c.name);
            this.o.logger.warn('unusable probe', { container: c.name, probe: type, err });
          }
          continue;
        }
        if (probe === undefined) continue;
        const l = new ProbeLoop(c.name, probe, this.results[type], this, this.o);
        this.loops.set(key, l);
        l.start();
      }
    }
  }

  /** Containers whose liveness or startup probe failed (plan.ts kills and restarts them), and the startup results (sidecars' ordering). */
  planInputs(): PlanInputs {
    const failed = (r: ProbeResults): Set<string> => new Set(r.ids().filter((id) => r.get(id) === 'failure'));
    return { livenessFailed: failed(this.results.liveness), startupFailed: failed(this.results.startup), started: this.started() };
  }

  /** Readiness by container id (status.ts): true only after the probe succeeded. */
  readiness(): Map<string, boolean> {
    return new Map(this.results.readiness.ids().map((id) => [id, this.results.readiness.get(id) === 'success']));
  }

  /** Started by container id (status.ts): true only after the startup probe succeeded. */
  started(): Map<string, boolean> {
    return new Map(this.results.startup.ids().map((id) => [id, this.results.startup.get(id) === 'success']));
  }

  /** Stops every loop (in-flight probes finish) and forgets the results. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.loops.values()].map((l) => l.stop()));
    this.loops.clear();
  }
}

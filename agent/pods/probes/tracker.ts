/**
 * The decisions of one probe worker (upstream prober/worker.go doProbe) and
 * the results it publishes (prober/results), as pure state: no timers, no IO.
 *
 * Design notes:
 * - `tick(view)` says what to do now from the pod's last computed status:
 *   stop (pod done, or container exited and will not restart), wait (not
 *   created / on hold / initial delay / startup gating / pod deleting for
 *   liveness and startup), or probe the container with that id.
 * - `record(outcome)` counts consecutive equal results; only a run reaching
 *   successThreshold / failureThreshold changes the published result. After a
 *   liveness or startup failure is published the tracker holds until a new
 *   container id appears (the kill and restart are the pod worker's job).
 * - Initial results as upstream: readiness Failure (not ready until a success),
 *   liveness Success, startup Unknown (not started until a success). A
 *   container that stopped running publishes Failure.
 * - Errors (the probe could not be run, e.g. a bad port name) are not counted.
 */
import type { ProbeType, ResolvedProbe } from './spec.js';

export type ProbeResult = 'success' | 'failure' | 'unknown';

export function initialResult(type: ProbeType): ProbeResult {
  return type === 'readiness' ? 'failure' : type === 'liveness' ? 'success' : 'unknown';
}

/** Results of one probe type by container id; `set` says whether the value changed. */
export class ProbeResults {
  private readonly byId = new Map<string, ProbeResult>();

  get(id: string): ProbeResult | undefined {
    return this.byId.get(id);
  }

  set(id: string, result: ProbeResult): boolean {
    const changed = this.byId.get(id) !== result;
    this.byId.set(id, result);
    return changed;
  }

  remove(id: string): boolean {
    return this.byId.delete(id);
  }

  ids(): string[] {
    return [...this.byId.keys()];
  }
}

/** What a probe worker sees of its pod and container (from the last computed pod status). */
export interface ProbeView {
  /** Pod phase of the last status ('' before the first). */
  phase: string;
  restartPolicy: 'Always' | 'OnFailure' | 'Never';
  /** The pod has a deletionTimestamp. */
  deleting: boolean;
  /** The newest instance of the container, undefined before it is created. */
  container:
    | {
        /** Runtime id (without the `containerd://` prefix). */
        id: string;
        running: boolean;
        terminated: boolean;
        startedAtMs: number | undefined;
        /** containerStatuses[].started */
        started: boolean;
      }
    | undefined;
  nowMs: number;
}

export type TickDecision = { action: 'stop' } | { action: 'wait'; why: string } | { action: 'probe'; containerId: string };

/** The outcome of one probe run: a verdict, or an error (not counted; `silent` when the container is simply gone, no event). */
export type ProbeRunOutcome = { result: 'success' | 'failure'; output: string } | { result: 'error'; output: string; silent?: boolean };

export class ProbeTracker {
  private containerId: string | undefined;
  private lastResult: 'success' | 'failure' | undefined;
  private run = 0;
  private onHold = false;

  constructor(
    readonly probe: ResolvedProbe,
    private readonly results: ProbeResults,
    /** Called when a published result changed. */
    private readonly onChange: () => void = () => undefined,
  ) {}

  private publish(id: string, result: ProbeResult): void {
    if (this.results.set(id, result)) this.onChange();
  }

  /** The container id being probed. */
  get current(): string | undefined {
    return this.containerId;
  }

  tick(view: ProbeView): TickDecision {
    if (view.phase === 'Failed' || view.phase === 'Succeeded') return { action: 'stop' };
    const c = view.container;
    if (c === undefined || c.id === '') return { action: 'wait', why: 'container not created' };
    if (c.id !== this.containerId) {
      if (this.containerId !== undefined && this.results.remove(this.containerId)) this.onChange();
      this.containerId = c.id;
      this.publish(c.id, initialResult(this.probe.type));
      this.onHold = false;
      this.lastResult = undefined;
      this.run = 0;
    }
    if (this.onHold) return { action: 'wait', why: 'on hold until the container is restarted' };
    if (!c.running) {
      this.publish(c.id, 'failure');
      if (c.terminated && view.restartPolicy === 'Never') return { action: 'stop' };
      return { action: 'wait', why: 'container not running' };
    }
    if (view.deleting && this.probe.type !== 'readiness') return { action: 'wait', why: 'pod terminating' };
    if (c.startedAtMs !== undefined && Math.floor((view.nowMs - c.startedAtMs) / 1000) < this.probe.initialDelaySeconds) return { action: 'wait', why: 'initial delay' };
    if (c.started) {
      if (this.probe.type === 'startup') return { action: 'wait', why: 'started' };
    } else if (this.probe.type !== 'startup') {
      return { action: 'wait', why: 'not started' };
    }
    return { action: 'probe', containerId: c.id };
  }

  /** Counts a run's outcome for `containerId` (ignored when the container changed meanwhile). */
  record(containerId: string, outcome: ProbeRunOutcome): void {
    if (containerId !== this.containerId || outcome.result === 'error') return;
    const result = outcome.result;
    if (this.lastResult === result) {
      this.run++;
    } else {
      this.lastResult = result;
      this.run = 1;
    }
    if ((result === 'failure' && this.run < this.probe.failureThreshold) || (result === 'success' && this.run < this.probe.successThreshold)) return;
    this.publish(containerId, result);
    if (result === 'failure' && this.probe.type !== 'readiness') {
      this.onHold = true;
      this.run = 0;
    }
  }

  /** Forgets the published result (worker stopped). */
  forget(): void {
    if (this.containerId !== undefined && this.results.remove(this.containerId)) this.onChange();
    this.containerId = undefined;
  }
}

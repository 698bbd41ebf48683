/**
 * The order in which a pod with sidecars stops (upstream terminationOrdering,
 * kuberuntime_termination_order.go): the regular containers first, then the
 * sidecars (init containers with restartPolicy Always) in reverse spec order,
 * all within the one grace period.
 *
 * Design notes:
 * - `terminationPrereqs` is the pure part: for each running sidecar, the
 *   running containers it waits for — every regular container, and the
 *   nearest later sidecar that runs (which itself waits for the one after it,
 *   so the sidecars stop strictly in reverse order). Containers that do not
 *   run are never waited for.
 * - `TerminationOrdering` carries it out: every container's stop is started
 *   at once (preStop hooks run in parallel, as upstream); before its
 *   StopContainer a sidecar awaits `waitForTurn`, which resolves when its
 *   prerequisites called `terminated`, or when the grace period it was given
 *   runs out (then it is stopped anyway, with the 2 s minimum).
 */
import type { V1Pod } from '@kubernetes/client-node';
import { isRestartableInitContainer } from './plan.js';

/** For each running sidecar, the names of the running containers that must stop before it. */
export function terminationPrereqs(pod: V1Pod, running: ReadonlySet<string>): Map<string, string[]> {
  const apps = (pod.spec?.containers ?? []).map((c) => c.name).filter((n) => running.has(n));
  const prereqs = new Map<string, string[]>();
  let later: string | undefined;
  const inits = pod.spec?.initContainers ?? [];
  for (let i = inits.length - 1; i >= 0; i--) {
    const c = inits[i]!;
    if (!isRestartableInitContainer(c) || !running.has(c.name)) continue;
    prereqs.set(c.name, later === undefined ? [...apps] : [...apps, later]);
    later = c.name;
  }
  return prereqs;
}

export class TerminationOrdering {
  private readonly prereqs: Map<string, string[]>;
  private readonly done = new Map<string, { promise: Promise<void>; resolve: () => void }>();

  constructor(pod: V1Pod, running: Iterable<string>) {
    const names = new Set(running);
    this.prereqs = terminationPrereqs(pod, names);
    for (const name of names) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.done.set(name, { promise, resolve });
    }
  }

  /** Names `name` still waits for (for logs and tests). */
  waitsFor(name: string): string[] {
    return this.prereqs.get(name) ?? [];
  }

  /**
   * Resolves when it is `name`'s turn to stop, or after `graceSeconds` at the
   * latest (at once when there is no grace left); yields the seconds waited.
   */
  async waitForTurn(name: string, graceSeconds: number): Promise<number> {
    const waits = this.waitsFor(name).map((n) => this.done.get(n)?.promise ?? Promise.resolve());
    if (graceSeconds <= 0 || waits.length === 0) return 0;
    const began = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((r) => (timer = setTimeout(r, graceSeconds * 1000)));
    try {
      await Promise.race([Promise.all(waits), expired]);
    } finally {
      clearTimeout(timer);
    }
    return (Date.now() - began) / 1000;
  }

  /** `name` has stopped (or its stop failed): the containers waiting for it may go on. */
  terminated(name: string): void {
    this.done.get(name)?.resolve();
  }
}

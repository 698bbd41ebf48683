/**
 * What to do next for one pod, given what the runtime runs: the kubelet's
 * computePodActions (kuberuntime_manager.go) as a pure function.
 *
 * - No sandbox, a sandbox that is not ready, several ready ones, a changed
 *   network mode or no IP: kill the pod and create a new sandbox (attempt + 1),
 *   then start from the first init container — unless the pod is done for good
 *   (restartPolicy Never with containers that ran, or OnFailure with all
 *   succeeded), then only kill it.
 * - Init containers run one at a time, in order; a failed one restarts unless
 *   restartPolicy is Never, in which case the pod is killed (and fails).
 * - App containers that are not running start per restartPolicy; running ones
 *   are killed when their spec changed (restart regardless of policy) or their
 *   liveness/startup probe failed (restart per policy).
 * - Nothing left running and nothing to start: kill the pod (stop the sandbox).
 * - A container to (re)start after an exit first waits out its back-off; those
 *   are listed in `backOff` instead of `containersToStart`.
 * - A pod being deleted: kill everything, start nothing.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { backOffKey, crashLoopMessage, type BackOffView } from './backoff.js';
import { containerHash } from './hash.js';
import type { ContainerInfo, PodRuntimeState } from './types.js';
import { latestContainer } from './types.js';

export type KillReason = 'SpecChanged' | 'LivenessFailed' | 'StartupFailed' | 'UnknownState' | 'PodDeleted';

export interface ContainerToKill {
  id: string;
  name: string;
  reason: KillReason;
  message: string;
}

export interface ContainerToStart {
  name: string;
  /** Index in spec.containers (or spec.initContainers for the init container). */
  index: number;
  /** The restart count the new instance gets. */
  restartCount: number;
}

export interface BackedOff {
  name: string;
  init: boolean;
  delayMs: number;
  /** When the back-off ends, from now. */
  retryInMs: number;
  message: string;
}

export interface PodActions {
  /** Stop every container and the sandbox(es). */
  killPod: boolean;
  createSandbox: boolean;
  /** The current sandbox (the one to kill, or to start containers in). */
  sandboxId: string | undefined;
  /** Attempt of the sandbox to create. */
  attempt: number;
  nextInitContainerToStart: ContainerToStart | undefined;
  containersToStart: ContainerToStart[];
  containersToKill: ContainerToKill[];
  /** Containers that would start but are still backing off. */
  backOff: BackedOff[];
}

export interface PlanInputs {
  /** Ids of running containers whose liveness probe failed. */
  livenessFailed?: ReadonlySet<string>;
  /** Ids of running containers whose startup probe failed. */
  startupFailed?: ReadonlySet<string>;
}

export function isHostNetwork(pod: V1Pod): boolean {
  return pod.spec?.hostNetwork === true;
}

export function restartPolicy(pod: V1Pod): 'Always' | 'OnFailure' | 'Never' {
  const p = pod.spec?.restartPolicy;
  return p === 'OnFailure' || p === 'Never' ? p : 'Always';
}

function shouldRestartOnFailure(pod: V1Pod): boolean {
  return restartPolicy(pod) !== 'Never';
}

/** upstream ShouldContainerBeRestarted */
export function shouldContainerBeRestarted(container: V1Container, pod: V1Pod, state: PodRuntimeState): boolean {
  if (pod.metadata?.deletionTimestamp !== undefined) return false;
  const status = latestContainer(state, container.name);
  if (status === undefined) return true;
  if (status.state === 'running') return false;
  if (status.state === 'unknown' || status.state === 'created') return true;
  const policy = restartPolicy(pod);
  if (policy === 'Never') return false;
  if (policy === 'OnFailure' && status.exitCode === 0) return false;
  return true;
}

function isInitContainerFailed(c: ContainerInfo): boolean {
  return (c.state === 'exited' && c.exitCode !== 0) || c.state === 'unknown';
}

/** upstream PodSandboxChanged: [create a new sandbox?, its attempt, the current sandbox id]. */
export function podSandboxChanged(pod: V1Pod, state: PodRuntimeState): { changed: boolean; attempt: number; sandboxId: string | undefined } {
  const latest = state.sandboxes[0];
  if (latest === undefined) return { changed: true, attempt: 0, sandboxId: undefined };
  const ready = state.sandboxes.filter((s) => s.state === 'ready').length;
  if (ready > 1 || latest.state !== 'ready') return { changed: true, attempt: latest.attempt + 1, sandboxId: latest.id };
  const wanted = isHostNetwork(pod) ? 'node' : 'pod';
  if (latest.network !== undefined && latest.network !== wanted) return { changed: true, attempt: latest.attempt + 1, sandboxId: latest.id };
  if (!isHostNetwork(pod) && latest.ip === '') return { changed: true, attempt: latest.attempt + 1, sandboxId: latest.id };
  return { changed: false, attempt: latest.attempt, sandboxId: latest.id };
}

/** upstream findNextInitContainerToRun: the last failed init status, the next one to run, done. */
export function findNextInitContainerToRun(
  pod: V1Pod,
  state: PodRuntimeState,
): { failed: ContainerInfo | undefined; next: number | undefined; done: boolean } {
  const inits = pod.spec?.initContainers ?? [];
  if (inits.length === 0) return { failed: undefined, next: undefined, done: true };
  for (const c of pod.spec?.containers ?? []) {
    if (latestContainer(state, c.name)?.state === 'running') return { failed: undefined, next: undefined, done: true };
  }
  for (let i = inits.length - 1; i >= 0; i--) {
    const s = latestContainer(state, inits[i]!.name);
    if (s !== undefined && isInitContainerFailed(s)) return { failed: s, next: i, done: false };
  }
  for (let i = inits.length - 1; i >= 0; i--) {
    const s = latestContainer(state, inits[i]!.name);
    if (s === undefined) continue;
    if (s.state === 'running') return { failed: undefined, next: undefined, done: false };
    if (s.state === 'exited') {
      if (i === inits.length - 1) return { failed: undefined, next: undefined, done: true };
      return { failed: undefined, next: i + 1, done: false };
    }
  }
  return { failed: undefined, next: 0, done: false };
}

function nextRestartCount(state: PodRuntimeState, name: string): number {
  const latest = latestContainer(state, name);
  return latest === undefined ? 0 : latest.restartCount + 1;
}

function succeeded(state: PodRuntimeState, name: string): boolean {
  const s = latestContainer(state, name);
  return s !== undefined && s.state === 'exited' && s.exitCode === 0;
}

export function computePodActions(pod: V1Pod, state: PodRuntimeState, nowMs: number, backoff: BackOffView, inputs: PlanInputs = {}): PodActions {
  const containers = pod.spec?.containers ?? [];
  const inits = pod.spec?.initContainers ?? [];
  const sb = podSandboxChanged(pod, state);
  const actions: PodActions = {
    killPod: sb.changed,
    createSandbox: sb.changed,
    sandboxId: sb.sandboxId,
    attempt: sb.attempt,
    nextInitContainerToStart: undefined,
    containersToStart: [],
    containersToKill: [],
    backOff: [],
  };

  if (pod.metadata?.deletionTimestamp !== undefined) {
    actions.killPod = true;
    actions.createSandbox = false;
    for (const c of state.containers) {
      if (c.state === 'running' || c.state === 'created' || c.state === 'unknown') {
        actions.containersToKill.push({ id: c.id, name: c.name, reason: 'PodDeleted', message: 'Stopping container ' + c.name });
      }
    }
    return actions;
  }

  const uid = pod.metadata?.uid ?? '';
  const podRef = { name: pod.metadata?.name ?? '', namespace: pod.metadata?.namespace ?? 'default', uid };
  /** Adds `name` to start, or to back-off when its last exit is too recent. */
  const startOrBackOff = (name: string, index: number, init: boolean): ContainerToStart | undefined => {
    const last = latestContainer(state, name);
    if (last !== undefined && last.state === 'exited' && !sb.changed) {
      const finishedMs = Number(last.finishedAt / 1_000_000n);
      const delay = backoff.inBackOff(backOffKey(uid, name), finishedMs, nowMs);
      if (delay !== undefined) {
        const retryInMs = Math.max(0, finishedMs + delay - nowMs);
        actions.backOff.push({ name, init, delayMs: delay, retryInMs, message: crashLoopMessage(delay, name, podRef) });
        return undefined;
      }
    }
    return { name, index, restartCount: nextRestartCount(state, name) };
  };

  if (sb.changed) {
    if (!shouldRestartOnFailure(pod) && sb.attempt !== 0 && state.containers.length !== 0) {
      actions.createSandbox = false;
      return actions;
    }
    const toStart: number[] = [];
    containers.forEach((c, i) => {
      if (restartPolicy(pod) === 'OnFailure' && succeeded(state, c.name)) return;
      toStart.push(i);
    });
    if (toStart.length === 0) {
      actions.createSandbox = false;
      return actions;
    }
    if (inits.length !== 0) {
      actions.nextInitContainerToStart = { name: inits[0]!.name, index: 0, restartCount: nextRestartCount(state, inits[0]!.name) };
      return actions;
    }
    for (const i of toStart) actions.containersToStart.push({ name: containers[i]!.name, index: i, restartCount: nextRestartCount(state, containers[i]!.name) });
    return actions;
  }

  const init = findNextInitContainerToRun(pod, state);
  if (!init.done) {
    if (init.next !== undefined) {
      if (init.failed !== undefined && !shouldRestartOnFailure(pod)) {
        actions.killPod = true;
      } else {
        if (init.failed?.state === 'unknown') {
          actions.containersToKill.push({
            id: init.failed.id,
            name: init.failed.name,
            reason: 'UnknownState',
            message: `Init container is in "unknown" state, try killing it before restart`,
          });
        }
        actions.nextInitContainerToStart = startOrBackOff(inits[init.next]!.name, init.next, true);
      }
    }
    return actions;
  }

  let keep = 0;
  containers.forEach((container, index) => {
    const status = latestContainer(state, container.name);
    if (status === undefined || status.state !== 'running') {
      if (shouldContainerBeRestarted(container, pod, state)) {
        const start = startOrBackOff(container.name, index, false);
        if (start !== undefined) actions.containersToStart.push(start);
        if (status?.state === 'unknown') {
          actions.containersToKill.push({ id: status.id, name: container.name, reason: 'UnknownState', message: `Container is in "unknown" state, try killing it before restart` });
        }
      }
      return;
    }
    let restart = shouldRestartOnFailure(pod);
    let reason: KillReason;
    let message: string;
    if (status.hash !== '' && status.hash !== containerHash(container)) {
      reason = 'SpecChanged';
      message = `Container ${container.name} definition changed`;
      restart = true;
    } else if (inputs.livenessFailed?.has(status.id) === true) {
      reason = 'LivenessFailed';
      message = `Container ${container.name} failed liveness probe`;
    } else if (inputs.startupFailed?.has(status.id) === true) {
      reason = 'StartupFailed';
      message = `Container ${container.name} failed startup probe`;
    } else {
      keep++;
      return;
    }
    if (restart) {
      message += ', will be restarted';
      // Killed for a restart: it starts again at once, without back-off.
      actions.containersToStart.push({ name: container.name, index, restartCount: status.restartCount + 1 });
    }
    actions.containersToKill.push({ id: status.id, name: container.name, reason, message });
  });

  if (keep === 0 && actions.containersToStart.length === 0 && actions.backOff.length === 0) actions.killPod = true;
  return actions;
}

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
 * - Pods with sidecars (init containers with restartPolicy Always, KEP-753)
 *   follow upstream's computeInitContainerActions: a sidecar counts as done
 *   for the ordering once it is started (startup probe succeeded, or running
 *   without one) and the next init container starts; it is restarted (with
 *   back-off) whenever it exits, regardless of the pod's restartPolicy, and
 *   killed and restarted on a liveness/startup failure or a changed spec. Once
 *   the regular containers are done for good the pod is killed: sidecars do
 *   not keep it alive.
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
  /** Init containers to start, in spec order: the next one, and sidecars to restart. */
  initContainersToStart: ContainerToStart[];
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
  /**
   * Startup-probe results of running containers by id (true: succeeded). A
   * sidecar with a startup probe counts as started only with `true` here.
   */
  started?: ReadonlyMap<string, boolean>;
}

export function isHostNetwork(pod: V1Pod): boolean {
  return pod.spec?.hostNetwork === true;
}

export function restartPolicy(pod: V1Pod): 'Always' | 'OnFailure' | 'Never' {
  const p = pod.spec?.restartPolicy;
  return p === 'OnFailure' || p === 'Never' ? p : 'Always';
}

/** A sidecar: an init container with restartPolicy Always (upstream IsRestartableInitContainer). */
export function isRestartableInitContainer(container: V1Container): boolean {
  return container.restartPolicy === 'Always';
}

export function hasRestartableInitContainer(pod: V1Pod): boolean {
  return (pod.spec?.initContainers ?? []).some(isRestartableInitContainer);
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

/** Every regular container exited and will not be restarted: the pod is done (sidecars then stop). */
export function regularContainersDone(pod: V1Pod, state: PodRuntimeState): boolean {
  const containers = pod.spec?.containers ?? [];
  return containers.length > 0 && containers.every((c) => latestContainer(state, c.name)?.state === 'exited' && !shouldContainerBeRestarted(c, pod, state));
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
    initContainersToStart: [],
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
      actions.initContainersToStart.push({ name: inits[0]!.name, index: 0, restartCount: nextRestartCount(state, inits[0]!.name) });
      return actions;
    }
    for (const i of toStart) actions.containersToStart.push({ name: containers[i]!.name, index: i, restartCount: nextRestartCount(state, containers[i]!.name) });
    return actions;
  }

  const sidecars = hasRestartableInitContainer(pod);
  if (sidecars) {
    // The regular containers are done for good (upstream stops syncing a pod
    // whose phase is terminal): kill the pod, sidecars included.
    if (regularContainersDone(pod, state)) {
      actions.killPod = true;
      return actions;
    }
    const initialized = computeInitContainerActions(pod, state, actions, inputs, startOrBackOff);
    if (actions.killPod || !initialized) return actions;
  } else {
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
          const next = startOrBackOff(inits[init.next]!.name, init.next, true);
          if (next !== undefined) actions.initContainersToStart.push(next);
        }
      }
      return actions;
    }
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

  if (keep === 0 && actions.containersToStart.length === 0 && !actions.backOff.some((b) => !b.init)) {
    if (sidecars) {
      // Sidecars do not keep the pod alive: none is (re)started.
      actions.killPod = true;
      actions.initContainersToStart = [];
      actions.backOff = [];
    } else if (actions.backOff.length === 0) {
      actions.killPod = true;
    }
  }
  return actions;
}

type StartOrBackOff = (name: string, index: number, init: boolean) => ContainerToStart | undefined;

/**
 * upstream computeInitContainerActions (pods with sidecars): fills the init
 * containers to start and the sidecars to kill into `actions`; true once the
 * pod is initialized (the last init container is done or started, or a
 * regular container was created).
 *
 * The init containers are walked backwards, as completed ones may be gone from
 * the runtime: the newest that has a status decides what comes next, and the
 * ones before it only matter when they are sidecars to keep running.
 */
function computeInitContainerActions(pod: V1Pod, state: PodRuntimeState, actions: PodActions, inputs: PlanInputs, startOrBackOff: StartOrBackOff): boolean {
  const inits = pod.spec?.initContainers ?? [];
  if (inits.length === 0) return true;
  let initialized = (pod.spec?.containers ?? []).some((c) => {
    const s = latestContainer(state, c.name)?.state;
    // An exited one may be from a sandbox before a reboot: it does not say the current one was initialized.
    return s === 'created' || s === 'running';
  });
  let previouslyInitialized = initialized;
  const restartOnFailure = shouldRestartOnFailure(pod);
  const toStart: ContainerToStart[] = [];
  const start = (i: number): void => {
    const next = startOrBackOff(inits[i]!.name, i, true);
    if (next !== undefined) toStart.push(next);
  };
  const killAndRestart = (i: number, status: ContainerInfo, reason: KillReason, message: string): void => {
    actions.containersToKill.push({ id: status.id, name: status.name, reason, message });
    // Killed for a restart: it starts again at once, without back-off.
    toStart.push({ name: status.name, index: i, restartCount: status.restartCount + 1 });
  };

  for (let i = inits.length - 1; i >= 0; i--) {
    const container = inits[i]!;
    const sidecar = isRestartableInitContainer(container);
    const status = latestContainer(state, container.name);
    if (status === undefined) {
      // Initialized before but gone from the runtime: a sidecar must run again.
      if (previouslyInitialized && sidecar) start(i);
      continue;
    }
    // After initialization only the sidecars are kept running.
    if (previouslyInitialized && !sidecar) continue;

    switch (status.state) {
      case 'created':
        // Created and started go together; one left in 'created' failed to start: start another.
        start(i);
        break;
      case 'running': {
        if (!sidecar) break; // wait for it to finish
        if (container.startupProbe !== undefined && container.startupProbe !== null) {
          if (inputs.startupFailed?.has(status.id) === true) {
            killAndRestart(i, status, 'StartupFailed', `Init container ${container.name} failed startup probe`);
            break;
          }
          if (inputs.started?.get(status.id) !== true) break; // wait for the startup probe
        }
        if (i === inits.length - 1) initialized = true;
        else if (!previouslyInitialized) start(i + 1); // started for the first time: the next one may start
        if (status.hash !== '' && status.hash !== containerHash(container)) {
          killAndRestart(i, status, 'SpecChanged', `Init container ${container.name} definition changed`);
          break;
        }
        if (inputs.livenessFailed?.has(status.id) === true) {
          killAndRestart(i, status, 'LivenessFailed', `Init container ${container.name} failed liveness probe`);
        }
        break;
      }
      case 'exited':
        if (sidecar) {
          start(i);
        } else if (isInitContainerFailed(status)) {
          if (!restartOnFailure) {
            actions.killPod = true;
            actions.initContainersToStart = [];
            return false;
          }
          start(i);
        } else if (i === inits.length - 1) {
          initialized = true;
        } else {
          start(i + 1);
        }
        break;
      default: {
        // Unknown: kill it before starting it again (a regular one counts as failed).
        if (!sidecar && !restartOnFailure) {
          actions.killPod = true;
          actions.initContainersToStart = [];
          return false;
        }
        actions.containersToKill.push({ id: status.id, name: status.name, reason: 'UnknownState', message: `Init container is in "unknown" state, try killing it before restart` });
        start(i);
      }
    }
    previouslyInitialized = true;
  }
  // Nothing started yet: the first one.
  if (!previouslyInitialized) start(0);
  actions.initContainersToStart = toStart.sort((a, b) => a.index - b.index);
  return initialized;
}

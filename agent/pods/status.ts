/**
 * A pod's status from its spec and what the runtime runs: the kubelet's
 * generateAPIPodStatus / convertToAPIContainerStatuses / getPhase as a pure function.
 *
 * - Each container's status comes from its newest runtime instance; the one
 *   before gives lastState. A container that exited and will be restarted shows
 *   `waiting` with the reason the worker recorded (CrashLoopBackOff ...), its
 *   exit as lastState; one never created shows the recorded reason or
 *   ContainerCreating (PodInitializing while the pod has init containers).
 * - Phase as upstream's getPhase; conditions in upstream order; times that did
 *   not change keep their lastTransitionTime from the previous status.
 * - Sidecars (init containers with restartPolicy Always) as upstream: started
 *   and ready from their probes like regular containers; Initialized once
 *   every regular init container succeeded and every sidecar started;
 *   ContainersReady/Ready need the sidecars ready too; for the phase a
 *   running sidecar counts as running (one not started yet as pending
 *   initialization) and a terminated one does not count, so a pod whose
 *   regular containers finished is Succeeded/Failed once its sidecars stopped.
 */
import type { V1Container, V1ContainerState, V1ContainerStatus, V1Pod, V1PodCondition, V1PodStatus } from '@kubernetes/client-node';
import { isHostNetwork, isRestartableInitContainer, regularContainersDone, restartPolicy, shouldContainerBeRestarted } from './plan.js';
import type { ContainerInfo, PodRuntimeState } from './types.js';

export interface WaitingReason {
  reason: string;
  message: string;
}

export interface StatusInputs {
  /** Node addresses, primary first. */
  hostIPs: string[];
  /** Last reason a container could not start (ErrImagePull, CrashLoopBackOff ...), by name. */
  reasons?: ReadonlyMap<string, WaitingReason>;
  /** The status computed last time (start time, IPs, transition times). */
  previous?: V1PodStatus | undefined;
  /** Readiness of running containers by id (no entry: ready when running). */
  readiness?: ReadonlyMap<string, boolean>;
  /** Startup-probe result of running containers by id (no entry: started when running and it has no startup probe). */
  started?: ReadonlyMap<string, boolean>;
  /** Prefix of containerID ('containerd'). */
  runtimeName?: string;
  now: Date;
  /** The pod is done for good (terminated by the agent): no restart counts, the phase is final. */
  terminal?: boolean;
}

function toDate(nanos: bigint): Date | undefined {
  return nanos === 0n ? undefined : new Date(Number(nanos / 1_000_000n));
}

function instances(state: PodRuntimeState, name: string): ContainerInfo[] {
  return state.containers.filter((c) => c.name === name);
}

function terminated(c: ContainerInfo, runtimeName: string): V1ContainerState {
  const t: NonNullable<V1ContainerState['terminated']> = {
    exitCode: c.exitCode,
    reason: c.reason !== '' ? c.reason : c.exitCode === 0 ? 'Completed' : 'Error',
    containerID: `${runtimeName}://${c.id}`,
  };
  if (c.message !== '') t.message = c.message;
  const started = toDate(c.startedAt);
  const finished = toDate(c.finishedAt);
  if (started !== undefined) t.startedAt = started;
  if (finished !== undefined) t.finishedAt = finished;
  return { terminated: t };
}

function stateOf(c: ContainerInfo, runtimeName: string): V1ContainerState {
  switch (c.state) {
    case 'running': {
      const startedAt = toDate(c.startedAt);
      return { running: startedAt === undefined ? {} : { startedAt } };
    }
    case 'exited':
      return terminated(c, runtimeName);
    case 'created':
      return { waiting: { reason: 'ContainerCreating' } };
    default:
      return { waiting: { reason: 'ContainerStatusUnknown', message: 'The container could not be located when the pod was terminated' } };
  }
}

function specImage(container: V1Container): string {
  return container.image ?? '';
}

function containerStatuses(pod: V1Pod, state: PodRuntimeState, specs: V1Container[], init: boolean, inputs: StatusInputs): V1ContainerStatus[] {
  const runtimeName = inputs.runtimeName ?? 'containerd';
  const hasInit = (pod.spec?.initContainers ?? []).length > 0;
  return specs.map((spec) => {
    const [latest, previous] = instances(state, spec.name);
    const status: V1ContainerStatus = {
      name: spec.name,
      image: specImage(spec),
      imageID: '',
      ready: false,
      restartCount: 0,
      started: false,
      state: { waiting: { reason: hasInit ? 'PodInitializing' : 'ContainerCreating' } },
    };
    if (latest !== undefined) {
      status.containerID = `${runtimeName}://${latest.id}`;
      status.imageID = latest.imageRef;
      if (latest.image !== '' && !latest.image.startsWith('sha256:')) status.image = latest.image;
      status.restartCount = latest.restartCount;
      status.state = stateOf(latest, runtimeName);
      if (latest.state === 'running') {
        status.started = inputs.started?.get(latest.id) ?? spec.startupProbe === undefined;
        status.ready = status.started && (inputs.readiness?.get(latest.id) ?? spec.readinessProbe === undefined);
      }
      if (previous !== undefined && previous.state === 'exited') status.lastState = terminated(previous, runtimeName);
    }
    const sidecar = init && isRestartableInitContainer(spec);
    // A container that will be (re)started next shows why it waits.
    const reason = inputs.reasons?.get(spec.name);
    const willRestart = sidecar
      ? pod.metadata?.deletionTimestamp === undefined && !regularContainersDone(pod, state) // restarted whatever the pod's policy, until the pod is done
      : init
        ? latest === undefined || latest.state !== 'exited' || latest.exitCode !== 0
        : shouldContainerBeRestarted(spec, pod, state);
    if (reason !== undefined && willRestart && latest?.state !== 'running' && inputs.terminal !== true) {
      if (status.state?.terminated !== undefined) status.lastState = status.state;
      status.state = { waiting: { reason: reason.reason, message: reason.message } };
    }
    // A regular init container is ready once it succeeded (upstream's prober manager), never while it runs.
    if (init && !sidecar) status.ready = status.state?.terminated?.exitCode === 0;
    return status;
  });
}

/** upstream HasAnyRegularContainerStarted: a regular container runs or ran. */
function anyRegularContainerStarted(pod: V1Pod, statuses: V1ContainerStatus[]): boolean {
  return (pod.spec?.containers ?? []).some((c) => {
    const s = statuses.find((x) => x.name === c.name);
    return s?.state?.running !== undefined || s?.state?.terminated !== undefined;
  });
}

/** upstream getPhase */
export function podPhase(pod: V1Pod, initStatuses: V1ContainerStatus[], statuses: V1ContainerStatus[], terminal = false): string {
  let pendingInit = 0;
  let failedInit = 0;
  const inits = pod.spec?.initContainers ?? [];
  for (const c of inits) {
    if (isRestartableInitContainer(c)) continue;
    const s = initStatuses.find((x) => x.name === c.name);
    if (s === undefined) {
      pendingInit++;
    } else if (s.state?.running !== undefined) {
      pendingInit++;
    } else if (s.state?.terminated !== undefined) {
      if (s.state.terminated.exitCode !== 0) failedInit++;
    } else if (s.state?.waiting !== undefined) {
      if (s.lastState?.terminated !== undefined) {
        if (s.lastState.terminated.exitCode !== 0) failedInit++;
      } else {
        pendingInit++;
      }
    } else {
      pendingInit++;
    }
  }
  let unknown = 0;
  let running = 0;
  let waiting = 0;
  let stopped = 0;
  let succeeded = 0;
  // Sidecars: running counts (pending initialization until started); terminated ones do not count.
  for (const c of inits) {
    if (!isRestartableInitContainer(c)) continue;
    const s = initStatuses.find((x) => x.name === c.name);
    if (s === undefined) {
      unknown++;
    } else if (s.state?.running !== undefined) {
      if (s.started !== true) pendingInit++;
      running++;
    } else if (s.state?.terminated !== undefined) {
      // not counted
    } else if (s.state?.waiting !== undefined) {
      if (s.lastState?.terminated === undefined) {
        pendingInit++;
        waiting++;
      }
    } else {
      pendingInit++;
      unknown++;
    }
  }
  for (const c of pod.spec?.containers ?? []) {
    const s = statuses.find((x) => x.name === c.name);
    if (s === undefined) {
      unknown++;
    } else if (s.state?.running !== undefined) {
      running++;
    } else if (s.state?.terminated !== undefined) {
      stopped++;
      if (s.state.terminated.exitCode === 0) succeeded++;
    } else if (s.state?.waiting !== undefined) {
      if (s.lastState?.terminated !== undefined) stopped++;
      else waiting++;
    } else {
      unknown++;
    }
  }
  const policy = restartPolicy(pod);
  if (failedInit > 0 && policy === 'Never') return 'Failed';
  // Sidecars restarting after the regular containers ran do not put the pod back to Pending.
  if ((pendingInit > 0 && !anyRegularContainerStarted(pod, statuses)) || waiting > 0) return 'Pending';
  if (running > 0 && unknown === 0) return 'Running';
  if (running === 0 && stopped > 0 && unknown === 0) {
    if (terminal) return stopped === succeeded ? 'Succeeded' : 'Failed';
    if (policy === 'Always') return 'Running';
    if (stopped === succeeded) return 'Succeeded';
    if (policy === 'Never') return 'Failed';
    return 'Running';
  }
  return 'Pending';
}

function condition(type: string, ok: boolean, reason?: string, message?: string): V1PodCondition {
  const c: V1PodCondition = { type, status: ok ? 'True' : 'False' };
  if (reason !== undefined) c.reason = reason;
  if (message !== undefined) c.message = message;
  return c;
}

function names(list: string[]): string {
  return `[${list.join(' ')}]`;
}

function readyConditions(pod: V1Pod, initStatuses: V1ContainerStatus[], statuses: V1ContainerStatus[], phase: string): [V1PodCondition, V1PodCondition] {
  if (phase === 'Succeeded') return [condition('ContainersReady', false, 'PodCompleted'), condition('Ready', false, 'PodCompleted')];
  // upstream (GenerateContainersReadyCondition): a Failed pod is not ready, whatever its containers still report.
  if (phase === 'Failed') return [condition('ContainersReady', false, 'PodFailed'), condition('Ready', false, 'PodFailed')];
  const unknown: string[] = [];
  const unready: string[] = [];
  // The sidecars first (upstream GenerateContainersReadyCondition), then the regular containers.
  for (const c of [...(pod.spec?.initContainers ?? []).filter(isRestartableInitContainer), ...(pod.spec?.containers ?? [])]) {
    const s = [...initStatuses, ...statuses].find((x) => x.name === c.name);
    if (s === undefined) unknown.push(c.name);
    else if (!s.ready) unready.push(c.name);
  }
  const parts: string[] = [];
  if (unknown.length > 0) parts.push(`containers with unknown status: ${names(unknown)}`);
  if (unready.length > 0) parts.push(`containers with unready status: ${names(unready)}`);
  if (parts.length > 0) {
    const message = parts.join(', ');
    return [condition('ContainersReady', false, 'ContainersNotReady', message), condition('Ready', false, 'ContainersNotReady', message)];
  }
  // Readiness gates: every gate needs a True condition of that type on the pod.
  const missing = (pod.spec?.readinessGates ?? [])
    .map((g) => g.conditionType)
    .filter((type) => pod.status?.conditions?.find((c) => c.type === type)?.status !== 'True');
  if (missing.length > 0) {
    return [condition('ContainersReady', true), condition('Ready', false, 'ReadinessGatesNotReady', `corresponding condition of pod readiness gate "${missing[0]}" does not exist.`)];
  }
  return [condition('ContainersReady', true), condition('Ready', true)];
}

function initializedCondition(pod: V1Pod, initStatuses: V1ContainerStatus[], statuses: V1ContainerStatus[], phase: string): V1PodCondition {
  const unknown: string[] = [];
  const incomplete: string[] = [];
  for (const c of pod.spec?.initContainers ?? []) {
    const s = initStatuses.find((x) => x.name === c.name);
    if (s === undefined) unknown.push(c.name);
    // upstream isInitContainerInitialized: a sidecar once started, a regular one once it succeeded.
    else if (isRestartableInitContainer(c) ? s.started !== true : s.state?.terminated?.exitCode !== 0) incomplete.push(c.name);
  }
  if (phase === 'Succeeded' && unknown.length === 0) return condition('Initialized', true, 'PodCompleted');
  // A regular container that ran means the pod was initialized before (init containers may be gone or restarting).
  if (statuses.some((s) => s.state?.running !== undefined || s.state?.terminated !== undefined || s.lastState?.terminated !== undefined)) return condition('Initialized', true);
  const parts: string[] = [];
  if (unknown.length > 0) parts.push(`containers with unknown status: ${names(unknown)}`);
  if (incomplete.length > 0) parts.push(`containers with incomplete status: ${names(incomplete)}`);
  if (parts.length === 0) return condition('Initialized', true);
  return condition('Initialized', false, 'ContainersNotInitialized', parts.join(', '));
}

function withTransitionTimes(conditions: V1PodCondition[], previous: V1PodCondition[] | undefined, now: Date): V1PodCondition[] {
  return conditions.map((c) => {
    const old = previous?.find((p) => p.type === c.type);
    const lastTransitionTime = old !== undefined && old.status === c.status && old.lastTransitionTime !== undefined ? old.lastTransitionTime : now;
    return { ...c, lastTransitionTime };
  });
}

function podIPs(pod: V1Pod, state: PodRuntimeState, hostIPs: string[], previous: V1PodStatus | undefined): string[] {
  if (isHostNetwork(pod)) return hostIPs;
  const sb = state.sandboxes[0];
  if (sb !== undefined && sb.ip !== '') return [sb.ip, ...sb.additionalIps];
  return (previous?.podIPs ?? []).map((p) => p.ip);
}

export function computePodStatus(pod: V1Pod, state: PodRuntimeState, inputs: StatusInputs): V1PodStatus {
  const previous = inputs.previous ?? pod.status;
  const initStatuses = containerStatuses(pod, state, pod.spec?.initContainers ?? [], true, inputs);
  const statuses = containerStatuses(pod, state, pod.spec?.containers ?? [], false, inputs);
  const phase = podPhase(pod, initStatuses, statuses, inputs.terminal === true);
  const sandbox = state.sandboxes[0];
  const sandboxReady = sandbox !== undefined && sandbox.state === 'ready' && (isHostNetwork(pod) || sandbox.ip !== '');
  const [containersReady, ready] = readyConditions(pod, initStatuses, statuses, phase);
  const conditions = withTransitionTimes(
    [condition('PodScheduled', true), condition('PodReadyToStartContainers', sandboxReady), initializedCondition(pod, initStatuses, statuses, phase), containersReady, ready],
    previous?.conditions,
    inputs.now,
  );
  const status: V1PodStatus = {
    phase,
    conditions,
    hostIP: inputs.hostIPs[0] ?? '',
    hostIPs: inputs.hostIPs.map((ip) => ({ ip })),
    startTime: previous?.startTime ?? inputs.now,
    containerStatuses: statuses,
    qosClass: qosClass(pod),
  };
  const ips = podIPs(pod, state, inputs.hostIPs, previous);
  if (ips.length > 0) {
    status.podIP = ips[0]!;
    status.podIPs = ips.map((ip) => ({ ip }));
  }
  if ((pod.spec?.initContainers ?? []).length > 0) status.initContainerStatuses = initStatuses;
  return status;
}

/** Guaranteed, Burstable or BestEffort (upstream GetPodQOS, cpu and memory). */
export function qosClass(pod: V1Pod): 'Guaranteed' | 'Burstable' | 'BestEffort' {
  const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  let any = false;
  let guaranteed = true;
  for (const c of all) {
    const req = c.resources?.requests ?? {};
    const lim = c.resources?.limits ?? {};
    for (const r of ['cpu', 'memory']) {
      const rq = req[r] ?? lim[r];
      const l = lim[r];
      if (rq !== undefined || l !== undefined) any = true;
      if (l === undefined || (rq !== undefined && String(rq) !== String(l))) guaranteed = false;
    }
  }
  if (!any) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

/** Status equality for "write only when changed" (ignores nothing: times are carried over). */
export function sameStatus(a: V1PodStatus | undefined, b: V1PodStatus): boolean {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
}

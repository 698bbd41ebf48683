/**
 * The pod worker: one level-triggered loop per pod that reconciles the pod's spec
 * against the runtime through the `Runtime` port.
 *
 * Design notes:
 * - Each sync reads the pod's sandboxes/containers by the io.kubernetes.pod.uid
 *   label (runtime-state.ts), so a restarted agent adopts what runs: a running
 *   container whose spec hash matches is kept as is.
 * - Decisions are pure (plan.ts, status.ts, config.ts, env.ts); this file only
 *   carries them out: volumes, sandbox, image pulls, create/start/stop, events,
 *   and a status pushed to the sink when it changed.
 * - Errors of one pod never leave its worker: they become events and waiting
 *   reasons (the reason cache), and the next sync tries again.
 * - A sync runs every `resyncMs` (the PLEG relist period) and at once on an
 *   update; syncs of one pod never overlap.
 * - Pods with sidecars stop in upstream's order (termination-order.ts): the
 *   regular containers first, then the sidecars in reverse spec order, all
 *   within one grace period; this applies to deletion and to a pod whose
 *   regular containers are done.
 * - Probes (probes/manager.ts) run beside the loop: each sync hands them the
 *   status it computed, and reads back readiness/started for the status and
 *   liveness/startup failures for the plan; a changed result syncs at once.
 */
import type { V1Container, V1LifecycleHandler, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, isKnodeError } from '../../lib/errors.js';
import { createLogger, type Logger } from '../../lib/log.js';
import type { DnsConfig, PodSandboxConfig, Runtime } from '../runtime/types.js';
import { BackOff, backOffKey } from './backoff.js';
import { containerConfig, podSandboxConfig, type SandboxOptions } from './config.js';
import { configError, makeEnvironment } from './env.js';
import { ensureImage, pullSecretCredentials, StartError } from './images-pull.js';
import { podUidLabel } from './labels.js';
import { computePodActions, hasRestartableInitContainer, isRestartableInitContainer, type ContainerToStart, type PodActions } from './plan.js';
import { RuntimeStateCache } from './runtime-state.js';
import { computePodStatus, sameStatus, type WaitingReason } from './status.js';
import { TerminationOrdering } from './termination-order.js';
import type { CredentialsLookup, EventRecorder, EventType, ObjectLookup, PodRuntimeState, PodStatusSink } from './types.js';
import { podDescription, podKey, podReference } from './types.js';
import { renderEtcHosts, wantsManagedEtcHosts } from './etc-hosts.js';
import { kubeletVersion } from '../node/render.js';
import { directDialer, type Dialer } from './probes/dial.js';
import { runHttpProbe } from './probes/http.js';
import { PodProbes } from './probes/manager.js';
import { probeKillGracePeriod, probeUserAgent } from './probes/spec.js';
import { terminationLogMount } from './termination-message.js';
import { containerMounts, podDir, setUpVolumes, tearDownVolumes, type Mounter } from './volumes.js';
import type { TokenSource } from './tokens.js';

/** The part of the runtime port the workers use. */
export type WorkerRuntime = Pick<
  Runtime,
  | 'listPodSandbox'
  | 'podSandboxStatus'
  | 'runPodSandbox'
  | 'stopPodSandbox'
  | 'removePodSandbox'
  | 'listContainers'
  | 'containerStatus'
  | 'createContainer'
  | 'startContainer'
  | 'stopContainer'
  | 'removeContainer'
  | 'execSync'
  | 'imageStatus'
  | 'pullImage'
>;

export interface PodWorkerOptions {
  runtime: WorkerRuntime;
  /** --root-dir (pods' volumes under <rootDir>/pods/<uid>). */
  rootDir: string;
  /** Root of the pods' log dirs (default /var/log/pods). */
  podLogsRoot?: string;
  clusterDNS?: string[];
  clusterDomain?: string;
  hostDNS?: DnsConfig;
  cgroupParent?: string;
  /** Node addresses, primary first. */
  hostIPs: string[];
  nodeAllocatable: { cpu: string; memory: string };
  /** Bytes, for oom_score_adj. */
  memoryCapacity: number;
  lookup: ObjectLookup;
  /** Service-account tokens for projected volumes (agent/pods/tokens.ts). */
  tokens?: TokenSource;
  /** Lower bound of a projected token's expirationSeconds (default 600, as upstream's validation; lower only in tests). */
  minTokenExpirationSeconds?: number;
  credentials?: CredentialsLookup;
  recorder: EventRecorder;
  statusSink: PodStatusSink;
  /** Restart back-off (shared by the workers); default 10 s → 300 s. */
  backoff?: BackOff;
  /** Image pull back-off; default 10 s → 300 s. */
  imageBackoff?: BackOff;
  /** Sync period, ms (default 1000: the PLEG relist period). */
  resyncMs?: number;
  /** containerID prefix (default 'containerd'). */
  runtimeName?: string;
  mounter?: Mounter;
  /** How httpGet/tcpSocket/grpc probes connect (default: net.connect from the agent's namespace). */
  probeDialer?: Dialer;
  logger?: Logger;
  now?: () => number;
}

/** Options with their defaults applied (shared by the workers of one agent). */
export interface ResolvedWorkerOptions extends PodWorkerOptions {
  backoff: BackOff;
  imageBackoff: BackOff;
  resyncMs: number;
  logger: Logger;
  now: () => number;
  sandbox: SandboxOptions;
}

export function resolveWorkerOptions(o: PodWorkerOptions): ResolvedWorkerOptions {
  return {
    ...o,
    credentials: o.credentials ?? pullSecretCredentials(o.lookup),
    backoff: o.backoff ?? new BackOff(),
    imageBackoff: o.imageBackoff ?? new BackOff(),
    resyncMs: o.resyncMs ?? 1000,
    logger: o.logger ?? createLogger({ component: 'pod-workers' }),
    now: o.now ?? Date.now,
    sandbox: {
      podLogsRoot: o.podLogsRoot ?? '/var/log/pods',
      clusterDNS: o.clusterDNS ?? [],
      clusterDomain: o.clusterDomain ?? 'cluster.local',
      ...(o.hostDNS !== undefined ? { hostDNS: o.hostDNS } : {}),
      ...(o.cgroupParent !== undefined ? { cgroupParent: o.cgroupParent } : {}),
    },
  };
}

function fieldPath(pod: V1Pod, name: string): string {
  const init = (pod.spec?.initContainers ?? []).some((c) => c.name === name);
  return init ? `spec.initContainers{${name}}` : `spec.containers{${name}}`;
}

/** How long a postStart hook may run (upstream has no bound; this keeps a stuck hook from holding the pod's worker forever). */
const POST_START_TIMEOUT_SECONDS = 120;

/** One pod's worker. */
export class PodWorker {
  private pod: V1Pod;
  private readonly o: ResolvedWorkerOptions;
  private readonly log: Logger;
  private readonly cache = new RuntimeStateCache();
  /** Why a container waits (ErrImagePull, CrashLoopBackOff ...), by name. */
  private readonly reasons = new Map<string, WaitingReason>();
  private lastStatus: V1PodStatus | undefined;
  private lastBackOffEvent = new Map<string, string>();
  private readonly recentWarnings = new Map<string, number>();
  private loop: Promise<void> | undefined;
  private stopped = false;
  /** Set by update() during a sync: sync again at once. */
  private kicked = false;
  private wake: (() => void) | undefined;
  private syncing: Promise<void> = Promise.resolve();
  private terminated = false;
  /** Sleep less than resyncMs when a back-off ends sooner. */
  private wakeInMs: number | undefined;
  private readonly probes: PodProbes;

  constructor(pod: V1Pod, options: PodWorkerOptions | ResolvedWorkerOptions) {
    this.pod = pod;
    this.o = 'sandbox' in options ? options : resolveWorkerOptions(options);
    this.log = this.o.logger.child({ pod: podKey(pod), uid: pod.metadata?.uid });
    this.probes = new PodProbes(pod, {
      runtime: this.o.runtime,
      dial: this.o.probeDialer ?? directDialer,
      userAgent: probeUserAgent(kubeletVersion),
      // Probe events go out on every failed run, as upstream; the recorder aggregates them.
      event: (type, reason, message, container) => this.event(type, reason, message, container, false),
      onChange: () => {
        this.kicked = true;
        this.wake?.();
      },
      now: this.o.now,
      logger: this.log.child({ component: 'prober' }),
    });
  }

  get uid(): string {
    return this.pod.metadata?.uid ?? '';
  }

  /** The status last computed. */
  get status(): V1PodStatus | undefined {
    return this.lastStatus;
  }

  /** New spec (or the same): sync soon. */
  update(pod: V1Pod): void {
    this.pod = pod;
    this.kicked = true;
    this.wake?.();
  }

  /** Starts the loop (sync now, then every resyncMs or on update). */
  start(): void {
    if (this.loop !== undefined) return;
    this.loop = (async () => {
      while (!this.stopped) {
        this.kicked = false;
        await this.sync();
        if (this.stopped || this.kicked) continue;
        await new Promise<void>((res) => {
          const timer = setTimeout(res, Math.min(this.o.resyncMs, this.wakeInMs ?? Infinity));
          this.wake = () => {
            clearTimeout(timer);
            res();
          };
        });
        this.wake = undefined;
      }
    })();
  }

  /** Stops the loop; what runs keeps running (agent shutdown). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.probes.stop();
    await this.loop;
    await this.syncing;
  }

  /** One reconcile pass; never throws. */
  sync(): Promise<void> {
    const run = this.syncing.then(() => (this.terminated ? undefined : this.syncOnce().catch((err: unknown) => this.log.error('pod sync failed', { err }))));
    this.syncing = run;
    return run;
  }

  private event(type: EventType, reason: string, message: string, container?: string, holdRepeats = true): void {
    // Warnings of failures retried on every sync (FailedMount, config errors) go out once a minute.
    if (type === 'Warning' && holdRepeats) {
      const key = `${reason}\0${container ?? ''}\0${message}`;
      const now = this.o.now();
      const last = this.recentWarnings.get(key);
      if (last !== undefined && now - last < warningRepeatMs) return;
      if (this.recentWarnings.size > 100) this.recentWarnings.clear();
      this.recentWarnings.set(key, now);
    }
    try {
      this.o.recorder.event(podReference(this.pod, container === undefined ? undefined : fieldPath(this.pod, container)), type, reason, message);
    } catch (err) {
      this.log.warn('event recorder failed', { err, reason });
    }
  }

  private async readState(): Promise<PodRuntimeState> {
    return this.cache.read(this.o.runtime, this.uid);
  }

  private async syncOnce(): Promise<void> {
    const pod = this.pod;
    let state = await this.readState();
    let volumePaths: Map<string, string> | undefined;
    try {
      volumePaths = await setUpVolumes(pod, {
        rootDir: this.o.rootDir,
        lookup: this.o.lookup,
        hostIPs: this.o.hostIPs,
        podIPs: this.podIPs(state),
        nodeAllocatable: this.o.nodeAllocatable,
        ...(this.o.mounter !== undefined ? { mounter: this.o.mounter } : {}),
        ...(this.o.tokens !== undefined ? { tokens: this.o.tokens } : {}),
        ...(this.o.minTokenExpirationSeconds !== undefined ? { minTokenExpirationSeconds: this.o.minTokenExpirationSeconds } : {}),
      });
    } catch (err) {
      this.event('Warning', 'FailedMount', errorMessage(err));
      this.log.warn('volumes not ready', { err });
    }

    const actions = computePodActions(pod, state, this.o.now(), this.o.backoff, this.probes.planInputs());
    this.wakeInMs = actions.backOff.length === 0 ? undefined : Math.min(...actions.backOff.map((b) => b.retryInMs)) + 20;
    for (const b of actions.backOff) {
      this.reasons.set(b.name, { reason: 'CrashLoopBackOff', message: b.message });
      if (this.lastBackOffEvent.get(b.name) !== b.message) {
        this.lastBackOffEvent.set(b.name, b.message);
        this.event('Warning', 'BackOff', `Back-off restarting failed container ${b.name} in pod ${podDescription(pod)}`, b.name);
      }
    }
    const live = state.containers.some((c) => c.state !== 'exited') || state.sandboxes.some((sb) => sb.state === 'ready');
    const idle = !(actions.killPod && live) && !actions.createSandbox && actions.initContainersToStart.length === 0 && actions.containersToStart.length === 0 && actions.containersToKill.length === 0;
    if (!idle) {
      if (volumePaths !== undefined) await this.apply(pod, state, actions, volumePaths);
      else if (actions.killPod) await this.killPod(pod, state, undefined);
      state = await this.readState();
    }
    await this.collectGarbage(state);
    await this.publish(pod, state);
  }

  private podIPs(state: PodRuntimeState): string[] {
    if (this.pod.spec?.hostNetwork === true) return this.o.hostIPs;
    const sb = state.sandboxes[0];
    return sb !== undefined && sb.state === 'ready' && sb.ip !== '' ? [sb.ip, ...sb.additionalIps] : [];
  }

  private async apply(pod: V1Pod, state: PodRuntimeState, actions: PodActions, volumePaths: Map<string, string>): Promise<void> {
    if (actions.killPod) {
      if (actions.createSandbox && state.sandboxes.length > 0) this.event('Normal', 'SandboxChanged', 'Pod sandbox changed, it will be killed and re-created.');
      await this.killPod(pod, state, undefined);
      if (!actions.createSandbox) return;
    }

    let sandboxId = actions.sandboxId;
    let podIPs = this.podIPs(state);
    const sandboxConfig = podSandboxConfig(pod, actions.attempt, this.o.sandbox);
    if (actions.createSandbox) {
      try {
        await mkdirLogs(sandboxConfig);
        sandboxId = await this.o.runtime.runPodSandbox(sandboxConfig);
        const { status } = await this.o.runtime.podSandboxStatus(sandboxId);
        podIPs = pod.spec?.hostNetwork === true ? this.o.hostIPs : [status.network.ip, ...status.network.additionalIps].filter((ip) => ip !== '');
      } catch (err) {
        this.event('Warning', 'FailedCreatePodSandBox', `Failed to create pod sandbox: ${errorMessage(err)}`);
        this.log.warn('sandbox creation failed', { err });
        return;
      }
    }
    if (sandboxId === undefined) return;

    for (const k of actions.containersToKill) {
      const spec = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].find((c) => c.name === k.name);
      this.event('Normal', 'Killing', k.reason === 'PodDeleted' ? `Stopping container ${k.name}` : k.message, k.name);
      const grace = k.reason === 'LivenessFailed' || k.reason === 'StartupFailed' ? probeKillGracePeriod(pod, spec, k.reason) : gracePeriod(pod);
      await this.stopContainer(k.id, spec, grace, podIPs);
    }

    const ctx = { sandboxId, sandboxConfig, podIPs, volumePaths, state };
    for (const init of actions.initContainersToStart) {
      const spec = (pod.spec?.initContainers ?? [])[init.index]!;
      // A regular init container that did not start stops the sequence; a sidecar that did not start is retried on the next sync.
      if (!(await this.startContainer(pod, spec, init, true, ctx)) && !isRestartableInitContainer(spec)) return;
    }
    await Promise.all(
      actions.containersToStart.map((s) => this.startContainer(pod, (pod.spec?.containers ?? [])[s.index]!, s, false, ctx)),
    );
  }

  private async startContainer(
    pod: V1Pod,
    spec: V1Container,
    start: ContainerToStart,
    init: boolean,
    ctx: { sandboxId: string; sandboxConfig: PodSandboxConfig; podIPs: string[]; volumePaths: Map<string, string>; state: PodRuntimeState },
  ): Promise<boolean> {
    const name = spec.name;
    const event = (type: EventType, reason: string, message: string): void => this.event(type, reason, message, name);
    try {
      // Back-off bookkeeping: a restart after an exit counts.
      const last = ctx.state.containers.find((c) => c.name === name);
      if (last !== undefined && last.state === 'exited') this.o.backoff.next(backOffKey(this.uid, name), Number(last.finishedAt / 1_000_000n));

      const imageRef = await ensureImage(pod, spec, {
        images: this.o.runtime,
        credentials: this.o.credentials,
        backoff: this.o.imageBackoff,
        event,
        now: this.o.now,
        previousReason: this.reasons.get(name)?.reason,
      });
      let config;
      try {
        const env = await makeEnvironment(pod, spec, { hostIPs: this.o.hostIPs, podIPs: ctx.podIPs, nodeAllocatable: this.o.nodeAllocatable, lookup: this.o.lookup });
        const mounts = await containerMounts(spec, ctx.volumePaths);
        const terminationLog = await terminationLogMount(this.o.rootDir, this.uid, spec);
        if (terminationLog !== undefined) mounts.push(terminationLog);
        if (wantsManagedEtcHosts(pod, spec, ctx.podIPs)) {
          const file = join(podDir(this.o.rootDir, this.uid), 'etc-hosts');
          await writeFile(file, renderEtcHosts(pod, ctx.podIPs, this.o.sandbox.clusterDomain), { mode: 0o644 });
          mounts.push({ containerPath: '/etc/hosts', hostPath: file, readonly: false });
        }
        config = containerConfig(pod, spec, { restartCount: start.restartCount, imageRef, env, mounts, memoryCapacity: this.o.memoryCapacity, init });
      } catch (err) {
        const e = isKnodeError(err) ? err : configError(errorMessage(err));
        event('Warning', 'Failed', `Error: ${e.message}`);
        throw new StartError('CreateContainerConfigError', e.message, { cause: err });
      }
      let id: string;
      try {
        id = await this.o.runtime.createContainer(ctx.sandboxId, config, ctx.sandboxConfig);
      } catch (err) {
        event('Warning', 'Failed', `Error: ${errorMessage(err)}`);
        throw new StartError('CreateContainerError', errorMessage(err), { cause: err });
      }
      event('Normal', 'Created', `Created container ${name}`);
      try {
        await this.o.runtime.startContainer(id);
      } catch (err) {
        event('Warning', 'Failed', `Error: ${errorMessage(err)}`);
        throw new StartError('RunContainerError', errorMessage(err), { cause: err });
      }
      event('Normal', 'Started', `Started container ${name}`);
      const postStart = spec.lifecycle?.postStart;
      if (postStart !== undefined) {
        // upstream: the hook runs right after the start; when it fails, the container is killed
        // (preStop and grace as any kill) and restarted per restartPolicy. The event carries no
        // detail (it could leak what the hook printed); the waiting reason does.
        try {
          await this.runHook(id, postStart, POST_START_TIMEOUT_SECONDS, ctx.podIPs, name);
        } catch (err) {
          event('Warning', 'FailedPostStartHook', 'PostStartHook failed');
          event('Normal', 'Killing', 'FailedPostStartHook');
          await this.stopContainer(id, spec, gracePeriod(pod), ctx.podIPs);
          throw new StartError('PostStartHookError', errorMessage(err), { cause: err });
        }
      }
      this.reasons.delete(name);
      this.lastBackOffEvent.delete(name);
      return true;
    } catch (err) {
      if (err instanceof StartError) {
        this.reasons.set(name, { reason: err.reason, message: err.message });
        this.log.info('container not started', { container: name, reason: err.reason, message: err.message });
      } else {
        this.reasons.set(name, { reason: 'CreateContainerError', message: errorMessage(err) });
        this.log.warn('container start failed', { container: name, err });
      }
      return false;
    }
  }

  /**
   * preStop, then (sidecars of a terminating pod) wait for the turn within the
   * grace period, then StopContainer with what is left of it (at least 2 s, as upstream).
   */
  private async stopContainer(id: string, spec: V1Container | undefined, graceSeconds: number, podIPs: string[], waitForTurn?: (graceLeft: number) => Promise<unknown>): Promise<void> {
    const started = this.o.now();
    const preStop = spec?.lifecycle?.preStop;
    if (preStop !== undefined && graceSeconds > 0) {
      await this.runHook(id, preStop, graceSeconds, podIPs, spec!.name).catch((err: unknown) => {
        this.event('Warning', 'FailedPreStopHook', `PreStopHook failed: ${errorMessage(err)}`, spec!.name);
      });
    }
    const graceLeft = graceSeconds - (this.o.now() - started) / 1000;
    if (waitForTurn !== undefined && graceLeft > 0) await waitForTurn(graceLeft);
    const left = Math.max(2, Math.ceil(graceSeconds - (this.o.now() - started) / 1000));
    try {
      await this.o.runtime.stopContainer(id, left, { timeoutMs: (left + 30) * 1000 });
    } catch (err) {
      if (!isKnodeError(err, 'NOT_FOUND')) this.log.warn('stop container failed', { err, id });
    }
  }

  private async runHook(id: string, handler: V1LifecycleHandler, timeoutSeconds: number, podIPs: string[], name: string): Promise<void> {
    if (handler.exec !== undefined) {
      const r = await this.o.runtime.execSync(id, handler.exec.command ?? [], timeoutSeconds, { timeoutMs: (timeoutSeconds + 5) * 1000 });
      if (r.exitCode !== 0) throw new Error(`command '${(handler.exec.command ?? []).join(' ')}' exited with ${r.exitCode}: ${r.stderr.toString()}`);
      return;
    }
    if (handler.httpGet !== undefined) {
      const g = handler.httpGet;
      const host = g.host ?? podIPs[0] ?? '';
      const port = typeof g.port === 'number' ? g.port : this.namedPort(name, String(g.port));
      const scheme = (g.scheme ?? 'HTTP').toLowerCase();
      const url = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}${g.path ?? '/'}`;
      const headers: [string, string][] = (g.httpHeaders ?? []).map((h) => [h.name, h.value]);
      // The probes' HTTP client and dialer: the same reach into the pod network, redirects and timeout.
      const outcome = await runHttpProbe(this.o.probeDialer ?? directDialer, { url: new URL(url), headers }, timeoutSeconds * 1000);
      if (outcome.result === 'failure') throw new Error(`HTTP lifecycle hook (${g.path ?? '/'}) for Container "${name}" in Pod "${podKey(this.pod)}" failed - error: ${outcome.output}`);
      return;
    }
    if (handler.sleep !== undefined) {
      await new Promise((r) => setTimeout(r, Math.min(handler.sleep!.seconds, timeoutSeconds) * 1000));
    }
  }

  private namedPort(container: string, port: string): number {
    const c = [...(this.pod.spec?.containers ?? []), ...(this.pod.spec?.initContainers ?? [])].find((x) => x.name === container);
    const p = c?.ports?.find((x) => x.name === port);
    return p?.containerPort ?? Number(port);
  }

  /**
   * Stops every live container (preStop honoured when a grace period is given;
   * sidecars after the regular containers, in reverse order) and the ready sandboxes.
   */
  private async killPod(pod: V1Pod, state: PodRuntimeState, graceSeconds: number | undefined): Promise<void> {
    const grace = graceSeconds ?? gracePeriod(pod);
    const podIPs = this.podIPs(state);
    const live = state.containers.filter((c) => c.state === 'running' || c.state === 'created' || c.state === 'unknown');
    const running = live.filter((c) => c.state === 'running').map((c) => c.name);
    const ordering = hasRestartableInitContainer(pod) ? new TerminationOrdering(pod, running) : undefined;
    await Promise.all(
      live.map(async (c) => {
        const spec = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].find((x) => x.name === c.name);
        if (c.state === 'running') this.event('Normal', 'Killing', `Stopping container ${c.name}`, c.name);
        const waitForTurn = ordering !== undefined && c.state === 'running' ? (left: number) => ordering.waitForTurn(c.name, left) : undefined;
        try {
          await this.stopContainer(c.id, c.state === 'running' ? spec : undefined, grace, podIPs, waitForTurn);
        } finally {
          ordering?.terminated(c.name);
        }
      }),
    );
    for (const sb of state.sandboxes) {
      if (sb.state !== 'ready') continue;
      try {
        await this.o.runtime.stopPodSandbox(sb.id);
      } catch (err) {
        this.log.warn('stop sandbox failed', { err, sandbox: sb.id });
      }
    }
  }

  /** Keeps the two newest instances of each container and the newest sandbox; removes the rest. */
  private async collectGarbage(state: PodRuntimeState): Promise<void> {
    const seen = new Map<string, number>();
    for (const c of state.containers) {
      const n = (seen.get(c.name) ?? 0) + 1;
      seen.set(c.name, n);
      if (n > 2 && c.state === 'exited') {
        await this.o.runtime.removeContainer(c.id).catch((err: unknown) => this.log.warn('remove container failed', { err, id: c.id }));
      }
    }
    const latest = state.sandboxes[0];
    for (const sb of state.sandboxes.slice(1)) {
      if (sb.state === 'ready' || latest?.state !== 'ready') continue;
      // Containers of an old sandbox still count for restart history until the new sandbox has its own.
      if (!state.containers.some((c) => c.sandboxId === latest.id)) continue;
      await this.o.runtime.removePodSandbox(sb.id).catch((err: unknown) => this.log.warn('remove sandbox failed', { err, id: sb.id }));
    }
  }

  private async publish(pod: V1Pod, state: PodRuntimeState, terminal = false): Promise<void> {
    const status = computePodStatus(pod, state, {
      hostIPs: this.o.hostIPs,
      reasons: this.reasons,
      readiness: this.probes.readiness(),
      started: this.probes.started(),
      previous: this.lastStatus ?? pod.status,
      runtimeName: this.o.runtimeName ?? 'containerd',
      now: new Date(this.o.now()),
      terminal,
    });
    if (!terminal) this.probes.update(pod, status);
    if (sameStatus(this.lastStatus, status)) return;
    this.lastStatus = status;
    try {
      await this.o.statusSink.setStatus(pod, status);
    } catch (err) {
      this.lastStatus = undefined; // try again next sync
      this.log.warn('status sink failed', { err });
    }
  }

  /**
   * Graceful termination: stops the loop, runs preStop hooks and stops the
   * containers within the grace period, stops and removes the sandboxes (the
   * runtime runs CNI DEL), removes the pod's volume dirs, publishes a final
   * status. Never throws: resolves false (and logs) when something is left, so
   * the caller does not finalize the deletion and may call it again.
   */
  async terminate(graceSeconds?: number): Promise<boolean> {
    this.stopped = true;
    this.wake?.();
    await this.probes.stop();
    await this.loop;
    await this.syncing;
    this.terminated = true;
    const pod = this.pod;
    try {
      let state = await this.readState();
      await this.killPod(pod, state, graceSeconds ?? pod.metadata?.deletionGracePeriodSeconds ?? gracePeriod(pod));
      state = await this.readState();
      await this.publish(pod, state, true);
      for (const sb of state.sandboxes) {
        await this.o.runtime.stopPodSandbox(sb.id).catch((err: unknown) => this.log.warn('stop sandbox failed', { err }));
        await this.o.runtime.removePodSandbox(sb.id);
      }
      // Containers whose sandbox is already gone.
      for (const c of await this.o.runtime.listContainers({ labelSelector: { [podUidLabel]: this.uid } })) {
        await this.o.runtime.removeContainer(c.id);
      }
      await tearDownVolumes(pod, { rootDir: this.o.rootDir, ...(this.o.mounter !== undefined ? { mounter: this.o.mounter } : {}) });
      this.o.tokens?.forgetPod(this.uid);
      this.o.backoff.forgetPod(this.uid);
      this.o.imageBackoff.forgetPod(this.uid);
      this.cache.clear();
      return true;
    } catch (err) {
      this.event('Warning', 'FailedKillPod', `error killing pod: ${errorMessage(err)}`);
      this.log.error('pod termination failed', { err });
      return false;
    }
  }
}

/** An identical warning is not repeated within this period. */
const warningRepeatMs = 60_000;

export function gracePeriod(pod: V1Pod): number {
  return pod.spec?.terminationGracePeriodSeconds ?? 30;
}

async function mkdirLogs(config: PodSandboxConfig): Promise<void> {
  if (config.logDirectory === undefined) return;
  await mkdir(config.logDirectory, { recursive: true, mode: 0o755 });
}

/**
 * The Docker backend of the runtime port: dockerd over its unix socket
 * (dockerode), driven the way cri-dockerd drives it.
 *
 * Design notes:
 * - A sandbox is a pause container with network 'none' (or 'host' for host
 *   network pods) and a shareable IPC namespace; the agent itself runs the
 *   CNI plugins (cni.ts) on /proc/<pause pid>/ns/net, and DEL on stop.
 *   App containers join the pause container's network and IPC namespaces
 *   (and PID namespace when the pod shares it) with `container:<id>` modes,
 *   so they share its hostname, /etc/resolv.conf (rewritten from the
 *   sandbox's dnsConfig after start, as cri-dockerd does) and pod IP.
 * - Everything the port reports is read back from docker (names, labels,
 *   inspect; convert.ts) plus the CNI cache for the pod IP, so a new backend
 *   instance adopts what an earlier agent started.
 * - Logs: a copier per container turns docker's json-file log into the CRI
 *   file the agent asked for (logs.ts).
 * - Errors: KnodeError with the CRI status names: 404 → 'NOT_FOUND', socket
 *   not there / refused → 'UNAVAILABLE', a passed deadline →
 *   'DEADLINE_EXCEEDED', the rest 'UNKNOWN' (with the engine's message).
 * - exec/attach/portForward: docker has no streaming server, so there are no
 *   URLs (those calls fail with 'UNIMPLEMENTED'); `directStreams`
 *   (streams.ts) is what the kubelet server uses instead, as cri-dockerd
 *   serves them in-process.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import Docker from 'dockerode';
import { KnodeError, errnoCode, errorMessage, isKnodeError } from '../../../lib/errors.js';
import { createLogger, type Logger } from '../../../lib/log.js';
import type {
  AttachOptions,
  AuthConfig,
  CallOptions,
  Container,
  ContainerConfig,
  ContainerFilter,
  ContainerStats,
  ContainerStatsFilter,
  ContainerStatusResult,
  DirectStreams,
  ExecOptions,
  ExecSyncResult,
  FilesystemUsage,
  Image,
  ImageSpec,
  Labels,
  LinuxContainerResources,
  NamespaceOptions,
  PodSandbox,
  PodSandboxConfig,
  PodSandboxFilter,
  PodSandboxStatusResult,
  Runtime,
  RuntimeOptions,
  RuntimeStatus,
  RuntimeVersion,
  WaitReadyOptions,
} from '../types.js';
import { waitForRuntime } from '../wait-ready.js';
import { CniRunner, primaryIPs } from './cni.js';
import {
  containerCreateOptions,
  containerState,
  containerStatusFromInspect,
  dockerAuth,
  dockerTypeLabel,
  fromDockerLabels,
  imageFromInspect,
  imageFromList,
  labelFilters,
  logPathLabel,
  namespaceOptionsLabel,
  parseName,
  podNameLabel,
  podNamespaceLabel,
  podUidLabel,
  pullReference,
  renderResolvConf,
  resourcesToDocker,
  rfc3339ToNanos,
  sandboxCreateOptions,
  sandboxIdLabel,
  sandboxNamespaces,
} from './convert.js';
import { FrameParser } from './frames.js';
import { DockerStreams } from './streams.js';
import { LogCopier } from './logs.js';

export const defaultPauseImage = 'registry.k8s.io/pause:3.9';
const defaultRequestTimeoutMs = 2 * 60_000;
const defaultPullTimeoutMs = 10 * 60_000;
const defaultStopTimeoutSeconds = 10;

export interface DockerRuntimeOptions extends RuntimeOptions {
  logger?: Logger;
}

function statusCode(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && 'statusCode' in err) {
    const c = (err as { statusCode: unknown }).statusCode;
    return typeof c === 'number' ? c : undefined;
  }
  return undefined;
}

/** An engine or transport failure as a KnodeError with a CRI status name. */
export function dockerError(op: string, err: unknown): KnodeError {
  if (err instanceof KnodeError) return err;
  const code = statusCode(err);
  const errno = errnoCode(err);
  const why = errorMessage(err).replace(/^\(HTTP code \d+\)\s*/, '');
  if (code === 404) return new KnodeError('NOT_FOUND', `docker ${op}: ${why}`, { cause: err });
  if (errno === 'ENOENT' || errno === 'ECONNREFUSED' || errno === 'ECONNRESET' || errno === 'EPIPE') {
    return new KnodeError('UNAVAILABLE', `docker ${op}: ${why}`, { cause: err });
  }
  return new KnodeError('UNKNOWN', `docker ${op}: ${why}`, { cause: err, details: code === undefined ? {} : { status: code } });
}

function socketPath(endpoint: string): string {
  const path = endpoint.startsWith('unix://') ? endpoint.slice('unix://'.length) : endpoint;
  if (!path.startsWith('/')) throw new KnodeError('INVALID_ARGUMENT', `docker endpoint ${JSON.stringify(endpoint)} is not unix:///path`);
  return path;
}

/** Reads our own oom_score_adj: docker cannot set a lower one without CAP_SYS_RESOURCE. */
async function ownOomScoreAdj(): Promise<number> {
  try {
    return Number((await readFile('/proc/self/oom_score_adj', 'utf8')).trim()) || 0;
  } catch {
    return 0;
  }
}

export class DockerRuntime implements Runtime {
  readonly kind = 'docker' as const;
  readonly endpoint: string;
  private readonly docker: Docker;
  private readonly requestTimeoutMs: number;
  private readonly pullTimeoutMs: number;
  private readonly log: Logger;
  private readonly cni: CniRunner;
  private readonly logs: LogCopier;
  private readonly pauseImage: string;
  private readonly cgroupParent: string | undefined;
  private minOomScoreAdj: Promise<number> | undefined;
  readonly directStreams: DirectStreams;

  constructor(options: DockerRuntimeOptions) {
    this.endpoint = options.endpoint;
    this.requestTimeoutMs = options.requestTimeoutMs ?? defaultRequestTimeoutMs;
    this.pullTimeoutMs = options.pullTimeoutMs ?? defaultPullTimeoutMs;
    this.log = options.logger ?? createLogger({ component: 'docker', fields: { endpoint: options.endpoint } });
    this.docker = new Docker({ socketPath: socketPath(options.endpoint) });
    const net = options.network ?? { confDir: '/etc/cni/net.d', binDir: '/opt/cni/bin' };
    this.cni = new CniRunner({ confDir: net.confDir, binDir: net.binDir, cacheDir: join(options.stateDir ?? '/var/lib/knode/docker', 'cni'), ...(net.hostNetns !== undefined ? { hostNetns: net.hostNetns } : {}) });
    this.logs = new LogCopier(this.log);
    this.pauseImage = options.sandboxImage ?? defaultPauseImage;
    this.cgroupParent = options.cgroupParent;
    this.directStreams = new DockerStreams(this.docker, (op, fn, o) => this.call(op, fn, o));
  }

  close(): void {
    this.logs.close();
  }

  /** Runs one engine call with the call's deadline and cancellation; errors become KnodeError. */
  private async call<T>(op: string, fn: () => Promise<T>, options?: CallOptions, timeoutMs?: number): Promise<T> {
    const ms = options?.timeoutMs ?? timeoutMs ?? this.requestTimeoutMs;
    const signal = options?.signal;
    if (signal?.aborted) throw new KnodeError('CANCELLED', `docker ${op}: aborted before the call`);
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new KnodeError('DEADLINE_EXCEEDED', `docker ${op}: no answer within ${ms} ms`)), ms);
      onAbort = () => reject(new KnodeError('CANCELLED', `docker ${op}: aborted`));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([fn(), limit]);
    } catch (err) {
      throw dockerError(op, err);
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    }
  }

  private async inspect(id: string, options?: CallOptions): Promise<Docker.ContainerInspectInfo> {
    return this.call(`inspect ${id}`, () => this.docker.getContainer(id).inspect(), options);
  }

  /** inspect, or undefined when the container is gone. */
  private async inspectIfExists(id: string, options?: CallOptions): Promise<Docker.ContainerInspectInfo | undefined> {
    try {
      return await this.inspect(id, options);
    } catch (err) {
      if (isKnodeError(err, 'NOT_FOUND')) return undefined;
      throw err;
    }
  }

  waitReady(options: WaitReadyOptions = {}): Promise<RuntimeVersion> {
    return waitForRuntime(this, this.log, options);
  }

  // ---- RuntimeService ------------------------------------------------------

  async version(options?: CallOptions): Promise<RuntimeVersion> {
    const v = await this.call('version', () => this.docker.version(), options);
    return { version: '0.1.0', runtimeName: 'docker', runtimeVersion: v.Version, runtimeApiVersion: v.ApiVersion };
  }

  async status(options?: CallOptions & { verbose?: boolean }): Promise<RuntimeStatus> {
    let runtimeReady = { status: true, reason: '', message: '' };
    try {
      await this.call('ping', () => this.docker.ping(), options);
    } catch (err) {
      runtimeReady = { status: false, reason: 'DockerDaemonNotReady', message: errorMessage(err) };
    }
    const net = await this.cni.ready();
    return {
      conditions: [
        { type: 'RuntimeReady', ...runtimeReady },
        { type: 'NetworkReady', status: net.ok, reason: net.ok ? '' : 'NetworkPluginNotReady', message: net.ok ? '' : `cni config uninitialized: ${net.message}` },
      ],
      info: {},
    };
  }

  private async ensurePauseImage(options?: CallOptions): Promise<void> {
    if ((await this.imageStatus({ image: this.pauseImage }, options)) !== undefined) return;
    await this.pullImage({ image: this.pauseImage }, options);
  }

  async runPodSandbox(config: PodSandboxConfig, options?: CallOptions & { runtimeHandler?: string }): Promise<string> {
    await this.ensurePauseImage(options);
    const create = sandboxCreateOptions({ config, pauseImage: this.pauseImage, defaultCgroupParent: this.cgroupParent });
    const container = await this.createNamed(create, options);
    const id = container.id;
    try {
      await this.call('start sandbox', () => container.start(), options);
      const info = await this.inspect(id, options);
      const resolv = renderResolvConf(config.dnsConfig);
      if (resolv !== undefined && info.ResolvConfPath) await writeFile(info.ResolvConfPath, resolv);
      if (sandboxNamespaces(config).network !== 'node') {
        await this.cni.add(id, {
          containerId: id,
          netns: `/proc/${info.State.Pid}/ns/net`,
          ifName: 'eth0',
          podName: config.metadata.name,
          podNamespace: config.metadata.namespace,
          podUid: config.metadata.uid,
          portMappings: config.portMappings ?? [],
        });
      }
      return id;
    } catch (err) {
      this.log.warn('sandbox set-up failed; removing it', { id, err });
      await this.removePodSandbox(id).catch((e: unknown) => this.log.warn('removing the failed sandbox failed', { id, err: e }));
      throw err;
    }
  }

  /** Creates a container by name; a leftover of the same name (an earlier failed try) is removed first. */
  private async createNamed(create: Docker.ContainerCreateOptions, options?: CallOptions): Promise<Docker.Container> {
    try {
      return await this.call(`create ${create.name ?? ''}`, () => this.docker.createContainer(create), options);
    } catch (err) {
      if (!(isKnodeError(err) && statusCode(err.cause) === 409) || create.name === undefined) throw err;
      this.log.info('removing a leftover container of the same name', { name: create.name });
      await this.call('remove leftover', () => this.docker.getContainer(create.name!).remove({ force: true, v: true }), options);
      return this.call(`create ${create.name}`, () => this.docker.createContainer(create), options);
    }
  }

  private async containersOf(sandboxId: string, options?: CallOptions): Promise<Docker.ContainerInfo[]> {
    return this.call('list', () => this.docker.listContainers({ all: true, filters: { label: labelFilters('container', undefined, { [sandboxIdLabel]: sandboxId }) } }), options);
  }

  async stopPodSandbox(podSandboxId: string, options?: CallOptions): Promise<void> {
    const info = await this.inspectIfExists(podSandboxId, options);
    for (const c of await this.containersOf(info?.Id ?? podSandboxId, options)) {
      if (c.State === 'running') await this.stopContainer(c.Id, defaultStopTimeoutSeconds, options);
    }
    const netns = info?.State.Running && info.State.Pid > 0 ? `/proc/${info.State.Pid}/ns/net` : '';
    if (info !== undefined && (await this.cni.del(info.Id, netns))) this.log.debug('pod network released', { sandbox: info.Id });
    if (info?.State.Running) await this.stopContainer(info.Id, defaultStopTimeoutSeconds, options);
  }

  async removePodSandbox(podSandboxId: string, options?: CallOptions): Promise<void> {
    const info = await this.inspectIfExists(podSandboxId, options);
    if (info === undefined) return;
    await this.stopPodSandbox(info.Id, options);
    for (const c of await this.containersOf(info.Id, options)) await this.removeContainer(c.Id, options);
    await this.removeContainer(info.Id, options);
  }

  async podSandboxStatus(podSandboxId: string, options?: CallOptions & { verbose?: boolean }): Promise<PodSandboxStatusResult> {
    const info = await this.inspect(podSandboxId, options);
    if (info.Config.Labels?.[dockerTypeLabel] !== 'podsandbox') throw new KnodeError('NOT_FOUND', `docker: ${podSandboxId} is not a pod sandbox`);
    const cached = await this.cni.cached(info.Id);
    const ips = cached === undefined ? { ip: '', additional: [] } : primaryIPs(cached.result);
    const base = this.sandboxFrom(info.Id, info.Name, info.Config.Labels, info.State.Running ? 'running' : 'exited', rfc3339ToNanos(info.Created));
    return {
      status: { ...base, network: { ip: ips.ip, additionalIps: ips.additional }, namespaceOptions: namespaceOptionsOf(info.Config.Labels) },
      info: options?.verbose ? { info: JSON.stringify({ pid: info.State.Pid, cni: cached?.config.name ?? '' }) } : {},
    };
  }

  private sandboxFrom(id: string, name: string, dockerLabels: Labels | null | undefined, state: string, createdAt: bigint): PodSandbox {
    const parsed = parseName(name);
    const { labels, annotations } = fromDockerLabels(dockerLabels);
    return {
      id,
      metadata: {
        name: parsed?.pod ?? dockerLabels?.[podNameLabel] ?? '',
        namespace: parsed?.namespace ?? dockerLabels?.[podNamespaceLabel] ?? '',
        uid: parsed?.uid ?? dockerLabels?.[podUidLabel] ?? '',
        attempt: parsed?.attempt ?? 0,
      },
      state: state === 'running' ? 'ready' : 'notready',
      createdAt,
      labels,
      annotations,
      runtimeHandler: '',
    };
  }

  async listPodSandbox(filter?: PodSandboxFilter, options?: CallOptions): Promise<PodSandbox[]> {
    const filters: Record<string, string[]> = { label: labelFilters('podsandbox', filter?.labelSelector) };
    if (filter?.id) filters.id = [filter.id];
    const list = await this.call('list sandboxes', () => this.docker.listContainers({ all: true, filters }), options);
    return list
      .map((c) => this.sandboxFrom(c.Id, c.Names[0] ?? '', c.Labels, c.State, BigInt(c.Created) * 1_000_000_000n))
      .filter((s) => filter?.state === undefined || s.state === filter.state);
  }

  async createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig, options?: CallOptions): Promise<string> {
    const sandbox = await this.inspect(podSandboxId, options);
    const logPath = config.logPath && sandboxConfig.logDirectory ? join(sandboxConfig.logDirectory, config.logPath) : '';
    this.minOomScoreAdj ??= ownOomScoreAdj();
    const create = containerCreateOptions({
      sandboxId: sandbox.Id,
      sandbox: sandboxConfig,
      config,
      image: config.image.image,
      logPath,
      defaultCgroupParent: this.cgroupParent,
      minOomScoreAdj: await this.minOomScoreAdj,
    });
    const c = await this.createNamed(create, options);
    return c.id;
  }

  private ensureLogCopy(info: Docker.ContainerInspectInfo): void {
    const path = info.Config.Labels?.[logPathLabel] ?? '';
    if (path === '' || containerState(info.State.Status) === 'created') return;
    const container = this.docker.getContainer(info.Id);
    this.logs.ensure(info.Id, path, info.Config.Tty, async (since) => {
      const stream: unknown = await container.logs({ follow: true, stdout: true, stderr: true, timestamps: true, since });
      return stream as Readable;
    });
  }

  async startContainer(containerId: string, options?: CallOptions): Promise<void> {
    await this.call(`start ${containerId}`, () => this.docker.getContainer(containerId).start(), options);
    this.ensureLogCopy(await this.inspect(containerId, options));
  }

  async stopContainer(containerId: string, timeoutSeconds: number, options?: CallOptions): Promise<void> {
    try {
      await this.call(`stop ${containerId}`, () => this.docker.getContainer(containerId).stop({ t: Math.max(0, Math.floor(timeoutSeconds)) }), options, timeoutSeconds * 1000 + this.requestTimeoutMs);
    } catch (err) {
      // 304: not running (idempotent); 404: gone.
      if (isKnodeError(err) && statusCode(err.cause) === 304) return;
      if (isKnodeError(err, 'NOT_FOUND')) return;
      throw err;
    }
  }

  async removeContainer(containerId: string, options?: CallOptions): Promise<void> {
    this.logs.forget(containerId);
    try {
      await this.call(`remove ${containerId}`, () => this.docker.getContainer(containerId).remove({ force: true, v: true }), options);
    } catch (err) {
      if (!isKnodeError(err, 'NOT_FOUND')) throw err;
    }
  }

  async listContainers(filter?: ContainerFilter, options?: CallOptions): Promise<Container[]> {
    const extra: Labels = filter?.podSandboxId ? { [sandboxIdLabel]: filter.podSandboxId } : {};
    const filters: Record<string, string[]> = { label: labelFilters('container', filter?.labelSelector, extra) };
    if (filter?.id) filters.id = [filter.id];
    const list = await this.call('list containers', () => this.docker.listContainers({ all: true, filters }), options);
    return list
      .map((c): Container => {
        const parsed = parseName(c.Names[0] ?? '');
        const { labels, annotations } = fromDockerLabels(c.Labels);
        return {
          id: c.Id,
          podSandboxId: c.Labels[sandboxIdLabel] ?? '',
          metadata: { name: parsed?.name ?? '', attempt: parsed?.attempt ?? 0 },
          image: { image: c.Image },
          imageRef: c.ImageID,
          imageId: c.ImageID,
          state: containerState(c.State),
          createdAt: BigInt(c.Created) * 1_000_000_000n,
          labels,
          annotations,
        };
      })
      .filter((c) => filter?.state === undefined || c.state === filter.state);
  }

  async containerStatus(containerId: string, options?: CallOptions & { verbose?: boolean }): Promise<ContainerStatusResult> {
    const info = await this.inspect(containerId, options);
    if (info.Config.Labels?.[dockerTypeLabel] !== 'container') throw new KnodeError('NOT_FOUND', `docker: ${containerId} is not a pod container`);
    this.ensureLogCopy(info);
    const state = containerState(info.State.Status);
    // An exited container's log is complete once its copier has drained docker's log.
    if (state === 'exited') await this.logs.whenCopied(info.Id, 2000);
    const image = await this.call('inspect image', () => this.docker.getImage(info.Image).inspect(), options).catch(() => undefined);
    return { status: containerStatusFromInspect(info, image), info: options?.verbose ? { pid: String(info.State.Pid) } : {} };
  }

  async updateContainerResources(containerId: string, resources: LinuxContainerResources, options?: CallOptions & { annotations?: Labels }): Promise<void> {
    this.minOomScoreAdj ??= ownOomScoreAdj();
    const update = resourcesToDocker(resources, await this.minOomScoreAdj);
    delete update.OomScoreAdj; // not updatable in docker
    await this.call(`update ${containerId}`, () => this.docker.getContainer(containerId).update(update), options);
  }

  async reopenContainerLog(containerId: string): Promise<void> {
    if (!this.logs.reopen(containerId)) throw new KnodeError('FAILED_PRECONDITION', `docker: container ${containerId} has no running log copier`);
  }

  async execSync(containerId: string, cmd: string[], timeoutSeconds: number, options?: CallOptions): Promise<ExecSyncResult> {
    if (cmd.length === 0) throw new KnodeError('INVALID_ARGUMENT', 'execSync: empty command');
    const container = this.docker.getContainer(containerId);
    const exec = await this.call(`exec create ${containerId}`, () => container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, AttachStdin: false, Tty: false }), options);
    const stream = await this.call(`exec start ${containerId}`, () => exec.start({ hijack: true, stdin: false }), options);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const parser = new FrameParser();
    const drained = new Promise<void>((resolve, reject) => {
      stream.on('data', (chunk: Buffer) => {
        for (const f of parser.push(chunk)) (f.stream === 'stderr' ? err : out).push(f.payload);
      });
      stream.on('end', resolve);
      stream.on('close', resolve);
      stream.on('error', reject);
    });
    const limitMs = timeoutSeconds > 0 ? timeoutSeconds * 1000 : (options?.timeoutMs ?? this.requestTimeoutMs);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), limitMs)));
    const outcome = await Promise.race([drained.then(() => 'done' as const), timedOut])
      .catch((e: unknown) => {
        throw new KnodeError('UNKNOWN', `execSync in ${containerId}: the exec stream failed: ${errorMessage(e)}`, { cause: e });
      })
      .finally(() => clearTimeout(timer));
    if (outcome === 'timeout') {
      drained.catch(() => undefined); // the destroyed stream may still report an error
      stream.destroy();
      throw new KnodeError('DEADLINE_EXCEEDED', `execSync ${JSON.stringify(cmd)} in ${containerId}: command timed out after ${limitMs} ms`);
    }
    // The exit code is set a moment after the stream ends.
    for (let i = 0; i < 50; i++) {
      const r = await this.call(`exec inspect ${containerId}`, () => exec.inspect(), options);
      if (!r.Running && r.ExitCode !== null) return { stdout: Buffer.concat(out), stderr: Buffer.concat(err), exitCode: r.ExitCode };
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new KnodeError('UNKNOWN', `execSync in ${containerId}: docker reports no exit code`);
  }

  exec(containerId: string, _exec: ExecOptions): Promise<string> {
    return Promise.reject(new KnodeError('UNIMPLEMENTED', `docker backend: no streaming URL for exec into ${containerId} (the kubelet server streams it itself: directStreams)`));
  }

  attach(containerId: string, _attach: AttachOptions): Promise<string> {
    return Promise.reject(new KnodeError('UNIMPLEMENTED', `docker backend: no streaming URL for attach to ${containerId} (the kubelet server streams it itself: directStreams)`));
  }

  portForward(podSandboxId: string, _ports: number[]): Promise<string> {
    return Promise.reject(new KnodeError('UNIMPLEMENTED', `docker backend: no streaming URL for port-forward to ${podSandboxId} (the kubelet server streams it itself: directStreams)`));
  }

  async containerStats(containerId: string, options?: CallOptions): Promise<ContainerStats> {
    // size=1: SizeRw, the writable layer's size (the CRI's writableLayer; docker has no inode count for it).
    const info: Docker.ContainerInspectInfo & { SizeRw?: number } = await this.call(`inspect ${containerId}`, () => this.docker.getContainer(containerId).inspect({ size: true } as Docker.ContainerInspectOptions & { size: boolean }), options);
    const s = await this.call(`stats ${containerId}`, () => this.docker.getContainer(containerId).stats({ stream: false }), options);
    const now = BigInt(Date.now()) * 1_000_000n;
    const { labels, annotations } = fromDockerLabels(info.Config.Labels);
    const parsed = parseName(info.Name);
    const usage = s.memory_stats.usage;
    const inactive = (s.memory_stats.stats as { inactive_file?: number; total_inactive_file?: number } | undefined)?.inactive_file ?? 0;
    return {
      id: info.Id,
      metadata: { name: parsed?.name ?? '', attempt: parsed?.attempt ?? 0 },
      labels,
      annotations,
      cpu: { timestamp: now, usageCoreNanoSeconds: BigInt(s.cpu_stats.cpu_usage.total_usage), usageNanoCores: undefined },
      memory:
        usage === undefined
          ? undefined
          : { timestamp: now, workingSetBytes: Math.max(0, usage - inactive), availableBytes: undefined, usageBytes: usage, rssBytes: undefined, pageFaults: undefined, majorPageFaults: undefined },
      writableLayer: info.SizeRw === undefined ? undefined : { timestamp: now, mountpoint: '', usedBytes: info.SizeRw, inodesUsed: undefined },
    };
  }

  async listContainerStats(filter?: ContainerStatsFilter, options?: CallOptions): Promise<ContainerStats[]> {
    const list = await this.listContainers({ ...filter, state: 'running' }, options);
    return Promise.all(list.map((c) => this.containerStats(c.id, options)));
  }

  updateRuntimeConfig(podCidr: string): Promise<void> {
    // With CNI the pod CIDR reaches the plugins through their config, not the runtime.
    this.log.debug('pod CIDR noted', { podCidr });
    return Promise.resolve();
  }

  // ---- ImageService ----------------------------------------------------------

  async listImages(filter?: ImageSpec, options?: CallOptions): Promise<Image[]> {
    const filters: Record<string, string[]> = filter?.image ? { reference: [filter.image] } : {};
    const list = await this.call('list images', () => this.docker.listImages({ filters }), options);
    return list.map(imageFromList);
  }

  async imageStatus(image: ImageSpec, options?: CallOptions & { verbose?: boolean }): Promise<Image | undefined> {
    try {
      const i = await this.call(`inspect image ${image.image}`, () => this.docker.getImage(image.image).inspect(), options);
      return imageFromInspect(i, image);
    } catch (err) {
      if (isKnodeError(err, 'NOT_FOUND')) return undefined;
      throw err;
    }
  }

  async pullImage(image: ImageSpec, options?: CallOptions & { auth?: AuthConfig; sandboxConfig?: PodSandboxConfig }): Promise<string> {
    const ref = pullReference(image.image);
    const authconfig = options?.auth === undefined ? undefined : dockerAuth(options.auth, ref);
    await this.call(
      `pull ${ref}`,
      async () => {
        const stream = (await this.docker.pull(ref, authconfig === undefined ? {} : { authconfig })) as Readable;
        // Progress is a JSON stream; a failure arrives as {"error": ...} in it, with HTTP 200.
        await new Promise<void>((resolve, reject) => {
          this.docker.modem.followProgress(stream, (err: Error | null, events: { error?: string }[]) => {
            const failed = events?.find((e) => e.error !== undefined);
            if (err !== null) reject(err);
            else if (failed !== undefined) reject(new KnodeError('UNKNOWN', `docker pull ${ref}: ${failed.error ?? ''}`));
            else resolve();
          });
        });
      },
      options,
      this.pullTimeoutMs,
    );
    const pulled = await this.imageStatus({ image: ref }, options);
    if (pulled === undefined) throw new KnodeError('UNKNOWN', `docker pull ${ref} reported success but the image is not there`);
    return pulled.id;
  }

  async removeImage(image: ImageSpec, options?: CallOptions): Promise<void> {
    try {
      await this.call(`remove image ${image.image}`, () => this.docker.getImage(image.image).remove({ force: false }), options);
    } catch (err) {
      if (!isKnodeError(err, 'NOT_FOUND')) throw err;
    }
  }

  async imageFsInfo(options?: CallOptions): Promise<{ imageFilesystems: FilesystemUsage[]; containerFilesystems: FilesystemUsage[] }> {
    const [info, df] = await Promise.all([
      this.call('info', () => this.docker.info() as Promise<{ DockerRootDir: string }>, options),
      this.call('df', () => this.docker.df() as Promise<{ LayersSize?: number; Containers?: { SizeRw?: number }[] }>, options),
    ]);
    const now = BigInt(Date.now()) * 1_000_000n;
    const rw = (df.Containers ?? []).reduce((sum, c) => sum + (c.SizeRw ?? 0), 0);
    return {
      imageFilesystems: [{ timestamp: now, mountpoint: info.DockerRootDir, usedBytes: df.LayersSize ?? 0, inodesUsed: undefined }],
      containerFilesystems: [{ timestamp: now, mountpoint: info.DockerRootDir, usedBytes: rw, inodesUsed: undefined }],
    };
  }
}

function namespaceOptionsOf(labels: Labels | null | undefined): NamespaceOptions | undefined {
  const text = labels?.[namespaceOptionsLabel];
  if (text === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null ? (v as NamespaceOptions) : undefined;
  } catch {
    return undefined;
  }
}

export function createDockerRuntime(options: DockerRuntimeOptions): DockerRuntime {
  return new DockerRuntime(options);
}

/**
 * The CRI backend of the runtime port: CRI v1 over gRPC (@grpc/grpc-js) on a unix
 * socket, e.g. containerd's.
 *
 * Design notes:
 * - The proto is embedded (api-proto.ts, generated from api.proto) and parsed at
 *   load with protobufjs, then handed to @grpc/proto-loader's fromJSON: the
 *   bundled agent needs no .proto file on disk. Parsing takes a few ms, once.
 * - int64: proto-loader is told `longs: String`; protobufjs decodes through Long
 *   (the `long` package, a dependency of protobufjs), so nanosecond timestamps
 *   arrive as exact decimal strings and become bigint in convert.ts. Loading
 *   refuses to go on without Long, since numbers would silently round them.
 * - One channel, one generic grpc.Client; each call goes through
 *   makeUnaryRequest with the method's serializer from the package definition,
 *   so there is no untyped dynamic stub. Every call has a deadline (the
 *   runtime's request timeout unless the caller gives one) and can be cancelled
 *   with an AbortSignal. Calls do not wait for the connection: an unreachable
 *   runtime fails at once with 'UNAVAILABLE'; `waitReady` is the retrying way in.
 * - Errors are KnodeError with the gRPC status name as code (convert.criError).
 */
import * as grpc from '@grpc/grpc-js';
import { fromJSON, type MethodDefinition, type PackageDefinition } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { KnodeError } from '../../../lib/errors.js';
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
  ExecOptions,
  ExecSyncResult,
  FilesystemUsage,
  Image,
  ImageSpec,
  Labels,
  LinuxContainerResources,
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
import { criApiProto } from './api-proto.js';
import {
  authToWire,
  containerConfigToWire,
  containerFilterToWire,
  containerFromWire,
  containerStatsFromWire,
  containerStatusFromWire,
  criError,
  execSyncFromWire,
  fsUsageFromWire,
  grpcTarget,
  imageFromWire,
  imageSpecToWire,
  int64ToWire,
  protoLoaderOptions,
  resourcesToWire,
  sandboxConfigToWire,
  sandboxFilterToWire,
  sandboxFromWire,
  sandboxStatusFromWire,
  statsFilterToWire,
  statusFromWire,
  versionFromWire,
  type WireContainer,
  type WireContainerStats,
  type WireContainerStatus,
  type WireExecSyncResponse,
  type WireFilesystemUsage,
  type WireImage,
  type WirePodSandbox,
  type WirePodSandboxStatus,
  type WireStatusResponse,
  type WireVersion,
} from './convert.js';

/** The CRI API version the kubelet announces in VersionRequest. */
export const kubeRuntimeApiVersion = '0.1.0';
export const defaultRequestTimeoutMs = 2 * 60_000;
export const defaultPullTimeoutMs = 10 * 60_000;
/** kubelet's maxMsgSize for CRI. */
const maxMessageBytes = 16 * 1024 * 1024;

type ServiceName = 'RuntimeService' | 'ImageService';
type Method = MethodDefinition<object, unknown>;

let cachedDefinition: PackageDefinition | undefined;

/** The CRI package definition, parsed once from the embedded proto. */
export function criPackageDefinition(): PackageDefinition {
  if (cachedDefinition !== undefined) return cachedDefinition;
  if (!protobuf.util.Long) {
    throw new KnodeError('CRI_NO_LONG', 'protobufjs has no Long support: int64 timestamps would lose precision');
  }
  const root = protobuf.parse(criApiProto, { keepCase: false }).root;
  cachedDefinition = fromJSON(root.toJSON(), protoLoaderOptions);
  return cachedDefinition;
}

function methodOf(def: PackageDefinition, service: ServiceName, name: string): Method {
  const svc = def[`runtime.v1.${service}`];
  const m = svc === undefined ? undefined : (svc as Record<string, unknown>)[name];
  if (typeof m !== 'object' || m === null || !('path' in m)) {
    throw new KnodeError('CRI_NO_METHOD', `runtime.v1.${service}/${name} is not in the embedded proto`);
  }
  return m as Method;
}

export interface CriRuntimeOptions extends RuntimeOptions {
  logger?: Logger;
}

export class CriRuntime implements Runtime {
  readonly kind = 'cri' as const;
  readonly endpoint: string;
  private readonly client: grpc.Client;
  private readonly def: PackageDefinition;
  private readonly requestTimeoutMs: number;
  private readonly pullTimeoutMs: number;
  private readonly log: Logger;

  constructor(options: CriRuntimeOptions) {
    this.endpoint = options.endpoint;
    this.requestTimeoutMs = options.requestTimeoutMs ?? defaultRequestTimeoutMs;
    this.pullTimeoutMs = options.pullTimeoutMs ?? defaultPullTimeoutMs;
    this.log = options.logger ?? createLogger({ component: 'cri', fields: { endpoint: options.endpoint } });
    this.def = criPackageDefinition();
    this.client = new grpc.Client(grpcTarget(options.endpoint), grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': maxMessageBytes,
      'grpc.max_send_message_length': maxMessageBytes,
      // Notice a restarted runtime within seconds rather than grpc's default 2 min back-off.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 5000,
    });
  }

  close(): void {
    this.client.close();
  }

  private call<Res>(service: ServiceName, name: string, request: object, options: CallOptions | undefined, defaultTimeoutMs?: number): Promise<Res> {
    const m = methodOf(this.def, service, name);
    const timeoutMs = options?.timeoutMs ?? defaultTimeoutMs ?? this.requestTimeoutMs;
    const signal = options?.signal;
    const started = Date.now();
    return new Promise<Res>((resolve, reject) => {
      if (signal?.aborted) return reject(new KnodeError('CANCELLED', `CRI ${name}: aborted before the call`));
      const onAbort = (): void => call.cancel();
      const call = this.client.makeUnaryRequest(
        m.path,
        m.requestSerialize,
        m.responseDeserialize,
        request,
        new grpc.Metadata(),
        { deadline: new Date(Date.now() + timeoutMs) },
        (err, value) => {
          signal?.removeEventListener('abort', onAbort);
          if (err !== null) {
            const e = criError(name, err);
            this.log.debug('cri call failed', { method: name, ms: Date.now() - started, code: e.code });
            return reject(e);
          }
          this.log.debug('cri call', { method: name, ms: Date.now() - started });
          resolve(value as Res);
        },
      );
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private runtime<Res>(name: string, request: object, options?: CallOptions, timeoutMs?: number): Promise<Res> {
    return this.call<Res>('RuntimeService', name, request, options, timeoutMs);
  }

  private image<Res>(name: string, request: object, options?: CallOptions, timeoutMs?: number): Promise<Res> {
    return this.call<Res>('ImageService', name, request, options, timeoutMs);
  }

  waitReady(options: WaitReadyOptions = {}): Promise<RuntimeVersion> {
    return waitForRuntime(this, this.log, options);
  }

  // ---- RuntimeService ------------------------------------------------------

  async version(options?: CallOptions): Promise<RuntimeVersion> {
    return versionFromWire(await this.runtime<WireVersion>('Version', { version: kubeRuntimeApiVersion }, options));
  }

  async status(options?: CallOptions & { verbose?: boolean }): Promise<RuntimeStatus> {
    return statusFromWire(await this.runtime<WireStatusResponse>('Status', { verbose: options?.verbose ?? false }, options));
  }

  async runPodSandbox(config: PodSandboxConfig, options?: CallOptions & { runtimeHandler?: string }): Promise<string> {
    const r = await this.runtime<{ podSandboxId?: string }>('RunPodSandbox', { config: sandboxConfigToWire(config), runtimeHandler: options?.runtimeHandler ?? '' }, options);
    return r.podSandboxId ?? '';
  }

  async stopPodSandbox(podSandboxId: string, options?: CallOptions): Promise<void> {
    await this.runtime('StopPodSandbox', { podSandboxId }, options);
  }

  async removePodSandbox(podSandboxId: string, options?: CallOptions): Promise<void> {
    await this.runtime('RemovePodSandbox', { podSandboxId }, options);
  }

  async podSandboxStatus(podSandboxId: string, options?: CallOptions & { verbose?: boolean }): Promise<PodSandboxStatusResult> {
    const r = await this.runtime<{ status?: WirePodSandboxStatus | null; info?: Labels | null }>(
      'PodSandboxStatus',
      { podSandboxId, verbose: options?.verbose ?? false },
      options,
    );
    if (r.status === null || r.status === undefined) throw new KnodeError('NOT_FOUND', `CRI PodSandboxStatus: no status for sandbox ${podSandboxId}`);
    return { status: sandboxStatusFromWire(r.status), info: { ...(r.info ?? {}) } };
  }

  async listPodSandbox(filter?: PodSandboxFilter, options?: CallOptions): Promise<PodSandbox[]> {
    const r = await this.runtime<{ items?: WirePodSandbox[] | null }>('ListPodSandbox', { filter: sandboxFilterToWire(filter) }, options);
    return (r.items ?? []).map(sandboxFromWire);
  }

  async createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig, options?: CallOptions): Promise<string> {
    const r = await this.runtime<{ containerId?: string }>(
      'CreateContainer',
      { podSandboxId, config: containerConfigToWire(config), sandboxConfig: sandboxConfigToWire(sandboxConfig) },
      options,
    );
    return r.containerId ?? '';
  }

  async startContainer(containerId: string, options?: CallOptions): Promise<void> {
    await this.runtime('StartContainer', { containerId }, options);
  }

  async stopContainer(containerId: string, timeoutSeconds: number, options?: CallOptions): Promise<void> {
    // The call must outlive the grace period (kubelet: timeout + request timeout).
    await this.runtime('StopContainer', { containerId, timeout: int64ToWire(timeoutSeconds) }, options, timeoutSeconds * 1000 + this.requestTimeoutMs);
  }

  async removeContainer(containerId: string, options?: CallOptions): Promise<void> {
    await this.runtime('RemoveContainer', { containerId }, options);
  }

  async listContainers(filter?: ContainerFilter, options?: CallOptions): Promise<Container[]> {
    const r = await this.runtime<{ containers?: WireContainer[] | null }>('ListContainers', { filter: containerFilterToWire(filter) }, options);
    return (r.containers ?? []).map(containerFromWire);
  }

  async containerStatus(containerId: string, options?: CallOptions & { verbose?: boolean }): Promise<ContainerStatusResult> {
    const r = await this.runtime<{ status?: WireContainerStatus | null; info?: Labels | null }>(
      'ContainerStatus',
      { containerId, verbose: options?.verbose ?? false },
      options,
    );
    if (r.status === null || r.status === undefined) throw new KnodeError('NOT_FOUND', `CRI ContainerStatus: no status for container ${containerId}`);
    return { status: containerStatusFromWire(r.status), info: { ...(r.info ?? {}) } };
  }

  async updateContainerResources(containerId: string, resources: LinuxContainerResources, options?: CallOptions & { annotations?: Labels }): Promise<void> {
    await this.runtime('UpdateContainerResources', { containerId, linux: resourcesToWire(resources) ?? {}, annotations: options?.annotations ?? {} }, options);
  }

  async reopenContainerLog(containerId: string, options?: CallOptions): Promise<void> {
    await this.runtime('ReopenContainerLog', { containerId }, options);
  }

  async execSync(containerId: string, cmd: string[], timeoutSeconds: number, options?: CallOptions): Promise<ExecSyncResult> {
    const deadline = timeoutSeconds > 0 ? timeoutSeconds * 1000 + this.requestTimeoutMs : undefined;
    const r = await this.runtime<WireExecSyncResponse>('ExecSync', { containerId, cmd, timeout: int64ToWire(timeoutSeconds) }, options, deadline);
    return execSyncFromWire(r);
  }

  async exec(containerId: string, exec: ExecOptions, options?: CallOptions): Promise<string> {
    const r = await this.runtime<{ url?: string }>(
      'Exec',
      { containerId, cmd: exec.cmd, tty: exec.tty ?? false, stdin: exec.stdin ?? false, stdout: exec.stdout ?? true, stderr: exec.stderr ?? !(exec.tty ?? false) },
      options,
    );
    return r.url ?? '';
  }

  async attach(containerId: string, attach: AttachOptions, options?: CallOptions): Promise<string> {
    const r = await this.runtime<{ url?: string }>(
      'Attach',
      { containerId, stdin: attach.stdin ?? false, tty: attach.tty ?? false, stdout: attach.stdout ?? true, stderr: attach.stderr ?? !(attach.tty ?? false) },
      options,
    );
    return r.url ?? '';
  }

  async portForward(podSandboxId: string, ports: number[], options?: CallOptions): Promise<string> {
    const r = await this.runtime<{ url?: string }>('PortForward', { podSandboxId, port: ports }, options);
    return r.url ?? '';
  }

  async containerStats(containerId: string, options?: CallOptions): Promise<ContainerStats> {
    const r = await this.runtime<{ stats?: WireContainerStats | null }>('ContainerStats', { containerId }, options);
    if (r.stats === null || r.stats === undefined) throw new KnodeError('NOT_FOUND', `CRI ContainerStats: no stats for container ${containerId}`);
    return containerStatsFromWire(r.stats);
  }

  async listContainerStats(filter?: ContainerStatsFilter, options?: CallOptions): Promise<ContainerStats[]> {
    const r = await this.runtime<{ stats?: WireContainerStats[] | null }>('ListContainerStats', { filter: statsFilterToWire(filter) }, options);
    return (r.stats ?? []).map(containerStatsFromWire);
  }

  async updateRuntimeConfig(podCidr: string, options?: CallOptions): Promise<void> {
    await this.runtime('UpdateRuntimeConfig', { runtimeConfig: { networkConfig: { podCidr } } }, options);
  }

  // ---- ImageService ----------------------------------------------------------

  async listImages(filter?: ImageSpec, options?: CallOptions): Promise<Image[]> {
    const r = await this.image<{ images?: WireImage[] | null }>('ListImages', { filter: filter === undefined ? undefined : { image: imageSpecToWire(filter) } }, options);
    return (r.images ?? []).map(imageFromWire);
  }

  async imageStatus(image: ImageSpec, options?: CallOptions & { verbose?: boolean }): Promise<Image | undefined> {
    const r = await this.image<{ image?: WireImage | null }>('ImageStatus', { image: imageSpecToWire(image), verbose: options?.verbose ?? false }, options);
    return r.image === null || r.image === undefined ? undefined : imageFromWire(r.image);
  }

  async pullImage(image: ImageSpec, options?: CallOptions & { auth?: AuthConfig; sandboxConfig?: PodSandboxConfig }): Promise<string> {
    const request = {
      image: imageSpecToWire(image),
      auth: authToWire(options?.auth),
      sandboxConfig: options?.sandboxConfig === undefined ? undefined : sandboxConfigToWire(options.sandboxConfig),
    };
    const r = await this.image<{ imageRef?: string }>('PullImage', request, options, this.pullTimeoutMs);
    return r.imageRef ?? '';
  }

  async removeImage(image: ImageSpec, options?: CallOptions): Promise<void> {
    await this.image('RemoveImage', { image: imageSpecToWire(image) }, options);
  }

  async imageFsInfo(options?: CallOptions): Promise<{ imageFilesystems: FilesystemUsage[]; containerFilesystems: FilesystemUsage[] }> {
    const r = await this.image<{ imageFilesystems?: WireFilesystemUsage[] | null; containerFilesystems?: WireFilesystemUsage[] | null }>('ImageFsInfo', {}, options);
    return { imageFilesystems: (r.imageFilesystems ?? []).map(fsUsageFromWire), containerFilesystems: (r.containerFilesystems ?? []).map(fsUsageFromWire) };
  }
}

export function createCriRuntime(options: CriRuntimeOptions): CriRuntime {
  return new CriRuntime(options);
}

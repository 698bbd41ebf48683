/**
 * The agent's runtime port: what the pod workers need from a container runtime.
 *
 * Design notes:
 * - CRI-shaped on purpose: the CRI backend (containerd over gRPC) is a thin
 *   translation, and the Docker backend implements the same operations the
 *   cri-dockerd way (pause container + CNI on its netns + labels), so the pod
 *   workers never know which one runs.
 * - Plain TypeScript objects in camelCase. Enums are string unions in the
 *   vocabulary of the Kubernetes API where one exists ('TCP', 'running'...).
 * - Timestamps are `bigint` nanoseconds since the epoch, as CRI sends them:
 *   1.7e18 ns is far above Number.MAX_SAFE_INTEGER (9.0e15), and a number would
 *   round them to ~256 ns steps; `nanosToDate` in cri/convert.ts gives a Date.
 *   Other int64 values (resources, sizes, uids, timeouts) are `number`: they
 *   stay far below 2^53 in practice.
 * - "Not specified" is `undefined` (the CRI zero value) in requests; responses
 *   carry every field (empty string / 0 / {} / [] when the runtime left it out).
 * - Errors are KnodeError with the gRPC status name as `code` ('NOT_FOUND',
 *   'UNAVAILABLE', 'DEADLINE_EXCEEDED', 'INVALID_ARGUMENT', 'UNKNOWN' ...), so
 *   callers branch on the code the CRI spec talks about. A missing image is not
 *   an error for imageStatus (undefined), as in CRI.
 */
import type { Socket } from 'node:net';

export type Labels = Record<string, string>;

/** Per-call options: deadline (default: the runtime's request timeout) and cancellation. */
export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

// ---- shared pieces -------------------------------------------------------

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type NamespaceMode = 'pod' | 'container' | 'node' | 'target';
export type MountPropagation = 'private' | 'hostToContainer' | 'bidirectional';
export type SecurityProfileType = 'runtimeDefault' | 'unconfined' | 'localhost';

export interface SecurityProfile {
  type: SecurityProfileType;
  /** Path (seccomp) or profile name (AppArmor) when type is 'localhost'. */
  localhostRef?: string;
}

export interface NamespaceOptions {
  network?: NamespaceMode;
  pid?: NamespaceMode;
  ipc?: NamespaceMode;
  /** Container whose namespace a 'target' mode joins. */
  targetId?: string;
}

export interface ImageSpec {
  /** Reference (name:tag, name@digest) or image id. */
  image: string;
  annotations?: Labels;
  userSpecifiedImage?: string;
  runtimeHandler?: string;
}

export interface LinuxContainerResources {
  cpuPeriod?: number;
  cpuQuota?: number;
  cpuShares?: number;
  memoryLimitInBytes?: number;
  oomScoreAdj?: number;
  cpusetCpus?: string;
  cpusetMems?: string;
  hugepageLimits?: { pageSize: string; limit: number }[];
  /** cgroup v2 files, e.g. { 'memory.high': '...' }. */
  unified?: Labels;
  memorySwapLimitInBytes?: number;
}

// ---- sandboxes -----------------------------------------------------------

export interface PodSandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
}

export interface DnsConfig {
  servers?: string[];
  searches?: string[];
  options?: string[];
}

export interface PortMapping {
  protocol?: Protocol;
  containerPort: number;
  hostPort?: number;
  hostIp?: string;
}

export interface SandboxSecurityContext {
  namespaceOptions?: NamespaceOptions;
  runAsUser?: number;
  runAsGroup?: number;
  readonlyRootfs?: boolean;
  supplementalGroups?: number[];
  privileged?: boolean;
  seccomp?: SecurityProfile;
  apparmor?: SecurityProfile;
}

export interface LinuxPodSandboxConfig {
  cgroupParent?: string;
  securityContext?: SandboxSecurityContext;
  sysctls?: Labels;
  overhead?: LinuxContainerResources;
  resources?: LinuxContainerResources;
}

export interface PodSandboxConfig {
  metadata: PodSandboxMetadata;
  hostname?: string;
  /** Host directory for the containers' logs (/var/log/pods/<ns>_<name>_<uid>). */
  logDirectory?: string;
  dnsConfig?: DnsConfig;
  portMappings?: PortMapping[];
  labels?: Labels;
  annotations?: Labels;
  linux?: LinuxPodSandboxConfig;
}

export type PodSandboxState = 'ready' | 'notready';

export interface PodSandbox {
  id: string;
  metadata: PodSandboxMetadata;
  state: PodSandboxState;
  /** Nanoseconds since the epoch. */
  createdAt: bigint;
  labels: Labels;
  annotations: Labels;
  runtimeHandler: string;
}

export interface PodSandboxNetworkStatus {
  /** Primary pod IP ('' when the runtime has none, e.g. host network). */
  ip: string;
  additionalIps: string[];
}

export interface PodSandboxStatus extends PodSandbox {
  network: PodSandboxNetworkStatus;
  /** Namespace modes the sandbox runs with (Linux). */
  namespaceOptions: NamespaceOptions | undefined;
}

export interface PodSandboxStatusResult {
  status: PodSandboxStatus;
  /** Runtime-specific JSON values, only with verbose. */
  info: Labels;
}

export interface PodSandboxFilter {
  id?: string;
  state?: PodSandboxState;
  labelSelector?: Labels;
}

// ---- containers ----------------------------------------------------------

export interface ContainerMetadata {
  name: string;
  attempt: number;
}

export interface KeyValue {
  key: string;
  value: string;
}

export interface Mount {
  containerPath: string;
  hostPath: string;
  readonly?: boolean;
  selinuxRelabel?: boolean;
  propagation?: MountPropagation;
}

export interface Device {
  containerPath: string;
  hostPath: string;
  /** Any of 'r', 'w', 'm'. */
  permissions: string;
}

export interface Capabilities {
  add?: string[];
  drop?: string[];
  addAmbient?: string[];
}

export interface ContainerSecurityContext {
  capabilities?: Capabilities;
  privileged?: boolean;
  namespaceOptions?: NamespaceOptions;
  runAsUser?: number;
  runAsGroup?: number;
  runAsUsername?: string;
  readonlyRootfs?: boolean;
  supplementalGroups?: number[];
  noNewPrivs?: boolean;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  seccomp?: SecurityProfile;
  apparmor?: SecurityProfile;
}

export interface ContainerConfig {
  metadata: ContainerMetadata;
  image: ImageSpec;
  /** Entrypoint override (docker ENTRYPOINT); empty/undefined keeps the image's. */
  command?: string[];
  /** Arguments (docker CMD). */
  args?: string[];
  workingDir?: string;
  envs?: KeyValue[];
  mounts?: Mount[];
  devices?: Device[];
  labels?: Labels;
  annotations?: Labels;
  /** Relative to the sandbox's logDirectory, e.g. '<container>/<attempt>.log'. */
  logPath?: string;
  stdin?: boolean;
  stdinOnce?: boolean;
  tty?: boolean;
  linux?: {
    resources?: LinuxContainerResources;
    securityContext?: ContainerSecurityContext;
  };
}

export type ContainerState = 'created' | 'running' | 'exited' | 'unknown';

export interface Container {
  id: string;
  podSandboxId: string;
  metadata: ContainerMetadata;
  image: ImageSpec;
  imageRef: string;
  imageId: string;
  state: ContainerState;
  createdAt: bigint;
  labels: Labels;
  annotations: Labels;
}

export interface ContainerStatus {
  id: string;
  metadata: ContainerMetadata;
  state: ContainerState;
  /** Nanoseconds since the epoch; 0n when not (yet) started / finished. */
  createdAt: bigint;
  startedAt: bigint;
  finishedAt: bigint;
  exitCode: number;
  image: ImageSpec;
  imageRef: string;
  imageId: string;
  /** e.g. 'Completed', 'Error', 'OOMKilled'. */
  reason: string;
  message: string;
  labels: Labels;
  annotations: Labels;
  mounts: Mount[];
  /** Absolute host path of the log file ('' if none). */
  logPath: string;
  resources: LinuxContainerResources | undefined;
}

export interface ContainerStatusResult {
  status: ContainerStatus;
  info: Labels;
}

export interface ContainerFilter {
  id?: string;
  state?: ContainerState;
  podSandboxId?: string;
  labelSelector?: Labels;
}

export interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

export interface ExecOptions {
  cmd: string[];
  tty?: boolean;
  stdin?: boolean;
  stdout?: boolean;
  stderr?: boolean;
}

export interface AttachOptions {
  stdin?: boolean;
  tty?: boolean;
  stdout?: boolean;
  stderr?: boolean;
}

export interface FilesystemUsage {
  timestamp: bigint;
  mountpoint: string;
  usedBytes: number | undefined;
  inodesUsed: number | undefined;
}

export interface ContainerStats {
  id: string;
  metadata: ContainerMetadata;
  labels: Labels;
  annotations: Labels;
  cpu: { timestamp: bigint; usageCoreNanoSeconds: bigint | undefined; usageNanoCores: number | undefined } | undefined;
  memory:
    | {
        timestamp: bigint;
        workingSetBytes: number | undefined;
        availableBytes: number | undefined;
        usageBytes: number | undefined;
        rssBytes: number | undefined;
        pageFaults: number | undefined;
        majorPageFaults: number | undefined;
      }
    | undefined;
  writableLayer: FilesystemUsage | undefined;
}

export interface ContainerStatsFilter {
  id?: string;
  podSandboxId?: string;
  labelSelector?: Labels;
}

// ---- runtime -------------------------------------------------------------

export interface RuntimeVersion {
  /** Version of the kubelet runtime API the runtime speaks ('0.1.0'). */
  version: string;
  runtimeName: string;
  runtimeVersion: string;
  /** 'v1' for CRI v1. */
  runtimeApiVersion: string;
}

export interface RuntimeCondition {
  /** 'RuntimeReady', 'NetworkReady', or runtime-specific. */
  type: string;
  status: boolean;
  reason: string;
  message: string;
}

export interface RuntimeStatus {
  conditions: RuntimeCondition[];
  info: Labels;
}

// ---- images --------------------------------------------------------------

export interface Image {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: number;
  /** UID the image runs as, when its config names a numeric user. */
  uid: number | undefined;
  /** User name the image runs as, when its config names one. */
  username: string;
  spec: ImageSpec | undefined;
  pinned: boolean;
}

export interface AuthConfig {
  username?: string;
  password?: string;
  /** base64("user:password"), as in a docker config.json. */
  auth?: string;
  serverAddress?: string;
  identityToken?: string;
  registryToken?: string;
}

// ---- the ports -------------------------------------------------------------

export interface RuntimeService {
  version(options?: CallOptions): Promise<RuntimeVersion>;
  status(options?: CallOptions & { verbose?: boolean }): Promise<RuntimeStatus>;

  /** Creates and starts the sandbox (network included); returns its id. */
  runPodSandbox(config: PodSandboxConfig, options?: CallOptions & { runtimeHandler?: string }): Promise<string>;
  /** Idempotent. Stops the containers and releases the network. */
  stopPodSandbox(podSandboxId: string, options?: CallOptions): Promise<void>;
  /** Idempotent. Removes the sandbox and its containers. */
  removePodSandbox(podSandboxId: string, options?: CallOptions): Promise<void>;
  /** Throws KnodeError 'NOT_FOUND' when there is no such sandbox. */
  podSandboxStatus(podSandboxId: string, options?: CallOptions & { verbose?: boolean }): Promise<PodSandboxStatusResult>;
  listPodSandbox(filter?: PodSandboxFilter, options?: CallOptions): Promise<PodSandbox[]>;

  /** Returns the container id. `sandboxConfig` is the config the sandbox was run with. */
  createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig, options?: CallOptions): Promise<string>;
  startContainer(containerId: string, options?: CallOptions): Promise<void>;
  /** Idempotent. SIGTERM (or the image's stop signal), SIGKILL after `timeoutSeconds`. */
  stopContainer(containerId: string, timeoutSeconds: number, options?: CallOptions): Promise<void>;
  /** Idempotent. */
  removeContainer(containerId: string, options?: CallOptions): Promise<void>;
  listContainers(filter?: ContainerFilter, options?: CallOptions): Promise<Container[]>;
  /** Throws KnodeError 'NOT_FOUND' when there is no such container. */
  containerStatus(containerId: string, options?: CallOptions & { verbose?: boolean }): Promise<ContainerStatusResult>;
  updateContainerResources(containerId: string, resources: LinuxContainerResources, options?: CallOptions & { annotations?: Labels }): Promise<void>;
  reopenContainerLog(containerId: string, options?: CallOptions): Promise<void>;

  /** Runs a command to completion; `timeoutSeconds` 0 = no limit (the call's deadline still applies). */
  execSync(containerId: string, cmd: string[], timeoutSeconds: number, options?: CallOptions): Promise<ExecSyncResult>;
  /** The streaming URLs (served by the runtime) for exec / attach / port-forward. */
  exec(containerId: string, exec: ExecOptions, options?: CallOptions): Promise<string>;
  attach(containerId: string, attach: AttachOptions, options?: CallOptions): Promise<string>;
  portForward(podSandboxId: string, ports: number[], options?: CallOptions): Promise<string>;

  containerStats(containerId: string, options?: CallOptions): Promise<ContainerStats>;
  listContainerStats(filter?: ContainerStatsFilter, options?: CallOptions): Promise<ContainerStats[]>;
  /** Tells the runtime the node's pod CIDR. */
  updateRuntimeConfig(podCidr: string, options?: CallOptions): Promise<void>;
}

export interface ImageService {
  listImages(filter?: ImageSpec, options?: CallOptions): Promise<Image[]>;
  /** undefined when the image is not present. */
  imageStatus(image: ImageSpec, options?: CallOptions & { verbose?: boolean }): Promise<Image | undefined>;
  /** Returns the image reference the runtime resolved (an image id or digest). */
  pullImage(image: ImageSpec, options?: CallOptions & { auth?: AuthConfig; sandboxConfig?: PodSandboxConfig }): Promise<string>;
  /** Idempotent. */
  removeImage(image: ImageSpec, options?: CallOptions): Promise<void>;
  imageFsInfo(options?: CallOptions): Promise<{ imageFilesystems: FilesystemUsage[]; containerFilesystems: FilesystemUsage[] }>;
}

/**
 * One exec or attach session served by the agent itself (runtimes without a
 * streaming server of their own, i.e. docker). Output is demultiplexed: with
 * a TTY everything comes on stdout.
 */
export interface StdioSession {
  /** Input; end() closes the process's stdin. undefined when stdin was not asked for. */
  stdin: NodeJS.WritableStream | undefined;
  stdout: NodeJS.ReadableStream;
  /** undefined with a TTY or when stderr was not asked for. */
  stderr: NodeJS.ReadableStream | undefined;
  /** Resizes the TTY (no-op without one). */
  resize(width: number, height: number): Promise<void>;
  /** Resolves once the output ended: the exit code for exec, undefined for attach. */
  wait(): Promise<number | undefined>;
  /** Ends the session (the client went away); idempotent. */
  close(): void;
}

/**
 * Direct streaming (what cri-dockerd serves in-process): the kubelet server
 * speaks kubectl's protocols itself and drives these, instead of proxying to
 * a runtime's streaming URL.
 */
export interface DirectStreams {
  execStream(containerId: string, exec: ExecOptions, options?: CallOptions): Promise<StdioSession>;
  attachStream(containerId: string, attach: AttachOptions, options?: CallOptions): Promise<StdioSession>;
  /** A TCP connection to 127.0.0.1:port inside the sandbox's network namespace. */
  portForwardConnect(podSandboxId: string, port: number, options?: CallOptions): Promise<Socket>;
}

export interface WaitReadyOptions {
  /** Give up after this long; default 60 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** One runtime as the agent holds it: both services on one connection. */
export interface Runtime extends RuntimeService, ImageService {
  readonly kind: RuntimeKind;
  /** Where it is reached, as configured (e.g. unix:///run/containerd/containerd.sock). */
  readonly endpoint: string;
  /**
   * Resolves with the runtime's version once it answers; retries with back-off
   * while it is unreachable (KnodeError 'UNAVAILABLE' after timeoutMs).
   */
  waitReady(options?: WaitReadyOptions): Promise<RuntimeVersion>;
  /**
   * Set by runtimes whose exec/attach/portForward URLs the agent serves
   * itself (docker); undefined for CRI runtimes with their own streaming server.
   */
  readonly directStreams?: DirectStreams;
  close(): void;
}

export type RuntimeKind = 'cri' | 'docker';

export interface RuntimeOptions {
  /** unix:///path/to.sock or /path/to.sock */
  endpoint: string;
  /** Default deadline of a call (kubelet's --runtime-request-timeout, 2 min). */
  requestTimeoutMs?: number;
  /** Default deadline of an image pull; default 10 min. */
  pullTimeoutMs?: number;
  /**
   * For backends that run the pod network themselves (docker): the CNI conf
   * dir (first conflist used) and plugin dir. CRI runtimes have their own.
   */
  network?: { confDir: string; binDir: string; hostNetns?: string };
  /** Backend state (docker: the CNI result cache), e.g. <root-dir>/docker. */
  stateDir?: string;
  /** Pause image of the sandboxes (docker; CRI runtimes configure their own). */
  sandboxImage?: string;
  /** cgroup parent of sandboxes that name none (docker). */
  cgroupParent?: string;
}

export type RuntimeFactory = (options: RuntimeOptions) => Runtime;

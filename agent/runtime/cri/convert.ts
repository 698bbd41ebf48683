/**
 * Pure conversions between the agent's runtime types (../types.ts) and the CRI v1
 * messages as @grpc/proto-loader hands them over.
 *
 * Design notes:
 * - The wire objects are what protobufjs' toObject/fromObject use with the options
 *   of `protoLoaderOptions`: camelCase field names, int64/uint64 as decimal
 *   strings (exact: Long-backed), enums by name, bytes as Buffer, and every scalar
 *   present (defaults: true); absent sub-messages are null/undefined.
 * - Requests are built with int64 values as strings (from bigint or number) and
 *   enums by name; fields left undefined are omitted, i.e. the CRI zero value.
 * - Timestamps become bigint nanoseconds; other int64s become numbers.
 * - gRPC failures become KnodeError whose code is the gRPC status name.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';
import { KnodeError } from '../../../lib/errors.js';
import type {
  AuthConfig,
  Container,
  ContainerConfig,
  ContainerFilter,
  ContainerSecurityContext,
  ContainerState,
  ContainerStats,
  ContainerStatsFilter,
  ContainerStatus,
  ExecSyncResult,
  FilesystemUsage,
  Image,
  ImageSpec,
  Labels,
  LinuxContainerResources,
  Mount,
  MountPropagation,
  NamespaceMode,
  NamespaceOptions,
  PodSandbox,
  PodSandboxConfig,
  PodSandboxFilter,
  PodSandboxMetadata,
  PodSandboxState,
  PodSandboxStatus,
  Protocol,
  RuntimeCondition,
  RuntimeStatus,
  RuntimeVersion,
  SandboxSecurityContext,
  SecurityProfile,
  SecurityProfileType,
} from '../types.js';

/** Options for protobufjs' toObject (responses) through @grpc/proto-loader. */
export const protoLoaderOptions = {
  longs: String,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
} as const;

// ---- wire shapes (responses) ---------------------------------------------

/** int64/uint64 as proto-loader gives them (String with longs: String; number if a Long lib were missing). */
export type WireLong = string | number | null | undefined;
/** Enums by name; an unknown value comes as its number. */
export type WireEnum = string | number | null | undefined;
type WireMap = Record<string, string> | null | undefined;
type Opt<T> = T | null | undefined;

export interface WirePodSandboxMetadata {
  name?: string;
  uid?: string;
  namespace?: string;
  attempt?: number;
}
export interface WireImageSpec {
  image?: string;
  annotations?: WireMap;
  userSpecifiedImage?: string;
  runtimeHandler?: string;
}
export interface WireNamespaceOption {
  network?: WireEnum;
  pid?: WireEnum;
  ipc?: WireEnum;
  targetId?: string;
}
export interface WirePodSandbox {
  id?: string;
  metadata?: Opt<WirePodSandboxMetadata>;
  state?: WireEnum;
  createdAt?: WireLong;
  labels?: WireMap;
  annotations?: WireMap;
  runtimeHandler?: string;
}
export interface WirePodSandboxStatus extends WirePodSandbox {
  network?: Opt<{ ip?: string; additionalIps?: Opt<{ ip?: string }[]> }>;
  linux?: Opt<{ namespaces?: Opt<{ options?: Opt<WireNamespaceOption> }> }>;
}
export interface WireContainerMetadata {
  name?: string;
  attempt?: number;
}
export interface WireContainer {
  id?: string;
  podSandboxId?: string;
  metadata?: Opt<WireContainerMetadata>;
  image?: Opt<WireImageSpec>;
  imageRef?: string;
  state?: WireEnum;
  createdAt?: WireLong;
  labels?: WireMap;
  annotations?: WireMap;
  imageId?: string;
}
export interface WireMount {
  containerPath?: string;
  hostPath?: string;
  readonly?: boolean;
  selinuxRelabel?: boolean;
  propagation?: WireEnum;
}
export interface WireLinuxContainerResources {
  cpuPeriod?: WireLong;
  cpuQuota?: WireLong;
  cpuShares?: WireLong;
  memoryLimitInBytes?: WireLong;
  oomScoreAdj?: WireLong;
  cpusetCpus?: string;
  cpusetMems?: string;
  hugepageLimits?: Opt<{ pageSize?: string; limit?: WireLong }[]>;
  unified?: WireMap;
  memorySwapLimitInBytes?: WireLong;
}
export interface WireContainerStatus {
  id?: string;
  metadata?: Opt<WireContainerMetadata>;
  state?: WireEnum;
  createdAt?: WireLong;
  startedAt?: WireLong;
  finishedAt?: WireLong;
  exitCode?: number;
  image?: Opt<WireImageSpec>;
  imageRef?: string;
  reason?: string;
  message?: string;
  labels?: WireMap;
  annotations?: WireMap;
  mounts?: Opt<WireMount[]>;
  logPath?: string;
  resources?: Opt<{ linux?: Opt<WireLinuxContainerResources> }>;
  imageId?: string;
}
export interface WireImage {
  id?: string;
  repoTags?: Opt<string[]>;
  repoDigests?: Opt<string[]>;
  size?: WireLong;
  uid?: Opt<{ value?: WireLong }>;
  username?: string;
  spec?: Opt<WireImageSpec>;
  pinned?: boolean;
}
export interface WireVersion {
  version?: string;
  runtimeName?: string;
  runtimeVersion?: string;
  runtimeApiVersion?: string;
}
export interface WireStatusResponse {
  status?: Opt<{ conditions?: Opt<{ type?: string; status?: boolean; reason?: string; message?: string }[]> }>;
  info?: WireMap;
}
export interface WireExecSyncResponse {
  stdout?: Opt<Uint8Array>;
  stderr?: Opt<Uint8Array>;
  exitCode?: number;
}
type WireUInt64Value = Opt<{ value?: WireLong }>;
export interface WireFilesystemUsage {
  timestamp?: WireLong;
  fsId?: Opt<{ mountpoint?: string }>;
  usedBytes?: WireUInt64Value;
  inodesUsed?: WireUInt64Value;
}
export interface WireContainerStats {
  attributes?: Opt<{ id?: string; metadata?: Opt<WireContainerMetadata>; labels?: WireMap; annotations?: WireMap }>;
  cpu?: Opt<{ timestamp?: WireLong; usageCoreNanoSeconds?: WireUInt64Value; usageNanoCores?: WireUInt64Value }>;
  memory?: Opt<{
    timestamp?: WireLong;
    workingSetBytes?: WireUInt64Value;
    availableBytes?: WireUInt64Value;
    usageBytes?: WireUInt64Value;
    rssBytes?: WireUInt64Value;
    pageFaults?: WireUInt64Value;
    majorPageFaults?: WireUInt64Value;
  }>;
  writableLayer?: Opt<WireFilesystemUsage>;
}

// ---- scalars ---------------------------------------------------------------

/** An int64 nanosecond timestamp from the wire, exactly. */
export function nanosFromWire(v: WireLong): bigint {
  if (v === null || v === undefined || v === '') return 0n;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new KnodeError('CRI_BAD_INT64', `int64 ${v} arrived as an inexact number (no Long support in protobufjs?)`);
    return BigInt(v);
  }
  return BigInt(v);
}

/** An int64/uint64 from the wire as a number (sizes, resources, uids). */
export function int64FromWire(v: WireLong): number {
  if (v === null || v === undefined || v === '') return 0;
  return typeof v === 'number' ? v : Number(v);
}

/** int64 for a request: decimal string, exact for bigint. */
export function int64ToWire(v: number | bigint): string {
  if (typeof v === 'number' && !Number.isInteger(v)) throw new KnodeError('CRI_BAD_INT64', `int64 field needs an integer, got ${v}`);
  return typeof v === 'bigint' ? v.toString() : String(v);
}

/** A CRI timestamp as a Date (millisecond precision); undefined for 0 (not set). */
export function nanosToDate(nanos: bigint): Date | undefined {
  return nanos === 0n ? undefined : new Date(Number(nanos / 1_000_000n));
}

/** A Date (or ms since the epoch) as CRI nanoseconds. */
export function dateToNanos(date: Date | number): bigint {
  return BigInt(typeof date === 'number' ? Math.trunc(date) : date.getTime()) * 1_000_000n;
}

function map(m: WireMap): Labels {
  return m === null || m === undefined ? {} : { ...m };
}

function optUInt64(v: WireUInt64Value): number | undefined {
  return v === null || v === undefined ? undefined : int64FromWire(v.value);
}

function optUInt64Big(v: WireUInt64Value): bigint | undefined {
  return v === null || v === undefined ? undefined : nanosFromWire(v.value);
}

// ---- enums -----------------------------------------------------------------

const containerStates: Record<string, ContainerState> = {
  CONTAINER_CREATED: 'created',
  CONTAINER_RUNNING: 'running',
  CONTAINER_EXITED: 'exited',
  CONTAINER_UNKNOWN: 'unknown',
};
const containerStatesWire: Record<ContainerState, string> = {
  created: 'CONTAINER_CREATED',
  running: 'CONTAINER_RUNNING',
  exited: 'CONTAINER_EXITED',
  unknown: 'CONTAINER_UNKNOWN',
};
const sandboxStatesWire: Record<PodSandboxState, string> = { ready: 'SANDBOX_READY', notready: 'SANDBOX_NOTREADY' };
const namespaceModesWire: Record<NamespaceMode, string> = { pod: 'POD', container: 'CONTAINER', node: 'NODE', target: 'TARGET' };
const propagationsWire: Record<MountPropagation, string> = {
  private: 'PROPAGATION_PRIVATE',
  hostToContainer: 'PROPAGATION_HOST_TO_CONTAINER',
  bidirectional: 'PROPAGATION_BIDIRECTIONAL',
};
const profileTypesWire: Record<SecurityProfileType, string> = { runtimeDefault: 'RuntimeDefault', unconfined: 'Unconfined', localhost: 'Localhost' };

function reverse<K extends string>(m: Record<K, string>): Record<string, K> {
  return Object.fromEntries(Object.entries(m).map(([k, v]) => [v, k])) as Record<string, K>;
}
const namespaceModes = reverse(namespaceModesWire);
const propagations = reverse(propagationsWire);

/** proto3 enums default to their first value (0) when absent. */
export function containerStateFromWire(v: WireEnum): ContainerState {
  if (v === null || v === undefined || v === 0) return 'created';
  return containerStates[String(v)] ?? 'unknown';
}
export function containerStateToWire(s: ContainerState): string {
  return containerStatesWire[s];
}
export function sandboxStateFromWire(v: WireEnum): PodSandboxState {
  // Anything but READY (including values this client does not know) is not ready.
  return v === null || v === undefined || v === 0 || v === 'SANDBOX_READY' ? 'ready' : 'notready';
}
export function sandboxStateToWire(s: PodSandboxState): string {
  return sandboxStatesWire[s];
}
function namespaceModeFromWire(v: WireEnum): NamespaceMode | undefined {
  if (v === null || v === undefined || v === 0) return 'pod';
  return namespaceModes[String(v)];
}
function propagationFromWire(v: WireEnum): MountPropagation {
  return propagations[String(v)] ?? 'private';
}
function protocolToWire(p: Protocol | undefined): string {
  return p ?? 'TCP';
}

// ---- requests ----------------------------------------------------------------

type WireObject = Record<string, unknown>;

/** Drops undefined values (so that fromObject leaves the CRI zero value). */
function compact(o: WireObject): WireObject {
  const out: WireObject = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
}

function optInt64(v: number | undefined): string | undefined {
  return v === undefined ? undefined : int64ToWire(v);
}

function int64Value(v: number | undefined): WireObject | undefined {
  return v === undefined ? undefined : { value: int64ToWire(v) };
}

function namespaceOptionsToWire(n: NamespaceOptions | undefined): WireObject | undefined {
  if (n === undefined) return undefined;
  return compact({
    network: n.network === undefined ? undefined : namespaceModesWire[n.network],
    pid: n.pid === undefined ? undefined : namespaceModesWire[n.pid],
    ipc: n.ipc === undefined ? undefined : namespaceModesWire[n.ipc],
    targetId: n.targetId,
  });
}

function profileToWire(p: SecurityProfile | undefined): WireObject | undefined {
  return p === undefined ? undefined : compact({ profileType: profileTypesWire[p.type], localhostRef: p.localhostRef });
}

export function resourcesToWire(r: LinuxContainerResources | undefined): WireObject | undefined {
  if (r === undefined) return undefined;
  return compact({
    cpuPeriod: optInt64(r.cpuPeriod),
    cpuQuota: optInt64(r.cpuQuota),
    cpuShares: optInt64(r.cpuShares),
    memoryLimitInBytes: optInt64(r.memoryLimitInBytes),
    oomScoreAdj: optInt64(r.oomScoreAdj),
    cpusetCpus: r.cpusetCpus,
    cpusetMems: r.cpusetMems,
    hugepageLimits: r.hugepageLimits?.map((h) => ({ pageSize: h.pageSize, limit: int64ToWire(h.limit) })),
    unified: r.unified,
    memorySwapLimitInBytes: optInt64(r.memorySwapLimitInBytes),
  });
}

function sandboxSecurityToWire(s: SandboxSecurityContext | undefined): WireObject | undefined {
  if (s === undefined) return undefined;
  return compact({
    namespaceOptions: namespaceOptionsToWire(s.namespaceOptions),
    runAsUser: int64Value(s.runAsUser),
    runAsGroup: int64Value(s.runAsGroup),
    readonlyRootfs: s.readonlyRootfs,
    supplementalGroups: s.supplementalGroups?.map(int64ToWire),
    privileged: s.privileged,
    seccomp: profileToWire(s.seccomp),
    apparmor: profileToWire(s.apparmor),
  });
}

export function metadataToWire(m: PodSandboxMetadata): WireObject {
  return { name: m.name, uid: m.uid, namespace: m.namespace, attempt: m.attempt };
}

export function sandboxConfigToWire(c: PodSandboxConfig): WireObject {
  return compact({
    metadata: metadataToWire(c.metadata),
    hostname: c.hostname,
    logDirectory: c.logDirectory,
    dnsConfig: c.dnsConfig === undefined ? undefined : compact({ servers: c.dnsConfig.servers, searches: c.dnsConfig.searches, options: c.dnsConfig.options }),
    portMappings: c.portMappings?.map((p) =>
      compact({ protocol: protocolToWire(p.protocol), containerPort: p.containerPort, hostPort: p.hostPort, hostIp: p.hostIp }),
    ),
    labels: c.labels,
    annotations: c.annotations,
    linux:
      c.linux === undefined
        ? undefined
        : compact({
            cgroupParent: c.linux.cgroupParent,
            securityContext: sandboxSecurityToWire(c.linux.securityContext),
            sysctls: c.linux.sysctls,
            overhead: resourcesToWire(c.linux.overhead),
            resources: resourcesToWire(c.linux.resources),
          }),
  });
}

export function imageSpecToWire(i: ImageSpec): WireObject {
  return compact({ image: i.image, annotations: i.annotations, userSpecifiedImage: i.userSpecifiedImage, runtimeHandler: i.runtimeHandler });
}

function mountToWire(m: Mount): WireObject {
  return compact({
    containerPath: m.containerPath,
    hostPath: m.hostPath,
    readonly: m.readonly,
    selinuxRelabel: m.selinuxRelabel,
    propagation: m.propagation === undefined ? undefined : propagationsWire[m.propagation],
  });
}

function containerSecurityToWire(s: ContainerSecurityContext | undefined): WireObject | undefined {
  if (s === undefined) return undefined;
  return compact({
    capabilities:
      s.capabilities === undefined
        ? undefined
        : compact({ addCapabilities: s.capabilities.add, dropCapabilities: s.capabilities.drop, addAmbientCapabilities: s.capabilities.addAmbient }),
    privileged: s.privileged,
    namespaceOptions: namespaceOptionsToWire(s.namespaceOptions),
    runAsUser: int64Value(s.runAsUser),
    runAsGroup: int64Value(s.runAsGroup),
    runAsUsername: s.runAsUsername,
    readonlyRootfs: s.readonlyRootfs,
    supplementalGroups: s.supplementalGroups?.map(int64ToWire),
    noNewPrivs: s.noNewPrivs,
    maskedPaths: s.maskedPaths,
    readonlyPaths: s.readonlyPaths,
    seccomp: profileToWire(s.seccomp),
    apparmor: profileToWire(s.apparmor),
  });
}

export function containerConfigToWire(c: ContainerConfig): WireObject {
  return compact({
    metadata: { name: c.metadata.name, attempt: c.metadata.attempt },
    image: imageSpecToWire(c.image),
    command: c.command,
    args: c.args,
    workingDir: c.workingDir,
    envs: c.envs?.map((e) => ({ key: e.key, value: e.value })),
    mounts: c.mounts?.map(mountToWire),
    devices: c.devices?.map((d) => ({ containerPath: d.containerPath, hostPath: d.hostPath, permissions: d.permissions })),
    labels: c.labels,
    annotations: c.annotations,
    logPath: c.logPath,
    stdin: c.stdin,
    stdinOnce: c.stdinOnce,
    tty: c.tty,
    linux:
      c.linux === undefined
        ? undefined
        : compact({ resources: resourcesToWire(c.linux.resources), securityContext: containerSecurityToWire(c.linux.securityContext) }),
  });
}

export function sandboxFilterToWire(f: PodSandboxFilter | undefined): WireObject | undefined {
  if (f === undefined) return undefined;
  return compact({
    id: f.id,
    state: f.state === undefined ? undefined : { state: sandboxStateToWire(f.state) },
    labelSelector: f.labelSelector,
  });
}

export function containerFilterToWire(f: ContainerFilter | undefined): WireObject | undefined {
  if (f === undefined) return undefined;
  return compact({
    id: f.id,
    state: f.state === undefined ? undefined : { state: containerStateToWire(f.state) },
    podSandboxId: f.podSandboxId,
    labelSelector: f.labelSelector,
  });
}

export function statsFilterToWire(f: ContainerStatsFilter | undefined): WireObject | undefined {
  return f === undefined ? undefined : compact({ id: f.id, podSandboxId: f.podSandboxId, labelSelector: f.labelSelector });
}

export function authToWire(a: AuthConfig | undefined): WireObject | undefined {
  if (a === undefined) return undefined;
  return compact({
    username: a.username,
    password: a.password,
    auth: a.auth,
    serverAddress: a.serverAddress,
    identityToken: a.identityToken,
    registryToken: a.registryToken,
  });
}

// ---- responses -----------------------------------------------------------------

export function versionFromWire(v: WireVersion): RuntimeVersion {
  return { version: v.version ?? '', runtimeName: v.runtimeName ?? '', runtimeVersion: v.runtimeVersion ?? '', runtimeApiVersion: v.runtimeApiVersion ?? '' };
}

export function statusFromWire(s: WireStatusResponse): RuntimeStatus {
  const conditions: RuntimeCondition[] = (s.status?.conditions ?? []).map((c) => ({
    type: c.type ?? '',
    status: c.status ?? false,
    reason: c.reason ?? '',
    message: c.message ?? '',
  }));
  return { conditions, info: map(s.info) };
}

/** Whether a runtime condition (e.g. 'RuntimeReady', 'NetworkReady') is true. */
export function conditionTrue(status: RuntimeStatus, type: string): boolean {
  return status.conditions.some((c) => c.type === type && c.status);
}

function sandboxMetadataFromWire(m: Opt<WirePodSandboxMetadata>): PodSandboxMetadata {
  return { name: m?.name ?? '', uid: m?.uid ?? '', namespace: m?.namespace ?? '', attempt: m?.attempt ?? 0 };
}

export function sandboxFromWire(s: WirePodSandbox): PodSandbox {
  return {
    id: s.id ?? '',
    metadata: sandboxMetadataFromWire(s.metadata),
    state: sandboxStateFromWire(s.state),
    createdAt: nanosFromWire(s.createdAt),
    labels: map(s.labels),
    annotations: map(s.annotations),
    runtimeHandler: s.runtimeHandler ?? '',
  };
}

export function sandboxStatusFromWire(s: WirePodSandboxStatus): PodSandboxStatus {
  const ns = s.linux?.namespaces?.options;
  return {
    ...sandboxFromWire(s),
    network: {
      ip: s.network?.ip ?? '',
      additionalIps: (s.network?.additionalIps ?? []).map((a) => a.ip ?? '').filter((ip) => ip !== ''),
    },
    namespaceOptions:
      ns === null || ns === undefined
        ? undefined
        : compactNamespaceOptions({
            network: namespaceModeFromWire(ns.network),
            pid: namespaceModeFromWire(ns.pid),
            ipc: namespaceModeFromWire(ns.ipc),
            targetId: ns.targetId === '' ? undefined : ns.targetId,
          }),
  };
}

function compactNamespaceOptions(n: NamespaceOptions): NamespaceOptions {
  const out: NamespaceOptions = {};
  if (n.network !== undefined) out.network = n.network;
  if (n.pid !== undefined) out.pid = n.pid;
  if (n.ipc !== undefined) out.ipc = n.ipc;
  if (n.targetId !== undefined) out.targetId = n.targetId;
  return out;
}

function imageSpecFromWire(i: Opt<WireImageSpec>): ImageSpec {
  const spec: ImageSpec = { image: i?.image ?? '' };
  const annotations = map(i?.annotations);
  if (Object.keys(annotations).length > 0) spec.annotations = annotations;
  if (i?.userSpecifiedImage) spec.userSpecifiedImage = i.userSpecifiedImage;
  if (i?.runtimeHandler) spec.runtimeHandler = i.runtimeHandler;
  return spec;
}

export function containerFromWire(c: WireContainer): Container {
  return {
    id: c.id ?? '',
    podSandboxId: c.podSandboxId ?? '',
    metadata: { name: c.metadata?.name ?? '', attempt: c.metadata?.attempt ?? 0 },
    image: imageSpecFromWire(c.image),
    imageRef: c.imageRef ?? '',
    imageId: c.imageId ?? '',
    state: containerStateFromWire(c.state),
    createdAt: nanosFromWire(c.createdAt),
    labels: map(c.labels),
    annotations: map(c.annotations),
  };
}

export function resourcesFromWire(r: Opt<WireLinuxContainerResources>): LinuxContainerResources | undefined {
  if (r === null || r === undefined) return undefined;
  const out: LinuxContainerResources = {};
  const nums = ['cpuPeriod', 'cpuQuota', 'cpuShares', 'memoryLimitInBytes', 'oomScoreAdj', 'memorySwapLimitInBytes'] as const;
  for (const k of nums) {
    const v = int64FromWire(r[k]);
    if (v !== 0) out[k] = v;
  }
  if (r.cpusetCpus) out.cpusetCpus = r.cpusetCpus;
  if (r.cpusetMems) out.cpusetMems = r.cpusetMems;
  if (r.hugepageLimits && r.hugepageLimits.length > 0) out.hugepageLimits = r.hugepageLimits.map((h) => ({ pageSize: h.pageSize ?? '', limit: int64FromWire(h.limit) }));
  const unified = map(r.unified);
  if (Object.keys(unified).length > 0) out.unified = unified;
  return out;
}

export function containerStatusFromWire(c: WireContainerStatus): ContainerStatus {
  return {
    id: c.id ?? '',
    metadata: { name: c.metadata?.name ?? '', attempt: c.metadata?.attempt ?? 0 },
    state: containerStateFromWire(c.state),
    createdAt: nanosFromWire(c.createdAt),
    startedAt: nanosFromWire(c.startedAt),
    finishedAt: nanosFromWire(c.finishedAt),
    exitCode: c.exitCode ?? 0,
    image: imageSpecFromWire(c.image),
    imageRef: c.imageRef ?? '',
    imageId: c.imageId ?? '',
    reason: c.reason ?? '',
    message: c.message ?? '',
    labels: map(c.labels),
    annotations: map(c.annotations),
    mounts: (c.mounts ?? []).map((m) => ({
      containerPath: m.containerPath ?? '',
      hostPath: m.hostPath ?? '',
      readonly: m.readonly ?? false,
      selinuxRelabel: m.selinuxRelabel ?? false,
      propagation: propagationFromWire(m.propagation),
    })),
    logPath: c.logPath ?? '',
    resources: resourcesFromWire(c.resources?.linux),
  };
}

export function imageFromWire(i: WireImage): Image {
  return {
    id: i.id ?? '',
    repoTags: [...(i.repoTags ?? [])],
    repoDigests: [...(i.repoDigests ?? [])],
    size: int64FromWire(i.size),
    uid: i.uid === null || i.uid === undefined ? undefined : int64FromWire(i.uid.value),
    username: i.username ?? '',
    spec: i.spec === null || i.spec === undefined ? undefined : imageSpecFromWire(i.spec),
    pinned: i.pinned ?? false,
  };
}

function bytes(b: Opt<Uint8Array>): Buffer {
  if (b === null || b === undefined) return Buffer.alloc(0);
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

export function execSyncFromWire(r: WireExecSyncResponse): ExecSyncResult {
  return { stdout: bytes(r.stdout), stderr: bytes(r.stderr), exitCode: r.exitCode ?? 0 };
}

export function fsUsageFromWire(f: WireFilesystemUsage): FilesystemUsage {
  return {
    timestamp: nanosFromWire(f.timestamp),
    mountpoint: f.fsId?.mountpoint ?? '',
    usedBytes: optUInt64(f.usedBytes),
    inodesUsed: optUInt64(f.inodesUsed),
  };
}

export function containerStatsFromWire(s: WireContainerStats): ContainerStats {
  const a = s.attributes;
  const cpu = s.cpu;
  const mem = s.memory;
  return {
    id: a?.id ?? '',
    metadata: { name: a?.metadata?.name ?? '', attempt: a?.metadata?.attempt ?? 0 },
    labels: map(a?.labels),
    annotations: map(a?.annotations),
    cpu:
      cpu === null || cpu === undefined
        ? undefined
        : { timestamp: nanosFromWire(cpu.timestamp), usageCoreNanoSeconds: optUInt64Big(cpu.usageCoreNanoSeconds), usageNanoCores: optUInt64(cpu.usageNanoCores) },
    memory:
      mem === null || mem === undefined
        ? undefined
        : {
            timestamp: nanosFromWire(mem.timestamp),
            workingSetBytes: optUInt64(mem.workingSetBytes),
            availableBytes: optUInt64(mem.availableBytes),
            usageBytes: optUInt64(mem.usageBytes),
            rssBytes: optUInt64(mem.rssBytes),
            pageFaults: optUInt64(mem.pageFaults),
            majorPageFaults: optUInt64(mem.majorPageFaults),
          },
    writableLayer: s.writableLayer === null || s.writableLayer === undefined ? undefined : fsUsageFromWire(s.writableLayer),
  };
}

// ---- endpoint and errors ---------------------------------------------------------

/**
 * The gRPC target for a runtime endpoint: 'unix:///run/x.sock', 'unix:/run/x.sock'
 * or a plain absolute path. Other schemes are refused (the kubelet on Linux takes
 * unix sockets only).
 */
export function grpcTarget(endpoint: string): string {
  const path = endpoint.startsWith('unix://') ? endpoint.slice('unix://'.length) : endpoint.startsWith('unix:') ? endpoint.slice('unix:'.length) : endpoint;
  if (!path.startsWith('/') || /^[a-z][a-z0-9+.-]*:/i.test(path)) {
    throw new KnodeError('INVALID_ENDPOINT', `runtime endpoint ${JSON.stringify(endpoint)} must be unix:///absolute/path or /absolute/path`, {
      details: { endpoint },
    });
  }
  return `unix://${path}`;
}

/** What a gRPC failure carries (grpc-js ServiceError, without depending on its class). */
export interface GrpcErrorLike {
  code?: unknown;
  details?: unknown;
  message?: unknown;
}

const statusNames: Record<number, string> = Object.fromEntries(
  Object.entries(GrpcStatus)
    .filter((e): e is [string, number] => typeof e[1] === 'number')
    .map(([name, code]) => [code, name]),
);

/** The gRPC status name for a numeric code ('NOT_FOUND' for 5), 'UNKNOWN' otherwise. */
export function grpcStatusName(code: unknown): string {
  return typeof code === 'number' ? (statusNames[code] ?? 'UNKNOWN') : 'UNKNOWN';
}

/**
 * A gRPC failure as a KnodeError: code = the status name ('NOT_FOUND',
 * 'UNAVAILABLE', 'DEADLINE_EXCEEDED' ...), message = method + the runtime's text.
 */
export function criError(method: string, err: unknown): KnodeError {
  if (err instanceof KnodeError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as GrpcErrorLike;
  const code = grpcStatusName(e.code);
  const text = typeof e.details === 'string' && e.details !== '' ? e.details : typeof e.message === 'string' ? e.message : String(err);
  return new KnodeError(code, `CRI ${method}: ${text}`, { cause: err, details: { method, grpcCode: typeof e.code === 'number' ? e.code : undefined } });
}

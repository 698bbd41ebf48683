/**
 * Pure translations between the agent's runtime port (../types.ts) and the
 * Docker Engine API, the way cri-dockerd does it.
 *
 * Design notes:
 * - Identity lives on the docker containers themselves, so a restarted agent
 *   (a new backend instance) finds everything again: names
 *   `k8s_POD_<pod>_<ns>_<uid>_<attempt>` (sandboxes) and
 *   `k8s_<container>_<pod>_<ns>_<uid>_<attempt>` (containers) carry the CRI
 *   metadata, labels `io.kubernetes.docker.type=podsandbox|container` and
 *   `io.kubernetes.sandbox.id` tell the kinds apart and join them, the CRI
 *   labels are docker labels as they are, CRI annotations are labels prefixed
 *   `annotation.`, and the log path is the label
 *   `io.kubernetes.container.logpath` (all as cri-dockerd names them).
 * - Timestamps: docker speaks RFC 3339 with nanoseconds; they become bigint
 *   nanoseconds (the zero time 0001-01-01 becomes 0n).
 * - Nothing here talks to docker; client.ts does.
 */
import type Dockerode from 'dockerode';
import type {
  AuthConfig,
  ContainerConfig,
  ContainerState,
  ContainerStatus,
  ImageSpec,
  Image,
  Labels,
  LinuxContainerResources,
  Mount,
  NamespaceMode,
  NamespaceOptions,
  PodSandboxConfig,
  PodSandboxMetadata,
  ContainerMetadata,
} from '../types.js';

export const dockerTypeLabel = 'io.kubernetes.docker.type';
export const sandboxIdLabel = 'io.kubernetes.sandbox.id';
export const logPathLabel = 'io.kubernetes.container.logpath';
export const podNameLabel = 'io.kubernetes.pod.name';
export const podNamespaceLabel = 'io.kubernetes.pod.namespace';
export const podUidLabel = 'io.kubernetes.pod.uid';
export const containerNameLabel = 'io.kubernetes.container.name';
/** The sandbox's namespace modes (JSON), so podSandboxStatus reports them after a restart. */
export const namespaceOptionsLabel = 'io.knode.sandbox.namespace-options';
export const annotationPrefix = 'annotation.';
const internalLabels = new Set([dockerTypeLabel, sandboxIdLabel, logPathLabel, namespaceOptionsLabel]);

export type DockerKind = 'podsandbox' | 'container';

const namePrefix = 'k8s';

/** Docker name of a sandbox's pause container (cri-dockerd's makeSandboxName). Pure. */
export function sandboxName(m: PodSandboxMetadata): string {
  return [namePrefix, 'POD', m.name, m.namespace, m.uid, String(m.attempt)].join('_');
}

/** Docker name of an app container (cri-dockerd's makeContainerName). Pure. */
export function containerName(sandbox: PodSandboxMetadata, m: ContainerMetadata): string {
  return [namePrefix, m.name, sandbox.name, sandbox.namespace, sandbox.uid, String(m.attempt)].join('_');
}

interface ParsedName {
  name: string;
  pod: string;
  namespace: string;
  uid: string;
  attempt: number;
}

/** Parses a name made by sandboxName/containerName (with or without docker's leading '/'). Pure. */
export function parseName(dockerName: string): ParsedName | undefined {
  const parts = dockerName.replace(/^\//, '').split('_');
  if (parts.length !== 6 || parts[0] !== namePrefix) return undefined;
  const attempt = Number(parts[5]);
  if (!Number.isInteger(attempt) || attempt < 0) return undefined;
  return { name: parts[1]!, pod: parts[2]!, namespace: parts[3]!, uid: parts[4]!, attempt };
}

/** CRI labels + annotations as docker labels, plus the internal ones. Pure. */
export function toDockerLabels(labels: Labels | undefined, annotations: Labels | undefined, internal: Labels): Labels {
  const out: Labels = { ...labels };
  for (const [k, v] of Object.entries(annotations ?? {})) out[annotationPrefix + k] = v;
  return { ...out, ...internal };
}

/** Docker labels back into CRI labels and annotations (internal ones dropped). Pure. */
export function fromDockerLabels(dockerLabels: Labels | null | undefined): { labels: Labels; annotations: Labels } {
  const labels: Labels = {};
  const annotations: Labels = {};
  for (const [k, v] of Object.entries(dockerLabels ?? {})) {
    if (k.startsWith(annotationPrefix)) annotations[k.slice(annotationPrefix.length)] = v;
    else if (!internalLabels.has(k)) labels[k] = v;
  }
  return { labels, annotations };
}

/** Docker list filters for a kind plus a CRI label selector. Pure. */
export function labelFilters(kind: DockerKind, selector: Labels | undefined, extra: Labels = {}): string[] {
  return [`${dockerTypeLabel}=${kind}`, ...Object.entries({ ...selector, ...extra }).map(([k, v]) => `${k}=${v}`)];
}

// ---- time ------------------------------------------------------------------

/** RFC 3339 (nanosecond precision allowed) to bigint ns since the epoch; zero/invalid time is 0n. Pure. */
export function rfc3339ToNanos(text: string | undefined): bigint {
  if (text === undefined || text === '' || text.startsWith('0001-01-01')) return 0n;
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  if (m === null) return 0n;
  const seconds = Date.parse(`${m[1]!}${m[3]!}`);
  if (Number.isNaN(seconds)) return 0n;
  const frac = BigInt((m[2] ?? '').padEnd(9, '0'));
  return BigInt(seconds) * 1_000_000n + frac;
}

/** bigint ns to RFC 3339 with 9 fraction digits (CRI log lines). Pure. */
export function nanosToRfc3339(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const base = new Date(ms).toISOString().slice(0, 19);
  return `${base}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}Z`;
}

// ---- sandboxes -------------------------------------------------------------

function nsMode(mode: NamespaceMode | undefined): NamespaceMode {
  return mode ?? 'pod';
}

/** The namespace modes a sandbox runs with. Pure. */
export function sandboxNamespaces(config: PodSandboxConfig): NamespaceOptions {
  const o = config.linux?.securityContext?.namespaceOptions;
  return { network: nsMode(o?.network), pid: o?.pid === 'node' ? 'node' : 'container', ipc: nsMode(o?.ipc) };
}

export interface SandboxCreateInput {
  config: PodSandboxConfig;
  pauseImage: string;
  /** Used when the sandbox names none. */
  defaultCgroupParent: string | undefined;
}

/** The pause container of a sandbox (cri-dockerd's makeSandboxDockerConfig). Pure. */
export function sandboxCreateOptions(i: SandboxCreateInput): Dockerode.ContainerCreateOptions {
  const c = i.config;
  const ns = sandboxNamespaces(c);
  const sc = c.linux?.securityContext;
  const labels = toDockerLabels(c.labels, c.annotations, {
    [dockerTypeLabel]: 'podsandbox',
    [podNameLabel]: c.metadata.name,
    [podNamespaceLabel]: c.metadata.namespace,
    [podUidLabel]: c.metadata.uid,
    [containerNameLabel]: 'POD',
    [namespaceOptionsLabel]: JSON.stringify(ns),
  });
  const hostNetwork = ns.network === 'node';
  const cgroupParent = c.linux?.cgroupParent ?? i.defaultCgroupParent;
  const hostConfig: Dockerode.HostConfig = {
    NetworkMode: hostNetwork ? 'host' : 'none',
    IpcMode: ns.ipc === 'node' ? 'host' : 'shareable',
    ...(ns.pid === 'node' ? { PidMode: 'host' } : {}),
    ...(cgroupParent !== undefined ? { CgroupParent: cgroupParent } : {}),
    ...(sc?.privileged ? { Privileged: true } : {}),
    ...(sc?.readonlyRootfs ? { ReadonlyRootfs: true } : {}),
    ...(!hostNetwork && c.linux?.sysctls !== undefined ? { Sysctls: { ...c.linux.sysctls } } : {}),
    ...(c.dnsConfig?.servers?.length ? { Dns: c.dnsConfig.servers } : {}),
    ...(c.dnsConfig?.searches?.length ? { DnsSearch: c.dnsConfig.searches } : {}),
    ...(c.dnsConfig?.options?.length ? { DnsOptions: c.dnsConfig.options } : {}),
    SecurityOpt: securityOpts(sc?.seccomp?.type, undefined),
    LogConfig: { Type: 'json-file', Config: {} },
  };
  return {
    name: sandboxName(c.metadata),
    Image: i.pauseImage,
    ...(c.hostname !== undefined && c.hostname !== '' && !hostNetwork ? { Hostname: c.hostname } : {}),
    Labels: labels,
    HostConfig: hostConfig,
  };
}

/** resolv.conf text from the sandbox's dnsConfig (cri-dockerd's rewriteResolvFile); undefined when it names nothing. Pure. */
export function renderResolvConf(dns: PodSandboxConfig['dnsConfig']): string | undefined {
  if (dns === undefined) return undefined;
  const lines: string[] = [];
  for (const s of dns.servers ?? []) lines.push(`nameserver ${s}`);
  if (dns.searches?.length) lines.push(`search ${dns.searches.join(' ')}`);
  if (dns.options?.length) lines.push(`options ${dns.options.join(' ')}`);
  return lines.length === 0 ? undefined : lines.join('\n') + '\n';
}

// ---- containers ------------------------------------------------------------

function securityOpts(seccomp: string | undefined, noNewPrivs: boolean | undefined): string[] {
  const out: string[] = [];
  if (seccomp === 'unconfined') out.push('seccomp=unconfined');
  if (noNewPrivs) out.push('no-new-privileges');
  return out;
}

function propagationSuffix(p: Mount['propagation']): string {
  return p === 'bidirectional' ? 'rshared' : p === 'hostToContainer' ? 'rslave' : 'rprivate';
}

/** A CRI mount as a docker bind (`host:container:ro,rslave`). Pure. */
export function mountToBind(m: Mount): string {
  return `${m.hostPath}:${m.containerPath}:${m.readonly ? 'ro' : 'rw'},${propagationSuffix(m.propagation)}`;
}

/** A docker bind back into a CRI mount. Pure. */
export function bindToMount(bind: string): Mount | undefined {
  const parts = bind.split(':');
  if (parts.length < 2) return undefined;
  const opts = (parts[2] ?? '').split(',');
  const propagation: Mount['propagation'] = opts.includes('rshared') ? 'bidirectional' : opts.includes('rslave') ? 'hostToContainer' : 'private';
  return { hostPath: parts[0]!, containerPath: parts[1]!, readonly: opts.includes('ro'), propagation };
}

/** docker's User from the CRI security context: `uid[:gid]` or a name. Pure. */
export function dockerUser(sc: NonNullable<ContainerConfig['linux']>['securityContext']): string | undefined {
  if (sc?.runAsUser !== undefined) return sc.runAsGroup !== undefined ? `${sc.runAsUser}:${sc.runAsGroup}` : String(sc.runAsUser);
  if (sc?.runAsUsername !== undefined && sc.runAsUsername !== '') return sc.runAsGroup !== undefined ? `${sc.runAsUsername}:${sc.runAsGroup}` : sc.runAsUsername;
  return undefined;
}

/** Resource fields of a docker HostConfig (create and update). oomScoreAdj below `minOomScoreAdj` is raised to it. Pure. */
export function resourcesToDocker(r: LinuxContainerResources | undefined, minOomScoreAdj: number): Dockerode.HostConfig {
  if (r === undefined) return {};
  const out: Dockerode.HostConfig = {};
  if (r.cpuShares) out.CpuShares = r.cpuShares;
  if (r.cpuQuota) out.CpuQuota = r.cpuQuota;
  if (r.cpuPeriod) out.CpuPeriod = r.cpuPeriod;
  if (r.memoryLimitInBytes) {
    out.Memory = r.memoryLimitInBytes;
    // Docker's default swap is twice the memory; the kubelet means "no swap beyond the limit".
    out.MemorySwap = r.memorySwapLimitInBytes || r.memoryLimitInBytes;
  }
  if (r.cpusetCpus) out.CpusetCpus = r.cpusetCpus;
  if (r.cpusetMems) out.CpusetMems = r.cpusetMems;
  if (r.oomScoreAdj !== undefined) out.OomScoreAdj = Math.max(r.oomScoreAdj, minOomScoreAdj);
  return out;
}

export interface ContainerCreateInput {
  sandboxId: string;
  sandbox: PodSandboxConfig;
  config: ContainerConfig;
  /** The image to run (id or reference). */
  image: string;
  /** Absolute log path ('' when the agent asked for none). */
  logPath: string;
  defaultCgroupParent: string | undefined;
  minOomScoreAdj: number;
}

/** An app container joined to the pause container's namespaces (cri-dockerd's CreateContainer). Pure. */
export function containerCreateOptions(i: ContainerCreateInput): Dockerode.ContainerCreateOptions {
  const c = i.config;
  const sc = c.linux?.securityContext;
  const sandboxNs = sandboxNamespaces(i.sandbox);
  const joined = `container:${i.sandboxId}`;
  const pidMode = sc?.namespaceOptions?.pid ?? (sandboxNs.pid === 'node' ? 'node' : 'container');
  const cgroupParent = i.sandbox.linux?.cgroupParent ?? i.defaultCgroupParent;
  const labels = toDockerLabels(c.labels, c.annotations, {
    [dockerTypeLabel]: 'container',
    [sandboxIdLabel]: i.sandboxId,
    [podNameLabel]: i.sandbox.metadata.name,
    [podNamespaceLabel]: i.sandbox.metadata.namespace,
    [podUidLabel]: i.sandbox.metadata.uid,
    [containerNameLabel]: c.metadata.name,
    ...(i.logPath !== '' ? { [logPathLabel]: i.logPath } : {}),
  });
  const caps = sc?.capabilities;
  const hostConfig: Dockerode.HostConfig = {
    NetworkMode: joined,
    IpcMode: sandboxNs.ipc === 'node' ? 'host' : joined,
    ...(pidMode === 'pod' ? { PidMode: joined } : pidMode === 'node' ? { PidMode: 'host' } : {}),
    Binds: (c.mounts ?? []).map(mountToBind),
    ...(cgroupParent !== undefined ? { CgroupParent: cgroupParent } : {}),
    ...(sc?.privileged ? { Privileged: true } : {}),
    ...(sc?.readonlyRootfs ? { ReadonlyRootfs: true } : {}),
    ...(caps?.add?.length ? { CapAdd: caps.add } : {}),
    ...(caps?.drop?.length ? { CapDrop: caps.drop } : {}),
    ...(sc?.supplementalGroups?.length ? { GroupAdd: sc.supplementalGroups.map(String) } : {}),
    ...(sc?.maskedPaths !== undefined && !sc.privileged ? { MaskedPaths: sc.maskedPaths } : {}),
    ...(sc?.readonlyPaths !== undefined && !sc.privileged ? { ReadonlyPaths: sc.readonlyPaths } : {}),
    Devices: (c.devices ?? []).map((d) => ({ PathOnHost: d.hostPath, PathInContainer: d.containerPath, CgroupPermissions: d.permissions || 'rwm' })),
    SecurityOpt: securityOpts(sc?.seccomp?.type, sc?.noNewPrivs),
    LogConfig: { Type: 'json-file', Config: {} },
    ...resourcesToDocker(c.linux?.resources, i.minOomScoreAdj),
  };
  const user = dockerUser(sc);
  return {
    name: containerName(i.sandbox.metadata, c.metadata),
    Image: i.image,
    ...(c.command?.length ? { Entrypoint: c.command } : {}),
    ...(c.args?.length ? { Cmd: c.args } : {}),
    Env: (c.envs ?? []).map((e) => `${e.key}=${e.value}`),
    ...(c.workingDir ? { WorkingDir: c.workingDir } : {}),
    ...(user !== undefined ? { User: user } : {}),
    Labels: labels,
    Tty: c.tty ?? false,
    OpenStdin: c.stdin ?? false,
    StdinOnce: c.stdinOnce ?? false,
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    HostConfig: hostConfig,
  };
}

/** docker's State.Status as a CRI state. Pure. */
export function containerState(status: string | undefined): ContainerState {
  switch (status) {
    case 'created':
      return 'created';
    case 'running':
    case 'paused':
    case 'restarting':
      return 'running';
    case 'exited':
    case 'dead':
      return 'exited';
    default:
      return 'unknown';
  }
}

/** kubelet's reason for a finished container. Pure. */
export function exitReason(state: ContainerState, exitCode: number, oomKilled: boolean): string {
  if (state !== 'exited') return '';
  if (oomKilled) return 'OOMKilled';
  return exitCode === 0 ? 'Completed' : 'Error';
}

/** The image reference cri-dockerd reports: a repo digest when there is one, else the image id. Pure. */
export function imageRefOf(image: { Id: string; RepoDigests?: string[] | null } | undefined, fallback: string): string {
  return image?.RepoDigests?.[0] ?? image?.Id ?? fallback;
}

/**
 * Start and finish times (ns) of a container in `state`. dockerd records StartedAt after the
 * process has started and FinishedAt from the exit event, so a container that exits at once can
 * show FinishedAt a little before StartedAt; a container never finishes before it starts, so the
 * finish is clamped to the start. Pure.
 */
export function containerTimes(state: ContainerState, startedAtText: string, finishedAtText: string): { startedAt: bigint; finishedAt: bigint } {
  const startedAt = state === 'created' ? 0n : rfc3339ToNanos(startedAtText);
  const finished = state === 'exited' ? rfc3339ToNanos(finishedAtText) : 0n;
  return { startedAt, finishedAt: finished > 0n && finished < startedAt ? startedAt : finished };
}

/** A container's status from `docker inspect`. Pure. */
export function containerStatusFromInspect(c: Dockerode.ContainerInspectInfo, image: Dockerode.ImageInspectInfo | undefined): ContainerStatus {
  const parsed = parseName(c.Name);
  const { labels, annotations } = fromDockerLabels(c.Config.Labels);
  const state = containerState(c.State.Status);
  const exitCode = state === 'exited' ? c.State.ExitCode : 0;
  const { startedAt, finishedAt } = containerTimes(state, c.State.StartedAt, c.State.FinishedAt);
  return {
    id: c.Id,
    metadata: { name: parsed?.name ?? c.Config.Labels?.[containerNameLabel] ?? c.Name.replace(/^\//, ''), attempt: parsed?.attempt ?? 0 },
    state,
    createdAt: rfc3339ToNanos(c.Created),
    startedAt,
    finishedAt,
    exitCode,
    image: { image: c.Config.Image },
    imageRef: imageRefOf(image, c.Image),
    imageId: c.Image,
    reason: exitReason(state, exitCode, c.State.OOMKilled),
    message: c.State.Error ?? '',
    labels,
    annotations,
    mounts: (c.HostConfig.Binds ?? []).map(bindToMount).filter((m): m is Mount => m !== undefined),
    logPath: c.Config.Labels?.[logPathLabel] ?? '',
    resources: {
      cpuShares: c.HostConfig.CpuShares ?? 0,
      cpuQuota: c.HostConfig.CpuQuota ?? 0,
      cpuPeriod: c.HostConfig.CpuPeriod ?? 0,
      memoryLimitInBytes: c.HostConfig.Memory ?? 0,
    },
  };
}

// ---- images ----------------------------------------------------------------

/** uid / user name an image runs as, from its config's User (`uid`, `uid:gid`, `name`, `name:group`). Pure. */
export function imageUser(user: string | undefined): { uid: number | undefined; username: string } {
  const u = (user ?? '').split(':')[0] ?? '';
  if (u === '') return { uid: undefined, username: '' };
  return /^\d+$/.test(u) ? { uid: Number(u), username: '' } : { uid: undefined, username: u };
}

/** An image from `docker image inspect`. Pure. */
export function imageFromInspect(i: Dockerode.ImageInspectInfo, spec: ImageSpec | undefined): Image {
  return {
    id: i.Id,
    repoTags: i.RepoTags ?? [],
    repoDigests: i.RepoDigests ?? [],
    size: i.Size,
    ...imageUser(i.Config?.User),
    spec,
    pinned: false,
  };
}

/** An image from `docker images` (no config there: no user). Pure. */
export function imageFromList(i: Dockerode.ImageInfo): Image {
  return { id: i.Id, repoTags: i.RepoTags ?? [], repoDigests: i.RepoDigests ?? [], size: i.Size, uid: undefined, username: '', spec: undefined, pinned: false };
}

/**
 * A reference docker pulls as exactly one image: `name` alone would pull every
 * tag, so it gets `:latest` (as the kubelet means it). Pure.
 */
export function pullReference(ref: string): string {
  if (ref.includes('@')) return ref;
  const lastSlash = ref.lastIndexOf('/');
  return ref.slice(lastSlash + 1).includes(':') ? ref : `${ref}:latest`;
}

/** The registry host of a reference (docker.io when it names none). Pure. */
export function registryOf(ref: string): string {
  const first = ref.split('/')[0]!;
  return ref.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost') ? first : 'docker.io';
}

/** The engine's X-Registry-Auth object. */
export interface DockerRegistryAuth {
  username: string;
  password: string;
  serveraddress: string;
  identitytoken?: string;
  registrytoken?: string;
}

/** The engine's X-Registry-Auth object from a CRI AuthConfig. Pure. */
export function dockerAuth(auth: AuthConfig, ref: string): DockerRegistryAuth {
  let username = auth.username ?? '';
  let password = auth.password ?? '';
  if (username === '' && auth.auth !== undefined && auth.auth !== '') {
    const text = Buffer.from(auth.auth, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    if (colon > 0) {
      username = text.slice(0, colon);
      password = text.slice(colon + 1);
    }
  }
  const out: DockerRegistryAuth = {
    username,
    password,
    serveraddress: auth.serverAddress || registryOf(ref),
  };
  if (auth.identityToken) out.identitytoken = auth.identityToken;
  if (auth.registryToken) out.registrytoken = auth.registryToken;
  return out;
}

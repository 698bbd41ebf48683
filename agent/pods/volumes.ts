/**
 * Pod volumes on the node, as the kubelet lays them out:
 * `<rootDir>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`.
 *
 * - emptyDir: a directory (medium Memory: a tmpfs on it, through the Mounter).
 * - hostPath: the host path itself, after the type check (DirectoryOrCreate,
 *   Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice).
 * - configMap / secret / downwardAPI: files written by the atomic writer
 *   (`..data` layout) from a pure payload (items, keys, modes, optional).
 * - projected: the same, from several sources incl. service-account tokens
 *   (projected.ts, tokens.ts).
 *
 * The payload functions are pure; `setUpVolumes` applies them and is
 * idempotent (called on every sync: configMap updates reach the files).
 */
import type { V1Container, V1DownwardAPIVolumeFile, V1KeyToPath, V1Pod, V1Volume } from '@kubernetes/client-node';
import { lstat, mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, KnodeError } from '../../lib/errors.js';
import { execFile } from '../../lib/exec.js';
import type { Mount, MountPropagation } from '../runtime/types.js';
import { writeAtomic, type FilePayload } from './atomic-writer.js';
import { projectedInputs, projectedPayload } from './projected.js';
import type { TokenSource } from './tokens.js';
import { containerResourceValue, podFieldValue } from './env.js';
import { quantityValue } from './quantity.js';
import type { ObjectLookup } from './types.js';

export type VolumePlugin = 'empty-dir' | 'host-path' | 'configmap' | 'secret' | 'downward-api' | 'projected';

export function podDir(rootDir: string, uid: string): string {
  return join(rootDir, 'pods', uid);
}

export function volumePlugin(v: V1Volume): VolumePlugin | undefined {
  if (v.emptyDir !== undefined) return 'empty-dir';
  if (v.hostPath !== undefined) return 'host-path';
  if (v.configMap !== undefined) return 'configmap';
  if (v.secret !== undefined) return 'secret';
  if (v.downwardAPI !== undefined) return 'downward-api';
  if (v.projected !== undefined) return 'projected';
  return undefined;
}

/** Host path of a volume (undefined for kinds not supported). */
export function volumeHostPath(rootDir: string, uid: string, v: V1Volume): string | undefined {
  const plugin = volumePlugin(v);
  if (plugin === undefined) return undefined;
  if (plugin === 'host-path') return v.hostPath!.path;
  return join(podDir(rootDir, uid), 'volumes', `kubernetes.io~${plugin}`, v.name);
}

export function volumeError(name: string, message: string): KnodeError {
  return new KnodeError('VOLUME_SETUP', `MountVolume.SetUp failed for volume "${name}" : ${message}`);
}

function keyPayload(
  volumeName: string,
  data: ReadonlyMap<string, Buffer>,
  items: V1KeyToPath[] | undefined,
  defaultMode: number,
  optional: boolean,
  what: string,
): Map<string, FilePayload> {
  const out = new Map<string, FilePayload>();
  if (items === undefined || items.length === 0) {
    for (const [k, v] of data) out.set(k, { data: v, mode: defaultMode });
    return out;
  }
  for (const item of items) {
    const v = data.get(item.key);
    if (v === undefined) {
      if (optional) continue;
      throw volumeError(volumeName, `${what} references non-existent ${what === 'secret' ? 'secret' : 'config'} key: ${item.key}`);
    }
    out.set(item.path, { data: v, mode: item.mode ?? defaultMode });
  }
  return out;
}

export interface ConfigMapData {
  data?: Record<string, string>;
  binaryData?: Record<string, string>;
}

export interface SecretData {
  /** base64, as in the API. */
  data?: Record<string, string>;
}

/** Files of a configMap (volume or projection source; undefined configMap = not found). Pure. */
export function configMapFiles(
  volumeName: string,
  src: { name?: string; items?: V1KeyToPath[]; optional?: boolean },
  cm: ConfigMapData | undefined,
  defaultMode: number,
): Map<string, FilePayload> {
  const optional = src.optional === true;
  if (cm === undefined) {
    if (optional) return new Map();
    throw volumeError(volumeName, `configmap "${src.name ?? ''}" not found`);
  }
  const data = new Map<string, Buffer>();
  for (const [k, s] of Object.entries(cm.data ?? {})) data.set(k, Buffer.from(s, 'utf8'));
  for (const [k, s] of Object.entries(cm.binaryData ?? {})) data.set(k, Buffer.from(s, 'base64'));
  return keyPayload(volumeName, data, src.items, defaultMode, optional, 'configmap');
}

/** Files of a secret (volume or projection source). Pure. */
export function secretFiles(
  volumeName: string,
  src: { name?: string; items?: V1KeyToPath[]; optional?: boolean },
  secret: SecretData | undefined,
  defaultMode: number,
): Map<string, FilePayload> {
  const optional = src.optional === true;
  if (secret === undefined) {
    if (optional) return new Map();
    throw volumeError(volumeName, `secret "${src.name ?? ''}" not found`);
  }
  const data = new Map<string, Buffer>();
  for (const [k, s] of Object.entries(secret.data ?? {})) data.set(k, Buffer.from(s, 'base64'));
  return keyPayload(volumeName, data, src.items, defaultMode, optional, 'secret');
}

/** Files of a configMap volume (undefined configMap = not found). Pure. */
export function configMapPayload(v: V1Volume, cm: ConfigMapData | undefined): Map<string, FilePayload> {
  const src = v.configMap!;
  return configMapFiles(v.name, src, cm, src.defaultMode ?? 0o644);
}

/** Files of a secret volume (data is base64, as in the API). Pure. */
export function secretPayload(v: V1Volume, secret: SecretData | undefined): Map<string, FilePayload> {
  const src = v.secret!;
  return secretFiles(v.name, { ...src, name: src.secretName }, secret, src.defaultMode ?? 0o644);
}

export interface DownwardContext {
  hostIPs: string[];
  podIPs: string[];
  nodeAllocatable: { cpu: string; memory: string };
}

/** Files of downwardAPI items (volume or projection source). Pure. */
export function downwardFiles(pod: V1Pod, volumeName: string, items: V1DownwardAPIVolumeFile[], defaultMode: number, ctx: DownwardContext): Map<string, FilePayload> {
  const out = new Map<string, FilePayload>();
  for (const item of items) {
    let value: string;
    if (item.fieldRef !== undefined) {
      value = podFieldValue(pod, item.fieldRef.fieldPath, ctx);
    } else if (item.resourceFieldRef !== undefined) {
      const name = item.resourceFieldRef.containerName;
      const c = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].find((x) => x.name === name);
      if (c === undefined) throw volumeError(volumeName, `container ${name ?? ''} not found in pod`);
      const divisor = item.resourceFieldRef.divisor;
      value = containerResourceValue(c, item.resourceFieldRef.resource, divisor === undefined ? undefined : String(divisor), ctx.nodeAllocatable);
    } else {
      continue;
    }
    out.set(item.path, { data: Buffer.from(value, 'utf8'), mode: item.mode ?? defaultMode });
  }
  return out;
}

/** Files of a downwardAPI volume. Pure. */
export function downwardAPIPayload(pod: V1Pod, v: V1Volume, ctx: DownwardContext): Map<string, FilePayload> {
  const src = v.downwardAPI!;
  return downwardFiles(pod, v.name, src.items ?? [], src.defaultMode ?? 0o644, ctx);
}

type HostPathType = 'DirectoryOrCreate' | 'Directory' | 'FileOrCreate' | 'File' | 'Socket' | 'CharDevice' | 'BlockDevice' | '';

/** Checks (and for the *OrCreate types creates) a hostPath, as upstream's hostPath type checker. */
export async function checkHostPath(path: string, type: string | undefined): Promise<void> {
  const t = (type ?? '') as HostPathType;
  const fail = (what: string): KnodeError => new KnodeError('HOSTPATH_TYPE', `hostPath type check failed: ${path} is not ${what}`);
  const st = await lstat(path).catch((err: unknown) => {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  });
  switch (t) {
    case '':
      return;
    case 'DirectoryOrCreate':
      if (st === undefined) {
        await mkdir(path, { recursive: true, mode: 0o755 });
        return;
      }
      if (!st.isDirectory()) throw fail('a directory');
      return;
    case 'Directory':
      if (st === undefined || !st.isDirectory()) throw fail('a directory');
      return;
    case 'FileOrCreate':
      if (st === undefined) {
        // Like upstream: the parent is not created.
        const fh = await open(path, 'a', 0o644).catch((err: unknown) => {
          throw new KnodeError('HOSTPATH_TYPE', `hostPath type check failed: cannot create file ${path}: ${errnoCode(err) ?? String(err)}`);
        });
        await fh.close();
        return;
      }
      if (!st.isFile()) throw fail('a file');
      return;
    case 'File':
      if (st === undefined || !st.isFile()) throw fail('a file');
      return;
    case 'Socket':
      if (st === undefined || !st.isSocket()) throw fail('a socket file');
      return;
    case 'CharDevice':
      if (st === undefined || !st.isCharacterDevice()) throw fail('a character device');
      return;
    case 'BlockDevice':
      if (st === undefined || !st.isBlockDevice()) throw fail('a block device');
      return;
    default:
      throw new KnodeError('HOSTPATH_TYPE', `hostPath type ${JSON.stringify(type)} is not supported`);
  }
}

/** Mount operations for memory-backed emptyDirs (a port, so tests can do without). */
export interface Mounter {
  mountTmpfs(dir: string, sizeBytes: number | undefined): Promise<void>;
  unmount(dir: string): Promise<void>;
  isMountPoint(dir: string): Promise<boolean>;
}

export const systemMounter: Mounter = {
  async mountTmpfs(dir, sizeBytes) {
    const opts = sizeBytes !== undefined ? ['-o', `size=${sizeBytes}`] : [];
    await execFile('mount', ['-t', 'tmpfs', ...opts, 'tmpfs', dir]);
  },
  async unmount(dir) {
    await execFile('umount', [dir], { allowFailure: true });
  },
  async isMountPoint(dir) {
    const info = await readFile('/proc/self/mountinfo', 'utf8');
    return info.split('\n').some((l) => l.split(' ')[4] === dir);
  },
};

export interface VolumeOptions extends DownwardContext {
  rootDir: string;
  lookup: ObjectLookup;
  mounter?: Mounter;
  /** Service-account tokens for projected volumes (none: such volumes fail to set up). */
  tokens?: TokenSource;
  /** Lower bound of a projected token's expirationSeconds (default 600; lower only in tests). */
  minTokenExpirationSeconds?: number;
}

/** Creates/updates every volume of the pod; returns volume name → host path. Throws VOLUME_SETUP / HOSTPATH_TYPE errors. */
export async function setUpVolumes(pod: V1Pod, options: VolumeOptions): Promise<Map<string, string>> {
  const uid = pod.metadata?.uid ?? '';
  const ns = pod.metadata?.namespace ?? 'default';
  const paths = new Map<string, string>();
  await mkdir(join(podDir(options.rootDir, uid), 'volumes'), { recursive: true, mode: 0o750 });
  for (const v of pod.spec?.volumes ?? []) {
    const path = volumeHostPath(options.rootDir, uid, v);
    if (path === undefined) continue; // unsupported kinds: containers mounting them fail in containerMounts
    switch (volumePlugin(v)) {
      case 'empty-dir':
        await mkdir(path, { recursive: true, mode: 0o777 });
        if (v.emptyDir!.medium === 'Memory' && options.mounter !== undefined && !(await options.mounter.isMountPoint(path))) {
          const size = v.emptyDir!.sizeLimit;
          await options.mounter.mountTmpfs(path, size === undefined ? undefined : quantityValue(String(size)));
        }
        break;
      case 'host-path':
        try {
          await checkHostPath(path, v.hostPath!.type);
        } catch (err) {
          throw volumeError(v.name, err instanceof Error ? err.message : String(err));
        }
        break;
      case 'configmap':
        await writeAtomic(path, configMapPayload(v, await options.lookup.getConfigMap(ns, v.configMap!.name ?? '')));
        break;
      case 'secret':
        await writeAtomic(path, secretPayload(v, await options.lookup.getSecret(ns, v.secret!.secretName ?? '')));
        break;
      case 'downward-api':
        await writeAtomic(path, downwardAPIPayload(pod, v, options));
        break;
      case 'projected':
        await writeAtomic(path, projectedPayload(pod, v, await projectedInputs(pod, v, options)));
        break;
      default:
        break;
    }
    paths.set(v.name, path);
  }
  return paths;
}

function propagation(mode: string | undefined): MountPropagation | undefined {
  if (mode === 'HostToContainer') return 'hostToContainer';
  if (mode === 'Bidirectional') return 'bidirectional';
  if (mode === 'None') return 'private';
  return undefined;
}

/** The container's CRI mounts from its volumeMounts (subPath dirs are created). */
export async function containerMounts(container: V1Container, volumePaths: ReadonlyMap<string, string>): Promise<Mount[]> {
  const out: Mount[] = [];
  for (const vm of container.volumeMounts ?? []) {
    const base = volumePaths.get(vm.name);
    if (base === undefined) throw new KnodeError('CREATE_CONTAINER_CONFIG', `cannot find volume "${vm.name}" to mount into container "${container.name}"`);
    let hostPath = base;
    if (vm.subPath !== undefined && vm.subPath !== '') {
      if (vm.subPath.startsWith('/') || vm.subPath.split('/').includes('..')) {
        throw new KnodeError('CREATE_CONTAINER_CONFIG', `subPath "${vm.subPath}" must be a relative path without '..'`);
      }
      hostPath = join(base, vm.subPath);
      const exists = await lstat(hostPath).then(() => true, () => false);
      if (!exists) await mkdir(hostPath, { recursive: true, mode: 0o750 });
    }
    const m: Mount = { containerPath: vm.mountPath, hostPath, readonly: vm.readOnly === true };
    const prop = propagation(vm.mountPropagation);
    if (prop !== undefined) m.propagation = prop;
    out.push(m);
  }
  return out;
}

/** Removes the pod's directory (unmounting memory-backed emptyDirs first). */
export async function tearDownVolumes(pod: V1Pod, options: { rootDir: string; mounter?: Mounter }): Promise<void> {
  const uid = pod.metadata?.uid ?? '';
  if (uid === '' || uid.includes('/')) return;
  for (const v of pod.spec?.volumes ?? []) {
    if (v.emptyDir?.medium === 'Memory' && options.mounter !== undefined) {
      const path = volumeHostPath(options.rootDir, uid, v)!;
      if (await options.mounter.isMountPoint(path)) await options.mounter.unmount(path);
    }
  }
  await rm(podDir(options.rootDir, uid), { recursive: true, force: true });
}

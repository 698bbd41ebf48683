/**
 * OCI image rendering: layers (deterministic tar, gzip), image config, manifest
 * and index, all as bytes with their digests.
 *
 * Design notes: `buildImage` is a pure function of an `ImageSpec` (no clock, no
 * filesystem), so the same spec always yields the same digests. The archive
 * writers (archive.ts) only package these blobs. JSON documents are rendered
 * with a fixed key order; `created` defaults to the Unix epoch.
 */
import { gzipSync } from 'node:zlib';
import { KnodeError } from '../errors.js';
import { sha256Digest } from './digest.js';
import { normalizeEntries, renderTar, type TarEntry } from './tar.js';

export const mediaTypes = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

export const annotations = {
  refName: 'org.opencontainers.image.ref.name',
  containerdImageName: 'io.containerd.image.name',
} as const;

export interface ImageConfigSpec {
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  user?: string;
  exposedPorts?: string[];
  labels?: Record<string, string>;
  stopSignal?: string;
}

export interface LayerSpec {
  entries: TarEntry[];
  /** Recorded in the config's history (`created_by`). */
  createdBy: string;
}

export interface ImageSpec {
  /** Full reference, e.g. 'knode.local/app:1.0'. */
  ref: string;
  architecture: string;
  os: string;
  layers: LayerSpec[];
  config: ImageConfigSpec;
  /** RFC 3339; defaults to the epoch so that builds are reproducible. */
  created?: string;
}

export interface Blob {
  mediaType: string;
  digest: string;
  size: number;
  data: Buffer;
}

export interface BuiltLayer {
  /** Uncompressed tar (docker-archive carries this). */
  tar: Buffer;
  /** sha256 of the uncompressed tar: the config's rootfs.diff_ids entry. */
  diffId: string;
  /** gzip'd tar: the manifest's layer blob. */
  blob: Blob;
}

export interface BuiltImage {
  ref: string;
  platform: { architecture: string; os: string };
  layers: BuiltLayer[];
  config: Blob;
  manifest: Blob;
}

/** Node's process.arch → the GOARCH names OCI platforms use. */
export function ociArchitecture(nodeArch: string): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  const arch = map[nodeArch];
  if (arch === undefined) throw new KnodeError('OCI_UNKNOWN_ARCH', `no OCI architecture name for ${nodeArch}`);
  return arch;
}

/** 'knode.local/app:1.0' → { repository: 'knode.local/app', tag: '1.0' }. */
export function splitRef(ref: string): { repository: string; tag: string } {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon <= slash || colon === ref.length - 1 || ref.includes('@')) {
    throw new KnodeError('OCI_BAD_REF', `image reference ${ref} must be <repository>:<tag>`);
  }
  return { repository: ref.slice(0, colon), tag: ref.slice(colon + 1) };
}

function blob(mediaType: string, data: Buffer): Blob {
  return { mediaType, digest: sha256Digest(data), size: data.length, data };
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

export function buildLayer(layer: LayerSpec): BuiltLayer {
  const tar = renderTar(normalizeEntries(layer.entries));
  // gzip with fixed settings: the header carries mtime 0 and no file name.
  const gz = gzipSync(tar, { level: 9 });
  return { tar, diffId: sha256Digest(tar), blob: blob(mediaTypes.layerGzip, gz) };
}

export function renderImageConfig(spec: ImageSpec, layers: readonly BuiltLayer[]): Buffer {
  const created = spec.created ?? '1970-01-01T00:00:00Z';
  const c = spec.config;
  const config: Record<string, unknown> = {};
  if (c.user !== undefined) config.User = c.user;
  if (c.exposedPorts !== undefined) config.ExposedPorts = Object.fromEntries([...c.exposedPorts].sort().map((p) => [p, {}]));
  if (c.env !== undefined) config.Env = c.env;
  if (c.entrypoint !== undefined) config.Entrypoint = c.entrypoint;
  if (c.cmd !== undefined) config.Cmd = c.cmd;
  if (c.workingDir !== undefined) config.WorkingDir = c.workingDir;
  if (c.labels !== undefined) config.Labels = Object.fromEntries(Object.entries(c.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  if (c.stopSignal !== undefined) config.StopSignal = c.stopSignal;
  return json({
    created,
    architecture: spec.architecture,
    os: spec.os,
    config,
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: spec.layers.map((l) => ({ created, created_by: l.createdBy })),
  });
}

export function renderManifest(config: Blob, layers: readonly BuiltLayer[]): Buffer {
  const descriptor = (b: Blob): { mediaType: string; digest: string; size: number } => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  return json({
    schemaVersion: 2,
    mediaType: mediaTypes.manifest,
    config: descriptor(config),
    layers: layers.map((l) => descriptor(l.blob)),
  });
}

export function buildImage(spec: ImageSpec): BuiltImage {
  splitRef(spec.ref);
  if (spec.layers.length === 0) throw new KnodeError('OCI_NO_LAYERS', `image ${spec.ref} has no layers`);
  const layers = spec.layers.map(buildLayer);
  const config = blob(mediaTypes.config, renderImageConfig(spec, layers));
  const manifest = blob(mediaTypes.manifest, renderManifest(config, layers));
  return { ref: spec.ref, platform: { architecture: spec.architecture, os: spec.os }, layers, config, manifest };
}

/** index.json of an OCI layout holding one image, named by both annotations containerd and skopeo read. */
export function renderIndex(image: BuiltImage): Buffer {
  return json({
    schemaVersion: 2,
    mediaType: mediaTypes.index,
    manifests: [
      {
        mediaType: image.manifest.mediaType,
        digest: image.manifest.digest,
        size: image.manifest.size,
        annotations: { [annotations.containerdImageName]: image.ref, [annotations.refName]: image.ref },
        platform: image.platform,
      },
    ],
  });
}

/**
 * Image archives: an OCI image layout in a tar (`ctr images import`,
 * `skopeo copy oci-archive:`) and a docker-archive (`docker load`).
 *
 * Design notes: both are pure renderings of a `BuiltImage` into one tar, with
 * the same deterministic tar writer as the layers. The docker-archive is the
 * format `docker save` writes (manifest.json + config + uncompressed
 * `<diff_id>/layer.tar`), because Docker 20.10 does not load OCI layouts.
 */
import { digestHex } from './digest.js';
import { renderIndex, type BuiltImage } from './image.js';
import { normalizeEntries, renderTar, type TarEntry } from './tar.js';

function file(path: string, data: Buffer): TarEntry {
  return { type: 'file', path, mode: 0o644, data };
}

export function renderOciArchive(image: BuiltImage): Buffer {
  const blobs = [image.manifest, image.config, ...image.layers.map((l) => l.blob)];
  const entries: TarEntry[] = [
    file('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' }), 'utf8')),
    file('index.json', renderIndex(image)),
  ];
  const seen = new Set<string>();
  for (const b of blobs) {
    if (seen.has(b.digest)) continue; // two identical layers are one blob
    seen.add(b.digest);
    entries.push(file(`blobs/sha256/${digestHex(b.digest)}`, b.data));
  }
  return renderTar(normalizeEntries(entries));
}

/** The manifest.json of a docker-archive (what `docker save` writes and `docker load` reads). */
export interface DockerArchiveManifestEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

export function dockerArchiveManifest(image: BuiltImage): DockerArchiveManifestEntry[] {
  return [
    {
      Config: `${digestHex(image.config.digest)}.json`,
      RepoTags: [image.ref],
      Layers: image.layers.map((l) => `${digestHex(l.diffId)}/layer.tar`),
    },
  ];
}

export function renderDockerArchive(image: BuiltImage): Buffer {
  const manifest = dockerArchiveManifest(image)[0]!;
  const entries: TarEntry[] = [
    file('manifest.json', Buffer.from(JSON.stringify([manifest]), 'utf8')),
    file(manifest.Config, image.config.data),
  ];
  const seen = new Set<string>();
  image.layers.forEach((layer, i) => {
    const path = manifest.Layers[i]!;
    if (seen.has(path)) return;
    seen.add(path);
    entries.push(file(path, layer.tar));
  });
  return renderTar(normalizeEntries(entries));
}

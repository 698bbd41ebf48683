import t from 'tap';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { dockerArchiveManifest, renderDockerArchive, renderOciArchive } from '../../lib/oci/archive.js';
import { annotations, buildImage, mediaTypes, ociArchitecture, renderIndex, splitRef, type ImageSpec } from '../../lib/oci/image.js';
import { parseTar, type ReadTarEntry } from '../../lib/oci/tar-read.js';
import { appImageSpec, pauseImageSpec } from '../../lab/images/definitions.js';
import { imageRefs } from '../../lab/paths.js';

const sha256 = (b: Uint8Array): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string };
}
interface Manifest {
  schemaVersion: number;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}
interface Index {
  schemaVersion: number;
  mediaType: string;
  manifests: Descriptor[];
}
interface Config {
  architecture: string;
  os: string;
  created: string;
  config: { Entrypoint?: string[]; Cmd?: string[]; Env?: string[]; WorkingDir?: string; ExposedPorts?: Record<string, object>; User?: string };
  rootfs: { type: string; diff_ids: string[] };
  history: { created_by: string }[];
}

function parseJson<T>(b: Buffer): T {
  return JSON.parse(b.toString('utf8')) as T;
}

const spec: ImageSpec = {
  ref: 'knode.local/test:0.1',
  architecture: 'amd64',
  os: 'linux',
  layers: [
    { entries: [{ type: 'file', path: 'hello', mode: 0o755, data: Buffer.from('hello\n') }], createdBy: 'first' },
    { entries: [{ type: 'symlink', path: 'bin/hi', target: '/hello' }], createdBy: 'second' },
  ],
  config: { entrypoint: ['/hello'], cmd: ['a'], env: ['PATH=/bin'], workingDir: '/', exposedPorts: ['8080/tcp', '53/udp'], user: '1:2' },
};

t.test('layers, config and manifest are consistent OCI', async (t) => {
  const image = buildImage(spec);
  t.equal(image.layers.length, 2);
  for (const layer of image.layers) {
    t.equal(layer.blob.mediaType, mediaTypes.layerGzip);
    t.equal(layer.blob.digest, sha256(layer.blob.data), 'layer digest = sha256 of the gzip bytes');
    t.equal(layer.blob.size, layer.blob.data.length);
    const tar = gunzipSync(layer.blob.data);
    t.ok(tar.equals(layer.tar), 'gzip holds the tar');
    t.equal(layer.diffId, sha256(tar), 'diff_id = sha256 of the uncompressed tar');
    t.not(layer.diffId, layer.blob.digest);
  }
  t.same(
    parseTar(image.layers[1]!.tar).map((e) => [e.path, e.typeflag, e.linkname]),
    [
      ['bin/', '5', ''],
      ['bin/hi', '2', '/hello'],
    ],
  );

  t.equal(image.config.mediaType, 'application/vnd.oci.image.config.v1+json');
  t.equal(image.config.digest, sha256(image.config.data));
  const config = parseJson<Config>(image.config.data);
  t.equal(config.architecture, 'amd64');
  t.equal(config.os, 'linux');
  t.equal(config.created, '1970-01-01T00:00:00Z');
  t.same(config.rootfs, { type: 'layers', diff_ids: image.layers.map((l) => l.diffId) });
  t.same(config.config, {
    User: '1:2',
    ExposedPorts: { '53/udp': {}, '8080/tcp': {} },
    Env: ['PATH=/bin'],
    Entrypoint: ['/hello'],
    Cmd: ['a'],
    WorkingDir: '/',
  });
  t.same(
    config.history.map((h) => h.created_by),
    ['first', 'second'],
  );

  t.equal(image.manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  t.equal(image.manifest.digest, sha256(image.manifest.data));
  const manifest = parseJson<Manifest>(image.manifest.data);
  t.equal(manifest.schemaVersion, 2);
  t.equal(manifest.mediaType, mediaTypes.manifest);
  t.same(manifest.config, { mediaType: mediaTypes.config, digest: image.config.digest, size: image.config.data.length });
  t.same(
    manifest.layers,
    image.layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(l.blob.data), size: l.blob.data.length })),
  );

  const index = parseJson<Index>(renderIndex(image));
  t.equal(index.schemaVersion, 2);
  t.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
  t.equal(index.manifests.length, 1);
  const m = index.manifests[0]!;
  t.same({ mediaType: m.mediaType, digest: m.digest, size: m.size }, { mediaType: mediaTypes.manifest, digest: image.manifest.digest, size: image.manifest.data.length });
  t.equal(m.annotations?.['org.opencontainers.image.ref.name'], 'knode.local/test:0.1');
  t.equal(m.annotations?.['io.containerd.image.name'], 'knode.local/test:0.1');
  t.same(m.platform, { architecture: 'amd64', os: 'linux' });
});

function byPath(entries: ReadTarEntry[]): Map<string, ReadTarEntry> {
  return new Map(entries.map((e) => [e.path, e]));
}

t.test('OCI archive: layout, index and every blob under its digest', async (t) => {
  const image = buildImage(spec);
  const files = byPath(parseTar(renderOciArchive(image)));
  t.same(parseJson<unknown>(files.get('oci-layout')!.data), { imageLayoutVersion: '1.0.0' });
  const index = parseJson<Index>(files.get('index.json')!.data);
  const blob = (digest: string): Buffer => {
    const entry = files.get(`blobs/sha256/${digest.slice('sha256:'.length)}`);
    if (entry === undefined) throw new Error(`blob ${digest} missing`);
    t.equal(sha256(entry.data), digest, `blob ${digest.slice(0, 19)} content matches its name`);
    return entry.data;
  };
  const manifestDesc = index.manifests[0]!;
  const manifestBytes = blob(manifestDesc.digest);
  t.equal(manifestBytes.length, manifestDesc.size);
  const manifest = parseJson<Manifest>(manifestBytes);
  t.equal(blob(manifest.config.digest).length, manifest.config.size);
  const config = parseJson<Config>(blob(manifest.config.digest));
  manifest.layers.forEach((l, i) => {
    const gz = blob(l.digest);
    t.equal(gz.length, l.size);
    t.equal(sha256(gunzipSync(gz)), config.rootfs.diff_ids[i], `layer ${i}: diff_id of the unpacked blob`);
  });
  t.equal([...files.keys()].filter((p) => p.startsWith('blobs/sha256/') && p !== 'blobs/sha256/').length, 4, 'manifest + config + 2 layers');
});

t.test('docker archive: manifest.json, config, uncompressed layers', async (t) => {
  const image = buildImage(spec);
  const files = byPath(parseTar(renderDockerArchive(image)));
  const manifest = parseJson<{ Config: string; RepoTags: string[]; Layers: string[] }[]>(files.get('manifest.json')!.data);
  t.same(manifest, dockerArchiveManifest(image));
  t.equal(manifest.length, 1);
  const entry = manifest[0]!;
  t.same(entry.RepoTags, ['knode.local/test:0.1']);
  const config = files.get(entry.Config)!.data;
  t.equal(sha256(config), image.config.digest, 'config file is the config blob');
  t.equal(entry.Config, `${image.config.digest.slice(7)}.json`);
  const diffIds = parseJson<Config>(config).rootfs.diff_ids;
  entry.Layers.forEach((path, i) => {
    t.equal(sha256(files.get(path)!.data), diffIds[i], `${path} is the uncompressed layer ${i}`);
  });
});

t.test('same spec, same bytes', async (t) => {
  const a = buildImage(spec);
  const b = buildImage(structuredClone(spec));
  t.ok(renderOciArchive(a).equals(renderOciArchive(b)), 'OCI archive');
  t.ok(renderDockerArchive(a).equals(renderDockerArchive(b)), 'docker archive');
  const changed = buildImage({ ...spec, config: { ...spec.config, cmd: ['b'] } });
  t.not(changed.config.digest, a.config.digest, 'a config change changes the digest');
  t.equal(changed.layers[0]!.blob.digest, a.layers[0]!.blob.digest, 'layers unchanged');
});

t.test('refs and architectures', async (t) => {
  t.same(splitRef('knode.local/app:1.0'), { repository: 'knode.local/app', tag: '1.0' });
  t.same(splitRef('127.0.0.1:5000/knode/app:1.0'), { repository: '127.0.0.1:5000/knode/app', tag: '1.0' });
  t.throws(() => splitRef('127.0.0.1:5000/knode/app'), { code: 'OCI_BAD_REF' });
  t.throws(() => buildImage({ ...spec, layers: [] }), { code: 'OCI_NO_LAYERS' });
  t.equal(ociArchitecture('x64'), 'amd64');
  t.equal(ociArchitecture('arm64'), 'arm64');
  t.throws(() => ociArchitecture('mips'), { code: 'OCI_UNKNOWN_ARCH' });
});

t.test('image definitions', async (t) => {
  const pause = buildImage(pauseImageSpec({ pauseBinary: Buffer.from('\x7fELF fake'), architecture: 'amd64' }));
  t.equal(pause.ref, imageRefs.pause);
  const pauseConfig = parseJson<Config>(pause.config.data);
  t.same(pauseConfig.config.Entrypoint, ['/pause']);
  const pauseFiles = parseTar(pause.layers[0]!.tar);
  t.same(
    pauseFiles.map((e) => [e.path, e.mode]),
    [['pause', 0o755]],
  );

  const app = buildImage(
    appImageSpec({ busyboxBinary: Buffer.from('busybox'), applets: ['bin/sh', 'usr/sbin/httpd', 'bin/hostname', 'bin/busybox', 'usr/bin/['], architecture: 'amd64' }),
  );
  t.equal(app.ref, imageRefs.app);
  const c = parseJson<Config>(app.config.data).config;
  t.same(c.Cmd, ['/bin/knode-app']);
  t.same(c.ExposedPorts, { '8080/tcp': {} });
  t.equal(c.WorkingDir, '/');
  t.match(c.Env?.[0], /^PATH=.*\/bin/);
  const files = byPath(parseTar(app.layers[0]!.tar));
  t.equal(files.get('bin/sh')?.linkname, '/bin/busybox');
  t.equal(files.get('usr/sbin/httpd')?.linkname, '/bin/busybox');
  t.equal(files.get('usr/bin/[')?.linkname, '/bin/busybox');
  t.equal(files.get('bin/busybox')?.typeflag, '0', 'busybox itself stays a file');
  t.equal(files.get('bin/busybox')?.data.toString(), 'busybox');
  t.equal(files.get('tmp/')?.mode, 0o1777);
  t.match(files.get('etc/passwd')?.data.toString(), /^root:x:0:0:/m);
  t.match(files.get('etc/passwd')?.data.toString(), /^nobody:x:65534:65534:/m);
  t.match(files.get('etc/group')?.data.toString(), /^nobody:x:65534:/m);
  const start = files.get('bin/knode-app');
  t.equal(start?.mode, 0o755);
  t.match(start?.data.toString(), /^#!\/bin\/sh\n/);
  t.match(start?.data.toString(), /exec httpd -f -p "\$port" -h "\$root"/);
  t.equal(files.get('usr/share/knode-app/cgi-bin/whoami')?.mode, 0o755);
});

t.test('index annotation keys', async (t) => {
  t.equal(annotations.refName, 'org.opencontainers.image.ref.name');
  t.equal(annotations.containerdImageName, 'io.containerd.image.name');
});

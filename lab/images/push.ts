/**
 * Push the lab images to a registry with skopeo (oci-archive → docker://).
 *
 * Design notes: images land at <host:port>/knode/<name>:<tag>, the tag being
 * the one of imageRefs (pause:3.9, app:1.0). Registries here speak plain HTTP,
 * hence --dest-tls-verify=false (skopeo then falls back from HTTPS to HTTP).
 * --insecure-policy spares the dependency on /etc/containers/policy.json.
 * Credentials go through a private auth file (removed afterwards), never on the
 * command line, so they show neither in `ps` nor in error messages. A push is
 * skipped when the registry already serves the same manifest digest for the tag.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from '../../lib/exec.js';
import { KnodeError } from '../../lib/errors.js';
import { createLogger, type Logger } from '../../lib/log.js';
import { sha256Digest } from '../../lib/oci/digest.js';
import { splitRef } from '../../lib/oci/image.js';
import { parseTar } from '../../lib/oci/tar-read.js';
import { imageRefs, imagesDir, type ImageName } from '../paths.js';
import { archivePath } from './build.js';
import type { RegistryAuth } from './registry.js';

export interface PushTarget {
  /** 'host:port' as clients reach it. */
  address: string;
  auth?: RegistryAuth;
}

/** Where an image lives in a registry: '127.0.0.1:5000/knode/app:1.0'. */
export function registryImageRef(address: string, name: ImageName): string {
  const { repository, tag } = splitRef(imageRefs[name]);
  const base = repository.slice(repository.lastIndexOf('/') + 1);
  return `${address}/knode/${base}:${tag}`;
}

export interface PushOptions {
  target: PushTarget;
  images?: readonly ImageName[];
  /** Directory holding the OCI archives; default imagesDir. */
  dir?: string;
  /** Run skopeo inside this network namespace (registry reachable only there). */
  netnsPath?: string;
  /** Push even when the registry already has the same manifest. */
  force?: boolean;
  logger?: Logger;
}

export interface PushResult {
  /** e.g. '127.0.0.1:5000/knode/app:1.0' */
  ref: string;
  digest: string;
  /** False when the registry already had this manifest under the tag. */
  pushed: boolean;
}

/** Manifest digest of the (single) image of an OCI archive, from its index.json. */
export async function archiveManifestDigest(archive: string): Promise<string> {
  const index = parseTar(await readFile(archive)).find((e) => e.path === 'index.json');
  const digest = index === undefined ? undefined : (JSON.parse(index.data.toString('utf8')) as { manifests?: { digest?: string }[] }).manifests?.[0]?.digest;
  if (digest === undefined) throw new KnodeError('IMAGES_BAD_ARCHIVE', `${archive} has no index.json with a manifest`);
  return digest;
}

/** Digest of the manifest a registry serves for ref (undefined when it has none or cannot be asked). */
async function remoteDigest(ref: string, authFile: string | undefined, netnsPath: string | undefined): Promise<string | undefined> {
  const args = ['--insecure-policy', 'inspect', '--raw', '--tls-verify=false', ...(authFile !== undefined ? ['--authfile', authFile] : ['--no-creds']), `docker://${ref}`];
  const [file, argv] = netnsPath !== undefined ? ['nsenter', [`--net=${netnsPath}`, 'skopeo', ...args]] : ['skopeo', args];
  const r = await execFile(file, argv, { allowFailure: true, timeoutMs: 30_000 });
  return r.code === 0 ? sha256Digest(Buffer.from(r.stdout, 'utf8')) : undefined;
}

export async function pushImages(options: PushOptions): Promise<PushResult[]> {
  const logger = options.logger ?? createLogger({ component: 'images' });
  const names = options.images ?? (Object.keys(imageRefs) as ImageName[]);
  const pushed: PushResult[] = [];
  let authDir: string | undefined;
  try {
    let authFile: string | undefined;
    if (options.target.auth !== undefined) {
      authDir = await mkdtemp(join(tmpdir(), 'knode-push-'));
      authFile = join(authDir, 'auth.json');
      const token = Buffer.from(`${options.target.auth.user}:${options.target.auth.password}`).toString('base64');
      await writeFile(authFile, JSON.stringify({ auths: { [options.target.address]: { auth: token } } }), { mode: 0o600 });
    }
    for (const name of names) pushed.push(await pushOne(name, options, authFile, logger));
  } finally {
    if (authDir !== undefined) await rm(authDir, { recursive: true, force: true });
  }
  return pushed;
}

async function pushOne(name: ImageName, options: PushOptions, authFile: string | undefined, logger: Logger): Promise<PushResult> {
  const archive = archivePath(options.dir ?? imagesDir, name, 'oci');
  const dest = registryImageRef(options.target.address, name);
  const digest = await archiveManifestDigest(archive).catch((err: unknown) => {
    throw new KnodeError('IMAGES_PUSH_FAILED', `cannot read ${archive} (build the images first)`, { cause: err, details: { archive } });
  });
  if (!options.force && (await remoteDigest(dest, authFile, options.netnsPath)) === digest) {
    logger.debug('image already in the registry', { image: imageRefs[name], at: dest, digest });
    return { ref: dest, digest, pushed: false };
  }
  const args = ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false'];
  // Without credentials, push anonymously rather than with whatever a default auth file holds.
  args.push(...(authFile !== undefined ? ['--dest-authfile', authFile] : ['--dest-no-creds']));
  args.push(`oci-archive:${archive}`, `docker://${dest}`);
  const [file, argv] = options.netnsPath !== undefined ? ['nsenter', [`--net=${options.netnsPath}`, 'skopeo', ...args]] : ['skopeo', args];
  try {
    await execFile(file, argv, { timeoutMs: 120_000 });
  } catch (err) {
    throw new KnodeError('IMAGES_PUSH_FAILED', `cannot push ${archive} to ${dest}`, { cause: err, details: { archive, dest } });
  }
  logger.info('pushed image', { image: imageRefs[name], to: dest, digest });
  return { ref: dest, digest, pushed: true };
}

/**
 * Build the lab images (pause, app) into OCI archives and docker-archives.
 *
 * Design notes: the inputs are gathered from the machine (gcc compiles
 * images/pause/pause.c; /bin/busybox and its applet list come from Debian's
 * busybox-static), the images are rendered by pure functions
 * (definitions.ts, lib/oci), and only then written. The rendering is
 * deterministic, so "up to date" is decided by content: an archive file is
 * rewritten only when its bytes would change (its mtime then tells consumers
 * that something changed). gcc is skipped when the binary is newer than the
 * source and was built with the same command line.
 */
import { execFile } from '../../lib/exec.js';
import { KnodeError, errnoCode } from '../../lib/errors.js';
import { createLogger, type Logger } from '../../lib/log.js';
import { renderDockerArchive, renderOciArchive } from '../../lib/oci/archive.js';
import { buildImage, ociArchitecture, type BuiltImage } from '../../lib/oci/image.js';
import { imageArchive, imageRefs, imagesDir, repoRoot, type ImageName } from '../paths.js';
import { appImageSpec, pauseImageSpec } from './definitions.js';
import { mkdir, readFile, rename, stat, writeFile, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';

export interface BuildOptions {
  /** Where archives go; default imagesDir (build/images), named as imageArchive() names them. */
  outDir?: string;
  pauseSource?: string;
  busybox?: string;
  cc?: string;
  logger?: Logger;
}

export interface ArchiveResult {
  path: string;
  /** False when the file already held exactly these bytes. */
  written: boolean;
  size: number;
}

export interface ImageBuildResult {
  ref: string;
  manifestDigest: string;
  configDigest: string;
  oci: ArchiveResult;
  docker: ArchiveResult;
}

export type BuildResult = Record<ImageName, ImageBuildResult>;

export const pauseCompileFlags = ['-static', '-O2', '-s', '-Wall', '-Wextra', '-Werror'] as const;

/** Path of an archive inside outDir, with the file name imageArchive() gives it. */
export function archivePath(outDir: string, name: ImageName, format: 'oci' | 'docker'): string {
  return join(outDir, basename(imageArchive(name, format)));
}

async function mtimeMs(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).mtimeMs;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Write atomically (temp file + rename), and only when the content differs. */
export async function writeIfChanged(path: string, data: Buffer, mode = 0o644): Promise<boolean> {
  const existing = await readIfExists(path);
  if (existing !== undefined && existing.equals(data)) return false;
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, data, { mode });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return true;
}

/** Compile pause.c to <outDir>/pause/pause unless the binary is up to date; returns its bytes. */
export async function compilePause(options: { source: string; outDir: string; cc: string; logger: Logger }): Promise<Buffer> {
  const dir = join(options.outDir, 'pause');
  const binary = join(dir, 'pause');
  const stampFile = join(dir, 'pause.cmd');
  await mkdir(dir, { recursive: true });
  const command = JSON.stringify([options.cc, ...pauseCompileFlags, options.source]);
  const sourceTime = await mtimeMs(options.source);
  if (sourceTime === undefined) throw new KnodeError('IMAGES_INPUT_MISSING', `pause source ${options.source} is missing`);
  const binaryTime = await mtimeMs(binary);
  const stamp = (await readIfExists(stampFile))?.toString('utf8');
  if (binaryTime !== undefined && binaryTime >= sourceTime && stamp === command) {
    options.logger.debug('pause binary is up to date', { binary });
    return readFile(binary);
  }
  const tmp = `${binary}.tmp-${process.pid}`;
  try {
    await execFile(options.cc, [...pauseCompileFlags, '-o', tmp, options.source]);
    await rename(tmp, binary);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new KnodeError('IMAGES_COMPILE_FAILED', `cannot compile ${options.source}`, { cause: err });
  }
  await writeFile(stampFile, command);
  options.logger.info('compiled pause', { binary });
  return readFile(binary);
}

/** Applet paths of a busybox binary ('bin/sh', 'usr/sbin/httpd', ...). */
export async function busyboxApplets(busybox: string): Promise<string[]> {
  const { stdout } = await execFile(busybox, ['--list-full']);
  const applets = stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  if (!applets.includes('bin/sh') || !applets.some((a) => a.endsWith('/httpd'))) {
    throw new KnodeError('IMAGES_BAD_BUSYBOX', `${busybox} lacks the sh or httpd applet`);
  }
  return applets;
}

/** Gather inputs and render both images (no archive written). */
export async function renderImages(options: BuildOptions = {}): Promise<Record<ImageName, BuiltImage>> {
  const logger = options.logger ?? createLogger({ component: 'images' });
  const outDir = options.outDir ?? imagesDir;
  const architecture = ociArchitecture(process.arch);
  const busybox = options.busybox ?? '/bin/busybox';
  const [pauseBinary, busyboxBinary, applets] = await Promise.all([
    compilePause({ source: options.pauseSource ?? join(repoRoot, 'images', 'pause', 'pause.c'), outDir, cc: options.cc ?? 'gcc', logger }),
    readFile(busybox).catch((err: unknown) => {
      throw new KnodeError('IMAGES_INPUT_MISSING', `cannot read ${busybox} (apt-get install busybox-static)`, { cause: err });
    }),
    busyboxApplets(busybox),
  ]);
  return {
    pause: buildImage(pauseImageSpec({ pauseBinary, architecture })),
    app: buildImage(appImageSpec({ busyboxBinary, applets, architecture })),
  };
}

export async function buildImages(options: BuildOptions = {}): Promise<BuildResult> {
  const logger = options.logger ?? createLogger({ component: 'images' });
  const outDir = options.outDir ?? imagesDir;
  await mkdir(outDir, { recursive: true });
  const images = await renderImages({ ...options, logger, outDir });
  const result = {} as BuildResult;
  for (const name of Object.keys(imageRefs) as ImageName[]) {
    const image = images[name];
    const write = async (format: 'oci' | 'docker'): Promise<ArchiveResult> => {
      const path = archivePath(outDir, name, format);
      const data = format === 'oci' ? renderOciArchive(image) : renderDockerArchive(image);
      return { path, written: await writeIfChanged(path, data), size: data.length };
    };
    const oci = await write('oci');
    const docker = await write('docker');
    result[name] = { ref: image.ref, manifestDigest: image.manifest.digest, configDigest: image.config.digest, oci, docker };
    logger.info(oci.written || docker.written ? 'image archives written' : 'image archives up to date', {
      image: image.ref,
      manifest: image.manifest.digest,
      oci: oci.path,
      docker: docker.path,
    });
  }
  return result;
}

/**
 * Names and places the lab shares between its parts (images, machines,
 * control plane). Everything the lab creates lives under these roots, so that
 * `down` can find and remove all of it.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';

function findRepoRoot(): string {
  // Works both from sources (lab/paths.ts) and from the bundle (dist/knode-lab.mjs).
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'lab'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('knode: cannot find the repository root from ' + fileURLToPath(import.meta.url));
}

export const repoRoot = process.env.KNODE_REPO ?? findRepoRoot();
export const buildDir = join(repoRoot, 'build');
export const imagesDir = join(buildDir, 'images');

/** Image references as imported into runtimes. */
export const imageRefs = {
  pause: 'knode.local/pause:3.9',
  app: 'knode.local/app:1.0',
} as const;
export type ImageName = keyof typeof imageRefs;

/** OCI archive (for `ctr images import`) and docker-archive (for `docker load`) of an image. */
export function imageArchive(name: ImageName, format: 'oci' | 'docker'): string {
  return join(imagesDir, `${name}.${format}.tar`);
}

/** Persistent lab data (runtime roots, registry storage) and volatile state (sockets, pids). */
export const labDataDir = process.env.KNODE_LAB_DATA ?? '/var/lib/knode-lab';
export const labRunDir = process.env.KNODE_LAB_RUN ?? '/run/knode-lab';

/** Network namespace names: every lab namespace starts with this prefix. */
export const labNetnsPrefix = 'knode-';
export const underlayNetns = 'knode-underlay';
export function nodeNetns(node: string): string {
  return `knode-${node}`;
}
export function nodeName(index: number): string {
  return `node-${index}`;
}

/** The underlay: a bridge in its own namespace; nodes get .11, .12, ...; the bridge .1. */
export const underlay = {
  cidr: '172.31.0.0/24',
  prefixLength: 24,
  bridge: 'lab0',
  bridgeAddress: '172.31.0.1',
  nodeAddress: (index: number): string => `172.31.0.${10 + index}`,
} as const;

/**
 * Local registries: plain and with basic auth, on loopback for the host. They
 * belong to the machine's set-up, not to a lab, so they live outside the lab's
 * dirs (`lab down` leaves them). The lab serves the same storage to its nodes
 * from the underlay namespace (`labRegistry`), since a node's 127.0.0.1 is its own.
 */
export const registry = {
  plain: { host: '127.0.0.1', port: 5000 },
  auth: { host: '127.0.0.1', port: 5001, user: 'knode', password: 'knode-registry-pass' },
  storageDir: process.env.KNODE_REGISTRY_DATA ?? '/var/lib/knode-registry',
  runDir: process.env.KNODE_REGISTRY_RUN ?? '/run/knode-registry',
} as const;

/** The registries as lab nodes reach them: on the underlay bridge address, same storage and credentials. */
export const labRegistry = {
  plain: `${underlay.bridgeAddress}:${registry.plain.port}`,
  auth: `${underlay.bridgeAddress}:${registry.auth.port}`,
  runDir: join(labRunDir, 'registry'),
} as const;

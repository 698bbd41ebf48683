/**
 * dockerd for a lab node.
 *
 * Design notes:
 * - One dockerd per node, started with `nsenter --net=<netns>` (network
 *   namespace only, see containerd.ts). dockerd 20.10 starts its own
 *   containerd under the exec root, so nothing is shared between nodes.
 * - Networking and firewalling are the node's business, not docker's:
 *   `--bridge=none --iptables=false --ip-masq=false --ip-forward=false`, an
 *   a generated config file (so /etc/docker/daemon.json is never read) that
 *   only puts the trust key in the node's data dir (not /etc/docker/key.json).
 * - Containers go under the cgroup parent /knode-lab/<node>, where `down` can
 *   find and kill them even if dockerd and its shims were killed first.
 * - dockerd writes its own pid file (writing it first would make dockerd think
 *   another daemon runs).
 */
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KnodeError } from '../../lib/errors.js';
import { imageArchive, imageRefs, labRegistry, type ImageName } from '../paths.js';
import { dockerCall, dockerRequest } from './docker-api.js';
import type { LabNode } from './layout.js';
import { labCgroupParent, netnsPath } from './layout.js';
import { readLogTail } from './logs.js';
import { daemonFromPidFile, listProcesses, spawnDaemon, terminate, waitFor } from './proc.js';
import type { LabRuntime } from './runtime.js';
import { envSuffix } from './containerd.js';

export interface DockerdPaths {
  dataRoot: string;
  execRoot: string;
  socket: string;
  pidFile: string;
  config: string;
  log: string;
  trustKey: string;
}

export function dockerdPaths(node: LabNode): DockerdPaths {
  return {
    dataRoot: join(node.dataDir, 'docker'),
    execRoot: join(node.runDir, 'docker-exec'),
    socket: join(node.runDir, 'docker.sock'),
    pidFile: join(node.runDir, 'dockerd.pid'),
    config: join(node.runDir, 'dockerd.json'),
    log: join(node.runDir, 'dockerd.log'),
    trustKey: join(node.dataDir, 'docker-key.json'),
  };
}

/** dockerd's command line (after `nsenter --net=... dockerd`). Pure. */
export function dockerdArgs(node: LabNode, p: DockerdPaths): string[] {
  return [
    '--data-root', p.dataRoot,
    '--exec-root', p.execRoot,
    '--pidfile', p.pidFile,
    '-H', `unix://${p.socket}`,
    '--config-file', p.config,
    '--bridge=none',
    '--iptables=false',
    '--ip6tables=false',
    '--ip-masq=false',
    '--ip-forward=false',
    '--exec-opt', 'native.cgroupdriver=cgroupfs',
    '--cgroup-parent', labCgroupParent(node),
  ];
}

/**
 * dockerd's config file: the trust key (dockerd 20.10 would otherwise create
 * /etc/docker/key.json, outside the lab; the option has no command-line flag in
 * 20.10) and the lab's registries, which speak plain HTTP. Pure.
 */
export function renderDockerdConfig(p: DockerdPaths): string {
  return JSON.stringify({ 'deprecated-key-path': p.trustKey, 'insecure-registries': [labRegistry.plain, labRegistry.auth] }, null, 2) + '\n';
}

async function ping(node: LabNode): Promise<boolean> {
  const p = dockerdPaths(node);
  if (!existsSync(p.socket)) return false;
  try {
    const r = await dockerRequest({ socket: p.socket, method: 'GET', path: '/_ping', timeoutMs: 5000 });
    return r.status === 200 && r.body.trim() === 'OK';
  } catch {
    return false;
  }
}

async function start(node: LabNode): Promise<number> {
  const p = dockerdPaths(node);
  const running = await daemonFromPidFile(p.pidFile, p.dataRoot);
  if (running !== undefined && (await ping(node))) return running;
  if (running !== undefined) await terminate([running], { graceMs: 10_000 }); // alive but not answering
  await rm(p.pidFile, { force: true });
  await stopStaleContainerd(p);
  for (const dir of [p.dataRoot, p.execRoot]) await mkdir(dir, { recursive: true });
  await writeFile(p.config, renderDockerdConfig(p));
  await rm(p.socket, { force: true });
  const daemon = await spawnDaemon({
    file: 'nsenter',
    args: [`--net=${netnsPath(node.netns)}`, 'dockerd', ...dockerdArgs(node, p)],
    logFile: p.log,
  });
  let exitCode: number | null | undefined;
  void daemon.exited.then((c) => {
    exitCode = c;
  });
  const up = await waitFor(async () => exitCode !== undefined || (await ping(node)), 60_000, 250);
  if (!up || exitCode !== undefined) {
    const tail = await readLogTail(p.log);
    throw new KnodeError(
      'RUNTIME_START_FAILED',
      `dockerd of ${node.name} ${exitCode !== undefined ? `exited (code ${exitCode})` : 'did not answer within 60 s'}; log ${p.log}:\n${tail}`,
      { details: { node: node.name, log: p.log } },
    );
  }
  return daemon.pid;
}

/**
 * The containerd a killed dockerd had started may still run (or its pid file
 * and socket remain); a new dockerd would wait for it and time out. Stop it;
 * the new dockerd starts a fresh one on the same state.
 */
async function stopStaleContainerd(p: DockerdPaths): Promise<void> {
  const marker = join(p.execRoot, 'containerd') + '/';
  const stale = (await listProcesses()).filter((q) => q.state !== 'Z' && q.argv[0]?.endsWith('containerd') && q.argv.some((a) => a.includes(marker)));
  if (stale.length > 0) await terminate(stale.map((q) => q.pid), { graceMs: 5000 });
  await rm(join(p.execRoot, 'containerd', 'containerd.pid'), { force: true });
}

async function removeAllContainers(node: LabNode): Promise<void> {
  const socket = dockerdPaths(node).socket;
  const list = await dockerCall({ socket, method: 'GET', path: '/containers/json?all=1' });
  const parsed: unknown = JSON.parse(list.body);
  if (!Array.isArray(parsed)) return;
  for (const c of parsed) {
    if (typeof c === 'object' && c !== null && 'Id' in c && typeof c.Id === 'string') {
      await dockerRequest({ socket, method: 'DELETE', path: `/containers/${c.Id}?force=1&v=1`, timeoutMs: 30_000 }).catch(() => undefined);
    }
  }
}

async function stop(node: LabNode): Promise<void> {
  const p = dockerdPaths(node);
  if (await ping(node)) await removeAllContainers(node);
  const pid = await daemonFromPidFile(p.pidFile, p.dataRoot);
  if (pid !== undefined) {
    const left = await terminate([pid], { graceMs: 20_000 });
    if (left.length > 0) throw new KnodeError('RUNTIME_STOP_FAILED', `dockerd of ${node.name} (pid ${pid}) does not exit`);
  }
  await rm(p.pidFile, { force: true });
}

async function listImages(node: LabNode): Promise<string[]> {
  const socket = dockerdPaths(node).socket;
  const present: string[] = [];
  for (const ref of Object.values(imageRefs)) {
    const r = await dockerRequest({ socket, method: 'GET', path: `/images/${ref}/json` });
    if (r.status === 200) present.push(ref);
  }
  return present;
}

async function importImages(node: LabNode): Promise<string[]> {
  const socket = dockerdPaths(node).socket;
  const present = await listImages(node);
  const imported: string[] = [];
  for (const name of Object.keys(imageRefs) as ImageName[]) {
    const archive = imageArchive(name, 'docker');
    if (!existsSync(archive) || present.includes(imageRefs[name])) continue;
    const res = await dockerCall({ socket, method: 'POST', path: '/images/load?quiet=1', file: archive, timeoutMs: 120_000 });
    // The answer is a JSON stream; a failed load reports errorDetail with HTTP 200.
    if (res.body.includes('"errorDetail"')) {
      throw new KnodeError('IMAGE_IMPORT_FAILED', `docker load of ${archive} into ${node.name}: ${res.body.trim()}`);
    }
    if (!(await listImages(node)).includes(imageRefs[name])) {
      throw new KnodeError('IMAGE_IMPORT_FAILED', `${archive} loaded into ${node.name} but ${imageRefs[name]} is not there: ${res.body.trim()}`);
    }
    imported.push(imageRefs[name]);
  }
  return imported;
}

export const dockerdRuntime = {
  kind: 'docker',
  socket: (node: LabNode) => dockerdPaths(node).socket,
  envVar: (node: LabNode) => ({ name: `DOCKER_HOST_${envSuffix(node)}`, value: `unix://${dockerdPaths(node).socket}` }),
  pidFile: (node: LabNode) => dockerdPaths(node).pidFile,
  pid: (node: LabNode) => daemonFromPidFile(dockerdPaths(node).pidFile, dockerdPaths(node).dataRoot),
  logFile: (node: LabNode) => dockerdPaths(node).log,
  start,
  stop,
  ping,
  listImages,
  importImages,
} satisfies LabRuntime;

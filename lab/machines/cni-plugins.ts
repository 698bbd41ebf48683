/**
 * knode's CNI plugins for the lab's runtimes, and the knode-cni-daemon that serves them, per node.
 *
 * Design notes
 * - Each node has its own CNI bin dir (containerd's `bin_dir`, or the agent's --cni-bin-dir on
 *   Docker nodes) holding the sh launcher (cni/launcher.sh, rendered by cni/launcher.ts) and the
 *   plugin names as links to it. The lab's nodes share the machine's mount namespace, so "the
 *   node's /run/knode/cni.sock" is the node's own run dir: <run dir>/knode/cni.sock is baked into
 *   that node's launcher as its socket.
 * - knode-cni-daemon runs per node inside the node's network namespace (node-daemon.ts, like the
 *   agent and the proxy), next to containerd: containerd → launcher → socat → daemon. A caller in
 *   another namespace would be told to fall back; a stopped daemon means in-process plugins.
 * - `loopback` is there too: containerd 1.6's CRI sets up the pod's lo with a plugin of that
 *   fixed type (go-cni WithLoNetwork), so every plugin containerd runs is knode's.
 * - Everything is under the node's data/run dirs, so `down` removes it (the daemon's command
 *   line names its socket in the run dir, so `down` finds the process too).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KnodeError } from '../../lib/errors.js';
import { installLauncher, LAUNCHER_LINKS } from '../../cni/launcher.js';
import { DAEMON_PLUGINS } from '../../cni/daemon/protocol.js';
import { repoRoot } from '../paths.js';
import type { LabNode } from './layout.js';
import { ensureNodeDaemon, nodeDaemonPid, type NodeDaemonSpec } from './node-daemon.js';
import { waitFor } from './proc.js';

/** The names in a node's CNI bin dir (links to the launcher). */
export const labCniPlugins: readonly string[] = LAUNCHER_LINKS;

export function labCniBinDir(node: LabNode): string {
  return join(node.dataDir, 'cni', 'bin');
}

/** The node's knode-cni-daemon socket ("/run/knode/cni.sock" of that node). */
export function labCniSocket(node: LabNode): string {
  return join(node.runDir, 'knode', 'cni.sock');
}

/** Writes the node's launcher and links (when missing or different); fails when a bundle is not built. */
export async function ensureLabCniPlugins(node: LabNode): Promise<string[]> {
  for (const program of [...DAEMON_PLUGINS, 'knode-cni-daemon']) {
    const bundle = join(repoRoot, 'dist', `${program}.mjs`);
    if (!existsSync(bundle)) throw new KnodeError('CNI_NOT_BUILT', `${bundle} is missing; run \`npm run build\` first`);
  }
  return installLauncher(
    labCniBinDir(node),
    { node: process.execPath, dist: join(repoRoot, 'dist'), socket: labCniSocket(node), generator: `knode-lab for ${node.name}` },
    join(repoRoot, 'cni', 'launcher.sh'),
  );
}

function cniDaemon(node: LabNode): NodeDaemonSpec {
  return {
    node,
    program: 'knode-cni-daemon',
    args: [join(repoRoot, 'dist', 'knode-cni-daemon.mjs'), '--socket', labCniSocket(node), '--log-requests'],
    pidFile: join(node.runDir, 'cni-daemon.pid'),
    log: join(node.runDir, 'cni-daemon.log'),
    marker: labCniSocket(node),
  };
}

export function cniDaemonLog(node: LabNode): string {
  return cniDaemon(node).log;
}

export function cniDaemonPid(node: LabNode): Promise<number | undefined> {
  return nodeDaemonPid(cniDaemon(node));
}

/** The node's launcher, and its daemon started unless it runs; waits for the socket. */
export async function ensureLabCni(node: LabNode): Promise<{ pid: number; started: boolean }> {
  await ensureLabCniPlugins(node);
  const r = await ensureNodeDaemon(cniDaemon(node));
  if (!(await waitFor(async () => existsSync(labCniSocket(node)), 10_000, 100))) {
    throw new KnodeError('CNI_DAEMON_NO_SOCKET', `knode-cni-daemon of ${node.name} (pid ${r.pid}) made no socket ${labCniSocket(node)} in 10 s; log ${cniDaemon(node).log}`);
  }
  return r;
}

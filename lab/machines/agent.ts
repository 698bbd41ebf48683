/**
 * knode-agent for a lab node: the node's kubelet, started with
 * `nsenter --net=<node netns>` so that it (and the routes it programs) live in
 * the node's network namespace, wired to the node's runtime (containerd's CRI,
 * or dockerd through the agent's Docker backend, which runs the reference CNI
 * plugins of /usr/lib/cni itself) and the lab control plane (the node
 * kubeconfig names https://172.31.0.1:6443).
 *
 * Design notes:
 * - Everything it owns is under the node's dirs (root dir in labDataDir, pid
 *   file and log in labRunDir) and its command line names them, so `down`
 *   finds it; pods get the lab cgroup parent so `down` finds them too.
 * - Started and found through lab/machines/node-daemon.ts (idempotent).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { imageRefs, repoRoot } from '../paths.js';
import { containerdPaths } from './containerd.js';
import { controlPlanePaths } from './control-plane.js';
import { dockerdPaths } from './dockerd.js';
import { labCgroupParent, type LabNode, type RuntimeKind } from './layout.js';
import { ensureNodeDaemon, nodeDaemonPid, type NodeDaemonSpec } from './node-daemon.js';
import { terminate } from './proc.js';

export interface AgentPaths {
  rootDir: string;
  podLogsDir: string;
  pidFile: string;
  log: string;
}

export function agentPaths(node: LabNode): AgentPaths {
  return {
    rootDir: join(node.dataDir, 'agent'),
    podLogsDir: join(node.dataDir, 'pod-logs'),
    pidFile: join(node.runDir, 'agent.pid'),
    log: join(node.runDir, 'agent.log'),
  };
}

/** The runtime flags: containerd's CRI socket, or dockerd's with the CNI plugins the agent runs. Pure. */
function runtimeArgs(node: LabNode, runtime: RuntimeKind): string[] {
  if (runtime === 'docker') {
    return [
      '--container-runtime', 'docker',
      '--container-runtime-endpoint', `unix://${dockerdPaths(node).socket}`,
      '--pod-infra-container-image', imageRefs.pause,
      '--cni-bin-dir', '/usr/lib/cni',
    ];
  }
  return ['--container-runtime-endpoint', `unix://${containerdPaths(node).socket}`];
}

/** The agent's command line (after `nsenter --net=... node`). Pure. */
export function agentArgs(node: LabNode, runtime: RuntimeKind = 'containerd'): string[] {
  const p = agentPaths(node);
  return [
    join(repoRoot, 'dist', 'knode-agent.mjs'),
    '--kubeconfig', controlPlanePaths.nodeKubeconfig(node.name),
    '--hostname-override', node.name,
    '--node-ip', node.address,
    ...runtimeArgs(node, runtime),
    '--root-dir', p.rootDir,
    '--pod-logs-dir', p.podLogsDir,
    // The same dir on either runtime (containerd's CRI reads its conflist there).
    '--cni-conf-dir', containerdPaths(node).cniConfDir,
    '--cgroup-root', labCgroupParent(node),
  ];
}

function agentDaemon(node: LabNode, runtime: RuntimeKind = 'containerd'): NodeDaemonSpec {
  const p = agentPaths(node);
  return { node, program: 'knode-agent', args: agentArgs(node, runtime), pidFile: p.pidFile, log: p.log, marker: p.rootDir };
}

export function agentPid(node: LabNode): Promise<number | undefined> {
  return nodeDaemonPid(agentDaemon(node));
}

/** Starts the node's agent unless it runs; returns its pid and whether it was started. */
export async function ensureAgent(node: LabNode, runtime: RuntimeKind = 'containerd'): Promise<{ pid: number; started: boolean }> {
  await mkdir(agentPaths(node).rootDir, { recursive: true });
  return ensureNodeDaemon(agentDaemon(node, runtime));
}

/** Stops the node's agent (SIGTERM: pods keep running). */
export async function stopAgent(node: LabNode, hard = false): Promise<void> {
  const pid = await agentPid(node);
  if (pid !== undefined) await terminate([pid], { graceMs: 10_000, hard });
}

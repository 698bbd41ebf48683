/**
 * knode-agent for a lab node: the node's kubelet, started with
 * `nsenter --net=<node netns>` so that it (and the routes it programs) live in
 * the node's network namespace, wired to the node's containerd and the lab
 * control plane (the node kubeconfig names https://172.31.0.1:6443).
 *
 * Design notes:
 * - Everything it owns is under the node's dirs (root dir in labDataDir, pid
 *   file and log in labRunDir) and its command line names them, so `down`
 *   finds it; pods get the lab cgroup parent so `down` finds them too.
 * - Idempotent: an agent that runs (pid file + command line check) is left alone.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { KnodeError } from '../../lib/errors.js';
import { repoRoot } from '../paths.js';
import { containerdPaths } from './containerd.js';
import { controlPlanePaths } from './control-plane.js';
import { labCgroupParent, netnsPath, type LabNode } from './layout.js';
import { readLogTail } from './logs.js';
import { daemonFromPidFile, inNetns, spawnDaemon, terminate, waitFor } from './proc.js';

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

/** The agent's command line (after `nsenter --net=... node`). Pure. */
export function agentArgs(node: LabNode): string[] {
  const p = agentPaths(node);
  return [
    join(repoRoot, 'dist', 'knode-agent.mjs'),
    '--kubeconfig', controlPlanePaths.nodeKubeconfig(node.name),
    '--hostname-override', node.name,
    '--node-ip', node.address,
    '--container-runtime-endpoint', `unix://${containerdPaths(node).socket}`,
    '--root-dir', p.rootDir,
    '--pod-logs-dir', p.podLogsDir,
    '--cni-conf-dir', containerdPaths(node).cniConfDir,
    '--cgroup-root', labCgroupParent(node),
  ];
}

export function agentPid(node: LabNode): Promise<number | undefined> {
  const p = agentPaths(node);
  return daemonFromPidFile(p.pidFile, p.rootDir);
}

/** Starts the node's agent unless it runs; returns its pid and whether it was started. */
export async function ensureAgent(node: LabNode): Promise<{ pid: number; started: boolean }> {
  const p = agentPaths(node);
  let running = await agentPid(node);
  // An agent left running in a namespace that was deleted (and made anew) sits in the old one.
  if (running !== undefined && !(await inNetns(running, netnsPath(node.netns)))) {
    await terminate([running], { graceMs: 10_000 });
    running = undefined;
  }
  if (running !== undefined) return { pid: running, started: false };
  await mkdir(p.rootDir, { recursive: true });
  await mkdir(node.runDir, { recursive: true });
  const daemon = await spawnDaemon({
    file: 'nsenter',
    args: [`--net=${netnsPath(node.netns)}`, process.execPath, ...agentArgs(node)],
    logFile: p.log,
    pidFile: p.pidFile,
  });
  let exitCode: number | null | undefined;
  void daemon.exited.then((c) => {
    exitCode = c;
  });
  // It must not exit at once (bad flags, missing bundle); it keeps retrying anything transient itself.
  await waitFor(async () => exitCode !== undefined, 1500, 100);
  if (exitCode !== undefined) {
    throw new KnodeError('AGENT_START_FAILED', `knode-agent of ${node.name} exited (code ${exitCode}); log ${p.log}:\n${await readLogTail(p.log)}`, { details: { node: node.name, log: p.log } });
  }
  return { pid: daemon.pid, started: true };
}

/** Stops the node's agent (SIGTERM: pods keep running). */
export async function stopAgent(node: LabNode, hard = false): Promise<void> {
  const pid = await agentPid(node);
  if (pid !== undefined) await terminate([pid], { graceMs: 10_000, hard });
}

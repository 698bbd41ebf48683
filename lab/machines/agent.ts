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
 * - Started and found through lab/machines/node-daemon.ts (idempotent).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureServingCertIn } from '../apiserver/pki.js';
import { repoRoot } from '../paths.js';
import { containerdPaths } from './containerd.js';
import { controlPlanePaths } from './control-plane.js';
import { labCgroupParent, type LabNode } from './layout.js';
import { ensureNodeDaemon, nodeDaemonPid, type NodeDaemonSpec } from './node-daemon.js';
import { terminate } from './proc.js';

export interface AgentPaths {
  rootDir: string;
  podLogsDir: string;
  pidFile: string;
  log: string;
  /** The kubelet server's certificate, signed by the lab CA (so the apiserver, kubectl and tests can verify it). */
  servingCert: string;
  servingKey: string;
}

export function agentPaths(node: LabNode): AgentPaths {
  return {
    rootDir: join(node.dataDir, 'agent'),
    podLogsDir: join(node.dataDir, 'pod-logs'),
    pidFile: join(node.runDir, 'agent.pid'),
    log: join(node.runDir, 'agent.log'),
    servingCert: join(controlPlanePaths.dataDir, 'pki', `kubelet-${node.name}.crt`),
    servingKey: join(controlPlanePaths.dataDir, 'pki', `kubelet-${node.name}.key`),
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
    '--tls-cert-file', p.servingCert,
    '--tls-private-key-file', p.servingKey,
    '--client-ca-file', controlPlanePaths.caCert,
  ];
}

function agentDaemon(node: LabNode): NodeDaemonSpec {
  const p = agentPaths(node);
  return { node, program: 'knode-agent', args: agentArgs(node), pidFile: p.pidFile, log: p.log, marker: p.rootDir };
}

export function agentPid(node: LabNode): Promise<number | undefined> {
  return nodeDaemonPid(agentDaemon(node));
}

/** Starts the node's agent unless it runs; returns its pid and whether it was started. */
export async function ensureAgent(node: LabNode): Promise<{ pid: number; started: boolean }> {
  await mkdir(agentPaths(node).rootDir, { recursive: true });
  await ensureServingCertIn(join(controlPlanePaths.dataDir, 'pki'), `kubelet-${node.name}`, `system:node:${node.name}`, [node.name, node.address]);
  return ensureNodeDaemon(agentDaemon(node));
}

/** Stops the node's agent (SIGTERM: pods keep running). */
export async function stopAgent(node: LabNode, hard = false): Promise<void> {
  const pid = await agentPid(node);
  if (pid !== undefined) await terminate([pid], { graceMs: 10_000, hard });
}

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
 * - Started and found through lab/machines/node-daemon.ts (idempotent; an agent
 *   started with another --overlay-backend is restarted).
 * - The overlay (`scripts/lab up --overlay vxlan|host-gw|none`): the agent
 *   programs flannel.1 / routes inside the node's namespace, writes flannel's
 *   subnet file under the node's run dir and the conflist into containerd's
 *   conf dir; the cluster CIDR is the one node-ipam hands /24s out of.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureServingCertIn } from '../apiserver/pki.js';
import { imageRefs, repoRoot } from '../paths.js';
import { ensureLabCni, labCniBinDir } from './cni-plugins.js';
import { containerdPaths } from './containerd.js';
import { controlPlanePaths } from './control-plane.js';
import { dockerdPaths } from './dockerd.js';
import { labCgroupParent, type LabNode, type RuntimeKind } from './layout.js';
import { ensureNodeDaemon, nodeDaemonPid, type NodeDaemonSpec } from './node-daemon.js';
import { terminate } from './proc.js';
import { labClusterCIDR } from './proxy.js';
import type { OverlayBackendName } from '../../agent/network/overlay/names.js';

export { overlayBackendNames, isOverlayBackendName } from '../../agent/network/overlay/names.js';
export type { OverlayBackendName } from '../../agent/network/overlay/names.js';
export const defaultLabOverlay: OverlayBackendName = 'vxlan';

export interface AgentPaths {
  rootDir: string;
  podLogsDir: string;
  /** --pod-manifest-path: static pod manifests of the node. */
  manifestsDir: string;
  pidFile: string;
  log: string;
  /** flannel's subnet.env of this node. */
  subnetFile: string;
  /** The kubelet server's certificate, signed by the lab CA (so the apiserver, kubectl and tests can verify it). */
  servingCert: string;
  servingKey: string;
}

export function agentPaths(node: LabNode): AgentPaths {
  return {
    rootDir: join(node.dataDir, 'agent'),
    podLogsDir: join(node.dataDir, 'pod-logs'),
    manifestsDir: join(node.dataDir, 'manifests'),
    pidFile: join(node.runDir, 'agent.pid'),
    log: join(node.runDir, 'agent.log'),
    subnetFile: join(node.runDir, 'flannel', 'subnet.env'),
    servingCert: join(controlPlanePaths.dataDir, 'pki', `kubelet-${node.name}.crt`),
    servingKey: join(controlPlanePaths.dataDir, 'pki', `kubelet-${node.name}.key`),
  };
}

/** The runtime flags: containerd's CRI socket, or dockerd's with the CNI plugins the agent runs. Pure. */
function runtimeArgs(node: LabNode, runtime: RuntimeKind): string[] {
  if (runtime === 'docker') {
    return [
      '--container-runtime', 'docker',
      '--container-runtime-endpoint', `unix://${dockerdPaths(node).socket}`,
      '--pod-infra-container-image', imageRefs.pause,
      '--cni-bin-dir', labCniBinDir(node),
    ];
  }
  return ['--container-runtime-endpoint', `unix://${containerdPaths(node).socket}`];
}

/**
 * Node/V8 flags and environment the agent runs with, the same as the systemd
 * unit's (vagrant/systemd/knode-agent.service: ExecStart, MALLOC_ARENA_MAX):
 * V8's lite mode (no optimising compilers or feedback vectors: ~10 MB less RSS
 * and the same CPU per pod in bench-agent — the agent mostly waits on I/O; it
 * also drops WebAssembly, which the agent does not use, and
 * --no-expose-wasm keeps V8 from warning about it), a small young generation
 * (semi-spaces of 2 MB instead of up to 16 MB: more, cheaper scavenges, tens of
 * MB less RSS under a burst of pods) and two glibc malloc arenas (the threads
 * of libuv's pool otherwise get an arena each).
 */
export const agentNodeFlags = ['--max-semi-space-size=2', '--lite-mode', '--no-expose-wasm'];
export const agentEnv = { MALLOC_ARENA_MAX: '2' };

/** The agent's command line (after `nsenter --net=... node`). Pure. */
export function agentArgs(node: LabNode, runtime: RuntimeKind = 'containerd', overlay: OverlayBackendName = defaultLabOverlay): string[] {
  const p = agentPaths(node);
  return [
    ...agentNodeFlags,
    join(repoRoot, 'dist', 'knode-agent.mjs'),
    '--kubeconfig', controlPlanePaths.nodeKubeconfig(node.name),
    '--hostname-override', node.name,
    '--node-ip', node.address,
    ...runtimeArgs(node, runtime),
    '--root-dir', p.rootDir,
    '--pod-logs-dir', p.podLogsDir,
    '--pod-manifest-path', p.manifestsDir,
    // The same dir on either runtime (containerd's CRI reads its conflist there).
    '--cni-conf-dir', containerdPaths(node).cniConfDir,
    '--cgroup-root', labCgroupParent(node),
    '--overlay-backend', overlay,
    '--cluster-cidr', labClusterCIDR,
    '--flannel-subnet-file', p.subnetFile,
    '--tls-cert-file', p.servingCert,
    '--tls-private-key-file', p.servingKey,
    '--client-ca-file', controlPlanePaths.caCert,
  ];
}

function agentDaemon(node: LabNode, runtime: RuntimeKind = 'containerd', overlay?: OverlayBackendName): NodeDaemonSpec {
  const p = agentPaths(node);
  return { node, program: 'knode-agent', args: agentArgs(node, runtime, overlay), pidFile: p.pidFile, log: p.log, marker: p.rootDir, env: agentEnv };
}

export function agentPid(node: LabNode): Promise<number | undefined> {
  return nodeDaemonPid(agentDaemon(node));
}

/** Starts the node's agent unless it runs; returns its pid and whether it was started. */
export async function ensureAgent(node: LabNode, runtime: RuntimeKind = 'containerd', overlay: OverlayBackendName = defaultLabOverlay): Promise<{ pid: number; started: boolean }> {
  await mkdir(agentPaths(node).rootDir, { recursive: true });
  await mkdir(agentPaths(node).manifestsDir, { recursive: true });
  await ensureServingCertIn(join(controlPlanePaths.dataDir, 'pki'), `kubelet-${node.name}`, `system:node:${node.name}`, [node.name, node.address]);
  // With Docker the agent runs the CNI plugins itself: knode's, as containerd nodes do.
  if (runtime === 'docker') await ensureLabCni(node);
  return ensureNodeDaemon(agentDaemon(node, runtime, overlay));
}

/** Stops the node's agent (SIGTERM: pods keep running). */
export async function stopAgent(node: LabNode, hard = false): Promise<void> {
  const pid = await agentPid(node);
  if (pid !== undefined) await terminate([pid], { graceMs: 10_000, hard });
}

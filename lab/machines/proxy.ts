/**
 * knode-proxy for a lab node: the node's kube-proxy, in the node's network
 * namespace (its rules go there), with the node's kubeconfig. Its status
 * endpoints answer inside the node: `scripts/lab exec node-1 -- curl
 * 127.0.0.1:10249/proxyMode`.
 */
import { join } from 'node:path';
import { repoRoot } from '../paths.js';
import { controlPlanePaths } from './control-plane.js';
import type { LabNode } from './layout.js';
import { ensureNodeDaemon, nodeDaemonPid, type NodeDaemonSpec } from './node-daemon.js';

export const proxyModes = ['iptables', 'nftables', 'ipvs'] as const;
export type ProxyMode = (typeof proxyModes)[number];
export function isProxyMode(value: string): value is ProxyMode {
  return (proxyModes as readonly string[]).includes(value);
}

/** The lab's pod network (node-ipam hands out /24s of it): traffic from elsewhere to services is masqueraded. */
export const labClusterCIDR = '10.244.0.0/16';

/** The proxy's command line (after `nsenter --net=... node`). Pure. */
export function proxyArgs(node: LabNode, mode: ProxyMode): string[] {
  return [
    join(repoRoot, 'dist', 'knode-proxy.mjs'),
    '--kubeconfig', controlPlanePaths.nodeKubeconfig(node.name),
    '--hostname-override', node.name,
    '--proxy-mode', mode,
    '--cluster-cidr', labClusterCIDR,
  ];
}

function proxyDaemon(node: LabNode, mode: ProxyMode): NodeDaemonSpec {
  return {
    node,
    program: 'knode-proxy',
    args: proxyArgs(node, mode),
    pidFile: join(node.runDir, 'proxy.pid'),
    log: join(node.runDir, 'proxy.log'),
    marker: controlPlanePaths.nodeKubeconfig(node.name),
  };
}

export function proxyPid(node: LabNode): Promise<number | undefined> {
  return nodeDaemonPid(proxyDaemon(node, 'iptables'));
}

/** Starts the node's proxy in `mode` unless it runs so; a proxy in another mode is restarted. */
export function ensureProxy(node: LabNode, mode: ProxyMode): Promise<{ pid: number; started: boolean }> {
  return ensureNodeDaemon(proxyDaemon(node, mode));
}

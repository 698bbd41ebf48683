/**
 * Where one lab node keeps its things. Everything is under labDataDir/labRunDir
 * (lab/paths.ts) so that `down` finds it by prefix even without the state file.
 */
import { join } from 'node:path';
import { labDataDir, labRunDir, nodeName, nodeNetns, underlay, underlayNetns } from '../paths.js';

export type RuntimeKind = 'containerd' | 'docker';
export const runtimeKinds: readonly RuntimeKind[] = ['containerd', 'docker'];

export function isRuntimeKind(value: string): value is RuntimeKind {
  return (runtimeKinds as readonly string[]).includes(value);
}

/** Everything the runtimes need to know about one lab machine. */
export interface LabNode {
  index: number;
  name: string;
  netns: string;
  /** Underlay address without prefix length. */
  address: string;
  dataDir: string;
  runDir: string;
}

export function labNode(index: number): LabNode {
  const name = nodeName(index);
  return {
    index,
    name,
    netns: nodeNetns(name),
    address: underlay.nodeAddress(index),
    dataDir: join(labDataDir, name),
    runDir: join(labRunDir, name),
  };
}

/** Path of a named network namespace as `ip netns` mounts it. */
export function netnsPath(netns: string): string {
  return join('/var/run/netns', netns);
}

/**
 * cgroup parent (cgroupfs, relative to each controller's root) for containers
 * the lab's runtimes start themselves (docker --cgroup-parent, test containers):
 * cleanup can find and kill them there even when shims are gone.
 */
export const labCgroupRoot = 'knode-lab';
export function labCgroupParent(node: LabNode): string {
  return `/${labCgroupRoot}/${node.name}`;
}

/** The file the lab keeps its state in. */
export const stateFile = join(labRunDir, 'lab.json');

/** Names of namespaces the lab makes: the underlay and `knode-node-<n>`. */
export function isLabNetnsName(name: string): boolean {
  if (name === underlayNetns) return true;
  const m = /([0-9]+)$/.exec(name);
  return m !== null && name === nodeNetns(nodeName(Number(m[1])));
}

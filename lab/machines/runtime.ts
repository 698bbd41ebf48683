/**
 * The container runtime a lab node runs: one interface, two implementations
 * (containerd, dockerd), picked from an explicit map.
 */
import type { LabNode, RuntimeKind } from './layout.js';
import { containerdRuntime } from './containerd.js';
import { dockerdRuntime } from './dockerd.js';

export interface LabRuntime {
  readonly kind: RuntimeKind;
  /** Unix socket the runtime's API answers on. */
  socket(node: LabNode): string;
  /** Shell variable and value that point a client at this node's runtime. */
  envVar(node: LabNode): { name: string; value: string };
  pidFile(node: LabNode): string;
  /** Pid of the node's running daemon (checked against its command line), if any. */
  pid(node: LabNode): Promise<number | undefined>;
  logFile(node: LabNode): string;
  /** Start the daemon inside the node's netns and wait until it answers; returns its pid. */
  start(node: LabNode): Promise<number>;
  /** Remove the runtime's containers (best effort) and stop the daemon. */
  stop(node: LabNode): Promise<void>;
  ping(node: LabNode): Promise<boolean>;
  /** Refs of the lab images present in the runtime. */
  listImages(node: LabNode): Promise<string[]>;
  /** Import the lab images whose archives exist and that the runtime lacks; returns the refs imported. */
  importImages(node: LabNode): Promise<string[]>;
}

export const runtimes: Record<RuntimeKind, LabRuntime> = {
  containerd: containerdRuntime,
  docker: dockerdRuntime,
};

/**
 * The runtime backends the agent can drive, picked by name from an explicit map
 * (--container-runtime: 'cri' for containerd's CRI, 'docker' for dockerd).
 */
import { KnodeError } from '../../lib/errors.js';
import { createCriRuntime } from './cri/client.js';
import { createDockerRuntime } from './docker/client.js';
import type { Runtime, RuntimeFactory, RuntimeKind, RuntimeOptions } from './types.js';

export const runtimeBackends = {
  cri: createCriRuntime,
  docker: createDockerRuntime,
} satisfies Record<RuntimeKind, RuntimeFactory>;

export type AvailableRuntimeKind = keyof typeof runtimeBackends;

export function isAvailableRuntime(kind: string): kind is AvailableRuntimeKind {
  return Object.hasOwn(runtimeBackends, kind);
}

export function createRuntime(kind: string, options: RuntimeOptions): Runtime {
  if (!isAvailableRuntime(kind)) {
    throw new KnodeError('RUNTIME_UNSUPPORTED', `container runtime ${JSON.stringify(kind)} is not supported (supported: ${Object.keys(runtimeBackends).join(', ')})`);
  }
  return runtimeBackends[kind](options);
}

export type * from './types.js';

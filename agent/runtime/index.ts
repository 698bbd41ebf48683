/**
 * The runtime backends the agent can drive, picked by name from an explicit map
 * (--container-runtime: 'cri' for containerd's CRI, 'docker' for dockerd).
 *
 * Each backend is loaded on demand (a dynamic import, which the bundle keeps
 * lazy): a containerd node never evaluates dockerode and its stack (about
 * 9 MB of RSS), a Docker node never loads the CRI protos.
 */
import { KnodeError } from '../../lib/errors.js';
import type { Runtime, RuntimeFactory, RuntimeKind, RuntimeOptions } from './types.js';

export const runtimeBackends = {
  cri: async () => (await import('./cri/client.js')).createCriRuntime,
  docker: async () => (await import('./docker/client.js')).createDockerRuntime,
} satisfies Record<RuntimeKind, () => Promise<RuntimeFactory>>;

export type AvailableRuntimeKind = keyof typeof runtimeBackends;

export function isAvailableRuntime(kind: string): kind is AvailableRuntimeKind {
  return Object.hasOwn(runtimeBackends, kind);
}

/** Loads the backend named `kind` and creates its client (RUNTIME_UNSUPPORTED for an unknown name). */
export async function createRuntime(kind: string, options: RuntimeOptions): Promise<Runtime> {
  if (!isAvailableRuntime(kind)) {
    throw new KnodeError('RUNTIME_UNSUPPORTED', `container runtime ${JSON.stringify(kind)} is not supported (supported: ${Object.keys(runtimeBackends).join(', ')})`);
  }
  const factory = await runtimeBackends[kind]();
  return factory(options);
}

export type * from './types.js';

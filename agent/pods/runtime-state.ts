/**
 * Reads one pod's sandboxes and containers from the runtime by the
 * io.kubernetes.pod.uid label (so a restarted agent finds what runs), into the
 * `PodRuntimeState` the pure decisions take.
 *
 * Statuses are cached by id and only asked again when the list shows another
 * state: in the steady state a read costs two list calls.
 */
import { isKnodeError } from '../../lib/errors.js';
import type { Runtime } from '../runtime/types.js';
import { podUidLabel, restartCountAnnotation, containerHashAnnotation } from './labels.js';
import type { ContainerInfo, PodRuntimeState, SandboxInfo } from './types.js';
import { exitedContainerMessage } from './termination-message.js';

export type StateRuntime = Pick<Runtime, 'listPodSandbox' | 'podSandboxStatus' | 'listContainers' | 'containerStatus'>;

export class RuntimeStateCache {
  private readonly sandboxes = new Map<string, SandboxInfo>();
  private readonly containers = new Map<string, ContainerInfo>();

  forget(ids: Iterable<string>): void {
    for (const id of ids) {
      this.sandboxes.delete(id);
      this.containers.delete(id);
    }
  }

  clear(): void {
    this.sandboxes.clear();
    this.containers.clear();
  }

  async read(runtime: StateRuntime, uid: string): Promise<PodRuntimeState> {
    const selector = { labelSelector: { [podUidLabel]: uid } };
    const [sandboxList, containerList] = await Promise.all([runtime.listPodSandbox(selector), runtime.listContainers(selector)]);
    sandboxList.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));

    const sandboxes: SandboxInfo[] = [];
    for (const [i, sb] of sandboxList.entries()) {
      const cached = this.sandboxes.get(sb.id);
      if (cached !== undefined && cached.state === sb.state) {
        sandboxes.push(cached);
        continue;
      }
      const info: SandboxInfo = { id: sb.id, attempt: sb.metadata.attempt, state: sb.state, createdAt: sb.createdAt, ip: '', additionalIps: [], network: undefined };
      // Only the newest sandbox's network matters.
      if (i === 0) {
        try {
          const { status } = await runtime.podSandboxStatus(sb.id);
          info.ip = status.network.ip;
          info.additionalIps = status.network.additionalIps;
          info.network = status.namespaceOptions?.network;
          info.state = status.state;
        } catch (err) {
          if (!isKnodeError(err, 'NOT_FOUND')) throw err;
          continue;
        }
        this.sandboxes.set(sb.id, info);
      }
      sandboxes.push(info);
    }

    const containers: ContainerInfo[] = [];
    for (const c of containerList) {
      const cached = this.containers.get(c.id);
      if (cached !== undefined && cached.state === c.state) {
        containers.push(cached);
        continue;
      }
      try {
        const { status: s } = await runtime.containerStatus(c.id);
        const info: ContainerInfo = {
          id: s.id,
          name: s.metadata.name,
          sandboxId: c.podSandboxId,
          attempt: s.metadata.attempt,
          state: s.state,
          createdAt: s.createdAt,
          startedAt: s.startedAt,
          finishedAt: s.finishedAt,
          exitCode: s.exitCode,
          reason: s.reason,
          message: s.state === 'exited' ? await exitedContainerMessage(s) : s.message,
          image: s.image.image,
          imageRef: s.imageRef,
          hash: s.annotations[containerHashAnnotation] ?? '',
          restartCount: Number(s.annotations[restartCountAnnotation] ?? s.metadata.attempt) || 0,
        };
        this.containers.set(c.id, info);
        containers.push(info);
      } catch (err) {
        if (!isKnodeError(err, 'NOT_FOUND')) throw err;
      }
    }
    containers.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
    const live = new Set([...sandboxList.map((s) => s.id), ...containerList.map((c) => c.id)]);
    for (const id of [...this.sandboxes.keys(), ...this.containers.keys()]) if (!live.has(id)) this.forget([id]);
    return { sandboxes, containers };
  }
}

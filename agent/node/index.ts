/**
 * The node agent: registration, the node Lease and the node status loop.
 *
 * `startNodeAgent` returns at once; `ready` resolves once the Node is
 * registered (retrying with back-off while the apiserver is unreachable or
 * refuses), then the Lease and status loops run until `stop()` or the signal.
 * A "Starting" event is recorded after registration, NodeReady/NodeNotReady on
 * Ready transitions. Nothing here throws into the caller after start: every
 * failure is logged and retried.
 */
import type { V1Node } from '@kubernetes/client-node';
import { KnodeError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { AgentConfig } from '../config/types.js';
import { leaseRenewIntervalMs } from '../config/types.js';
import type { Runtime } from '../runtime/types.js';
import { apiErrorSummary } from '../kube/client.js';
import type { KubeClient } from '../kube/client.js';
import { createEventRecorder } from '../kube/events.js';
import type { EventRecorder, InvolvedObject } from '../kube/events.js';
import { backoffDelay } from '../kube/informer-state.js';
import { detectNodeIPs } from './addresses.js';
import { startLeaseLoop } from './lease.js';
import type { LeaseLoop } from './lease.js';
import { readMachineInfo } from './machine.js';
import { readPressureObservation } from './pressure.js';
import type { PressureObservation } from './pressure.js';
import { registerNode } from './register.js';
import { renderNode } from './render.js';
import type { NodeFacts } from './render.js';
import { sleep } from '../../lib/sleep.js';
import { startStatusLoop } from './status.js';
import type { StatusLoop, StatusLoopStats } from './status.js';

export { kubeletVersion, kubeletPort } from './render.js';

export interface NodeAgentOptions {
  config: AgentConfig;
  kube: KubeClient;
  runtime: Runtime;
  signal?: AbortSignal;
  logger: Logger;
  /** Shared recorder (the pod workers record through the same one); created when absent. */
  recorder?: EventRecorder;
  /** Test overrides; defaults come from the config (10 s status, 5 min report, lease duration / 4). */
  timing?: { statusUpdateMs?: number; statusReportMs?: number; leaseRenewMs?: number; registerBackoffMaxMs?: number };
  /** Test override of the pressure reader. */
  readPressure?: () => Promise<PressureObservation>;
}

export interface NodeAgent {
  nodeName: string;
  /** Resolves once the Node is registered; rejects (KnodeError 'NODE_AGENT_STOPPED') if stopped first. */
  ready: Promise<void>;
  recorder: EventRecorder;
  stats(): { status: StatusLoopStats | undefined; leaseRenewals: number; nodeUid: string | undefined };
  stop(): Promise<void>;
}

/** upstream's node reference for events: kind Node, uid = name, no namespace (events land in 'default'). */
export function nodeReference(nodeName: string): InvolvedObject {
  return { kind: 'Node', name: nodeName, uid: nodeName };
}

export function startNodeAgent(o: NodeAgentOptions): NodeAgent {
  const { config, kube, runtime, logger } = o;
  const nodeName = config.nodeName;
  const log = logger.child({ node: nodeName });
  const controller = new AbortController();
  const onAbort = (): void => controller.abort();
  o.signal?.addEventListener('abort', onAbort, { once: true });
  if (o.signal?.aborted) controller.abort();
  const signal = controller.signal;
  const recorder = o.recorder ?? createEventRecorder({ core: kube.core, component: 'kubelet', host: nodeName, logger: log.child({ part: 'events' }) });
  const nodeRef = nodeReference(nodeName);
  const readPressure = o.readPressure ?? (() => readPressureObservation(config.rootDir));
  let nodeUid: string | undefined;
  let statusLoop: StatusLoop | undefined;
  let leaseLoop: LeaseLoop | undefined;

  const gatherFacts = async (): Promise<NodeFacts> => {
    const [machine, internalIPs, runtimeVersion] = await Promise.all([
      readMachineInfo({ rootDir: config.rootDir }),
      detectNodeIPs(config.nodeIPs),
      runtime.version({ timeoutMs: 5000 }).catch((err: unknown) => {
        log.warn('container runtime does not answer Version yet', { err: apiErrorSummary(err) });
        return undefined;
      }),
    ]);
    return { nodeName, machine, maxPods: config.maxPods, nodeLabels: config.nodeLabels, taints: config.registerWithTaints, internalIPs, runtimeVersion };
  };

  const register = async (facts: NodeFacts): Promise<V1Node> => {
    const { node } = await registerNode({ core: kube.core, node: renderNode(facts), logger: log });
    nodeUid = node.metadata?.uid;
    return node;
  };

  const run = async (): Promise<void> => {
    let facts: NodeFacts | undefined;
    let failures = 0;
    for (;;) {
      if (signal.aborted) throw new KnodeError('NODE_AGENT_STOPPED', 'the node agent stopped before the node was registered');
      try {
        facts ??= await gatherFacts();
        await register(facts);
        break;
      } catch (err) {
        const delay = backoffDelay(failures++, 500, o.timing?.registerBackoffMaxMs ?? 30_000);
        log.warn('cannot register the node; retrying', { err: apiErrorSummary(err), retryInMs: delay });
        await sleep(delay, signal);
      }
    }
    recorder.event(nodeRef, 'Normal', 'Starting', 'Starting kubelet (knode-agent).');
    leaseLoop = startLeaseLoop({
      coordination: kube.coordination,
      nodeName,
      nodeUid: () => nodeUid,
      durationSeconds: config.nodeLeaseDurationSeconds,
      renewIntervalMs: o.timing?.leaseRenewMs ?? leaseRenewIntervalMs(config),
      signal,
      logger: log.child({ part: 'lease' }),
    });
    const current = facts!;
    statusLoop = startStatusLoop({
      client: kube,
      nodeName,
      nodeRef,
      runtime,
      facts: current,
      readPressure,
      readNodeIPs: () => detectNodeIPs(config.nodeIPs),
      reregister: () => register(current),
      recorder,
      updateFrequencyMs: o.timing?.statusUpdateMs ?? config.nodeStatusUpdateFrequencyMs,
      reportFrequencyMs: o.timing?.statusReportMs ?? config.nodeStatusReportFrequencyMs,
      signal,
      logger: log.child({ part: 'status' }),
    });
  };

  const ready = config.registerNode ? run() : Promise.resolve();
  ready.catch(() => undefined);

  return {
    nodeName,
    ready,
    recorder,
    stats: () => ({ status: statusLoop?.stats(), leaseRenewals: leaseLoop?.renewals() ?? 0, nodeUid }),
    async stop() {
      controller.abort();
      o.signal?.removeEventListener('abort', onAbort);
      await ready.catch(() => undefined);
      await Promise.all([statusLoop?.done, leaseLoop?.done]);
      await recorder.flush();
    },
  };
}

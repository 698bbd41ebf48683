/**
 * The shared set-up of tests that run the agent's pod workers against a real
 * runtime (test/integration/agent-pods.test.ts, agent-probes.test.ts):
 * a containerd with CRI in the test's `knode-t-<random>` namespace with the
 * reference CNI bridge + host-local (bridge knode-tbr1, 10.251.0.0/24, only in
 * that namespace) and the lab images imported; a `World` of PodWorkers whose
 * statuses and events are collected from the sink and recorder ports; and the
 * small readers the tests share.
 *
 * Teardown: the CRI client closes and the worker loops stop (t.teardown);
 * test/helpers/containerd.ts removes processes, mounts, cgroups, the CNI cache,
 * the namespace and the temp dir.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import type { V1ContainerStatus, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { BackOff } from '../../agent/pods/backoff.js';
import type { EventType, InvolvedObject, ObjectLookup } from '../../agent/pods/types.js';
import { systemMounter } from '../../agent/pods/volumes.js';
import type { PodWorkerOptions } from '../../agent/pods/worker.js';
import { PodWorkers } from '../../agent/pods/workers.js';
import { createCriRuntime, type CriRuntime } from '../../agent/runtime/cri/client.js';
import type { Runtime } from '../../agent/runtime/types.js';
import type { Logger } from '../../lib/log.js';
import { renderPlainHttpHosts, startContainerd, waitFor, type Teardownable, type TestEnv } from './containerd.js';

export const podSubnet = '10.251.0.0/24';
export const podGateway = '10.251.0.1';

/**
 * Writes the test network's conflist (reference bridge + host-local, one IPAM store under the
 * test's tmp dir) into `<tmp>/cni/net.d` and returns that directory. Idempotent.
 */
export async function writeTestConflist(env: TestEnv, network: string): Promise<string> {
  const cniConfDir = join(env.tmp, 'cni', 'net.d');
  await mkdir(cniConfDir, { recursive: true });
  await writeFile(
    join(cniConfDir, '10-knode-test.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: network,
      plugins: [
        {
          type: 'bridge',
          bridge: 'knode-tbr1',
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: podSubnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(env.tmp, 'cni', 'ipam') },
        },
      ],
    }),
  );
  return cniConfDir;
}

/**
 * Starts containerd with CRI and the test CNI network `network` (use
 * `knode-t-<rand>` and register env.cleanupCniCache(network)), imports pause and
 * app, and returns a connected CRI client once NetworkReady.
 */
export async function startCriContainerd(t: Teardownable, env: TestEnv, o: { network: string; logger: Logger; plainHttpRegistries?: string[] }): Promise<CriRuntime> {
  const cniConfDir = await writeTestConflist(env, o.network);
  const registryConfigDir = join(env.tmp, 'certs.d');
  for (const host of o.plainHttpRegistries ?? []) {
    await mkdir(join(registryConfigDir, host), { recursive: true });
    await writeFile(join(registryConfigDir, host, 'hosts.toml'), renderPlainHttpHosts(host));
  }
  const containerd = await startContainerd(env, { cri: { cniConfDir, ...((o.plainHttpRegistries ?? []).length > 0 ? { registryConfigDir } : {}) } });
  await containerd.importImages(['pause', 'app']);
  const cri = createCriRuntime({ endpoint: `unix://${containerd.socket}`, requestTimeoutMs: 30_000, logger: o.logger });
  t.teardown(() => cri.close());
  await cri.waitReady({ timeoutMs: 20_000 });
  await waitFor('NetworkReady', async () => ((await cri.status()).conditions.some((c) => c.type === 'NetworkReady' && c.status) ? true : undefined));
  return cri;
}

export interface PodEvent {
  involvedObject: InvolvedObject;
  type: EventType;
  reason: string;
  message: string;
}

/** A world of collected statuses and events for one PodWorkers instance. */
export interface World {
  workers: PodWorkers;
  statuses: Map<string, V1PodStatus[]>;
  events: PodEvent[];
}

/** PodWorkers on `runtime` with short resync and back-off periods; stopped in teardown. */
export function podWorld(
  t: Teardownable,
  o: { runtime: Runtime; runtimeName?: string; tmp: string; cgroupParent: string; lookup: ObjectLookup; logger: Logger },
  extra: Partial<PodWorkerOptions> = {},
): World {
  const statuses = new Map<string, V1PodStatus[]>();
  const events: PodEvent[] = [];
  const workers = new PodWorkers({
    runtime: o.runtime,
    ...(o.runtimeName !== undefined ? { runtimeName: o.runtimeName } : {}),
    rootDir: join(o.tmp, 'kubelet'),
    podLogsRoot: join(o.tmp, 'pod-logs'),
    clusterDNS: ['10.96.0.10'],
    clusterDomain: 'cluster.local',
    cgroupParent: o.cgroupParent,
    hostIPs: [podGateway],
    nodeAllocatable: { cpu: '2', memory: '4Gi' },
    memoryCapacity: totalmem(),
    lookup: o.lookup,
    recorder: { event: (involvedObject, type, reason, message) => void events.push({ involvedObject, type, reason, message }) },
    statusSink: {
      setStatus: (pod, status) => {
        const uid = pod.metadata!.uid!;
        statuses.set(uid, [...(statuses.get(uid) ?? []), structuredClone(status)]);
      },
    },
    backoff: new BackOff({ baseMs: 1000, maxMs: 8000 }),
    imageBackoff: new BackOff({ baseMs: 1000, maxMs: 8000 }),
    resyncMs: 500,
    mounter: systemMounter,
    logger: o.logger,
    ...extra,
  });
  t.teardown(() => workers.stop());
  return { workers, statuses, events };
}

export function latest(w: World, uid: string): V1PodStatus | undefined {
  return w.statuses.get(uid)?.at(-1);
}

export function waitStatus(w: World, uid: string, what: string, ok: (s: V1PodStatus) => boolean, timeoutMs = 30_000): Promise<V1PodStatus> {
  return waitFor(
    what,
    async () => {
      const s = latest(w, uid);
      return s !== undefined && ok(s) ? s : undefined;
    },
    timeoutMs,
  );
}

export function cond(s: V1PodStatus, type: string): string | undefined {
  return s.conditions?.find((c) => c.type === type)?.status;
}

export function cs(s: V1PodStatus, name: string): V1ContainerStatus | undefined {
  return [...(s.containerStatuses ?? []), ...(s.initContainerStatuses ?? [])].find((c) => c.name === name);
}

export function reasonsOf(w: World, uid: string): string[] {
  return w.events.filter((e) => e.involvedObject.uid === uid).map((e) => e.reason);
}

/** Pods named `<name>-<rand>` in default with uids unique to the run. */
export function podMaker(rand: string): (name: string, spec: V1Pod['spec']) => V1Pod {
  let seq = 0;
  return (name, spec) => {
    seq++;
    return { metadata: { name: `${name}-${rand}`, namespace: 'default', uid: `uid-${rand}-${seq}` }, spec };
  };
}

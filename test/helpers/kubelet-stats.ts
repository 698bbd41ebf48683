/**
 * /stats/summary checks shared by the kubelet-server e2e tests (containerd and
 * docker): a pod that writes 2 MiB into an emptyDir and 1 MiB into its root
 * filesystem, logs a line a second, and gets traffic; the Summary must show
 * real non-zero figures for it (network, volume, rootfs, logs,
 * ephemeral-storage) and for the node (fs, imageFs, network).
 */
import type { V1Pod } from '@kubernetes/client-node';
import { until } from './poll.js';

export const statsPodName = 'stats';

export function statsPod(): V1Pod {
  const script = 'dd if=/dev/zero of=/scratch/f bs=1024 count=2048 && dd if=/dev/zero of=/tmp/rootfs-f bs=1024 count=1024 && i=0; while true; do echo "stats $i"; i=$((i+1)); sleep 1; done';
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: statsPodName },
    spec: {
      terminationGracePeriodSeconds: 1,
      volumes: [{ name: 'scratch', emptyDir: {} }],
      containers: [{ name: statsPodName, image: 'knode.local/app:1.0', command: ['sh', '-c', script], volumeMounts: [{ name: 'scratch', mountPath: '/scratch' }] }],
    },
  };
}

interface Fs {
  usedBytes?: number;
  capacityBytes?: number;
  availableBytes?: number;
  inodesUsed?: number;
}

interface Net {
  name?: string;
  rxBytes?: number;
  txBytes?: number;
  interfaces?: { name: string }[];
}

export interface Summary {
  node: { fs?: Fs; runtime?: { imageFs?: Fs }; network?: Net };
  pods: {
    podRef: { name: string };
    network?: Net;
    volume?: (Fs & { name: string })[];
    'ephemeral-storage'?: Fs;
    containers: { name: string; rootfs?: Fs; logs?: Fs }[];
  }[];
}

export interface Check {
  what: string;
  ok: boolean;
  got: unknown;
}

const MiB = 1024 * 1024;

/** The checks on one Summary for the stats pod. Pure. */
export function statsChecks(s: Summary): Check[] {
  const p = s.pods.find((x) => x.podRef.name === statsPodName);
  const c = p?.containers.find((x) => x.name === statsPodName);
  const scratch = p?.volume?.find((v) => v.name === 'scratch');
  const n = s.node;
  return [
    { what: 'node fs: capacity and usage (statfs of the root dir)', ok: (n.fs?.capacityBytes ?? 0) > 0 && (n.fs?.usedBytes ?? 0) > 0 && (n.fs?.availableBytes ?? 0) > 0, got: n.fs },
    { what: 'node runtime.imageFs: the images\' usage, with capacity', ok: (n.runtime?.imageFs?.usedBytes ?? 0) > 0 && (n.runtime?.imageFs?.capacityBytes ?? 0) > 0, got: n.runtime?.imageFs },
    { what: 'node network: interfaces with traffic', ok: (n.network?.interfaces?.length ?? 0) > 0 && (n.network?.rxBytes ?? 0) > 0, got: n.network },
    { what: 'pod network: eth0 received and sent bytes', ok: p?.network?.name === 'eth0' && (p.network.rxBytes ?? 0) > 0 && (p.network.txBytes ?? 0) > 0, got: p?.network },
    { what: 'emptyDir volume scratch: the 2 MiB written', ok: (scratch?.usedBytes ?? 0) >= 2 * MiB && (scratch?.inodesUsed ?? 0) >= 2, got: scratch },
    { what: 'container rootfs: the 1 MiB written to /tmp', ok: (c?.rootfs?.usedBytes ?? 0) >= MiB, got: c?.rootfs },
    { what: 'container logs: its log directory', ok: (c?.logs?.usedBytes ?? 0) > 0, got: c?.logs },
    { what: 'ephemeral-storage: rootfs + logs + emptyDir', ok: (p?.['ephemeral-storage']?.usedBytes ?? 0) >= 3 * MiB, got: p?.['ephemeral-storage'] },
  ];
}

/** Polls the Summary until every check passes (the runtime's usage figures lag a little), or gives the last checks after `timeoutMs`. */
export async function settledStatsChecks(fetchSummary: () => Promise<Summary>, timeoutMs = 90_000): Promise<Check[]> {
  let last: Check[] = [];
  try {
    await until('every /stats/summary check passes', async () => {
      last = statsChecks(await fetchSummary());
      return last.every((c) => c.ok) ? true : undefined;
    }, timeoutMs, 2000);
  } catch {
    // the failing checks are reported by the caller
  }
  return last;
}

/**
 * The one interface every knode-proxy backend implements (iptables, nftables, ipvs).
 *
 * Design notes
 * - A backend owns the kernel state of one mode and one IP family. `sync` receives the whole
 *   model plus the services changed since the last successful sync; the backend may upgrade a
 *   partial sync to a full one (first sync, previous failure, canary gone) and says so in the
 *   result.
 * - Compute, then apply once: each backend renders text with a pure function and hands it to a
 *   thin port (`apply.ts`) that loads it in one kernel transaction. A failed apply leaves the
 *   previous ruleset in place and makes the next sync full.
 */
import type { ExecResult } from '../../lib/exec.js';
import type { Logger } from '../../lib/log.js';
import type { IPFamily, ProxyState } from '../model.js';

export type ProxyMode = 'iptables' | 'nftables' | 'ipvs';

export interface SyncRequest {
  /** Ask for a full sync (periodic resync); the backend may also decide one on its own. */
  full: boolean;
  state: ProxyState;
  /** Services ("ns/name") whose ports or endpoints changed since the last successful sync. */
  changed: ReadonlySet<string>;
}

export interface SyncResult {
  applied: boolean;
  /** Whether the sync that ran was full. */
  full: boolean;
  duration: { computeMs: number; applyMs: number; totalMs: number };
  /** Size of what was loaded (characters), and backend-specific counters. */
  stats: Record<string, number>;
}

export interface ProxyBackend {
  readonly mode: ProxyMode;
  readonly family: IPFamily;
  sync(req: SyncRequest): Promise<SyncResult>;
  /** Remove every rule, chain, table this mode created (kube-proxy --cleanup). */
  cleanup(): Promise<void>;
}

/** How backends run programs: lib/exec.ts's execFile, or a fake in tests. */
export type ExecFn = (file: string, args: readonly string[], options?: { input?: string; allowFailure?: boolean; timeoutMs?: number }) => Promise<ExecResult>;

export interface BackendOptions {
  family: IPFamily;
  masqueradeBit: number;
  masqueradeAll: boolean;
  clusterCIDR?: string;
  /** --nodeport-addresses resolved to IPs; empty = all local addresses. */
  nodePortIPs?: readonly string[];
  nodeIPs?: readonly string[];
  localhostNodePorts?: boolean;
  conntrackTCPLiberal?: boolean;
  /** IPVS mode's scheduler (default rr). */
  ipvsScheduler?: string;
  /** Run every program inside this network namespace (`nsenter --net=<path>`); tests only. */
  netnsPath?: string;
  exec?: ExecFn;
  logger?: Logger;
}

export type BackendFactory = (opts: BackendOptions) => ProxyBackend;

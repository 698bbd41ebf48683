/**
 * nftables backend: full vs partial decision, kernel facts for the pure renderer, one `nft -f`.
 *
 * Design notes
 * - Full sync when asked, on the first sync, and after any failure (the element state the
 *   diff is based on may no longer match the kernel). A full sync lists the table's chains and
 *   sets once; a partial sync relies on the view of the table the last successful sync left
 *   (elements with their owning service, each service's chains and sets), updated in place
 *   only after `nft -f` succeeded.
 * - Stale chains are flushed in one sync and deleted in a later one, at least a second later
 *   (upstream: kernels before 6.2 may still see a reference from a just-deleted map element).
 *   `delete chain` makes nft fetch every chain of the namespace first (see render.ts), so a
 *   partial sync deletes them in batches: when the script pays that fetch anyway, when
 *   STALE_DELETE_BATCH chains are waiting, or when one has waited STALE_DELETE_AGE_MS. A flushed
 *   chain is empty and unreferenced: it only costs its name in the kernel meanwhile.
 */
import { KnodeError, isKnodeError } from '../../../lib/errors.js';
import { createLogger, type Logger } from '../../../lib/log.js';
import type { IPFamily } from '../../model.js';
import type { BackendOptions, ProxyBackend, SyncRequest, SyncResult } from '../types.js';
import { nftPort, type NftPort } from './apply.js';
import { applyNftUpdates, emptyKernelView, renderNftables, type NftKernelView, type NftRenderOptions } from './render.js';

export const STALE_DELETE_BATCH = 500;
export const STALE_DELETE_AGE_MS = 60_000;

export class NftablesBackend implements ProxyBackend {
  readonly mode = 'nftables' as const;
  readonly family: IPFamily;
  private readonly port: NftPort;
  private readonly renderOpts: NftRenderOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private needFull = true;
  private firstSync = true;
  /** The table as the last successful sync left it; undefined until the first one. */
  private view: NftKernelView | undefined;
  /** Stale chain → time it was flushed. */
  private stale = new Map<string, number>();

  constructor(opts: BackendOptions & { port?: NftPort; serviceCIDRs?: readonly string[]; now?: () => number }) {
    this.family = opts.family;
    this.port = opts.port ?? nftPort(opts);
    this.now = opts.now ?? Date.now;
    this.log = (opts.logger ?? createLogger({ component: 'knode-proxy' })).child({ backend: 'nftables', family: opts.family });
    this.renderOpts = {
      family: opts.family,
      masqueradeBit: opts.masqueradeBit,
      masqueradeAll: opts.masqueradeAll,
      clusterCIDR: opts.clusterCIDR,
      nodePortIPs: opts.nodePortIPs,
      nodeIPs: opts.nodeIPs,
      serviceCIDRs: opts.serviceCIDRs,
    };
  }

  markFull(): void {
    this.needFull = true;
  }

  async sync(req: SyncRequest): Promise<SyncResult> {
    const t0 = performance.now();
    const full = req.full || this.needFull || this.view === undefined;
    let listed: { chains: Set<string>; sets: Set<string> } | undefined;
    if (full) {
      try {
        listed = await this.port.list();
      } catch (err) {
        this.needFull = true;
        throw err;
      }
    }
    const now = this.now();
    const deletable = new Set([...this.stale].filter(([, at]) => now - at >= 1000).map(([c]) => c));
    const deleteStaleNow = deletable.size >= STALE_DELETE_BATCH || [...this.stale.values()].some((at) => now - at >= STALE_DELETE_AGE_MS);
    const t1 = performance.now();
    const r = renderNftables(req.state, this.renderOpts, {
      full,
      changed: req.changed,
      existingChains: listed?.chains,
      existingSets: listed?.sets,
      deletableChains: deletable,
      pendingStale: new Set(this.stale.keys()),
      prev: full ? undefined : this.view,
      recreateBaseChains: this.firstSync,
      deleteStaleNow,
    });
    const t2 = performance.now();
    try {
      await this.port.apply(r.text);
    } catch (err) {
      this.needFull = true;
      this.log.error('nft -f failed, next sync is full', { err });
      throw isKnodeError(err) ? err : new KnodeError('NFT_FAILED', 'nft -f failed', { cause: err });
    }
    const t3 = performance.now();
    this.needFull = false;
    this.firstSync = false;
    this.view = applyNftUpdates(this.view ?? emptyKernelView(), r);
    for (const c of r.deletedChains) this.stale.delete(c);
    for (const c of r.flushedStale) if (!this.stale.has(c)) this.stale.set(c, now);
    for (const v of r.serviceUpdates.values()) for (const c of v?.chains ?? []) this.stale.delete(c);
    return {
      applied: true,
      full,
      duration: { computeMs: t2 - t1, applyMs: t3 - t2 + (t1 - t0), totalMs: t3 - t0 },
      stats: { ...r.stats, bytes: r.text.length, staleChains: this.stale.size, nftCacheFetch: r.needsCache ? 1 : 0 },
    };
  }

  async cleanup(): Promise<void> {
    await this.port.deleteTable();
    this.needFull = true;
    this.firstSync = true;
    this.view = undefined;
    this.stale.clear();
  }
}

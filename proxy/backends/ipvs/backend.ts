/**
 * IPVS backend: render the desired state, then bring the kernel there with incremental changes.
 *
 * Design notes
 * - Order per sync (upstream syncProxyRules): kube-ipvs0 exists → ipsets (one `ipset restore
 *   -exist` with only the differences) → iptables (one `iptables-restore --noflush` of IPVS
 *   mode's few chains, plus missing jump rules) → service addresses on kube-ipvs0 → virtual
 *   servers and their real servers (generic netlink) → stale virtual servers, then stale
 *   addresses, removed.
 * - Diffing: virtual servers are dumped every sync (one GET_SERVICE dump); real servers are
 *   dumped for the virtual servers whose desired real servers changed since the last successful
 *   sync, and for all of them on a full sync. A stale virtual server is one the kernel has, that
 *   is not desired, and whose address is ours (on kube-ipvs0, a NodePort address, or one we
 *   created), so IPVS services of other tools are left alone.
 * - Mode switch: iptables mode's leftovers (KUBE-SVC-… chains, KUBE-NODEPORTS, the canary,
 *   filter KUBE-SERVICES) are removed in the same iptables-restore (iptablesModeLeftovers).
 * - Any failure makes the next sync full. Real servers are removed at once (no graceful
 *   termination with weight 0).
 */
import { isKnodeError, KnodeError } from '../../../lib/errors.js';
import { createLogger, type Logger } from '../../../lib/log.js';
import { isNetlinkErrno } from '../../../lib/netlink/socket.js';
import { serviceKey, type IpvsDestination, type IpvsService } from '../../../lib/netlink/ipvs.js';
import type { IPFamily } from '../../model.js';
import { ipsetPort, planIpsetRestore, type IpsetPort } from '../../ipset.js';
import { iptablesPort, parseIptablesSave, type IptablesPort } from '../iptables/apply.js';
import { jumpRuleSpec } from '../iptables/render.js';
import { makeRunner } from '../run.js';
import type { BackendOptions, ProxyBackend, SyncRequest, SyncResult } from '../types.js';
import { ipvsKernel, type IpvsKernel } from './apply.js';
import {
  DEFAULT_SCHEDULER,
  IPSETS,
  IPVS_CHAINS,
  IPVS_JUMP_RULES,
  IPVS_ONLY_CHAINS,
  KUBE_IPVS_DEVICE,
  iptablesModeLeftovers,
  iptablesRestoreText,
  ipsetName,
  renderIpvs,
  type IpsetId,
  type IpvsRenderOptions,
} from './render.js';

export interface IpvsBackendOptions extends BackendOptions {
  kernel?: IpvsKernel;
  ipset?: IpsetPort;
  iptables?: IptablesPort;
}

function destKey(d: Pick<IpvsDestination, 'address' | 'port'>): string {
  return `${d.address}:${d.port}`;
}

function sameService(a: IpvsService, b: IpvsService): boolean {
  return a.scheduler === b.scheduler && (a.flags & 1) === (b.flags & 1) && a.timeout === b.timeout;
}

export class IpvsBackend implements ProxyBackend {
  readonly mode = 'ipvs' as const;
  readonly family: IPFamily;
  private readonly kernel: IpvsKernel;
  private readonly ipset: IpsetPort;
  private readonly iptables: IptablesPort;
  private readonly opts: IpvsBackendOptions;
  private readonly log: Logger;
  private needFull = true;
  /** serviceKey → destination keys (sorted, joined) applied at the last successful sync. */
  private appliedDests = new Map<string, string>();
  /** Addresses virtual servers were created on (to recognise stale ones of ours). */
  private ourAddresses = new Set<string>();

  constructor(opts: IpvsBackendOptions) {
    this.opts = opts;
    this.family = opts.family;
    const runner = makeRunner(opts);
    this.kernel = opts.kernel ?? ipvsKernel({ netnsPath: opts.netnsPath });
    this.ipset = opts.ipset ?? ipsetPort(runner);
    this.iptables = opts.iptables ?? iptablesPort(opts);
    this.log = (opts.logger ?? createLogger({ component: 'knode-proxy' })).child({ backend: 'ipvs', family: opts.family });
  }

  async sync(req: SyncRequest): Promise<SyncResult> {
    const full = req.full || this.needFull;
    const t0 = performance.now();
    try {
      if (full) this.kernel.ensureSysctls();
      const devIndex = await this.kernel.ensureDevice(KUBE_IPVS_DEVICE);
      const nodePortAddresses =
        this.opts.nodePortIPs !== undefined && this.opts.nodePortIPs.length > 0
          ? [...this.opts.nodePortIPs]
          : await this.kernel.localAddresses(this.family, devIndex);
      const renderOpts: IpvsRenderOptions = {
        family: this.family,
        scheduler: this.opts.ipvsScheduler ?? DEFAULT_SCHEDULER,
        masqueradeBit: this.opts.masqueradeBit,
        masqueradeAll: this.opts.masqueradeAll,
        clusterCIDR: this.opts.clusterCIDR,
        nodePortAddresses: nodePortAddresses.sort(),
      };
      const t1 = performance.now();
      const desired = renderIpvs(req.state, renderOpts);
      const t2 = performance.now();

      // ipsets, then the iptables rules that match them
      const ipsetPlan = planIpsetRestore(desired.ipsets, await this.ipset.save(), this.family);
      if (full || ipsetPlan.added + ipsetPlan.removed > 0) await this.ipset.restore(ipsetPlan.text);
      const saved = parseIptablesSave(await this.iptables.save());
      const missingJumps = IPVS_JUMP_RULES.filter((j) => !(saved.rules.get(j.table) ?? []).includes(`-A ${j.from} ${jumpRuleSpec(j)}`));
      const leftovers = iptablesModeLeftovers(saved);
      const staleChains = [...leftovers.chains.values()].reduce((n, c) => n + c.length, 0);
      if (staleChains > 0) this.log.info('removing iptables-mode leftovers', { chains: staleChains });
      await this.iptables.restore(iptablesRestoreText(desired, missingJumps, leftovers));

      // addresses first: a virtual server on an address the node does not have gets no traffic
      const haveAddrs = new Set(await this.kernel.deviceAddresses(devIndex, this.family));
      let addrAdded = 0;
      for (const ip of desired.addresses) {
        if (haveAddrs.has(ip)) continue;
        await this.kernel.addDeviceAddress(devIndex, ip);
        addrAdded++;
      }

      // virtual servers and real servers
      const kernelServices = new Map((await this.kernel.listServices()).map((s) => [serviceKey(s), s]));
      let vsAdded = 0;
      let vsUpdated = 0;
      let destAdded = 0;
      let destRemoved = 0;
      const applied = new Map<string, string>();
      for (const [key, want] of desired.virtualServers) {
        const have = kernelServices.get(key);
        const wantDests = want.destinations.map(destKey).join(',');
        let haveDests: IpvsDestination[] = [];
        if (!have) {
          await this.addService(want.service);
          vsAdded++;
        } else {
          if (!sameService(have, want.service)) {
            await this.kernel.setService(want.service);
            vsUpdated++;
          }
          if (!full && this.appliedDests.get(key) === wantDests) {
            applied.set(key, wantDests);
            continue;
          }
          haveDests = await this.kernel.listDestinations(want.service);
        }
        const haveByKey = new Map(haveDests.map((d) => [destKey(d), d]));
        const wantKeys = new Set(want.destinations.map(destKey));
        for (const d of want.destinations) {
          const h = haveByKey.get(destKey(d));
          if (!h) {
            await this.kernel.newDestination(want.service, d);
            destAdded++;
          } else if (h.weight !== d.weight || h.fwdMethod !== d.fwdMethod) {
            await this.kernel.setDestination(want.service, d);
          }
        }
        for (const h of haveDests) {
          if (wantKeys.has(destKey(h))) continue;
          await this.kernel.delDestination(want.service, h);
          destRemoved++;
        }
        applied.set(key, wantDests);
      }

      // stale virtual servers (ours only), then stale addresses
      const ours = new Set([...haveAddrs, ...nodePortAddresses, ...this.ourAddresses]);
      let vsRemoved = 0;
      for (const [key, s] of kernelServices) {
        if (desired.virtualServers.has(key) || !ours.has(s.address)) continue;
        try {
          await this.kernel.delService(s);
        } catch (err) {
          if (!isNetlinkErrno(err, 'ESRCH', 'ENOENT')) throw err;
        }
        vsRemoved++;
      }
      const wantAddrs = new Set(desired.addresses);
      let addrRemoved = 0;
      for (const ip of haveAddrs) {
        if (wantAddrs.has(ip)) continue;
        await this.kernel.delDeviceAddress(devIndex, ip);
        addrRemoved++;
      }
      const t3 = performance.now();

      this.appliedDests = applied;
      this.ourAddresses = new Set([...desired.virtualServers.values()].map((v) => v.service.address));
      this.needFull = false;
      return {
        applied: true,
        full,
        duration: { computeMs: t2 - t1, applyMs: t3 - t2 + (t1 - t0), totalMs: t3 - t0 },
        stats: {
          services: req.state.services.size,
          virtualServers: desired.virtualServers.size,
          virtualServersAdded: vsAdded,
          virtualServersUpdated: vsUpdated,
          virtualServersRemoved: vsRemoved,
          realServersAdded: destAdded,
          realServersRemoved: destRemoved,
          addressesAdded: addrAdded,
          addressesRemoved: addrRemoved,
          ipsetEntriesAdded: ipsetPlan.added,
          ipsetEntriesRemoved: ipsetPlan.removed,
        },
      };
    } catch (err) {
      this.needFull = true;
      this.log.error('IPVS sync failed, next sync is full', { err });
      throw isKnodeError(err) ? err : new KnodeError('IPVS_SYNC_FAILED', 'IPVS sync failed', { cause: err });
    }
  }

  /** NEW_SERVICE; one that appeared meanwhile is updated; an unknown scheduler gets a clear error. */
  private async addService(s: IpvsService): Promise<void> {
    try {
      await this.kernel.newService(s);
    } catch (err) {
      if (isNetlinkErrno(err, 'EEXIST')) return this.kernel.setService(s);
      if (isNetlinkErrno(err, 'ENOENT')) {
        throw new KnodeError('IPVS_SCHEDULER_UNAVAILABLE', `IPVS scheduler "${s.scheduler}" is not available in this kernel (module ip_vs_${s.scheduler} not loaded?)`, {
          cause: err,
          details: { service: serviceKey(s), scheduler: s.scheduler },
        });
      }
      throw err;
    }
  }

  /**
   * Remove everything IPVS mode programs (upstream CleanupLeftovers): every virtual server (as
   * upstream's ipvs.Flush(); with `onlyOurs`, those on kube-ipvs0's or our addresses), the
   * device, the iptables chains and jumps, the ipsets. A kernel without IPVS has no virtual
   * servers: that part is skipped.
   */
  async cleanup(opts: { onlyOurs?: boolean } = {}): Promise<void> {
    try {
      await this.cleanupKernel(opts.onlyOurs !== true);
    } finally {
      this.kernel.close();
    }
    this.needFull = true;
    this.appliedDests = new Map();
    this.ourAddresses = new Set();
  }

  private async cleanupKernel(allServices: boolean): Promise<void> {
    const devIndex = await this.kernel.deviceIndex(KUBE_IPVS_DEVICE);
    const devAddrs = new Set(devIndex === undefined ? [] : await this.kernel.deviceAddresses(devIndex, this.family));
    try {
      for (const s of await this.kernel.listServices()) {
        if (allServices || devAddrs.has(s.address) || this.ourAddresses.has(s.address)) await this.kernel.delService(s);
      }
    } catch (err) {
      const noIpvs = isNetlinkErrno(err, 'ENOENT') || isKnodeError(err, 'IPVS_UNAVAILABLE');
      if (!noIpvs) throw err;
    }
    if (devIndex !== undefined) await this.kernel.deleteDevice(KUBE_IPVS_DEVICE);

    const saved = parseIptablesSave(await this.iptables.save());
    const out: string[] = [];
    for (const table of ['filter', 'nat'] as const) {
      const chains = saved.chains.get(table) ?? new Set<string>();
      const mine: string[] = IPVS_CHAINS[table].filter((c) => chains.has(c));
      if (mine.length === 0) continue;
      out.push(`*${table}`, ...mine.map((c) => `:${c} - [0:0]`));
      for (const rule of saved.rules.get(table) ?? []) {
        const m = /^-A (\S+) .*-j (\S+)/.exec(rule);
        if (m && !mine.includes(m[1]!) && mine.includes(m[2]!)) out.push(rule.replace(/^-A /, '-D '));
      }
      out.push(...mine.map((c) => `-X ${c}`), 'COMMIT');
    }
    if (out.length > 0) await this.iptables.restore(out.join('\n') + '\n');
    const sets = await this.ipset.save();
    await this.ipset.destroy((Object.keys(IPSETS) as IpsetId[]).map((id) => ipsetName(id, this.family)).filter((n) => sets.has(n)));
  }

  /**
   * After a switch from IPVS mode to another mode (upstream ran ipvs.CleanupLeftovers at
   * start-up): remove what only IPVS mode uses — the virtual servers (all of them, as upstream,
   * but only on a node that has kube-ipvs0), kube-ipvs0, the chains KUBE-NODE-PORT and
   * KUBE-LOAD-BALANCER with every jump to them, and the ipsets. Chains both modes use
   * (KUBE-SERVICES, KUBE-POSTROUTING, KUBE-MARK-MASQ, KUBE-FORWARD) are the new mode's. Cheap when
   * there is nothing to do. Returns how many things were removed.
   */
  async cleanupIpvsOnlyLeftovers(): Promise<number> {
    let removed = 0;
    try {
      const devIndex = await this.kernel.deviceIndex(KUBE_IPVS_DEVICE);
      if (devIndex !== undefined) {
        try {
          for (const s of await this.kernel.listServices()) {
            await this.kernel.delService(s);
            removed++;
          }
        } catch (err) {
          if (!isNetlinkErrno(err, 'ENOENT') && !isKnodeError(err, 'IPVS_UNAVAILABLE')) throw err;
        }
        await this.kernel.deleteDevice(KUBE_IPVS_DEVICE);
        removed++;
      }
      const saved = parseIptablesSave(await this.iptables.save());
      const out: string[] = [];
      for (const table of ['filter', 'nat'] as const) {
        const have = saved.chains.get(table) ?? new Set<string>();
        const stale: string[] = IPVS_ONLY_CHAINS[table].filter((c) => have.has(c));
        if (stale.length === 0) continue;
        out.push(`*${table}`, ...stale.map((c) => `:${c} - [0:0]`));
        for (const rule of saved.rules.get(table) ?? []) {
          const m = /^-A (\S+) .*-j (\S+)/.exec(rule);
          if (m && stale.includes(m[2]!) && !stale.includes(m[1]!)) out.push(rule.replace(/^-A /, '-D '));
        }
        out.push(...stale.map((c) => `-X ${c}`), 'COMMIT');
        removed += stale.length;
      }
      if (out.length > 0) await this.iptables.restore(out.join('\n') + '\n');
      const sets = await this.ipset.save();
      const mine = (Object.keys(IPSETS) as IpsetId[]).map((id) => ipsetName(id, this.family)).filter((n) => sets.has(n));
      await this.ipset.destroy(mine);
      removed += mine.length;
    } finally {
      this.kernel.close();
    }
    return removed;
  }

  close(): void {
    this.kernel.close();
  }
}

/**
 * iptables backend: decides full vs partial, gathers the kernel facts the pure renderer needs,
 * renders, applies once.
 *
 * Design notes
 * - Full sync when asked, on the first sync, after any failed apply (the change sets consumed
 *   by the failed sync are lost, as upstream), and when the canary chain KUBE-PROXY-CANARY is
 *   gone from mangle or nat (someone flushed the tables: unchanged chains can no longer be
 *   assumed present).
 * - A full sync reads `iptables-save` once: existing nat chains (stale KUBE-SVC/SEP… chains are
 *   deleted) and the jump rules already present (missing ones are inserted in the same restore).
 *   A partial sync reads nothing: stale chains are those a changed service used at the last
 *   successful sync and no longer uses.
 */
import { KnodeError, isKnodeError } from '../../../lib/errors.js';
import { createLogger, type Logger } from '../../../lib/log.js';
import type { IPFamily } from '../../model.js';
import type { BackendOptions, ProxyBackend, SyncRequest, SyncResult } from '../types.js';
import { iptablesPort, parseIptablesSave, type IptablesPort } from './apply.js';
import {
  JUMP_RULES,
  KUBE_PROXY_CANARY,
  KUBE_FORWARD,
  KUBE_MARK_MASQ,
  KUBE_NODEPORTS,
  KUBE_POSTROUTING,
  KUBE_PROXY_FIREWALL,
  KUBE_EXTERNAL_SERVICES,
  KUBE_SERVICES,
  isServiceChain,
  jumpRuleSpec,
  renderIptables,
  type IptablesRenderOptions,
} from './render.js';

export class IptablesBackend implements ProxyBackend {
  readonly mode = 'iptables' as const;
  readonly family: IPFamily;
  private readonly port: IptablesPort;
  private readonly renderOpts: IptablesRenderOptions;
  private readonly log: Logger;
  private needFull = true;
  /** Per service: the nat chains the last successful sync left. */
  private chainsByService = new Map<string, string[]>();

  constructor(opts: BackendOptions & { port?: IptablesPort }) {
    this.family = opts.family;
    this.port = opts.port ?? iptablesPort(opts);
    this.log = (opts.logger ?? createLogger({ component: 'knode-proxy' })).child({ backend: 'iptables', family: opts.family });
    this.renderOpts = {
      family: opts.family,
      masqueradeBit: opts.masqueradeBit,
      masqueradeAll: opts.masqueradeAll,
      clusterCIDR: opts.clusterCIDR,
      nodePortIPs: opts.nodePortIPs,
      nodeIPs: opts.nodeIPs,
      localhostNodePorts: opts.localhostNodePorts,
      conntrackTCPLiberal: opts.conntrackTCPLiberal,
    };
  }

  /** Force the next sync to be full (e.g. after an external flush was detected). */
  markFull(): void {
    this.needFull = true;
  }

  private async canaryPresent(): Promise<boolean> {
    const [mangle, nat] = await Promise.all([
      this.port.chainExists('mangle', KUBE_PROXY_CANARY),
      this.port.chainExists('nat', KUBE_PROXY_CANARY),
    ]);
    return mangle && nat;
  }

  async sync(req: SyncRequest): Promise<SyncResult> {
    const t0 = performance.now();
    let full = req.full || this.needFull;
    if (!full && !(await this.canaryPresent())) {
      this.log.warn('canary chain missing, iptables was flushed: doing a full sync');
      full = true;
    }
    let existingNatChains: ReadonlySet<string> = new Set();
    let missingJumps = JUMP_RULES;
    try {
      if (full) {
        const saved = parseIptablesSave(await this.port.save());
        existingNatChains = saved.chains.get('nat') ?? new Set();
        missingJumps = JUMP_RULES.filter((j) => !(saved.rules.get(j.table) ?? []).includes(`-A ${j.from} ${jumpRuleSpec(j)}`));
      } else {
        missingJumps = [];
      }
    } catch (err) {
      this.needFull = true;
      throw err;
    }
    const t1 = performance.now();
    const r = renderIptables(req.state, this.renderOpts, {
      full,
      changed: req.changed,
      existingNatChains,
      prevChainsByService: this.chainsByService,
      missingJumps,
    });
    const t2 = performance.now();
    try {
      await this.port.restore(r.text);
    } catch (err) {
      this.needFull = true;
      this.log.error('iptables-restore failed, next sync is full', { err });
      throw isKnodeError(err) ? err : new KnodeError('IPTABLES_RESTORE_FAILED', 'iptables-restore failed', { cause: err });
    }
    const t3 = performance.now();
    this.needFull = false;
    this.chainsByService = r.chainsByService;
    return {
      applied: true,
      full,
      duration: { computeMs: t2 - t1, applyMs: t3 - t2 + (t1 - t0), totalMs: t3 - t0 },
      stats: { ...r.stats, bytes: r.text.length },
    };
  }

  async cleanup(): Promise<void> {
    const saved = parseIptablesSave(await this.port.save());
    const ours = new Set([
      KUBE_SERVICES,
      KUBE_EXTERNAL_SERVICES,
      KUBE_FORWARD,
      KUBE_NODEPORTS,
      KUBE_PROXY_FIREWALL,
      KUBE_POSTROUTING,
      KUBE_MARK_MASQ,
      KUBE_PROXY_CANARY,
    ]);
    const out: string[] = [];
    for (const table of ['mangle', 'filter', 'nat']) {
      const chains = saved.chains.get(table);
      if (!chains) continue;
      const mine = [...chains].filter((c) => ours.has(c) || isServiceChain(c));
      if (mine.length === 0) continue;
      out.push(`*${table}`);
      for (const c of mine) out.push(`:${c} - [0:0]`);
      for (const rule of saved.rules.get(table) ?? []) {
        const m = /^-A (\S+) .*-j (\S+)/.exec(rule);
        if (m && !mine.includes(m[1]!) && mine.includes(m[2]!)) out.push(rule.replace(/^-A /, '-D '));
      }
      for (const c of mine) out.push(`-X ${c}`);
      out.push('COMMIT');
    }
    if (out.length > 0) await this.port.restore(out.join('\n') + '\n');
    this.needFull = true;
    this.chainsByService = new Map();
  }
}

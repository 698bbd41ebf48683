/**
 * MASQUERADE for pod traffic that leaves the cluster network, and FORWARD accepts for it, with
 * flannel's chains and rules (pkg/trafficmngr/iptables): nat FLANNEL-POSTRTG jumped to from
 * POSTROUTING, filter FLANNEL-FWD jumped to from FORWARD.
 *
 * Design notes
 * - The rules are rendered as one iptables-restore text (pure, unit-tested) and applied with the
 *   proxy's iptables port (`iptables-restore -w 5 --noflush`): declaring the chains flushes and
 *   refills them in one transaction. The jumps are added only when `iptables-save` does not show
 *   them already, so a resync never duplicates them.
 * - Traffic kube-proxy marked for masquerade (0x4000) is left to kube-proxy (no double NAT).
 */
import { formatIpNet, networkOf } from '../../lib/netlink/ip.js';
import type { IpNet } from '../../lib/netlink/ip.js';
import { iptablesPort, parseIptablesSave } from '../../proxy/backends/iptables/apply.js';
import type { IptablesPort } from '../../proxy/backends/iptables/apply.js';

export const masqChain = 'FLANNEL-POSTRTG';
export const forwardChain = 'FLANNEL-FWD';
const kubeProxyMark = '0x4000/0x4000';
const masqComment = '-m comment --comment "flanneld masq"';
const fwdComment = '-m comment --comment "flanneld forward"';
export const masqJump = `-A POSTROUTING ${masqComment} -j ${masqChain}`;
export const forwardJump = `-A FORWARD ${fwdComment} -j ${forwardChain}`;

const cidr = (n: IpNet): string => formatIpNet({ ip: networkOf(n), prefix: n.prefix });

/** The iptables-restore text; the jumps only when `jumps` says they are missing. Pure. */
export function renderMasqRules(o: { clusterCIDR: IpNet; podCIDR: IpNet; jumps: { masq: boolean; forward: boolean } }): string {
  const cluster = cidr(o.clusterCIDR);
  const pods = cidr(o.podCIDR);
  const lines = [
    '*nat',
    `:${masqChain} - [0:0]`,
    ...(o.jumps.masq ? [masqJump] : []),
    `-A ${masqChain} -m mark --mark ${kubeProxyMark} ${masqComment} -j RETURN`,
    `-A ${masqChain} -s ${pods} -d ${cluster} ${masqComment} -j RETURN`,
    `-A ${masqChain} -s ${cluster} -d ${pods} ${masqComment} -j RETURN`,
    `-A ${masqChain} ! -s ${cluster} -d ${pods} ${masqComment} -j RETURN`,
    `-A ${masqChain} -s ${cluster} ! -d 224.0.0.0/4 ${masqComment} -j MASQUERADE --random-fully`,
    `-A ${masqChain} ! -s ${cluster} -d ${cluster} ${masqComment} -j MASQUERADE --random-fully`,
    'COMMIT',
    '*filter',
    `:${forwardChain} - [0:0]`,
    ...(o.jumps.forward ? [forwardJump] : []),
    `-A ${forwardChain} -s ${cluster} ${fwdComment} -j ACCEPT`,
    `-A ${forwardChain} -d ${cluster} ${fwdComment} -j ACCEPT`,
    'COMMIT',
    '',
  ];
  return lines.join('\n');
}

/** Which jumps are missing in `iptables-save` output. Pure. */
export function missingJumps(saved: string): { masq: boolean; forward: boolean } {
  const t = parseIptablesSave(saved);
  const has = (table: string, chain: string, target: string): boolean => (t.rules.get(table) ?? []).some((r) => r.startsWith(`-A ${chain} `) && r.endsWith(`-j ${target}`));
  return { masq: !has('nat', 'POSTROUTING', masqChain), forward: !has('filter', 'FORWARD', forwardChain) };
}

export interface MasqPort {
  ensure(o: { clusterCIDR: IpNet; podCIDR: IpNet }): Promise<boolean>;
}

/** Applies the rules when they (or the jumps) are not in place; returns whether it wrote. */
export function masqPort(opts: { netnsPath?: string; port?: IptablesPort } = {}): MasqPort {
  const port = opts.port ?? iptablesPort({ family: 'IPv4', ...(opts.netnsPath !== undefined ? { netnsPath: opts.netnsPath } : {}), restoreTimeoutMs: 30_000 });
  let applied = '';
  return {
    async ensure(o) {
      const jumps = missingJumps(await port.save());
      const chainsThere = (await port.chainExists('nat', masqChain)) && (await port.chainExists('filter', forwardChain));
      const text = renderMasqRules({ ...o, jumps });
      if (!jumps.masq && !jumps.forward && chainsThere && text === applied) return false;
      await port.restore(text);
      applied = renderMasqRules({ ...o, jumps: { masq: false, forward: false } });
      return true;
    },
  };
}

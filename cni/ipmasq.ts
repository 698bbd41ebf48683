/**
 * ipMasq for the bridge plugin, with the reference plugin's exact chains and rules so that a
 * container set up by one implementation can be torn down by the other:
 *   nat CNI-<24 hex of sha512(network name + container ID)>:
 *     -d <pod subnet> -j ACCEPT          -m comment --comment 'name: "<net>" id: "<id>"'
 *     ! -d 224.0.0.0/4 (ff00::/8) -j MASQUERADE   (same comment)
 *   nat POSTROUTING: -s <pod IP> -j CNI-…  (same comment)
 *
 * Design notes
 * - The rule text is rendered by pure functions (unit-tested); `setupIpMasq`/`teardownIpMasq`
 *   apply it with iptables/ip6tables in the namespace the plugin runs in (the host), with -w so
 *   concurrent plugins wait for the xtables lock.
 * - Teardown does not need the pod IPs (the container namespace may be gone): it finds the
 *   POSTROUTING jumps to the container's chain in `iptables -S`, deletes them by their spec,
 *   then flushes and deletes the chain. Everything tolerates "already gone".
 */
import { createHash } from 'node:crypto';
import { execFile } from '../lib/exec.js';
import type { Family, IpNet } from '../lib/netlink/ip.js';
import { formatIp, formatIpNet, networkOf } from '../lib/netlink/ip.js';

export function chainName(network: string, containerId: string): string {
  return ('CNI-' + createHash('sha512').update(network + containerId).digest('hex')).slice(0, 28);
}

/** Go's %q of a plain string. */
function goQuote(s: string): string {
  return JSON.stringify(s);
}

export function chainComment(network: string, containerId: string): string {
  return `name: ${goQuote(network)} id: ${goQuote(containerId)}`;
}

function binary(family: Family): string {
  return family === 4 ? 'iptables' : 'ip6tables';
}

export interface MasqRules {
  chain: string;
  /** Rules of the per-container chain, as iptables arguments after `-A <chain>`. */
  chainRules: string[][];
  /** The POSTROUTING jump, as arguments after `-A POSTROUTING`. */
  jump: string[];
}

export function renderMasq(addr: IpNet, network: string, containerId: string): MasqRules {
  const chain = chainName(network, containerId);
  const comment = chainComment(network, containerId);
  const multicast = addr.ip.family === 4 ? '224.0.0.0/4' : 'ff00::/8';
  const subnet = formatIpNet({ ip: networkOf(addr), prefix: addr.prefix });
  return {
    chain,
    chainRules: [
      ['-d', subnet, '-j', 'ACCEPT', '-m', 'comment', '--comment', comment],
      ['!', '-d', multicast, '-j', 'MASQUERADE', '-m', 'comment', '--comment', comment],
    ],
    jump: ['-s', formatIp(addr.ip), '-j', chain, '-m', 'comment', '--comment', comment],
  };
}

async function ipt(family: Family, args: string[], allowFailure = false): Promise<{ code: number; stdout: string }> {
  return execFile(binary(family), ['-w', '5', '-t', 'nat', ...args], { allowFailure });
}

/** Idempotent: re-running rebuilds the chain and adds the jump only when missing. */
export async function setupIpMasq(addrs: IpNet[], network: string, containerId: string): Promise<void> {
  for (const family of [4, 6] as const) {
    const mine = addrs.filter((a) => a.ip.family === family);
    if (!mine.length) continue;
    const chain = chainName(network, containerId);
    await ipt(family, ['-N', chain], true);
    await ipt(family, ['-F', chain]);
    for (const addr of mine) {
      const r = renderMasq(addr, network, containerId);
      for (const rule of r.chainRules) await ipt(family, ['-A', chain, ...rule]);
      const present = await ipt(family, ['-C', 'POSTROUTING', ...r.jump], true);
      if (present.code !== 0) await ipt(family, ['-A', 'POSTROUTING', ...r.jump]);
    }
  }
}

/** Parse `-s <ip>` of POSTROUTING rules (from `iptables -S`) that jump to `chain`. */
export function jumpSources(saveOutput: string, chain: string): string[] {
  const out: string[] = [];
  for (const line of saveOutput.split('\n')) {
    if (!line.startsWith('-A POSTROUTING ') || !line.endsWith(` -j ${chain}`)) continue;
    const m = / -s (\S+)/.exec(line);
    if (m?.[1]) out.push(m[1].replace(/\/(32|128)$/, ''));
  }
  return out;
}

export async function teardownIpMasq(network: string, containerId: string, families: readonly Family[] = [4, 6]): Promise<void> {
  const chain = chainName(network, containerId);
  const comment = chainComment(network, containerId);
  for (const family of families) {
    const listed = await ipt(family, ['-S', 'POSTROUTING'], true);
    if (listed.code !== 0) continue;
    for (const src of jumpSources(listed.stdout, chain)) {
      await ipt(family, ['-D', 'POSTROUTING', '-s', src, '-j', chain, '-m', 'comment', '--comment', comment], true);
    }
    await ipt(family, ['-F', chain], true);
    await ipt(family, ['-X', chain], true);
  }
}

/**
 * Stale UDP conntrack entries (upstream pkg/proxy/conntrack/cleanup.go).
 *
 * Design notes
 * - UDP has no connection teardown: once conntrack holds an entry DNATed to an endpoint, later
 *   datagrams of the same 5-tuple keep going there even after the endpoint is gone. And while a
 *   service had no endpoints, its datagrams were rejected un-NATed; that entry then hides the
 *   new endpoints. So, after a successful sync (never before: the rules must already send new
 *   flows elsewhere):
 *   - endpoint gone → delete entries to each service IP (and NodePort) DNATed to it;
 *   - service gets its first endpoint → delete entries to its IPs (and NodePort).
 * - `conntrackCommands` is pure (the argument lists); `clearConntrack` runs them. conntrack
 *   exits 1 when nothing matched: that is success here.
 */
import { KnodeError } from '../lib/errors.js';
import type { StaleUdpEndpoint } from './changes.js';
import type { IPFamily, ServicePort } from './model.js';
import { makeRunner } from './backends/run.js';
import type { ExecFn } from './backends/types.js';

export interface StaleUdp {
  staleUdpEndpoints: readonly StaleUdpEndpoint[];
  newlyServedUdp: readonly ServicePort[];
}

function serviceIPs(sp: ServicePort): string[] {
  return [sp.clusterIP, ...sp.externalIPs, ...sp.loadBalancerIPs];
}

export function conntrackCommands(stale: StaleUdp, family: IPFamily): string[][] {
  const fam = family === 'IPv6' ? 'ipv6' : 'ipv4';
  const out: string[][] = [];
  const seen = new Set<string>();
  const add = (args: string[]): void => {
    const k = args.join(' ');
    if (seen.has(k)) return;
    seen.add(k);
    out.push(args);
  };
  for (const sp of stale.newlyServedUdp) {
    for (const ip of serviceIPs(sp)) add(['-D', '-f', fam, '--orig-dst', ip, '-p', 'udp']);
    if (sp.nodePort !== 0) add(['-D', '-f', fam, '-p', 'udp', '--dport', String(sp.nodePort)]);
  }
  for (const { servicePort: sp, endpoint } of stale.staleUdpEndpoints) {
    for (const ip of serviceIPs(sp)) add(['-D', '-f', fam, '--orig-dst', ip, '--dst-nat', endpoint.ip, '-p', 'udp']);
    if (sp.nodePort !== 0) add(['-D', '-f', fam, '-p', 'udp', '--dport', String(sp.nodePort), '--dst-nat', endpoint.ip]);
  }
  return out;
}

/** Run the deletions; returns how many commands ran. Errors other than "nothing matched" throw CONNTRACK_FAILED. */
export async function clearConntrack(commands: readonly string[][], opts: { netnsPath?: string; exec?: ExecFn } = {}): Promise<number> {
  const runner = makeRunner(opts);
  const failures: string[] = [];
  for (const args of commands) {
    const r = await runner.run('conntrack', args, { allowFailure: true, timeoutMs: 10_000 });
    if (r.code !== 0 && r.code !== 1) failures.push(`conntrack ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
  }
  if (failures.length > 0) {
    throw new KnodeError('CONNTRACK_FAILED', `${failures.length} conntrack deletions failed`, { details: { failures } });
  }
  return commands.length;
}

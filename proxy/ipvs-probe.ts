/**
 * Is IPVS usable in this kernel? (upstream CanUseIPVSProxier, reduced to what matters here.)
 *
 * Design notes
 * - The authoritative check is resolving the generic netlink family "IPVS" (CTRL_CMD_GETFAMILY):
 *   that is what IPVS mode talks to. ENOENT means the ip_vs module is not loaded / not built.
 * - /proc/net/ip_vs is the second opinion, used when the netlink check itself cannot run.
 * - `resolveMode` turns the requested mode into the effective one: ipvs without IPVS falls back
 *   to iptables with a clear error log, as kube-proxy did.
 */
import { access } from 'node:fs/promises';
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { netlinkModule } from '../lib/netlink/native.js';
import type { ProxyMode } from './backends/types.js';
import type { RequestedMode } from './config.js';

export interface IpvsProbeResult {
  available: boolean;
  /** How it was decided and why not, for the log. */
  reason: string;
}

/**
 * Dump the generic netlink families (as the wg module of the netlink package does) and look for
 * `name`: no error branching needed (the package reports a rejected GETFAMILY only as text).
 */
async function genlHasFamily(name: string, timeoutMs: number): Promise<boolean> {
  const nl = netlinkModule();
  const sock = nl.createGenericNetlink();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const req = sock.ctrlRequest(nl.genl.Commands.GET_FAMILY, {}, { flags: nl.FlagsGet.DUMP });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`generic netlink GETFAMILY dump: no answer in ${timeoutMs} ms`)), timeoutMs);
    });
    const families = await Promise.race([req, timeout]);
    return families.some((f) => f.familyName === name);
  } finally {
    clearTimeout(timer);
    sock.socket.close();
  }
}

export async function probeIpvs(opts: { timeoutMs?: number } = {}): Promise<IpvsProbeResult> {
  try {
    const ok = await genlHasFamily('IPVS', opts.timeoutMs ?? 2000);
    return ok
      ? { available: true, reason: 'generic netlink family IPVS resolved' }
      : { available: false, reason: 'no generic netlink family IPVS' };
  } catch (err) {
    try {
      await access('/proc/net/ip_vs');
      return { available: true, reason: `/proc/net/ip_vs exists (netlink check failed: ${errorMessage(err)})` };
    } catch {
      return { available: false, reason: `no /proc/net/ip_vs (netlink check failed: ${errorMessage(err)})` };
    }
  }
}

/** The mode the proxier really runs. */
export async function resolveMode(
  requested: RequestedMode,
  opts: { logger: Logger; probe?: () => Promise<IpvsProbeResult> },
): Promise<ProxyMode> {
  if (requested !== 'ipvs') return requested;
  const r = await (opts.probe ?? probeIpvs)();
  if (r.available) {
    opts.logger.info('using IPVS mode', { ipvs: r.reason });
    return 'ipvs';
  }
  opts.logger.error(`IPVS is not available in this kernel (${r.reason}): falling back to iptables mode`, {
    requestedMode: 'ipvs',
    mode: 'iptables',
  });
  return 'iptables';
}

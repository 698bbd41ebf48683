/**
 * knode-loopback: brings the loopback interface (CNI_IFNAME, normally `lo`) up in the
 * container's namespace, like the reference plugin. The result lists it with the loopback
 * addresses actually present (127.0.0.1/8, ::1/128 when IPv6 is on); a prevResult (when chained)
 * is passed through unchanged, as the reference does. DEL sets it down and succeeds when the
 * namespace is gone.
 */
import { getLinkByName, listAddresses, setLinkDown, setLinkUp } from '../lib/netlink/index.js';
import { formatIpNet } from '../lib/netlink/ip.js';
import type { CmdArgs, CniPlugin } from './skel.js';
import { CniCode, CniError } from './types.js';
import type { CniIpConfig, CniResult } from './types.js';
import { openContainerRtnl, openContainerRtnlIfExists } from './netns-args.js';

async function add(args: CmdArgs): Promise<CniResult> {
  const nl = openContainerRtnl(args.netns);
  try {
    const lo = await getLinkByName(nl, args.ifName);
    if (!lo) throw new CniError(CniCode.Internal, `no ${args.ifName} interface in the container namespace`);
    await setLinkUp(nl, lo.index);
    const addrs = await listAddresses(nl, { index: lo.index });
    const ips: CniIpConfig[] = addrs.map((a) => ({ address: formatIpNet(a.net), interface: 0 }));
    const result: CniResult = {
      cniVersion: args.cniVersion,
      interfaces: [{ name: args.ifName, mac: '00:00:00:00:00:00', sandbox: args.netns }],
      ips,
      dns: {},
    };
    if (args.prevResult) return { ...args.prevResult, cniVersion: args.cniVersion };
    return result;
  } finally {
    nl.close();
  }
}

async function del(args: CmdArgs): Promise<void> {
  const nl = openContainerRtnlIfExists(args.netns);
  if (!nl) return;
  try {
    const lo = await getLinkByName(nl, args.ifName);
    if (lo) await setLinkDown(nl, lo.index);
  } finally {
    nl.close();
  }
}

async function check(args: CmdArgs): Promise<void> {
  const nl = openContainerRtnl(args.netns);
  try {
    const lo = await getLinkByName(nl, args.ifName);
    if (!lo || !lo.up) throw new CniError(CniCode.Internal, `${args.ifName} is not up`);
  } finally {
    nl.close();
  }
}

export const loopbackPlugin: CniPlugin = { name: 'knode-loopback', add, del, check, status: async () => undefined };

/** The underlay link of a node: the link that holds its public IP (flannel's external interface). */
import { KnodeError } from '../../../lib/errors.js';
import { formatIp, ipEqual } from '../../../lib/netlink/ip.js';
import type { Ip } from '../../../lib/netlink/ip.js';
import { Rtnl, getLinkByIndex, listAddresses } from '../../../lib/netlink/index.js';
import type { Link } from '../../../lib/netlink/index.js';

export async function underlayLink(nl: Rtnl, publicIP: Ip): Promise<Link> {
  const addr = (await listAddresses(nl, { family: publicIP.family })).find((a) => ipEqual(a.net.ip, publicIP));
  const link = addr === undefined ? undefined : await getLinkByIndex(nl, addr.index);
  if (link === undefined) {
    throw new KnodeError('OVERLAY_NO_UNDERLAY', `the node's address ${formatIp(publicIP)} is on no link of this network namespace`, { details: { publicIP: formatIp(publicIP) } });
  }
  return link;
}

export function openRtnl(netnsPath: string | undefined): Rtnl {
  return netnsPath === undefined ? Rtnl.open() : Rtnl.openIn(netnsPath);
}

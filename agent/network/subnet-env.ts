/**
 * flannel's subnet file (/run/flannel/subnet.env), read by the flannel CNI plugin (knode-flannel or
 * flannel's own): the cluster network, this node's lease (.1 of the podCIDR, as flanneld writes
 * it), the pod MTU and whether the node masquerades itself. Pure render; written atomically.
 */
import { formatIp, formatIpNet, networkOf, nextIp } from '../../lib/netlink/ip.js';
import type { IpNet } from '../../lib/netlink/ip.js';

export const defaultSubnetFile = '/run/flannel/subnet.env';

export interface SubnetEnvInput {
  network: IpNet;
  subnet: IpNet;
  mtu: number;
  ipMasq: boolean;
}

export function renderSubnetEnv(i: SubnetEnvInput): string {
  const lease = `${formatIp(nextIp(networkOf(i.subnet)))}/${i.subnet.prefix}`;
  return [
    `FLANNEL_NETWORK=${formatIpNet({ ip: networkOf(i.network), prefix: i.network.prefix })}`,
    `FLANNEL_SUBNET=${lease}`,
    `FLANNEL_MTU=${i.mtu}`,
    `FLANNEL_IPMASQ=${i.ipMasq ? 'true' : 'false'}`,
    '',
  ].join('\n');
}

/**
 * flannel's Node annotations (kube subnet manager), so knode nodes and flannel nodes see each
 * other: `flannel.alpha.coreos.com/` + backend-type, backend-data, public-ip,
 * kube-subnet-manager. backend-data is what flannel's backends marshal: vxlan
 * `{"VNI":1,"VtepMAC":"aa:bb:…"}` (Go field names, MAC lower-case), host-gw `null`. Pure.
 */
import type { V1Node } from '@kubernetes/client-node';
import { isIPv4 } from 'node:net';
import { networkOf, parseIp, parseIpNet } from '../../../lib/netlink/ip.js';
import type { Ip, IpNet } from '../../../lib/netlink/ip.js';

export const flannelPrefix = 'flannel.alpha.coreos.com/';
export const annotationKeys = {
  backendType: `${flannelPrefix}backend-type`,
  backendData: `${flannelPrefix}backend-data`,
  publicIP: `${flannelPrefix}public-ip`,
  kubeSubnetManager: `${flannelPrefix}kube-subnet-manager`,
} as const;

export function renderAnnotations(o: { backendType: string; backendData: unknown; publicIP: string }): Record<string, string> {
  return {
    [annotationKeys.backendData]: JSON.stringify(o.backendData),
    [annotationKeys.backendType]: o.backendType,
    [annotationKeys.kubeSubnetManager]: 'true',
    [annotationKeys.publicIP]: o.publicIP,
  };
}

/** The annotations of `node` that differ from `wanted` (undefined when all match). */
export function annotationsPatch(node: V1Node | undefined, wanted: Record<string, string>): Record<string, string> | undefined {
  const have = node?.metadata?.annotations ?? {};
  const diff: Record<string, string> = {};
  for (const [k, v] of Object.entries(wanted)) if (have[k] !== v) diff[k] = v;
  return Object.keys(diff).length > 0 ? diff : undefined;
}

/** Just the flannel annotations (to notice when a peer's change). */
export function flannelAnnotations(node: V1Node): string {
  const a = node.metadata?.annotations ?? {};
  return JSON.stringify(Object.keys(a).filter((k) => k.startsWith(flannelPrefix)).sort().map((k) => [k, a[k]]));
}

/** IPv4 pod CIDR of a node (spec.podCIDRs, else spec.podCIDR). */
export function podCIDRv4(node: V1Node): string | undefined {
  const all = [...(node.spec?.podCIDRs ?? []), ...(node.spec?.podCIDR !== undefined ? [node.spec.podCIDR] : [])];
  return all.find((c) => isIPv4(c.split('/')[0] ?? ''));
}

/** The InternalIP (IPv4) of a node, if it has one. */
export function internalIPv4(node: V1Node): string | undefined {
  return (node.status?.addresses ?? []).find((a) => a.type === 'InternalIP' && isIPv4(a.address))?.address;
}

/** A remote node as its flannel annotations and podCIDR describe it. */
export interface FlannelPeer {
  node: string;
  subnet: IpNet;
  publicIP: Ip;
  backendType: string;
  /** The parsed backend-data (JSON), undefined when absent or not JSON. */
  backendData: unknown;
}

/**
 * Every other node that has an IPv4 podCIDR, a public-ip and a backend-type annotation, sorted by
 * name. Nodes with missing or malformed values are skipped (a half-set-up node is not a peer yet).
 */
export function flannelPeers(nodes: readonly V1Node[], self: string): FlannelPeer[] {
  const out: FlannelPeer[] = [];
  for (const n of nodes) {
    const name = n.metadata?.name ?? '';
    if (name === '' || name === self) continue;
    const a = n.metadata?.annotations ?? {};
    const cidr = podCIDRv4(n);
    const parsed = cidr === undefined ? undefined : parseIpNet(cidr);
    const subnet = parsed === undefined ? undefined : { ip: networkOf(parsed), prefix: parsed.prefix };
    const ipText = a[annotationKeys.publicIP];
    const ip = ipText === undefined ? undefined : parseIp(ipText);
    const type = a[annotationKeys.backendType];
    if (subnet === undefined || subnet.ip.family !== 4 || ip === undefined || ip.family !== 4 || type === undefined) continue;
    let data: unknown;
    try {
      const dataText = a[annotationKeys.backendData];
      data = dataText === undefined ? undefined : (JSON.parse(dataText) as unknown);
    } catch {
      data = undefined;
    }
    out.push({ node: name, subnet, publicIP: ip, backendType: type, backendData: data });
  }
  return out.sort((x, y) => x.node.localeCompare(y.node));
}

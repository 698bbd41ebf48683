/** Parsers of the overlay settings (--overlay-backend, --cluster-cidr). Pure; throw Error with the problem. */
import { isOverlayBackendName, overlayBackendNames } from '../network/overlay/names.js';
import type { OverlayBackendName } from '../network/overlay/names.js';
import { formatIpNet, networkOf, parseIpNet } from '../../lib/netlink/ip.js';

export function parseOverlayBackend(value: string): OverlayBackendName {
  if (!isOverlayBackendName(value)) throw new Error(`"${value}" is not one of ${overlayBackendNames.join(', ')}`);
  return value;
}

/** An IPv4 CIDR, normalised to its network address (10.244.1.5/16 → 10.244.0.0/16). */
export function parseIPv4CIDR(value: string): string {
  const net = parseIpNet(value.trim());
  if (net === undefined || net.ip.family !== 4) throw new Error(`"${value}" is not an IPv4 CIDR`);
  return formatIpNet({ ip: networkOf(net), prefix: net.prefix });
}

/**
 * Backend selection: an explicit map from --proxy-mode to a factory (no import side effects).
 */
import { IptablesBackend } from './iptables/backend.js';
import { IpvsBackend } from './ipvs/backend.js';
import { NftablesBackend } from './nftables/backend.js';
import type { BackendFactory, ProxyMode } from './types.js';

export const backends = {
  iptables: (opts) => new IptablesBackend(opts),
  nftables: (opts) => new NftablesBackend(opts),
  ipvs: (opts) => new IpvsBackend(opts),
} satisfies Record<ProxyMode, BackendFactory>;

export function isProxyMode(value: string): value is ProxyMode {
  return Object.hasOwn(backends, value);
}

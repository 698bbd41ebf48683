/**
 * The overlay backend port: what the agent's pod-network loop needs from a backend (vxlan,
 * host-gw), flannel's `backend.Backend` + `backend.Network` folded into one object.
 *
 * - `setUp` prepares this node (devices, addresses) for its lease and returns the flannel
 *   annotations to publish on the own Node and the pod MTU. Idempotent: called on every sync.
 * - `sync` makes the per-remote-node kernel state (neighbours, FDB, routes) equal to what the
 *   Node list asks for, adding new nodes and removing the ones that went away. Idempotent.
 * - Each backend keeps "render desired state" (pure, unit-tested) apart from "apply" (rtnetlink).
 */
import type { V1Node } from '@kubernetes/client-node';
import type { Logger } from '../../../lib/log.js';
import type { Ip, IpNet } from '../../../lib/netlink/ip.js';

/** This node's share of the pod network (flannel's lease). */
export interface OverlayLease {
  nodeName: string;
  /** The node's pod CIDR (spec.podCIDR). */
  subnet: IpNet;
  /** The node's underlay address (InternalIP; flannel's public-ip). */
  publicIP: Ip;
}

export interface OverlaySetUp {
  /** flannel.alpha.coreos.com/* annotations for the own Node. */
  annotations: Record<string, string>;
  /** MTU for pods (FLANNEL_MTU). */
  mtu: number;
}

export interface OverlaySyncReport {
  /** Remote nodes whose entries were (re)programmed. */
  programmed: string[];
  /** Human-readable entries removed (nodes that went away). */
  removed: string[];
}

export interface OverlayBackend {
  readonly type: 'vxlan' | 'host-gw';
  setUp(lease: OverlayLease): Promise<OverlaySetUp>;
  sync(lease: OverlayLease, nodes: readonly V1Node[]): Promise<OverlaySyncReport>;
  /** Releases the netlink socket (the kernel state stays, as with flannel). */
  close(): void;
}

export interface OverlayBackendOptions {
  /** Network namespace to program (tests); default: the agent's own. */
  netnsPath?: string;
  logger: Logger;
}

export type OverlayBackendFactory = (o: OverlayBackendOptions) => OverlayBackend;

/**
 * The lab's network: an "underlay" bridge in its own namespace and one
 * namespace per lab machine, joined by veth pairs.
 *
 * Design notes:
 * - `renderTopology` is pure: it turns `{ nodes }` into the namespaces, links,
 *   addresses, routes and sysctls wanted. `ensureTopology` applies that with
 *   `ip`, step by step, each step idempotent (it looks before it adds, and uses
 *   `replace` where iproute2 has it), so `up` can be re-run over a half-made lab.
 * - Network safety: nothing is ever created in the root namespace. veth pairs
 *   are made inside the underlay namespace with the peer sent straight into the
 *   node namespace (`ip -n U link add vN type veth peer name eth0 netns NODE`).
 *   The underlay has no uplink, no NAT and forwarding off; only node namespaces
 *   forward (they will route pod traffic).
 */
import { execFile } from '../../lib/exec.js';
import { KnodeError } from '../../lib/errors.js';
import { nodeName, nodeNetns, underlay, underlayNetns } from '../paths.js';
import { netnsPath } from './layout.js';

export const maxNodes = 20;

export interface UnderlayPlan {
  netns: string;
  bridge: string;
  /** CIDR notation, e.g. 172.31.0.1/24 */
  address: string;
  sysctls: Record<string, string>;
}

export interface NodeNetPlan {
  index: number;
  name: string;
  netns: string;
  /** veth end in the underlay namespace, enslaved to the bridge. */
  underlayLink: string;
  /** veth end in the node namespace. */
  nodeLink: string;
  /** CIDR notation, e.g. 172.31.0.11/24 */
  address: string;
  gateway: string;
  sysctls: Record<string, string>;
}

export interface Topology {
  underlay: UnderlayPlan;
  nodes: NodeNetPlan[];
}

export function renderTopology(spec: { nodes: number }): Topology {
  if (!Number.isInteger(spec.nodes) || spec.nodes < 1 || spec.nodes > maxNodes) {
    throw new KnodeError('LAB_BAD_SHAPE', `the lab takes 1 to ${maxNodes} nodes, not ${spec.nodes}`);
  }
  const nodes: NodeNetPlan[] = [];
  for (let i = 1; i <= spec.nodes; i++) {
    const name = nodeName(i);
    nodes.push({
      index: i,
      name,
      netns: nodeNetns(name),
      underlayLink: `v${i}`,
      nodeLink: 'eth0',
      address: `${underlay.nodeAddress(i)}/${underlay.prefixLength}`,
      gateway: underlay.bridgeAddress,
      sysctls: { 'net.ipv4.ip_forward': '1' },
    });
  }
  return {
    underlay: {
      netns: underlayNetns,
      bridge: underlay.bridge,
      address: `${underlay.bridgeAddress}/${underlay.prefixLength}`,
      sysctls: { 'net.ipv4.ip_forward': '0' },
    },
    nodes,
  };
}

async function ip(args: readonly string[]): Promise<void> {
  await execFile('ip', args);
}

/** Named network namespaces that exist now (from `ip netns list`). */
export async function listNetns(): Promise<string[]> {
  const { stdout } = await execFile('ip', ['-j', 'netns', 'list']);
  if (stdout.trim() === '') return [];
  const parsed: unknown = JSON.parse(stdout);
  if (!Array.isArray(parsed)) return [];
  const names: string[] = [];
  for (const entry of parsed) {
    if (typeof entry === 'object' && entry !== null && 'name' in entry && typeof entry.name === 'string') {
      names.push(entry.name);
    }
  }
  return names;
}

async function ensureNetns(name: string, existing: Set<string>, changes: string[]): Promise<void> {
  if (existing.has(name)) return;
  await ip(['netns', 'add', name]);
  existing.add(name);
  changes.push(`netns ${name}`);
}

async function linkExists(netns: string, link: string): Promise<boolean> {
  const r = await execFile('ip', ['-n', netns, 'link', 'show', 'dev', link], { allowFailure: true });
  return r.code === 0;
}

async function setSysctls(netns: string, sysctls: Record<string, string>): Promise<void> {
  for (const [key, value] of Object.entries(sysctls)) {
    await execFile('nsenter', [`--net=${netnsPath(netns)}`, 'sysctl', '-q', '-w', `${key}=${value}`]);
  }
}

/** What ensureTopology had to create (empty when everything was there). */
export interface TopologyChanges {
  created: string[];
  /** Namespaces that did not exist before (a runtime still running in an old one must restart). */
  newNetns: string[];
}

/** Make the kernel match `topo` (idempotent). */
export async function ensureTopology(topo: Topology): Promise<TopologyChanges> {
  const existing = new Set(await listNetns());
  const before = new Set(existing);
  const created: string[] = [];
  const u = topo.underlay;
  await ensureNetns(u.netns, existing, created);
  await ip(['-n', u.netns, 'link', 'set', 'lo', 'up']);
  await setSysctls(u.netns, u.sysctls);
  if (!(await linkExists(u.netns, u.bridge))) {
    await ip(['-n', u.netns, 'link', 'add', u.bridge, 'type', 'bridge']);
    created.push(`bridge ${u.bridge}`);
  }
  await ip(['-n', u.netns, 'addr', 'replace', u.address, 'dev', u.bridge]);
  await ip(['-n', u.netns, 'link', 'set', u.bridge, 'up']);

  for (const n of topo.nodes) {
    await ensureNetns(n.netns, existing, created);
    await ip(['-n', n.netns, 'link', 'set', 'lo', 'up']);
    await setSysctls(n.netns, n.sysctls);
    const haveUnderlayEnd = await linkExists(u.netns, n.underlayLink);
    const haveNodeEnd = await linkExists(n.netns, n.nodeLink);
    if (haveUnderlayEnd !== haveNodeEnd) {
      // Half a pair: its peer is elsewhere (e.g. the node namespace was deleted while a
      // runtime kept it alive). Both names are ours inside our namespaces: delete and remake.
      if (haveUnderlayEnd) await ip(['-n', u.netns, 'link', 'del', n.underlayLink]);
      else await ip(['-n', n.netns, 'link', 'del', n.nodeLink]);
      created.push(`replaced half veth pair of ${n.netns}`);
    }
    if (!haveUnderlayEnd || !haveNodeEnd) {
      await ip(['-n', u.netns, 'link', 'add', n.underlayLink, 'type', 'veth', 'peer', 'name', n.nodeLink, 'netns', n.netns]);
      created.push(`veth ${n.underlayLink}/${n.netns}:${n.nodeLink}`);
    }
    await ip(['-n', u.netns, 'link', 'set', n.underlayLink, 'master', u.bridge]);
    await ip(['-n', u.netns, 'link', 'set', n.underlayLink, 'up']);
    await ip(['-n', n.netns, 'addr', 'replace', n.address, 'dev', n.nodeLink]);
    await ip(['-n', n.netns, 'link', 'set', n.nodeLink, 'up']);
    await ip(['-n', n.netns, 'route', 'replace', 'default', 'via', n.gateway, 'dev', n.nodeLink]);
  }
  if (created.length > 0) {
    // Addresses may now sit behind new MACs: forget old neighbours rather than wait for them to fail.
    for (const ns of [u.netns, ...topo.nodes.map((n) => n.netns)]) await ip(['-n', ns, 'neigh', 'flush', 'all']);
  }
  return { created, newNetns: [u.netns, ...topo.nodes.map((n) => n.netns)].filter((n) => !before.has(n)) };
}

/** Delete the namespaces of `topo` (their veths go with them). Missing ones are fine. */
export async function removeTopology(topo: Topology): Promise<void> {
  const existing = new Set(await listNetns());
  for (const name of [...topo.nodes.map((n) => n.netns), topo.underlay.netns]) {
    if (existing.has(name)) await ip(['netns', 'del', name]);
  }
}

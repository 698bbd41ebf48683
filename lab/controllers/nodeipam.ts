/**
 * node-ipam: gives each node without one a spec.podCIDR (and podCIDRs) from
 * the cluster CIDR. At start it waits for the node cache and marks every
 * existing node's CIDRs used before handing out anything, so allocations are
 * stable across restarts; a deleted node's CIDRs go back to the pool.
 */
import type { Controller, ControllerContext } from './context.js';
import { waitForSync } from './context.js';
import { CidrAllocator } from './cidr.js';
import { apiReason } from './client.js';
import { WorkQueue } from './queue.js';
import { keyOf } from './types.js';
import type { Node } from './types.js';

function cidrsOf(n: Node): string[] {
  const out = [...(n.spec?.podCIDRs ?? [])];
  if (n.spec?.podCIDR && !out.includes(n.spec.podCIDR)) out.push(n.spec.podCIDR);
  return out;
}

export class NodeIpamController implements Controller {
  readonly name = 'node-ipam';
  private readonly queue: WorkQueue;
  readonly allocator: CidrAllocator;
  /** node name → CIDR we handed out and have not seen in the cache yet. */
  private readonly pending = new Map<string, string>();

  constructor(
    private readonly ctx: ControllerContext,
    clusterCIDR: string,
    maskSize: number,
  ) {
    this.allocator = new CidrAllocator(clusterCIDR, maskSize);
    this.queue = new WorkQueue({ name: this.name, logger: ctx.logger });
    ctx.informers.nodes.on({
      add: (n) => this.onNode(n),
      update: (_o, n) => this.onNode(n),
      delete: (n) => {
        for (const c of cidrsOf(n)) this.allocator.release(c);
        const p = this.pending.get(keyOf(n));
        if (p) this.allocator.release(p);
        this.pending.delete(keyOf(n));
        if (cidrsOf(n).length > 0) this.ctx.logger.info('released node CIDR', { node: keyOf(n), cidrs: cidrsOf(n) });
      },
    });
  }

  private onNode(n: Node): void {
    const cidrs = cidrsOf(n);
    for (const c of cidrs) this.allocator.occupy(c);
    if (cidrs.length > 0) this.pending.delete(keyOf(n));
    else this.queue.add(keyOf(n));
  }

  private async sync(name: string): Promise<void> {
    const node = this.ctx.informers.nodes.get(name);
    if (!node || cidrsOf(node).length > 0 || node.metadata.deletionTimestamp) return;
    const cidr = this.pending.get(name) ?? this.allocator.allocate();
    this.pending.set(name, cidr);
    try {
      await this.ctx.client.patch(`/api/v1/nodes/${name}`, { spec: { podCIDR: cidr, podCIDRs: [cidr] } });
    } catch (err) {
      if (apiReason(err) === 'NotFound') {
        this.pending.delete(name);
        this.allocator.release(cidr);
        return;
      }
      throw err;
    }
    this.ctx.logger.info('allocated node CIDR', { node: name, cidr });
  }

  async run(signal: AbortSignal): Promise<void> {
    if (!(await waitForSync([this.ctx.informers.nodes], signal))) return;
    // The add handlers have occupied every existing node's CIDRs by now.
    for (const n of this.ctx.informers.nodes.list()) if (cidrsOf(n).length === 0) this.queue.add(keyOf(n));
    await this.queue.run((key) => this.sync(key), signal);
  }
}

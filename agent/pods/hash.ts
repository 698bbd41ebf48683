/**
 * The hash of a container's spec the agent records on the container (annotation
 * io.kubernetes.container.hash) to notice a changed definition. Keys are sorted,
 * so the same spec from a list or a watch hashes the same; `resources` is left
 * out, as upstream does since in-place resize.
 */
import { createHash } from 'node:crypto';
import type { V1Container } from '@kubernetes/client-node';

function stable(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stable);
  if (value instanceof Date) return value.toISOString();
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = stable(v);
    }
    return out;
  }
  return value;
}

export function stableStringify(value: unknown): string {
  return JSON.stringify(stable(value));
}

export function containerHash(container: V1Container): string {
  const { resources: _resources, ...rest } = container;
  return createHash('sha256').update(stableStringify(rest)).digest('hex').slice(0, 8);
}

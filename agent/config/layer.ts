/** One source of configuration values (defaults, file, flags), merged in that order. */
import type { AgentConfig } from './types.js';

export type ConfigLayer = Partial<Omit<AgentConfig, 'nodeName' | 'configFile'>>;

/** Later layers win, field by field (lists and maps are replaced, not merged). */
export function mergeLayers(...layers: ConfigLayer[]): ConfigLayer {
  const out: ConfigLayer = {};
  for (const layer of layers) {
    for (const [k, v] of Object.entries(layer)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

/**
 * ipset port for IPVS mode: read sets with `ipset save`, change them with one
 * `ipset restore -exist` per sync (creates, adds and deletes in one process call).
 *
 * Design notes
 * - `planIpsetRestore` is pure: desired sets + the saved state → restore text with only the
 *   differences (entries added/removed), and a `create … -exist` line for every set so a set
 *   deleted behind our back comes back. Entry text is what `ipset save` prints
 *   ("10.96.0.10,tcp:80", "30080"), so desired and saved compare as strings.
 * - Hash sets are created the way upstream kube-proxy creates them (hashsize 1024, maxelem 65536);
 *   bitmap:port sets cover 0-65535.
 */
import { KnodeError } from '../lib/errors.js';
import type { IPFamily } from './model.js';
import type { Runner } from './backends/run.js';

export interface SavedIpset {
  type: string;
  entries: Set<string>;
}

/** Parse `ipset save` output (all sets, or the named one). */
export function parseIpsetSave(text: string): Map<string, SavedIpset> {
  const out = new Map<string, SavedIpset>();
  for (const line of text.split('\n')) {
    const parts = line.trim().split(/\s+/);
    if (parts[0] === 'create' && parts[1] !== undefined && parts[2] !== undefined) out.set(parts[1], { type: parts[2], entries: new Set() });
    else if (parts[0] === 'add' && parts[1] !== undefined && parts[2] !== undefined) out.get(parts[1])?.entries.add(parts[2]);
  }
  return out;
}

export function createLine(name: string, type: string, family: IPFamily): string {
  if (type.startsWith('bitmap:port')) return `create ${name} ${type} range 0-65535`;
  return `create ${name} ${type} family ${family === 'IPv4' ? 'inet' : 'inet6'} hashsize 1024 maxelem 65536`;
}

export interface IpsetPlan {
  text: string;
  added: number;
  removed: number;
}

/** The restore text that turns `saved` into `desired` for the sets named in `desired`. */
export function planIpsetRestore(
  desired: ReadonlyMap<string, { type: string; entries: readonly string[] }>,
  saved: ReadonlyMap<string, SavedIpset>,
  family: IPFamily,
): IpsetPlan {
  const lines: string[] = [];
  let added = 0;
  let removed = 0;
  for (const [name, want] of desired) {
    lines.push(createLine(name, want.type, family));
    const have = saved.get(name)?.entries ?? new Set<string>();
    const wantSet = new Set(want.entries);
    for (const e of have) {
      if (!wantSet.has(e)) {
        lines.push(`del ${name} ${e}`);
        removed++;
      }
    }
    for (const e of want.entries) {
      if (!have.has(e)) {
        lines.push(`add ${name} ${e}`);
        added++;
      }
    }
  }
  return { text: lines.join('\n') + '\n', added, removed };
}

export interface IpsetPort {
  save(): Promise<Map<string, SavedIpset>>;
  restore(text: string): Promise<void>;
  destroy(names: readonly string[]): Promise<void>;
}

export function ipsetPort(runner: Runner): IpsetPort {
  return {
    async save() {
      const r = await runner.run('ipset', ['save'], { allowFailure: true });
      if (r.code !== 0) throw new KnodeError('IPSET_FAILED', `ipset save failed (exit ${r.code}): ${r.stderr.trim()}`, { details: { stderr: r.stderr } });
      return parseIpsetSave(r.stdout);
    },
    async restore(text) {
      const r = await runner.run('ipset', ['restore', '-exist'], { input: text, allowFailure: true });
      if (r.code !== 0) {
        throw new KnodeError('IPSET_FAILED', `ipset restore failed (exit ${r.code}): ${r.stderr.trim()}`, { details: { stderr: r.stderr, lines: text.split('\n').length } });
      }
    },
    async destroy(names) {
      for (const name of names) {
        const r = await runner.run('ipset', ['destroy', name], { allowFailure: true });
        if (r.code !== 0 && !/does not exist/.test(r.stderr)) {
          throw new KnodeError('IPSET_FAILED', `ipset destroy ${name} failed (exit ${r.code}): ${r.stderr.trim()}`, { details: { stderr: r.stderr } });
        }
      }
    },
  };
}

/**
 * iptables port: the few programs the iptables backend runs. One `iptables-restore -w 5
 * --noflush --counters` per sync (transactional per table set: on error nothing is changed),
 * `iptables-save` on full syncs to learn existing chains and jump rules, and a canary check.
 * Everything optionally inside a network namespace (tests).
 */
import { KnodeError } from '../../../lib/errors.js';
import type { IPFamily } from '../../model.js';
import { makeRunner } from '../run.js';
import type { ExecFn } from '../types.js';

export interface IptablesPort {
  restore(text: string): Promise<void>;
  save(): Promise<string>;
  chainExists(table: string, chain: string): Promise<boolean>;
}

/** iptables-nft needs minutes for a full restore of ~100k chains (10k services × 10 endpoints). */
export const DEFAULT_RESTORE_TIMEOUT_MS = 600_000;

export function iptablesPort(opts: { family: IPFamily; netnsPath?: string; exec?: ExecFn; restoreTimeoutMs?: number }): IptablesPort {
  const runner = makeRunner(opts);
  const v6 = opts.family === 'IPv6';
  const restoreBin = v6 ? 'ip6tables-restore' : 'iptables-restore';
  const saveBin = v6 ? 'ip6tables-save' : 'iptables-save';
  const bin = v6 ? 'ip6tables' : 'iptables';
  return {
    async restore(text) {
      const timeoutMs = opts.restoreTimeoutMs ?? DEFAULT_RESTORE_TIMEOUT_MS;
      const t0 = Date.now();
      const r = await runner.run(restoreBin, ['-w', '5', '--noflush', '--counters'], { input: text, allowFailure: true, timeoutMs });
      if (r.code !== 0 && Date.now() - t0 >= timeoutMs) {
        throw new KnodeError('IPTABLES_RESTORE_FAILED', `${restoreBin} timed out after ${timeoutMs} ms (${text.length} bytes)`, {
          details: { exitCode: r.code, timeoutMs },
        });
      }
      if (r.code !== 0) {
        const line = /line:?\s*(\d+)/i.exec(r.stderr)?.[1];
        const lines = text.split('\n');
        const at = line === undefined ? undefined : Number(line);
        const context = at === undefined ? undefined : lines.slice(Math.max(0, at - 3), at + 2).join('\n');
        throw new KnodeError('IPTABLES_RESTORE_FAILED', `${restoreBin} failed (exit ${r.code}): ${r.stderr.trim()}`, {
          details: { stderr: r.stderr, exitCode: r.code, line: at, context },
        });
      }
    },
    async save() {
      const r = await runner.run(saveBin, [], { allowFailure: true });
      if (r.code !== 0) {
        throw new KnodeError('IPTABLES_SAVE_FAILED', `${saveBin} failed (exit ${r.code}): ${r.stderr.trim()}`, { details: { stderr: r.stderr } });
      }
      return r.stdout;
    },
    async chainExists(table, chain) {
      const r = await runner.run(bin, ['-w', '5', '-t', table, '-S', chain], { allowFailure: true });
      return r.code === 0;
    },
  };
}

export interface SavedTables {
  /** table → chain names. */
  chains: Map<string, Set<string>>;
  /** table → "-A CHAIN spec" lines. */
  rules: Map<string, string[]>;
}

/** Parse iptables-save output into chains and rules per table. */
export function parseIptablesSave(text: string): SavedTables {
  const chains = new Map<string, Set<string>>();
  const rules = new Map<string, string[]>();
  let table = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      table = line.slice(1).trim();
      chains.set(table, new Set());
      rules.set(table, []);
    } else if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0];
      if (name) chains.get(table)?.add(name);
    } else if (line.startsWith('-A ')) {
      rules.get(table)?.push(line.trim());
    }
  }
  return { chains, rules };
}

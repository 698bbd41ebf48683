/**
 * nftables port: `nft -f -` with the script on stdin (one transaction: all or nothing), and
 * `nft -j list chains|sets` on full syncs to learn what the table holds. Optionally inside a
 * network namespace (tests).
 */
import { KnodeError } from '../../../lib/errors.js';
import type { IPFamily } from '../../model.js';
import { makeRunner } from '../run.js';
import type { ExecFn } from '../types.js';
import { TABLE } from './render.js';

export interface NftPort {
  apply(script: string): Promise<void>;
  /** Names of the chains and sets in our table (empty when the table does not exist). */
  list(): Promise<{ chains: Set<string>; sets: Set<string> }>;
  deleteTable(): Promise<void>;
}

interface NftJson {
  nftables?: { chain?: { name?: string; table?: string }; set?: { name?: string; table?: string } }[];
}

export function nftPort(opts: { family: IPFamily; netnsPath?: string; exec?: ExecFn }): NftPort {
  const runner = makeRunner(opts);
  const fam = opts.family === 'IPv6' ? 'ip6' : 'ip';
  const listKind = async (kind: 'chains' | 'sets'): Promise<Set<string>> => {
    const r = await runner.run('nft', ['-j', 'list', kind, fam], { allowFailure: true });
    if (r.code !== 0) throw new KnodeError('NFT_FAILED', `nft list ${kind} failed: ${r.stderr.trim()}`, { details: { stderr: r.stderr } });
    const out = new Set<string>();
    let parsed: NftJson;
    try {
      parsed = JSON.parse(r.stdout === '' ? '{}' : r.stdout) as NftJson;
    } catch (err) {
      throw new KnodeError('NFT_FAILED', `nft list ${kind}: unparsable JSON`, { cause: err });
    }
    for (const item of parsed.nftables ?? []) {
      const obj = kind === 'chains' ? item.chain : item.set;
      if (obj?.table === TABLE && obj.name) out.add(obj.name);
    }
    return out;
  };
  return {
    async apply(script) {
      const r = await runner.run('nft', ['-f', '-'], { input: script, allowFailure: true, timeoutMs: 600_000 });
      if (r.code !== 0) {
        throw new KnodeError('NFT_FAILED', `nft -f failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(0, 6).join('\n')}`, {
          details: { stderr: r.stderr, exitCode: r.code },
        });
      }
    },
    async list() {
      const [chains, sets] = await Promise.all([listKind('chains'), listKind('sets')]);
      return { chains, sets };
    },
    async deleteTable() {
      // add+delete: deleting a table that does not exist would fail.
      await this.apply(`add table ${fam} ${TABLE}\ndelete table ${fam} ${TABLE}\n`);
    },
  };
}

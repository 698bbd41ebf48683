/**
 * Kubernetes resource quantities ("100m", "1.5", "64Mi", "1e3", "2G") as exact
 * fractions of bigints, so "0.1" is 100 milli and never 100.00000000000001.
 * `value` and `milliValue` round up, as resource.Quantity's Value/MilliValue do.
 */
import { KnodeError } from '../../lib/errors.js';

export interface Quantity {
  num: bigint;
  den: bigint;
}

const binary: Record<string, bigint> = { Ki: 1n << 10n, Mi: 1n << 20n, Gi: 1n << 30n, Ti: 1n << 40n, Pi: 1n << 50n, Ei: 1n << 60n };
const decimal: Record<string, number> = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };

export function parseQuantity(text: string | number): Quantity {
  const s = String(text).trim();
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE]([+-]?\d+))?$/.exec(s);
  if (m === null || (m[2] === '' && (m[3] ?? '') === '')) throw new KnodeError('INVALID_QUANTITY', `quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': ${JSON.stringify(s)}`);
  const sign = m[1] === '-' ? -1n : 1n;
  const frac = m[3] ?? '';
  let num = BigInt((m[2] ?? '') + frac || '0') * sign;
  let den = 10n ** BigInt(frac.length);
  const suffix = m[4];
  let exp = 0;
  if (suffix !== undefined && suffix in binary) num *= binary[suffix]!;
  else if (suffix !== undefined) exp = decimal[suffix]!;
  else if (m[5] !== undefined) exp = Number(m[5]);
  if (exp >= 0) num *= 10n ** BigInt(exp);
  else den *= 10n ** BigInt(-exp);
  return { num, den };
}

function ceilDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a > 0n === b > 0n ? q + 1n : q;
}

/** Whole units, rounded up (bytes for memory). */
export function quantityValue(q: Quantity | string | number): number {
  const x = typeof q === 'object' ? q : parseQuantity(q);
  return Number(ceilDiv(x.num, x.den));
}

/** Thousandths, rounded up (millicores for cpu). */
export function quantityMilli(q: Quantity | string | number): number {
  const x = typeof q === 'object' ? q : parseQuantity(q);
  return Number(ceilDiv(x.num * 1000n, x.den));
}

/** ceil(a / b) of two quantities, exactly. */
export function quantityDivideCeil(a: Quantity, b: Quantity): number {
  if (b.num === 0n) throw new KnodeError('INVALID_QUANTITY', 'division by a zero quantity');
  return Number(ceilDiv(a.num * b.den, a.den * b.num));
}

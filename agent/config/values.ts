/**
 * Parsers for the value syntaxes the kubelet's flags and config file use. Pure;
 * each throws a plain Error whose message names the problem (the caller adds
 * the flag or field and collects them into one CONFIG_INVALID).
 */
import { isIP } from 'node:net';
import type { Taint, TaintEffect } from './types.js';

const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const qualifiedName = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const labelValue = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export function isDnsSubdomain(s: string): boolean {
  return s.length > 0 && s.length <= 253 && s.split('.').every((l) => dnsLabel.test(l));
}

/** A label or taint key: [prefix/]name, prefix a DNS subdomain, name ≤ 63 chars. */
export function checkQualifiedName(key: string): void {
  const slash = key.lastIndexOf('/');
  const prefix = slash === -1 ? undefined : key.slice(0, slash);
  const name = slash === -1 ? key : key.slice(slash + 1);
  if (prefix !== undefined && !isDnsSubdomain(prefix)) throw new Error(`invalid key "${key}": prefix must be a DNS subdomain`);
  if (name.length === 0 || name.length > 63 || !qualifiedName.test(name)) {
    throw new Error(`invalid key "${key}": name must be 1-63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric`);
  }
}

export function checkLabelValue(key: string, value: string): void {
  if (value.length > 63 || !labelValue.test(value)) throw new Error(`invalid value "${value}" for "${key}": at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric`);
}

/** "k=v,k2=v2" → { k: 'v', k2: 'v2' }. */
export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq <= 0) throw new Error(`"${item}" is not key=value`);
    const key = item.slice(0, eq).trim();
    const value = item.slice(eq + 1).trim();
    checkQualifiedName(key);
    checkLabelValue(key, value);
    out[key] = value;
  }
  return out;
}

const effects: readonly TaintEffect[] = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'];

export function isTaintEffect(s: string): s is TaintEffect {
  return (effects as readonly string[]).includes(s);
}

export function checkTaint(t: Taint): void {
  checkQualifiedName(t.key);
  if (t.value !== undefined) checkLabelValue(t.key, t.value);
  if (!isTaintEffect(t.effect)) throw new Error(`invalid taint effect "${String(t.effect)}" for "${t.key}" (one of ${effects.join(', ')})`);
}

/** "k=v:NoSchedule,k2:NoExecute" → taints. */
export function parseTaints(text: string): Taint[] {
  const out: Taint[] = [];
  for (const part of text.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const colon = item.lastIndexOf(':');
    if (colon <= 0) throw new Error(`taint "${item}" must be key[=value]:Effect`);
    const kv = item.slice(0, colon);
    const effect = item.slice(colon + 1);
    const eq = kv.indexOf('=');
    const taint = { key: eq === -1 ? kv : kv.slice(0, eq), ...(eq === -1 ? {} : { value: kv.slice(eq + 1) }), effect } as Taint;
    checkTaint(taint);
    out.push(taint);
  }
  return out;
}

/** Comma list of IP addresses. */
export function parseIPList(text: string): string[] {
  const out: string[] = [];
  for (const part of text.split(',')) {
    const ip = part.trim();
    if (ip === '') continue;
    if (isIP(ip) === 0) throw new Error(`"${ip}" is not an IP address`);
    out.push(ip);
  }
  return out;
}

const units: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A Go duration ("10s", "5m0s", "1h30m", "250ms") → milliseconds. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;
  let ms = 0;
  let pos = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) throw new Error(`"${text}" is not a duration (e.g. 10s, 5m0s, 1h)`);
    ms += Number(m[1]) * units[m[2]!]!;
    pos = re.lastIndex;
  }
  if (s.length === 0) throw new Error('empty duration');
  return ms;
}

/** A positive integer (decimal digits only). */
export function parsePositiveInt(text: string): number {
  if (!/^\d+$/.test(text.trim())) throw new Error(`"${text}" is not a positive integer`);
  const n = Number(text.trim());
  if (n <= 0 || !Number.isSafeInteger(n)) throw new Error(`"${text}" is not a positive integer`);
  return n;
}

/** unix:///path or /path (as the kubelet accepts) → unix:///path. */
export function parseUnixEndpoint(text: string): string {
  const s = text.trim();
  if (s.startsWith('unix://')) {
    if (!s.slice('unix://'.length).startsWith('/')) throw new Error(`"${text}" must be unix:///absolute/path`);
    return s;
  }
  if (s.startsWith('/')) return `unix://${s}`;
  throw new Error(`"${text}" must be a unix socket endpoint (unix:///path/to.sock)`);
}

/** One IP address. */
export function parseIP(text: string): string {
  const ip = text.trim();
  if (isIP(ip) === 0) throw new Error(`"${text}" is not an IP address`);
  return ip;
}

/** A TCP port, 0-65535 (0 = off). */
export function parsePort(text: string): number {
  const s = text.trim();
  if (!/^\d+$/.test(s) || Number(s) > 65535) throw new Error(`"${text}" is not a port (0-65535)`);
  return Number(s);
}

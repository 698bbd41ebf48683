/**
 * Label and field selectors with upstream grammar and semantics
 * (k8s.io/apimachinery/pkg/labels and pkg/fields). Pure: parse once, match many.
 */
import { badRequest } from './errors.js';

export type LabelOp = '=' | '!=' | 'in' | 'notin' | 'exists' | '!exists' | 'gt' | 'lt';

export interface LabelRequirement {
  key: string;
  op: LabelOp;
  values: string[];
}

export type LabelSelector = LabelRequirement[];

const qualifiedNameRe = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const dns1123SubdomainRe = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const labelValueRe = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Label keys: optional DNS subdomain prefix + '/' + a name of at most 63 characters. */
export function labelKeyError(key: string): string | undefined {
  const parts = key.split('/');
  if (parts.length > 2) return 'a qualified name must consist of alphanumeric characters, "-", "_" or "." with an optional DNS subdomain prefix and "/"';
  const name = parts.length === 2 ? parts[1]! : parts[0]!;
  if (parts.length === 2) {
    const prefix = parts[0]!;
    if (prefix.length === 0 || prefix.length > 253 || !dns1123SubdomainRe.test(prefix)) return 'prefix part must be a DNS subdomain';
  }
  if (name.length === 0 || name.length > 63 || !qualifiedNameRe.test(name)) {
    return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)";
  }
  return undefined;
}

export function labelValueError(value: string): string | undefined {
  if (value.length > 63) return 'must be no more than 63 characters';
  if (!labelValueRe.test(value)) {
    return "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  }
  return undefined;
}

/** Splits on commas that are not inside parentheses. */
function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function parseError(selector: string, why: string): Error {
  return badRequest(`unable to parse requirement: ${why} (selector "${selector}")`);
}

export function parseLabelSelector(selector: string): LabelSelector {
  const text = selector.trim();
  if (text === '') return [];
  const reqs: LabelRequirement[] = [];
  for (const raw of splitTopLevel(text)) {
    const part = raw.trim();
    if (part === '') throw parseError(selector, 'empty requirement');
    let m: RegExpMatchArray | null;
    let req: LabelRequirement;
    if ((m = part.match(/^!\s*([^\s!=<>(),]+)$/))) req = { key: m[1]!, op: '!exists', values: [] };
    else if ((m = part.match(/^([^\s!=<>(),]+)\s+(in|notin)\s*\(([^()]*)\)$/))) {
      const values = m[3]!.split(',').map((v) => v.trim());
      req = { key: m[1]!, op: m[2] === 'in' ? 'in' : 'notin', values };
    } else if ((m = part.match(/^([^\s!=<>(),]+)\s*(==|=|!=)\s*([^\s!=<>(),]*)$/))) {
      req = { key: m[1]!, op: m[2] === '!=' ? '!=' : '=', values: [m[3]!] };
    } else if ((m = part.match(/^([^\s!=<>(),]+)\s*([<>])\s*(-?\d+)$/))) {
      req = { key: m[1]!, op: m[2] === '>' ? 'gt' : 'lt', values: [m[3]!] };
    } else if ((m = part.match(/^([^\s!=<>(),]+)$/))) req = { key: m[1]!, op: 'exists', values: [] };
    else throw parseError(selector, `cannot parse "${part}"`);
    const keyErr = labelKeyError(req.key);
    if (keyErr) throw parseError(selector, `invalid label key "${req.key}": ${keyErr}`);
    if (req.op !== 'gt' && req.op !== 'lt') {
      for (const v of req.values) {
        const valErr = labelValueError(v);
        if (valErr) throw parseError(selector, `invalid label value: "${v}": ${valErr}`);
      }
    }
    reqs.push(req);
  }
  return reqs;
}

export function matchesLabels(selector: LabelSelector, labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return selector.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    const v = has ? l[r.key] : undefined;
    switch (r.op) {
      case '=':
        return has && v === r.values[0];
      case '!=':
        return !has || v !== r.values[0];
      case 'in':
        return has && r.values.includes(v!);
      case 'notin':
        return !has || !r.values.includes(v!);
      case 'exists':
        return has;
      case '!exists':
        return !has;
      case 'gt':
      case 'lt': {
        if (!has) return false;
        const n = Number(v);
        if (!Number.isInteger(n)) return false;
        return r.op === 'gt' ? n > Number(r.values[0]) : n < Number(r.values[0]);
      }
    }
  });
}

export interface FieldRequirement {
  field: string;
  op: '=' | '!=';
  value: string;
}

export type FieldSelector = FieldRequirement[];

/** Splits on an unescaped separator; `\,` `\=` `\!` and `\\` escape. */
function splitEscaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '\\' && i + 1 < s.length) {
      cur += ch + s[i + 1]!;
      i++;
    } else if (ch === sep) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function unescapeField(s: string): string {
  return s.replace(/\\(.)/g, '$1');
}

export function parseFieldSelector(selector: string): FieldSelector {
  const text = selector.trim();
  if (text === '') return [];
  const reqs: FieldRequirement[] = [];
  for (const part of splitEscaped(text, ',')) {
    const m = part.match(/^((?:[^\\=!]|\\.)+?)\s*(==|=|!=)\s*((?:[^\\]|\\.)*)$/);
    if (!m) throw badRequest(`invalid selector: '${selector}'; can't understand '${part}'`);
    reqs.push({ field: m[1]!.trim(), op: m[2] === '!=' ? '!=' : '=', value: unescapeField(m[3]!) });
  }
  return reqs;
}

/** `fields` maps the supported field labels of one resource to the object's values. */
export function matchesFields(selector: FieldSelector, fields: Record<string, string>): boolean {
  return selector.every((r) => {
    const v = fields[r.field] ?? '';
    return r.op === '=' ? v === r.value : v !== r.value;
  });
}

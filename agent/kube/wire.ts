/**
 * The pure parts of the agent's apiserver transport (rest.ts): URL building,
 * the decoding of a watch stream into events, date revival, API errors.
 *
 * Design notes:
 * - Objects come back as plain JSON, with the date-time fields the agent's
 *   types declare as `Date` (creationTimestamp, startTime, lastTransitionTime,
 *   …) turned into Date objects, as client-node's ObjectSerializer did; the
 *   MicroTime fields (Lease renewTime/acquireTime, Event eventTime) become
 *   `MicroTime`, which writes itself back with microseconds. Maps with
 *   arbitrary keys (labels, annotations, data, …) are never touched.
 * - A watch stream is newline-delimited JSON `{type, object}`; chunks may split
 *   lines and UTF-8 sequences anywhere.
 */
import { StringDecoder } from 'node:string_decoder';
import { KnodeError } from '../../lib/errors.js';

/** A Date that serialises with microseconds (metav1.MicroTime), like client-node's V1MicroTime. */
export class MicroTime extends Date {
  override toISOString(): string {
    return super.toISOString().slice(0, -1) + '000Z';
  }
  override toJSON(): string {
    return this.toISOString();
  }
}

export type QueryValue = string | number | boolean | undefined | null;

/** `?a=1&b=x` from the defined values (empty string when none). Pure. */
export function encodeQuery(query: Record<string, QueryValue> | undefined): string {
  if (query === undefined) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null) continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  }
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}

/** One path segment (a name or namespace), escaped; an empty one is an error (it would change the URL's meaning). */
export function seg(value: string | undefined): string {
  if (value === undefined || value === '') throw new KnodeError('KUBE_BAD_REQUEST', 'empty name or namespace in an API path');
  return encodeURIComponent(value);
}

/** The request path + query of a call: `name`, `namespace` and `body` are not query parameters; every other defined param is. Pure. */
export function requestQuery(params: object): Record<string, QueryValue> {
  const q: Record<string, QueryValue> = {};
  for (const [k, v] of Object.entries(params)) {
    if (k === 'name' || k === 'namespace' || k === 'body') continue;
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') q[k] = v;
  }
  return q;
}

const dateFields = new Set([
  'creationTimestamp',
  'deletionTimestamp',
  'startTime',
  'completionTime',
  'lastTransitionTime',
  'lastProbeTime',
  'lastHeartbeatTime',
  'lastUpdateTime',
  'startedAt',
  'finishedAt',
  'firstTimestamp',
  'lastTimestamp',
  'expirationTimestamp',
]);
const microTimeFields = new Set(['renewTime', 'acquireTime', 'eventTime', 'lastObservedTime']);
/** Maps whose keys are user data: never revived. */
const opaqueMaps = new Set(['labels', 'annotations', 'data', 'stringData', 'binaryData', 'nodeSelector', 'matchLabels', 'capacity', 'allocatable', 'limits', 'requests', 'extra', 'fieldsV1']);
const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** Turns the date-time fields of a decoded API object into Date / MicroTime, in place; returns it. */
export function reviveDates<T>(value: T): T {
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) if (typeof x === 'object' && x !== null) walk(x);
      return;
    }
    if (typeof v !== 'object' || v === null) return;
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      const x = o[k];
      if (typeof x === 'string') {
        if ((dateFields.has(k) || microTimeFields.has(k)) && rfc3339.test(x)) {
          const d = microTimeFields.has(k) ? new MicroTime(x) : new Date(x);
          if (!Number.isNaN(d.getTime())) o[k] = d;
        }
      } else if (typeof x === 'object' && x !== null && !opaqueMaps.has(k)) walk(x);
    }
  };
  walk(value);
  return value;
}

/** A failed API call: the HTTP status and the response body (usually a Status object), as client-node's ApiException carried them. */
export class KubeApiError extends KnodeError {
  readonly statusCode: number;
  readonly body: string;
  constructor(statusCode: number, body: string, what: string) {
    super('KUBE_API_ERROR', `${what}: HTTP ${statusCode}${statusMessage(body) ? `: ${statusMessage(body)}` : ''}`, { details: { statusCode } });
    this.name = 'KubeApiError';
    this.statusCode = statusCode;
    this.body = body;
  }
}

function statusMessage(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    return typeof parsed.message === 'string' ? parsed.message : undefined;
  } catch {
    return body.length > 0 ? body.slice(0, 200) : undefined;
  }
}

export interface WatchEvent {
  type: string;
  object: unknown;
}

/**
 * Splits a watch stream into events. `push` takes the next chunk and returns
 * the complete events in it; a line that is not a watch event throws
 * KUBE_WATCH_DECODE. `end` returns what a final unterminated line held.
 */
export class WatchDecoder {
  private readonly text = new StringDecoder('utf8');
  private rest = '';

  push(chunk: Buffer | string): WatchEvent[] {
    const s = this.rest + (typeof chunk === 'string' ? chunk : this.text.write(chunk));
    const lines = s.split('\n');
    this.rest = lines.pop() ?? '';
    return lines.flatMap((l) => parseWatchLine(l));
  }

  end(): WatchEvent[] {
    const s = this.rest + this.text.end();
    this.rest = '';
    return parseWatchLine(s);
  }
}

/** One line of a watch stream: none (blank) or one event, its object's dates revived. Pure. */
export function parseWatchLine(line: string): WatchEvent[] {
  const t = line.trim();
  if (t === '') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(t);
  } catch {
    throw new KnodeError('KUBE_WATCH_DECODE', `watch stream: not JSON: ${t.slice(0, 120)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || typeof (parsed as { type?: unknown }).type !== 'string') {
    throw new KnodeError('KUBE_WATCH_DECODE', `watch stream: not a watch event: ${t.slice(0, 120)}`);
  }
  const e = parsed as { type: string; object?: unknown };
  const object = e.object ?? {};
  return [{ type: e.type, object: e.type === 'ERROR' ? object : reviveDates(object) }];
}

/**
 * Conversion between the stored form and a served version. Only events have
 * two representations: core/v1 Event is the storage form, events.k8s.io/v1
 * Event is converted field by field as upstream does.
 */
import type { Json, KubeObject } from './object.js';
import { groupVersion } from './resources.js';
import type { ResourceInfo } from './resources.js';

const eventsPairs: [core: string, events: string][] = [
  ['involvedObject', 'regarding'],
  ['message', 'note'],
  ['reportingComponent', 'reportingController'],
  ['source', 'deprecatedSource'],
  ['firstTimestamp', 'deprecatedFirstTimestamp'],
  ['lastTimestamp', 'deprecatedLastTimestamp'],
  ['count', 'deprecatedCount'],
];

function rename(obj: KubeObject, from: number, to: number): KubeObject {
  const out: KubeObject = { ...obj };
  for (const pair of eventsPairs) {
    const a = pair[from]!;
    const b = pair[to]!;
    const v: Json | undefined = obj[a] as Json | undefined;
    Reflect.deleteProperty(out, a);
    if (v !== undefined && v !== null) out[b] = v;
  }
  return out;
}

/** Stored object → the representation of `info` (sets apiVersion and kind). */
export function toExternal(info: ResourceInfo, stored: KubeObject): KubeObject {
  let out = stored;
  if (info.storage === 'events' && info.group === 'events.k8s.io') out = rename(stored, 0, 1);
  return { apiVersion: groupVersion(info), kind: info.kind, ...withoutTypeMeta(out) };
}

/** Request body in the representation of `info` → stored form. */
export function fromExternal(info: ResourceInfo, external: KubeObject): KubeObject {
  let out = external;
  if (info.storage === 'events' && info.group === 'events.k8s.io') out = rename(external, 1, 0);
  return { apiVersion: info.storage === 'events' ? 'v1' : groupVersion(info), kind: info.kind, ...withoutTypeMeta(out) };
}

function withoutTypeMeta(obj: KubeObject): KubeObject {
  const { apiVersion: _a, kind: _k, ...rest } = obj;
  return rest as KubeObject;
}


/**
 * The three patch formats of the apiserver, as pure functions on JSON values:
 * - JSON merge patch (RFC 7386): maps merge, null deletes, lists replace.
 * - JSON patch (RFC 6902): add/remove/replace/move/copy/test with JSON pointers.
 * - Strategic merge patch: merge patch plus lists merged by their merge key
 *   (containers/env/volumes by name, container ports by containerPort, service
 *   ports by port, conditions by type, ...) and the directives `$patch`
 *   (delete/replace/merge), `$retainKeys`, `$setElementOrder/<list>` and
 *   `$deleteFromPrimitiveList/<list>` that kubectl sends. Merge keys come from a
 *   table keyed by field name rather than from the Go structs, which is enough
 *   for the built-in types the lab serves.
 */
import { badRequest, ApiError } from './errors.js';
import { clone, isObject, jsonEqual } from './object.js';
import type { Json, JsonObject } from './object.js';

export function mergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) Reflect.deleteProperty(out, k);
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

interface JsonPatchOp {
  op: string;
  path: string;
  from?: string;
  value?: Json;
}

function parsePointer(ptr: string): string[] {
  if (ptr === '') return [];
  if (!ptr.startsWith('/')) throw badRequest(`invalid JSON pointer "${ptr}"`);
  return ptr
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function patchFailure(message: string): ApiError {
  // Upstream answers a JSON patch that cannot be applied with 422 Invalid... for
  // some failures and 500 for others; clients only look at "not 2xx". Use Invalid.
  return new ApiError('Invalid', message);
}

function getAt(doc: Json, parts: string[]): Json {
  let cur: Json = doc;
  for (const p of parts) {
    if (Array.isArray(cur)) {
      const i = Number(p);
      if (!/^\d+$/.test(p) || i >= cur.length) throw patchFailure(`path element "${p}" out of range`);
      cur = cur[i]!;
    } else if (isObject(cur)) {
      if (!(p in cur)) throw patchFailure(`path element "${p}" not found`);
      cur = cur[p]!;
    } else throw patchFailure(`path element "${p}" not found`);
  }
  return cur;
}

function parentOf(doc: Json, parts: string[]): { parent: Json; last: string } {
  if (parts.length === 0) throw patchFailure('operation on the document root is not supported');
  return { parent: getAt(doc, parts.slice(0, -1)), last: parts[parts.length - 1]! };
}

function addAt(doc: Json, parts: string[], value: Json): Json {
  if (parts.length === 0) return value;
  const { parent, last } = parentOf(doc, parts);
  if (Array.isArray(parent)) {
    const i = last === '-' ? parent.length : Number(last);
    if (!/^\d+$/.test(last) && last !== '-') throw patchFailure(`invalid array index "${last}"`);
    if (i > parent.length) throw patchFailure(`array index ${i} out of range`);
    parent.splice(i, 0, value);
  } else if (isObject(parent)) parent[last] = value;
  else throw patchFailure(`cannot add at "${parts.join('/')}"`);
  return doc;
}

function removeAt(doc: Json, parts: string[]): Json {
  const { parent, last } = parentOf(doc, parts);
  if (Array.isArray(parent)) {
    const i = Number(last);
    if (!/^\d+$/.test(last) || i >= parent.length) throw patchFailure(`array index "${last}" out of range`);
    parent.splice(i, 1);
  } else if (isObject(parent)) {
    if (!(last in parent)) throw patchFailure(`path "${parts.join('/')}" not found`);
    Reflect.deleteProperty(parent, last);
  } else throw patchFailure(`cannot remove "${parts.join('/')}"`);
  return doc;
}

export function jsonPatch(target: Json, patch: Json): Json {
  if (!Array.isArray(patch)) throw badRequest('a JSON patch must be a list of operations');
  let doc = clone(target);
  for (const raw of patch) {
    if (!isObject(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string') {
      throw badRequest('each JSON patch operation needs "op" and "path"');
    }
    const op: JsonPatchOp = {
      op: raw.op,
      path: raw.path,
      from: typeof raw.from === 'string' ? raw.from : undefined,
      value: raw.value,
    };
    const parts = parsePointer(op.path);
    switch (op.op) {
      case 'add':
        if (!('value' in raw)) throw badRequest('"add" needs a value');
        doc = addAt(doc, parts, clone(op.value!));
        break;
      case 'remove':
        doc = removeAt(doc, parts);
        break;
      case 'replace':
        if (!('value' in raw)) throw badRequest('"replace" needs a value');
        getAt(doc, parts);
        if (parts.length === 0) doc = clone(op.value!);
        else doc = addAt(removeAt(doc, parts), parts, clone(op.value!));
        break;
      case 'move':
      case 'copy': {
        if (op.from === undefined) throw badRequest(`"${op.op}" needs "from"`);
        const fromParts = parsePointer(op.from);
        const value = clone(getAt(doc, fromParts));
        if (op.op === 'move') doc = removeAt(doc, fromParts);
        doc = addAt(doc, parts, value);
        break;
      }
      case 'test':
        if (!jsonEqual(getAt(doc, parts), op.value ?? null)) throw patchFailure(`test operation for path "${op.path}" failed`);
        break;
      default:
        throw badRequest(`unknown JSON patch operation "${op.op}"`);
    }
  }
  return doc;
}

/** Merge keys of lists of maps, by field name. `ports` is resolved by content. */
const mergeKeys: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  volumes: 'name',
  env: 'name',
  volumeMounts: 'mountPath',
  volumeDevices: 'devicePath',
  imagePullSecrets: 'name',
  hostAliases: 'ip',
  conditions: 'type',
  taints: 'key',
  ownerReferences: 'uid',
  addresses: 'type',
  resourceClaims: 'name',
  containerStatuses: 'name',
  initContainerStatuses: 'name',
  podIPs: 'ip',
  hostIPs: 'ip',
  secrets: 'name',
};

/** Lists of primitives that merge as sets. */
const primitiveMergeLists = new Set(['finalizers']);

function mergeKeyFor(field: string, items: Json[]): string | undefined {
  if (field === 'ports') {
    if (items.some((i) => isObject(i) && 'containerPort' in i)) return 'containerPort';
    return 'port';
  }
  return mergeKeys[field];
}

const setOrderPrefix = '$setElementOrder/';
const deletePrimitivePrefix = '$deleteFromPrimitiveList/';

function sameKey(a: Json, b: Json, key: string): boolean {
  return isObject(a) && isObject(b) && a[key] !== undefined && jsonEqual(a[key], b[key]);
}

function mergeList(field: string, original: Json[], patch: Json[]): Json[] {
  if (primitiveMergeLists.has(field)) {
    const out = [...original];
    for (const p of patch) if (!out.some((o) => jsonEqual(o, p))) out.push(p);
    return out;
  }
  const key = mergeKeyFor(field, [...original, ...patch]);
  if (!key) return patch.map((p) => stripDirectives(p));
  // A `{"$patch": "replace"}` element replaces the whole list with the other elements.
  if (patch.some((p) => isObject(p) && p.$patch === 'replace')) {
    return patch.filter((p) => !(isObject(p) && p.$patch === 'replace')).map((p) => stripDirectives(p));
  }
  const out = [...original];
  for (const p of patch) {
    if (!isObject(p)) {
      out.push(p);
      continue;
    }
    const idx = out.findIndex((o) => sameKey(o, p, key));
    if (p.$patch === 'delete') {
      if (idx >= 0) out.splice(idx, 1);
      continue;
    }
    if (idx >= 0) out[idx] = strategicMerge(out[idx], p);
    else out.push(stripDirectives(p));
  }
  return out;
}

function stripDirectives(v: Json): Json {
  if (Array.isArray(v)) return v.map((x) => stripDirectives(x));
  if (!isObject(v)) return v;
  const out: JsonObject = {};
  for (const [k, x] of Object.entries(v)) {
    if (k.startsWith('$')) continue;
    if (x === null) continue;
    out[k] = stripDirectives(x);
  }
  return out;
}

function orderBy(list: Json[], order: Json[], key: string | undefined): Json[] {
  const rank = (item: Json): number => {
    const i = order.findIndex((o) => (key ? sameKey(item, o, key) : jsonEqual(item, o)));
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  return list
    .map((item, i) => ({ item, i, r: rank(item) }))
    .sort((a, b) => a.r - b.r || a.i - b.i)
    .map((x) => x.item);
}

export function strategicMerge(original: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  if (patch.$patch === 'delete') return null;
  if (patch.$patch === 'replace') return stripDirectives(patch);
  const out: JsonObject = isObject(original) ? clone(original) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$patch' || k === '$retainKeys' || k.startsWith(setOrderPrefix)) continue;
    if (k.startsWith(deletePrimitivePrefix)) {
      const field = k.slice(deletePrimitivePrefix.length);
      const cur = out[field];
      if (Array.isArray(cur) && Array.isArray(v)) out[field] = cur.filter((x) => !v.some((d) => jsonEqual(d, x)));
      continue;
    }
    if (v === null) {
      Reflect.deleteProperty(out, k);
      continue;
    }
    if (isObject(v) && v.$patch === 'delete') {
      Reflect.deleteProperty(out, k);
      continue;
    }
    const cur = out[k];
    if (Array.isArray(v)) out[k] = mergeList(k, Array.isArray(cur) ? cur : [], v);
    else if (isObject(v)) out[k] = strategicMerge(cur, v);
    else out[k] = v;
  }
  for (const [k, v] of Object.entries(patch)) {
    if (!k.startsWith(setOrderPrefix) || !Array.isArray(v)) continue;
    const field = k.slice(setOrderPrefix.length);
    const cur = out[field];
    if (Array.isArray(cur)) out[field] = orderBy(cur, v, mergeKeyFor(field, cur));
  }
  const retain = patch.$retainKeys;
  if (Array.isArray(retain)) {
    for (const k of Object.keys(out)) if (!retain.includes(k)) Reflect.deleteProperty(out, k);
  }
  return out;
}

export type PatchType = 'merge' | 'json' | 'strategic';

export function patchTypeOf(contentType: string | undefined): PatchType | undefined {
  const ct = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (ct === 'application/merge-patch+json') return 'merge';
  if (ct === 'application/json-patch+json') return 'json';
  if (ct === 'application/strategic-merge-patch+json') return 'strategic';
  return undefined;
}

export function applyPatch(type: PatchType, target: Json, patch: Json): Json {
  switch (type) {
    case 'merge':
      if (!isObject(patch)) throw badRequest('a merge patch must be a JSON object');
      return mergePatch(target, patch);
    case 'json':
      return jsonPatch(target, patch);
    case 'strategic':
      if (!isObject(patch)) throw badRequest('a strategic merge patch must be a JSON object');
      return strategicMerge(target, patch);
  }
}

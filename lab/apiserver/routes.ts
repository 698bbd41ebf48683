/**
 * Parsing of apiserver request paths and verbs (upstream's RequestInfo), pure.
 *   /api/v1/<resource>[/<name>[/<sub>]]
 *   /api/v1/namespaces/<ns>/<resource>[/<name>[/<sub>]]
 *   /apis/<group>/<version>/...            (same shapes)
 *   /api/v1/watch/...                      (legacy watch prefix)
 */
export interface ResourcePath {
  group: string;
  version: string;
  resource: string;
  namespace?: string;
  name?: string;
  subresource?: string;
  /** From the legacy /watch/ prefix. */
  watchPrefix: boolean;
}

export type ParsedPath =
  | { kind: 'resource'; path: ResourcePath }
  | { kind: 'discovery'; group?: string; version?: string; legacy: boolean }
  | { kind: 'other'; path: string };

export function parsePath(pathname: string): ParsedPath {
  const segs = pathname.split('/').filter((s) => s !== '').map((s) => decodeURIComponent(s));
  let group: string;
  let version: string;
  let rest: string[];
  if (segs[0] === 'api') {
    if (segs.length === 1) return { kind: 'discovery', legacy: true };
    group = '';
    version = segs[1]!;
    rest = segs.slice(2);
    if (rest.length === 0) return { kind: 'discovery', legacy: true, group: '', version };
  } else if (segs[0] === 'apis') {
    if (segs.length === 1) return { kind: 'discovery', legacy: false };
    if (segs.length === 2) return { kind: 'discovery', legacy: false, group: segs[1]! };
    group = segs[1]!;
    version = segs[2]!;
    rest = segs.slice(3);
    if (rest.length === 0) return { kind: 'discovery', legacy: false, group, version };
  } else return { kind: 'other', path: pathname };
  let watchPrefix = false;
  if (rest[0] === 'watch') {
    watchPrefix = true;
    rest = rest.slice(1);
  }
  const namespaceSub = rest[0] === 'namespaces' && rest.length === 3 && (rest[2] === 'status' || rest[2] === 'finalize');
  if (rest[0] === 'namespaces' && rest.length >= 3 && !namespaceSub) {
    return {
      kind: 'resource',
      path: { group, version, namespace: rest[1]!, resource: rest[2]!, name: rest[3], subresource: rest[4], watchPrefix },
    };
  }
  if (rest.length === 0) return { kind: 'other', path: pathname };
  // /namespaces/<name>[/<sub>] is the namespace object itself.
  return { kind: 'resource', path: { group, version, resource: rest[0]!, name: rest[1], subresource: rest[2], watchPrefix } };
}

export type Verb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'deletecollection';

export function verbOf(method: string, p: ResourcePath, watchParam: boolean): Verb | undefined {
  switch (method) {
    case 'GET':
    case 'HEAD':
      if (p.watchPrefix || watchParam) return 'watch';
      return p.name !== undefined ? 'get' : 'list';
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return p.name !== undefined ? 'delete' : 'deletecollection';
    default:
      return undefined;
  }
}

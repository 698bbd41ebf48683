/**
 * Authentication and authorization of the kubelet server, as upstream's
 * kubelet does it with webhook authn/authz and anonymous auth off.
 *
 * Design notes:
 * - Authentication: a client certificate verified against --client-ca-file
 *   (CN = user, O = groups), else a bearer token checked with a TokenReview.
 *   Neither → 401. A presented but rejected token → 401 (no fall-through).
 * - Authorization: a SubjectAccessReview on the Node: resource nodes, name =
 *   this node, subresource from the path as upstream's
 *   kubelet/server/auth.go (stats, metrics, log for /logs/, spec; everything
 *   else — /containerLogs, /exec, /pods, /healthz ... — proxy), verb from the
 *   HTTP method (GET/HEAD get, POST create, PUT update, PATCH patch, DELETE
 *   delete). Not allowed → 403, before any handler runs.
 * - Both reviews are cached briefly (the cache keys are the token / the whole
 *   attribute set; allowed answers 2 min, denials 30 s, upstream's defaults
 *   for authz are 5 min / 30 s), so a `logs -f` or an exec storm does not
 *   become a review storm. `nodeAttributes` is pure.
 */
import type { KubeClient } from '../kube/client.js';

export interface RequestUser {
  name: string;
  uid?: string;
  groups: string[];
}

export interface NodeAttributes {
  verb: string;
  resource: 'nodes';
  subresource: string;
  name: string;
}

const verbs: Record<string, string> = { GET: 'get', HEAD: 'get', POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' };

function isSubpath(path: string, prefix: string): boolean {
  const p = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  return path === p || path.startsWith(`${p}/`);
}

/** The SubjectAccessReview attributes of a request to the kubelet API. Pure. */
export function nodeAttributes(method: string, path: string, nodeName: string): NodeAttributes {
  let subresource = 'proxy';
  if (isSubpath(path, '/stats')) subresource = 'stats';
  else if (isSubpath(path, '/metrics')) subresource = 'metrics';
  else if (isSubpath(path, '/logs')) subresource = 'log';
  else if (isSubpath(path, '/spec')) subresource = 'spec';
  return { verb: verbs[method.toUpperCase()] ?? method.toLowerCase(), resource: 'nodes', subresource, name: nodeName };
}

/** A client-certificate subject → user (CN, O). Pure. */
export function userFromSubject(subject: { CN?: string | string[]; O?: string | string[] } | undefined): RequestUser | undefined {
  const cn = Array.isArray(subject?.CN) ? subject.CN[0] : subject?.CN;
  if (!cn) return undefined;
  const o = subject?.O === undefined ? [] : Array.isArray(subject.O) ? subject.O : [subject.O];
  return { name: cn, groups: [...o, 'system:authenticated'] };
}

export function bearerToken(header: string | undefined): string | undefined {
  const m = header?.match(/^Bearer\s+(\S+)\s*$/i);
  return m ? m[1] : undefined;
}

/** The two questions the kubelet asks the apiserver. */
export interface Reviewer {
  /** The user of a token; undefined when the token is not valid. */
  reviewToken(token: string): Promise<RequestUser | undefined>;
  /** Whether `user` may do `attrs`; the reason when denied. */
  reviewAccess(user: RequestUser, attrs: NodeAttributes): Promise<{ allowed: boolean; reason: string }>;
}

/** TokenReview / SubjectAccessReview through the agent's kubeconfig. */
export function apiReviewer(kube: Pick<KubeClient, 'authentication' | 'authorization'>): Reviewer {
  const authn = kube.authentication;
  const authz = kube.authorization;
  return {
    async reviewToken(token) {
      const r = await authn.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } } });
      const u = r.status?.user;
      if (r.status?.authenticated !== true || !u?.username) return undefined;
      return { name: u.username, ...(u.uid ? { uid: u.uid } : {}), groups: u.groups ?? [] };
    },
    async reviewAccess(user, attrs) {
      const r = await authz.createSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: {
            user: user.name,
            ...(user.uid ? { uid: user.uid } : {}),
            groups: user.groups,
            resourceAttributes: { verb: attrs.verb, group: '', version: 'v1', resource: attrs.resource, subresource: attrs.subresource, name: attrs.name },
          },
        },
      });
      return { allowed: r.status?.allowed === true, reason: r.status?.reason ?? '' };
    },
  };
}

interface Entry<T> {
  value: T;
  until: number;
}

/** A Reviewer that remembers answers for a while (failed reviews are not cached). */
export function cachingReviewer(inner: Reviewer, ttl = { allowedMs: 120_000, deniedMs: 30_000 }, now: () => number = Date.now): Reviewer {
  const tokens = new Map<string, Entry<RequestUser | undefined>>();
  const access = new Map<string, Entry<{ allowed: boolean; reason: string }>>();
  const remember = <T>(m: Map<string, Entry<T>>, key: string, value: T, ok: boolean): void => {
    if (m.size > 10_000) m.clear();
    m.set(key, { value, until: now() + (ok ? ttl.allowedMs : ttl.deniedMs) });
  };
  const hit = <T>(m: Map<string, Entry<T>>, key: string): Entry<T> | undefined => {
    const e = m.get(key);
    if (e !== undefined && e.until > now()) return e;
    if (e !== undefined) m.delete(key);
    return undefined;
  };
  return {
    async reviewToken(token) {
      const e = hit(tokens, token);
      if (e !== undefined) return e.value;
      const user = await inner.reviewToken(token);
      remember(tokens, token, user, user !== undefined);
      return user;
    },
    async reviewAccess(user, attrs) {
      const key = JSON.stringify([user.name, user.uid ?? '', [...user.groups].sort(), attrs.verb, attrs.subresource, attrs.name]);
      const e = hit(access, key);
      if (e !== undefined) return e.value;
      const d = await inner.reviewAccess(user, attrs);
      remember(access, key, d, d.allowed);
      return d;
    },
  };
}

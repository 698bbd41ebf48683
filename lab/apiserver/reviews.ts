/**
 * The review resources: answered, never stored. TokenReview (is this bearer
 * token valid, and whose is it), SubjectAccessReview (may this user do that),
 * and their self variants for the requesting user (`kubectl auth can-i`,
 * `kubectl auth whoami`). The token authenticator and the requester come in.
 */
import { authorize, withAuthenticated } from './auth.js';
import type { Attributes, User } from './auth.js';
import { getArray, getMap, getString } from './object.js';
import type { Json } from './object.js';

/** Authenticates a bearer token for a TokenReview: the user and the audiences it was accepted for, or an error. */
export type TokenAuthenticator = (token: string, audiences: string[]) => Promise<{ user: User; audiences?: string[] } | { error: string }>;

/** TokenReview: is this bearer token valid (for these audiences), and whose is it. */
export async function tokenReview(body: Json, authenticate: TokenAuthenticator): Promise<unknown> {
  const spec = getMap(body, 'spec');
  const audiences = (getArray(spec, 'audiences') ?? []).filter((a): a is string => typeof a === 'string');
  const result = await authenticate(getString(spec, 'token') ?? '', audiences);
  let status: Record<string, unknown>;
  if ('user' in result) {
    const u = withAuthenticated(result.user);
    status = {
      authenticated: true,
      user: { username: u.name, ...(u.uid ? { uid: u.uid } : {}), groups: u.groups, ...(u.extra && Object.keys(u.extra).length > 0 ? { extra: u.extra } : {}) },
      ...(result.audiences ? { audiences: result.audiences } : {}),
    };
  } else status = { authenticated: false, error: result.error };
  return { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', metadata: { creationTimestamp: null }, spec: spec ?? {}, status };
}

/** A TokenAuthenticator for static tokens only (tests, tools without service accounts). */
export function staticTokenAuthenticator(tokens: ReadonlyMap<string, User>): TokenAuthenticator {
  return async (token) => {
    const user = tokens.get(token);
    return user ? { user } : { error: 'invalid bearer token' };
  };
}

/** SubjectAccessReview, or SelfSubjectAccessReview when `self` is the requesting user. */
function accessReview(body: Json, self?: User): unknown {
  const spec = getMap(body, 'spec') ?? {};
  const user: User = self ?? {
    name: getString(spec, 'user') ?? '',
    groups: Array.isArray(spec.groups) ? spec.groups.filter((g): g is string => typeof g === 'string') : [],
  };
  const ra = getMap(spec, 'resourceAttributes');
  const nra = getMap(spec, 'nonResourceAttributes');
  const attrs: Attributes = ra
    ? {
        verb: getString(ra, 'verb') ?? '',
        resourceRequest: true,
        group: getString(ra, 'group') ?? '',
        resource: getString(ra, 'resource'),
        subresource: getString(ra, 'subresource') || undefined,
        namespace: getString(ra, 'namespace') || undefined,
        name: getString(ra, 'name') || undefined,
      }
    : { verb: getString(nra, 'verb') ?? '', resourceRequest: false, path: getString(nra, 'path') ?? '' };
  const d = authorize(user, attrs);
  return {
    apiVersion: 'authorization.k8s.io/v1',
    kind: self ? 'SelfSubjectAccessReview' : 'SubjectAccessReview',
    metadata: { creationTimestamp: null },
    spec,
    status: { allowed: d.allowed, ...(d.reason ? { reason: d.reason } : {}) },
  };
}

function selfSubjectReview(user: User): unknown {
  return {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'SelfSubjectReview',
    metadata: { creationTimestamp: null },
    status: { userInfo: { username: user.name, ...(user.uid ? { uid: user.uid } : {}), groups: user.groups } },
  };
}

/** Answers a create on a review resource (`resource` is the plural name). */
export async function review(resource: string, body: Json, requester: User, authenticate: TokenAuthenticator): Promise<unknown> {
  switch (resource) {
    case 'tokenreviews':
      return tokenReview(body, authenticate);
    case 'subjectaccessreviews':
      return accessReview(body);
    case 'selfsubjectaccessreviews':
      return accessReview(body, requester);
    default:
      return selfSubjectReview(requester);
  }
}

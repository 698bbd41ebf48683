/**
 * The review resources: answered, never stored. TokenReview (is this bearer
 * token valid, and whose is it), SubjectAccessReview (may this user do that),
 * and their self variants for the requesting user (`kubectl auth can-i`,
 * `kubectl auth whoami`). Pure: the token table and the requester come in.
 */
import { authorize, withAuthenticated } from './auth.js';
import type { Attributes, User } from './auth.js';
import { getMap, getString } from './object.js';
import type { Json } from './object.js';

function tokenReview(body: Json, tokens: ReadonlyMap<string, User>): unknown {
  const spec = getMap(body, 'spec');
  const user = tokens.get(getString(spec, 'token') ?? '');
  const status = user
    ? { authenticated: true, user: { username: user.name, ...(user.uid ? { uid: user.uid } : {}), groups: withAuthenticated(user).groups } }
    : { authenticated: false, error: 'invalid bearer token' };
  return { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', metadata: { creationTimestamp: null }, spec: spec ?? {}, status };
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
export function review(resource: string, body: Json, requester: User, tokens: ReadonlyMap<string, User>): unknown {
  switch (resource) {
    case 'tokenreviews':
      return tokenReview(body, tokens);
    case 'subjectaccessreviews':
      return accessReview(body);
    case 'selfsubjectaccessreviews':
      return accessReview(body, requester);
    default:
      return selfSubjectReview(requester);
  }
}

/**
 * Bootstrap-token authentication, as upstream's bootstrap token authenticator
 * (plugin/pkg/auth/authenticator/token/bootstrap) and kubeadm's tokens:
 * a bearer token `<id>.<secret>` (6 and 16 of [a-z0-9]) is valid when the
 * Secret `bootstrap-token-<id>` in kube-system, of type
 * bootstrap.kubernetes.io/token, holds the same token-id and token-secret,
 * `usage-bootstrap-authentication: "true"`, is not being deleted and its
 * `expiration` (RFC 3339) has not passed. The user is
 * `system:bootstrap:<id>` in `system:bootstrappers` plus the valid
 * `auth-extra-groups`. Pure: the caller fetches the Secret.
 */
import { timingSafeEqual } from 'node:crypto';
import { getMap, getString } from './object.js';
import type { KubeObject } from './object.js';
import type { User } from './auth.js';

export const bootstrapTokenSecretType = 'bootstrap.kubernetes.io/token';
export const bootstrapTokenNamespace = 'kube-system';
const tokenRe = /^([a-z0-9]{6})\.([a-z0-9]{16})$/;
const extraGroupRe = /^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$/;

export function parseBootstrapToken(token: string): { id: string; secret: string } | undefined {
  const m = tokenRe.exec(token);
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

export function bootstrapSecretName(id: string): string {
  return `bootstrap-token-${id}`;
}

function dataField(secret: KubeObject, key: string): string | undefined {
  const v = getString(getMap(secret, 'data'), key);
  return v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8');
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export type BootstrapResult = { user: User } | { reason: string };

/** The user the token authenticates as, or why not (for the log; the client only sees 401). */
export function bootstrapTokenUser(token: { id: string; secret: string }, secret: KubeObject | undefined, now: number): BootstrapResult {
  if (!secret) return { reason: `no secret ${bootstrapSecretName(token.id)}` };
  if (secret.metadata.deletionTimestamp) return { reason: 'the token secret is being deleted' };
  if (getString(secret, 'type') !== bootstrapTokenSecretType) return { reason: `secret type is not ${bootstrapTokenSecretType}` };
  if (dataField(secret, 'token-id') !== token.id) return { reason: 'token-id does not match' };
  const stored = dataField(secret, 'token-secret');
  if (stored === undefined || !sameText(stored, token.secret)) return { reason: 'token-secret does not match' };
  if (dataField(secret, 'usage-bootstrap-authentication') !== 'true') return { reason: 'the token is not for authentication' };
  const exp = dataField(secret, 'expiration');
  if (exp !== undefined) {
    const t = Date.parse(exp);
    if (Number.isNaN(t)) return { reason: `invalid expiration "${exp}"` };
    if (t <= now) return { reason: `the token expired at ${exp}` };
  }
  const extra = (dataField(secret, 'auth-extra-groups') ?? '')
    .split(',')
    .map((g) => g.trim())
    .filter(Boolean);
  const bad = extra.find((g) => !extraGroupRe.test(g));
  if (bad !== undefined) return { reason: `invalid auth-extra-groups entry "${bad}"` };
  return { user: { name: `system:bootstrap:${token.id}`, groups: ['system:bootstrappers', ...extra.filter((g) => g !== 'system:bootstrappers'), 'system:authenticated'] } };
}

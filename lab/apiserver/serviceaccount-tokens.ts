/**
 * Bound service-account tokens, as kube-apiserver issues and checks them:
 *
 * - Signing key: an RSA key in `<pki>/sa.key` (kube-apiserver's
 *   --service-account-signing-key-file), made once; tokens are RS256 JWTs with
 *   the key id upstream derives (base64url SHA-256 of the public key's DER).
 * - TokenRequest (`serviceaccounts/<name>/token`): claims iss, sub
 *   `system:serviceaccount:<ns>:<name>`, aud (default: the apiserver's
 *   audiences = the issuer), exp, iat, nbf, jti and `kubernetes.io`
 *   {namespace, pod {name, uid}, serviceaccount {name, uid}, warnafter}.
 *   expirationSeconds defaults to 3600 and must be at least 600 (a lower bound
 *   can be set for tests: ServiceAccountTokenOptions.minExpirationSeconds).
 *   A pod-bound request for exactly 3607 s gets a token valid for a year with
 *   `warnafter` at 3607 s, while the answer's expirationTimestamp says 3607 s
 *   (upstream's --service-account-extend-token-expiration).
 * - Authentication (bearer tokens and TokenReview): signature, iss, nbf/exp
 *   (60 s leeway as upstream's validator), audience, then the live objects: the
 *   service account must exist with the claimed uid, and a bound pod must
 *   exist with the claimed uid.
 *
 * JWT encoding and the claim checks are pure; objects come in through a lookup.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign, verify, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { User } from './auth.js';
import { badRequest, conflict, invalid, notFound } from './errors.js';
import { getArray, getMap, getNumber, getString, isObject } from './object.js';
import type { Json, JsonObject, KubeObject } from './object.js';

export const defaultIssuer = 'https://kubernetes.default.svc.cluster.local';
export const defaultTokenExpirationSeconds = 3600;
export const minTokenExpirationSeconds = 600;
/** Upstream's WarnOnlyBoundTokenExpirationSeconds and ExpirationExtensionSeconds. */
export const warnOnlyBoundTokenExpirationSeconds = 3607;
export const expirationExtensionSeconds = 365 * 24 * 3600;
const maxExpirationSeconds = 2 ** 32;
const leewaySeconds = 60;

export interface ServiceAccountKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  kid: string;
}

export interface ServiceAccountTokenOptions {
  key: ServiceAccountKey;
  issuer?: string;
  /** The apiserver's own audiences (--api-audiences); default [issuer]. */
  audiences?: string[];
  /** Lower bound of expirationSeconds (default 600; lower only in tests). */
  minExpirationSeconds?: number;
  now?: () => number;
}

/** The service-account signing key in `pkiDir` (sa.key / sa.pub), made when missing. */
export async function ensureServiceAccountKey(pkiDir: string): Promise<ServiceAccountKey> {
  const keyFile = join(pkiDir, 'sa.key');
  const pubFile = join(pkiDir, 'sa.pub');
  if (!existsSync(keyFile)) {
    const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writeFile(keyFile, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    await chmod(keyFile, 0o600);
    await writeFile(pubFile, pair.publicKey.export({ type: 'spki', format: 'pem' }));
  }
  const privateKey = createPrivateKey(await readFile(keyFile, 'utf8'));
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, kid: keyId(publicKey) };
}

function keyId(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('base64url');
}

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

export function signJwt(claims: JsonObject, key: ServiceAccountKey): string {
  const input = `${b64({ alg: 'RS256', kid: key.kid })}.${b64(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input), key.privateKey).toString('base64url')}`;
}

/** The claims of a JWT signed by `key`, or a reason why not. */
export function verifyJwt(token: string, key: ServiceAccountKey): { claims: JsonObject } | { error: string } {
  const parts = token.split('.');
  if (parts.length !== 3) return { error: 'not a JWT' };
  let header: unknown;
  let claims: unknown;
  try {
    header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
  } catch {
    return { error: 'malformed JWT' };
  }
  if (!isObject(header) || header.alg !== 'RS256') return { error: 'unsupported JWT algorithm' };
  if (!isObject(claims)) return { error: 'malformed JWT claims' };
  const ok = verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`), key.publicKey, Buffer.from(parts[2]!, 'base64url'));
  if (!ok) return { error: 'invalid signature' };
  return { claims };
}

export interface BoundPod {
  name: string;
  uid: string;
}

/** The claims of a token for `sa` (bound to `pod` if given). Pure. */
export function tokenClaims(o: {
  issuer: string;
  audiences: string[];
  sa: { namespace: string; name: string; uid: string };
  pod?: BoundPod;
  nowSeconds: number;
  expirationSeconds: number;
  warnAfterSeconds?: number;
  jti: string;
}): JsonObject {
  const k8s: JsonObject = { namespace: o.sa.namespace, serviceaccount: { name: o.sa.name, uid: o.sa.uid } };
  if (o.pod) k8s.pod = { name: o.pod.name, uid: o.pod.uid };
  if (o.warnAfterSeconds !== undefined) k8s.warnafter = o.nowSeconds + o.warnAfterSeconds;
  return {
    aud: o.audiences,
    exp: o.nowSeconds + o.expirationSeconds,
    iat: o.nowSeconds,
    iss: o.issuer,
    jti: o.jti,
    'kubernetes.io': k8s,
    nbf: o.nowSeconds,
    sub: `system:serviceaccount:${o.sa.namespace}:${o.sa.name}`,
  };
}

/** Live objects a token refers to. */
export interface TokenObjects {
  serviceAccount(namespace: string, name: string): Promise<KubeObject | undefined>;
  pod(namespace: string, name: string): Promise<KubeObject | undefined>;
}

const tokenRequestRef = { group: 'authentication.k8s.io', resource: 'tokenrequests', kind: 'TokenRequest' };

/** Answers POST serviceaccounts/<name>/token. */
export async function tokenRequest(
  namespace: string,
  name: string,
  body: Json,
  objects: TokenObjects,
  o: ServiceAccountTokenOptions,
): Promise<unknown> {
  if (!isObject(body)) throw badRequest('the body must be a TokenRequest object');
  const sa = await objects.serviceAccount(namespace, name);
  if (!sa) throw notFound({ group: '', resource: 'serviceaccounts', kind: 'ServiceAccount' }, name);
  const spec = getMap(body, 'spec') ?? {};
  const issuer = o.issuer ?? defaultIssuer;
  const apiAudiences = o.audiences ?? [issuer];
  const requested = (getArray(spec, 'audiences') ?? []).filter((a): a is string => typeof a === 'string');
  const audiences = requested.length > 0 ? requested : apiAudiences;
  const expirationSeconds = getNumber(spec, 'expirationSeconds') ?? defaultTokenExpirationSeconds;
  const min = o.minExpirationSeconds ?? minTokenExpirationSeconds;
  if (!Number.isInteger(expirationSeconds) || expirationSeconds < min) {
    throw invalid(tokenRequestRef, name, [{ field: 'spec.expirationSeconds', message: `Invalid value: ${expirationSeconds}: may not specify a duration less than ${min === minTokenExpirationSeconds ? '10 minutes' : `${min} seconds`}` }]);
  }
  if (expirationSeconds > maxExpirationSeconds) {
    throw invalid(tokenRequestRef, name, [{ field: 'spec.expirationSeconds', message: `Invalid value: ${expirationSeconds}: may not specify a duration larger than 2^32 seconds` }]);
  }
  const ref = getMap(spec, 'boundObjectRef');
  let pod: BoundPod | undefined;
  if (ref) {
    const kind = getString(ref, 'kind');
    const refName = getString(ref, 'name') ?? '';
    if (kind !== 'Pod') throw badRequest(`cannot bind token to object of type ${kind ?? ''}: only Pod is supported by the lab apiserver`);
    const obj = await objects.pod(namespace, refName);
    if (!obj) throw notFound({ group: '', resource: 'pods', kind: 'Pod' }, refName);
    const wantUid = getString(ref, 'uid');
    if (wantUid && wantUid !== obj.metadata.uid) {
      throw conflict(tokenRequestRef, name, `the UID in the bound object reference (${wantUid}) does not match the UID in record. The object might have been deleted and then recreated`);
    }
    const podSA = getString(getMap(obj, 'spec'), 'serviceAccountName') ?? 'default';
    if (podSA !== name) throw badRequest(`cannot bind token for serviceaccount "${name}" to pod running with different serviceaccount name.`);
    pod = { name: refName, uid: obj.metadata.uid ?? '' };
  }
  const nowMs = (o.now ?? Date.now)();
  const nowSeconds = Math.floor(nowMs / 1000);
  const extend = pod !== undefined && expirationSeconds === warnOnlyBoundTokenExpirationSeconds;
  const claims = tokenClaims({
    issuer,
    audiences,
    sa: { namespace, name, uid: sa.metadata.uid ?? '' },
    ...(pod ? { pod } : {}),
    nowSeconds,
    expirationSeconds: extend ? expirationExtensionSeconds : expirationSeconds,
    ...(extend ? { warnAfterSeconds: expirationSeconds } : {}),
    jti: randomUUID(),
  });
  return {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    metadata: { name, namespace, creationTimestamp: null },
    spec: {
      audiences,
      expirationSeconds,
      ...(ref ? { boundObjectRef: { kind: 'Pod', apiVersion: getString(ref, 'apiVersion') ?? 'v1', name: pod!.name, uid: pod!.uid } } : {}),
    },
    status: { token: signJwt(claims, o.key), expirationTimestamp: new Date((nowSeconds + expirationSeconds) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z') },
  };
}

export type TokenAuthResult = { user: User; audiences: string[] } | { error: string };

/** Authenticates a service-account JWT against `audiences` (any overlap) and the live objects. */
export async function authenticateServiceAccountToken(
  token: string,
  audiences: string[],
  objects: TokenObjects,
  o: ServiceAccountTokenOptions,
): Promise<TokenAuthResult> {
  const v = verifyJwt(token, o.key);
  if ('error' in v) return v;
  const c = v.claims;
  const issuer = o.issuer ?? defaultIssuer;
  if (c.iss !== issuer) return { error: 'token issuer is not accepted' };
  const now = Math.floor((o.now ?? Date.now)() / 1000);
  const exp = getNumber(c, 'exp');
  const nbf = getNumber(c, 'nbf');
  if (exp === undefined || now > exp + leewaySeconds) return { error: 'service account token has expired' };
  if (nbf !== undefined && now < nbf - leewaySeconds) return { error: 'service account token is not valid yet' };
  const aud = Array.isArray(c.aud) ? c.aud.filter((a): a is string => typeof a === 'string') : typeof c.aud === 'string' ? [c.aud] : [];
  const matched = audiences.filter((a) => aud.includes(a));
  if (matched.length === 0) return { error: 'token audiences are invalid' };
  const k8s = getMap(c, 'kubernetes.io');
  const ns = getString(k8s, 'namespace') ?? '';
  const saClaim = getMap(k8s, 'serviceaccount');
  const saName = getString(saClaim, 'name') ?? '';
  const saUid = getString(saClaim, 'uid') ?? '';
  if (c.sub !== `system:serviceaccount:${ns}:${saName}`) return { error: 'token subject does not match its service account' };
  const sa = await objects.serviceAccount(ns, saName);
  if (!sa) return { error: `service account ${ns}/${saName} has been deleted` };
  if (sa.metadata.uid !== saUid) return { error: `service account UID (${sa.metadata.uid ?? ''}) does not match claim (${saUid})` };
  const podClaim = getMap(k8s, 'pod');
  const extra: Record<string, string[]> = {};
  if (podClaim) {
    const podName = getString(podClaim, 'name') ?? '';
    const podUid = getString(podClaim, 'uid') ?? '';
    const pod = await objects.pod(ns, podName);
    if (!pod) return { error: `pod ${ns}/${podName} has been deleted` };
    if (pod.metadata.uid !== podUid) return { error: `pod UID (${pod.metadata.uid ?? ''}) does not match claim (${podUid})` };
    extra['authentication.kubernetes.io/pod-name'] = [podName];
    extra['authentication.kubernetes.io/pod-uid'] = [podUid];
  }
  const jti = getString(c, 'jti');
  if (jti) extra['authentication.kubernetes.io/credential-id'] = [`JTI=${jti}`];
  return {
    user: {
      name: `system:serviceaccount:${ns}:${saName}`,
      uid: saUid,
      groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'],
      extra,
    },
    audiences: matched,
  };
}

/** True when `token` looks like a JWT (three base64url parts), i.e. worth verifying. */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token);
}

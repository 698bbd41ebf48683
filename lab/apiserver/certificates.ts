/**
 * certificates.k8s.io/v1 CertificateSigningRequest semantics, as upstream's
 * registry strategy and validation (pkg/registry/certificates, pkg/apis/
 * certificates/validation). Pure.
 *
 * - create: spec.username/uid/groups/extra are the requesting user's, whatever
 *   the body says; status starts empty.
 * - update of the main resource changes metadata only (spec is immutable,
 *   status belongs to the subresources).
 * - /approval changes status.conditions only; /status changes status but not
 *   the Approved/Denied conditions, and status.certificate once set is fixed.
 * - validation: spec.request a PEM CSR whose signature verifies, signerName a
 *   qualified name, known usages without duplicates, expirationSeconds ≥ 600,
 *   Approved and Denied exclusive, a certificate only when approved and in PEM.
 */
import type { StatusCause } from './errors.js';
import { getArray, getMap, getNumber, getString, isObject } from './object.js';
import type { Json, KubeObject } from './object.js';
import type { User } from './auth.js';
import { parseCsr } from '../../lib/x509/pkcs10.js';
import { knownUsages } from '../../lib/x509/certificate.js';
import { pemDecodeAll } from '../../lib/x509/der.js';
import { errorMessage } from '../../lib/errors.js';
import { X509Certificate } from 'node:crypto';

export const csrStorage = 'certificatesigningrequests.certificates.k8s.io';

/** The requesting user goes into spec (upstream csrStrategy.PrepareForCreate). */
export function stampRequester(body: Json, user: User): Json {
  if (!isObject(body)) return body;
  const spec = isObject(body.spec) ? { ...body.spec } : {};
  delete spec.username;
  delete spec.uid;
  delete spec.groups;
  delete spec.extra;
  spec.username = user.name;
  if (user.uid) spec.uid = user.uid;
  spec.groups = [...user.groups];
  return { ...body, spec };
}

function decodeRequest(spec: Record<string, Json> | undefined): string | undefined {
  const req = getString(spec, 'request');
  if (req === undefined) return undefined;
  return Buffer.from(req, 'base64').toString('utf8');
}

const qualifiedName = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)\/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

const conditionTypes = ['Approved', 'Denied', 'Failed'];

export function csrErrors(obj: KubeObject): StatusCause[] {
  const causes: StatusCause[] = [];
  const spec = getMap(obj, 'spec');
  const pem = decodeRequest(spec);
  if (pem === undefined || pem === '') causes.push({ reason: 'FieldValueRequired', field: 'spec.request', message: 'Required value' });
  else {
    try {
      parseCsr(pem);
    } catch (err) {
      causes.push({ reason: 'FieldValueInvalid', field: 'spec.request', message: `Invalid value: "<request>": ${errorMessage(err)}` });
    }
  }
  const signer = getString(spec, 'signerName');
  if (!signer) causes.push({ reason: 'FieldValueRequired', field: 'spec.signerName', message: 'Required value' });
  else if (!qualifiedName.test(signer) || signer.length > 571) {
    causes.push({ reason: 'FieldValueInvalid', field: 'spec.signerName', message: `Invalid value: "${signer}": must be a fully qualified domain and path of the form 'example.com/signer-name'` });
  }
  const usages = getArray(spec, 'usages');
  if (!usages || usages.length === 0) causes.push({ reason: 'FieldValueRequired', field: 'spec.usages', message: 'Required value' });
  else {
    const seen = new Set<string>();
    usages.forEach((u, i) => {
      if (typeof u !== 'string' || !knownUsages.includes(u)) {
        causes.push({ reason: 'FieldValueNotSupported', field: `spec.usages[${i}]`, message: `Unsupported value: ${JSON.stringify(u)}: supported values: ${knownUsages.map((k) => `"${k}"`).join(', ')}` });
      } else if (seen.has(u)) causes.push({ reason: 'FieldValueDuplicate', field: `spec.usages[${i}]`, message: `Duplicate value: "${u}"` });
      else seen.add(u);
    });
  }
  const exp = getNumber(spec, 'expirationSeconds');
  if (exp !== undefined && (!Number.isInteger(exp) || exp < 600)) {
    causes.push({ reason: 'FieldValueInvalid', field: 'spec.expirationSeconds', message: `Invalid value: ${exp}: may not specify a duration less than 600 seconds (10 minutes)` });
  }
  const status = getMap(obj, 'status');
  const types = new Set<string>();
  (getArray(status, 'conditions') ?? []).forEach((c, i) => {
    const type = getString(c, 'type') ?? '';
    if (!conditionTypes.includes(type)) {
      causes.push({ reason: 'FieldValueNotSupported', field: `status.conditions[${i}].type`, message: `Unsupported value: "${type}": supported values: "Approved", "Denied", "Failed"` });
    }
    const st = getString(c, 'status') ?? 'True';
    if (st !== 'True') causes.push({ reason: 'FieldValueNotSupported', field: `status.conditions[${i}].status`, message: `Unsupported value: "${st}": supported values: "True"` });
    if (types.has(type)) causes.push({ reason: 'FieldValueDuplicate', field: `status.conditions[${i}].type`, message: `Duplicate value: "${type}"` });
    types.add(type);
  });
  if (types.has('Approved') && types.has('Denied')) {
    causes.push({ reason: 'FieldValueInvalid', field: 'status.conditions', message: 'Invalid value: "Approved": Approved and Denied conditions are mutually exclusive' });
  }
  const cert = getString(status, 'certificate');
  if (cert) {
    if (!types.has('Approved') || types.has('Denied') || types.has('Failed')) {
      causes.push({ reason: 'FieldValueForbidden', field: 'status.certificate', message: 'Forbidden: certificate can only be set if the Approved condition is present and Denied and Failed are not' });
    }
    const blocks = pemDecodeAll(Buffer.from(cert, 'base64').toString('utf8'), ['CERTIFICATE']);
    let ok = blocks.length > 0;
    try {
      for (const b of blocks) new X509Certificate(b);
    } catch {
      ok = false;
    }
    if (!ok) causes.push({ reason: 'FieldValueInvalid', field: 'status.certificate', message: 'Invalid value: "<certificate data>": must contain at least one CERTIFICATE PEM block' });
  }
  return causes;
}

function withDefaultConditionFields(conditions: Json[]): Json[] {
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return conditions.map((c) => {
    if (!isObject(c)) return c;
    return { status: 'True', lastUpdateTime: now, lastTransitionTime: now, ...c };
  });
}

/**
 * The stored object after a write of `desired` over `cur` through `sub`
 * (undefined: the main resource). Returns `next`, already a copy.
 */
export function csrUpdate(cur: KubeObject, desired: KubeObject, next: KubeObject, sub: 'status' | 'approval' | undefined): KubeObject {
  const curStatus = getMap(cur, 'status') ?? {};
  if (sub === undefined) {
    if (cur.spec === undefined) delete next.spec;
    else next.spec = cur.spec;
    next.status = curStatus;
    return next;
  }
  const want = getMap(desired, 'status') ?? {};
  const wantConds = withDefaultConditionFields(getArray(want, 'conditions') ?? []);
  const curConds = getArray(curStatus, 'conditions') ?? [];
  const isApproval = (c: Json): boolean => isObject(c) && (c.type === 'Approved' || c.type === 'Denied');
  let conditions: Json[];
  let certificate = getString(curStatus, 'certificate');
  if (sub === 'approval') {
    conditions = wantConds;
  } else {
    // /status may not change the approval conditions; the certificate is set once.
    conditions = [...curConds.filter(isApproval), ...wantConds.filter((c) => !isApproval(c))];
    if (!certificate) certificate = getString(want, 'certificate');
  }
  next.spec = cur.spec ?? {};
  next.status = { ...(conditions.length ? { conditions } : {}), ...(certificate ? { certificate } : {}) };
  return next;
}

/** A 422 cause when a write would drop an Approved or Denied condition (they are final). */
export function approvalRemovedCause(cur: KubeObject, next: KubeObject): StatusCause | undefined {
  const had = (o: KubeObject, t: string): boolean => (getArray(getMap(o, 'status'), 'conditions') ?? []).some((c) => isObject(c) && c.type === t);
  for (const t of ['Approved', 'Denied']) {
    if (had(cur, t) && !had(next, t)) return { reason: 'FieldValueForbidden', field: 'status.conditions', message: `Forbidden: updates may not remove a condition of type "${t}"` };
  }
  return undefined;
}

/** kubectl get csr's CONDITION column (upstream extractCSRStatus). */
export function csrCondition(o: KubeObject): string {
  const status = getMap(o, 'status');
  const types = (getArray(status, 'conditions') ?? []).map((c) => getString(c, 'type'));
  let s = types.includes('Denied') ? 'Denied' : types.includes('Approved') ? 'Approved' : 'Pending';
  if (types.includes('Failed')) s += ',Failed';
  if (getString(status, 'certificate')) s += ',Issued';
  return s;
}

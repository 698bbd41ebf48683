/**
 * API errors as upstream reports them: a `Status` object with a reason and an
 * HTTP code. `ApiError` is a KnodeError (code 'API_<Reason>') that carries what
 * the server needs to render the Status.
 */
import { KnodeError } from '../../lib/errors.js';

export type StatusReason =
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Invalid'
  | 'Gone'
  | 'Expired'
  | 'Unauthorized'
  | 'Forbidden'
  | 'BadRequest'
  | 'MethodNotAllowed'
  | 'RequestEntityTooLarge'
  | 'UnsupportedMediaType'
  | 'NotAcceptable'
  | 'InternalError'
  | 'Timeout';

export interface StatusCause {
  reason?: string;
  message: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
}

export interface StatusObject {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message: string;
  reason?: StatusReason;
  details?: StatusDetails;
  code: number;
}

const codes: Record<StatusReason, number> = {
  NotFound: 404,
  AlreadyExists: 409,
  Conflict: 409,
  Invalid: 422,
  Gone: 410,
  Expired: 410,
  Unauthorized: 401,
  Forbidden: 403,
  BadRequest: 400,
  MethodNotAllowed: 405,
  RequestEntityTooLarge: 413,
  UnsupportedMediaType: 415,
  NotAcceptable: 406,
  InternalError: 500,
  Timeout: 504,
};

export class ApiError extends KnodeError {
  readonly reason: StatusReason;
  readonly httpCode: number;
  readonly statusDetails: StatusDetails | undefined;

  constructor(reason: StatusReason, message: string, details?: StatusDetails, cause?: unknown) {
    super(`API_${reason}`, message, { cause, details: details ? { ...details } : undefined });
    this.reason = reason;
    this.httpCode = codes[reason];
    this.statusDetails = details;
  }

  toStatus(): StatusObject {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      ...(this.statusDetails ? { details: this.statusDetails } : {}),
      code: this.httpCode,
    };
  }
}

/** What upstream prints as the "qualified resource": `pods`, `deployments.apps`. */
export interface ResourceRef {
  group: string;
  resource: string;
  kind: string;
}

function qualified(r: ResourceRef): string {
  return r.group ? `${r.resource}.${r.group}` : r.resource;
}

export function notFound(r: ResourceRef, name: string): ApiError {
  return new ApiError('NotFound', `${qualified(r)} "${name}" not found`, { name, group: r.group, kind: r.resource });
}

export function alreadyExists(r: ResourceRef, name: string): ApiError {
  return new ApiError('AlreadyExists', `${qualified(r)} "${name}" already exists`, {
    name,
    group: r.group,
    kind: r.resource,
  });
}

export function conflict(r: ResourceRef, name: string, why: string): ApiError {
  return new ApiError('Conflict', `Operation cannot be fulfilled on ${qualified(r)} "${name}": ${why}`, {
    name,
    group: r.group,
    kind: r.resource,
  });
}

export function invalid(r: ResourceRef, name: string, causes: StatusCause[]): ApiError {
  const text = causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message)).join(', ');
  return new ApiError('Invalid', `${r.kind} "${name}" is invalid: ${text}`, {
    name,
    group: r.group,
    kind: r.kind,
    causes: causes.map((c) => ({ reason: c.reason ?? 'FieldValueInvalid', message: c.message, field: c.field })),
  });
}

export function badRequest(message: string): ApiError {
  return new ApiError('BadRequest', message);
}

export function expired(message: string): ApiError {
  return new ApiError('Expired', message);
}

export function successStatus(details?: StatusDetails): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', ...(details ? { details } : {}) };
}

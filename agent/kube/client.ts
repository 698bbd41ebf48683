/**
 * The agent's apiserver client: the kubeconfig (kubeconfig.ts), the lean
 * transport (rest.ts) and the typed calls the agent makes (apis.ts), plus the
 * helpers every caller needs (patch content types, the HTTP code of a failed
 * call).
 *
 * Design notes: @kubernetes/client-node's runtime (generated API classes,
 * ObjectSerializer and every model, its fetch/openid/yaml stack) cost the
 * agent about 40 MB of RSS; the agent keeps only its TYPES (type-only imports
 * are erased) and speaks to the apiserver through node:https. The call sites
 * keep client-node's method names and request shapes (`kube.core.readNode({ name })`).
 */
import { errorMessage } from '../../lib/errors.js';
import { authenticationV1, authorizationV1, certificatesV1, coordinationV1, coreV1, type AuthenticationV1, type AuthorizationV1, type CertificatesV1, type CoordinationV1, type CoreV1 } from './apis.js';
import { loadKubeconfig, type Kubeconfig } from './kubeconfig.js';
import { createKubeRest, type KubeRest } from './rest.js';

export { mergePatch, strategicMergePatch, jsonPatch } from './apis.js';
export type { PatchOptions, CoreV1, CoordinationV1, AuthenticationV1, AuthorizationV1, CertificatesV1 } from './apis.js';

export interface KubeClient {
  config: Kubeconfig;
  rest: KubeRest;
  core: CoreV1;
  coordination: CoordinationV1;
  authentication: AuthenticationV1;
  authorization: AuthorizationV1;
  certificates: CertificatesV1;
  /** The apiserver URL. */
  server: string;
}

/** A client from a kubeconfig file (KUBECONFIG_INVALID when it cannot be used) or an already loaded one. */
export function createKubeClient(source: string | Kubeconfig): KubeClient {
  const config = typeof source === 'string' ? loadKubeconfig(source) : source;
  const rest = createKubeRest(config);
  return {
    config,
    rest,
    core: coreV1(rest),
    coordination: coordinationV1(rest),
    authentication: authenticationV1(rest),
    authorization: authorizationV1(rest),
    certificates: certificatesV1(rest),
    server: config.cluster.server,
  };
}

/** The HTTP status of a failed API call (KubeApiError.statusCode, or a numeric `code` as client-node's ApiException has), else undefined. */
export function httpStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  for (const key of ['statusCode', 'code']) {
    const v = (err as Record<string, unknown>)[key];
    if (typeof v === 'number' && v >= 100 && v < 600) return v;
  }
  return undefined;
}

export const isNotFound = (err: unknown): boolean => httpStatus(err) === 404;
export const isConflict = (err: unknown): boolean => httpStatus(err) === 409;

/** A short description of an API error for logs: the status and the Status message, not the whole body. */
export function apiErrorSummary(err: unknown): string {
  const status = httpStatus(err);
  const body = typeof err === 'object' && err !== null ? (err as { body?: unknown }).body : undefined;
  let message: string | undefined;
  if (typeof body === 'string') {
    try {
      const parsed = JSON.parse(body) as { message?: unknown };
      if (typeof parsed.message === 'string') message = parsed.message;
    } catch {
      message = body.slice(0, 200);
    }
  }
  return status === undefined ? errorMessage(err) : `HTTP ${status}${message ? `: ${message}` : ''}`;
}

/**
 * The agent's apiserver client: @kubernetes/client-node's KubeConfig with the
 * typed CoreV1Api and CoordinationV1Api, plus the helpers every caller needs
 * (patch content types, the HTTP code of a failed call).
 */
import { CoordinationV1Api, CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { KnodeError, errorMessage } from '../../lib/errors.js';

export interface KubeClient {
  kc: KubeConfig;
  core: CoreV1Api;
  coordination: CoordinationV1Api;
  /** The apiserver URL. */
  server: string;
}

export function createKubeClient(source: string | KubeConfig): KubeClient {
  let kc: KubeConfig;
  if (typeof source === 'string') {
    kc = new KubeConfig();
    try {
      kc.loadFromFile(source);
    } catch (err) {
      throw new KnodeError('KUBECONFIG_INVALID', `cannot load kubeconfig ${source}: ${errorMessage(err)}`, { cause: err });
    }
  } else kc = source;
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KnodeError('KUBECONFIG_INVALID', 'kubeconfig has no current cluster');
  return { kc, core: kc.makeApiClient(CoreV1Api), coordination: kc.makeApiClient(CoordinationV1Api), server: cluster.server };
}

/** Options for a strategic merge patch (the client's default is a JSON patch). */
export const strategicMergePatch = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);
export const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** The HTTP status of a failed API call (ApiException.code or a watch's statusCode), else undefined. */
export function httpStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  for (const key of ['code', 'statusCode']) {
    const v = (err as Record<string, unknown>)[key];
    if (typeof v === 'number' && v >= 100 && v < 600) return v;
  }
  return undefined;
}

export const isNotFound = (err: unknown): boolean => httpStatus(err) === 404;
export const isConflict = (err: unknown): boolean => httpStatus(err) === 409;

/** A short description of an API error for logs (client-node puts the whole body in the message). */
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

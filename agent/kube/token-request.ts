/**
 * The one TokenRequest call of the agent: POST
 * /api/v1/namespaces/{ns}/serviceaccounts/{sa}/token with the pod as the bound
 * object, as the kubelet's projected volume plugin asks for it. Kept in one
 * function so the transport underneath can change without touching callers.
 */
import { KnodeError } from '../../lib/errors.js';
import type { IssuedToken, TokenRequestSpec } from '../pods/tokens.js';
import { apiErrorSummary, type KubeClient } from './client.js';

export async function requestServiceAccountToken(kube: KubeClient, namespace: string, serviceAccount: string, spec: TokenRequestSpec): Promise<IssuedToken> {
  let answer;
  try {
    answer = await kube.core.createNamespacedServiceAccountToken({
      namespace,
      name: serviceAccount,
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: {
          audiences: spec.audiences,
          expirationSeconds: spec.expirationSeconds,
          boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: spec.boundPod.name, uid: spec.boundPod.uid },
        },
      },
    });
  } catch (err) {
    throw new KnodeError('TOKEN_REQUEST', `failed to fetch token: ${apiErrorSummary(err)}`, { cause: err });
  }
  const token = answer.status?.token;
  const expires = answer.status?.expirationTimestamp;
  if (token === undefined || token === '' || expires === undefined) {
    throw new KnodeError('TOKEN_REQUEST', `failed to fetch token: the TokenRequest answer for ${namespace}/${serviceAccount} has no token or expiration`);
  }
  return { token, expiresAtMs: new Date(expires).getTime(), expirationSeconds: answer.spec?.expirationSeconds ?? spec.expirationSeconds };
}

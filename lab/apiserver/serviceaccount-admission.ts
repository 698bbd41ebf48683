/**
 * The ServiceAccount admission plugin on pod create, as upstream's
 * (plugin/pkg/admission/serviceaccount):
 *
 * - serviceAccountName defaults to `default`; the service account must exist
 *   (for `default`, looked up a few times over ~1.5 s, since the serviceaccount
 *   controller makes it right after the namespace), else the pod is Forbidden:
 *   `error looking up service account <ns>/<name>: serviceaccount "<name>" not found`.
 * - Unless automountServiceAccountToken is false on the pod (or, when the pod
 *   does not say, on the service account): a `kube-api-access-<5 random>`
 *   projected volume (token 3607 s, configMap kube-root-ca.crt ca.crt,
 *   downwardAPI namespace; defaultMode 0644) and its read-only mount at
 *   /var/run/secrets/kubernetes.io/serviceaccount in every init and app
 *   container that has no mount there yet.
 * - The service account's imagePullSecrets go to a pod that has none.
 * - Mirror pods (kubernetes.io/config.mirror) are left alone.
 *
 * `mountServiceAccountToken` is pure; `admitPod` does the lookup.
 */
import { randomInt } from 'node:crypto';
import { ApiError } from './errors.js';
import type { StatusCause } from './errors.js';
import { getArray, getMap, getString, isObject } from './object.js';
import type { Json, JsonObject, KubeObject } from './object.js';

export const tokenMountPath = '/var/run/secrets/kubernetes.io/serviceaccount';
export const tokenVolumePrefix = 'kube-api-access-';
export const rootCAConfigMap = 'kube-root-ca.crt';
const mirrorAnnotation = 'kubernetes.io/config.mirror';
const nameChars = 'bcdfghjklmnpqrstvwxz2456789';

export function randomVolumeSuffix(): string {
  let s = '';
  for (let i = 0; i < 5; i++) s += nameChars[randomInt(nameChars.length)];
  return s;
}

/** The projected volume the plugin adds (upstream's TokenVolumeSource). */
export function tokenVolume(name: string): JsonObject {
  return {
    name,
    projected: {
      defaultMode: 0o644,
      sources: [
        { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
        { configMap: { name: rootCAConfigMap, items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
        { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
      ],
    },
  };
}

/** Whether the token is mounted: the pod's setting wins, then the service account's, else true. Pure. */
export function shouldAutomount(podSpec: JsonObject, sa: KubeObject): boolean {
  const p = podSpec.automountServiceAccountToken;
  if (typeof p === 'boolean') return p;
  const s = sa.automountServiceAccountToken;
  if (typeof s === 'boolean') return s;
  return true;
}

/** Adds the token volume and mounts to `spec` (in place), as upstream's mountServiceAccountToken. Pure but for `suffix`. */
export function mountServiceAccountToken(spec: JsonObject, suffix: string): void {
  const volumes = (getArray(spec, 'volumes') ?? []).filter(isObject);
  const existing = volumes.find((v) => (getString(v, 'name') ?? '').startsWith(tokenVolumePrefix));
  const volumeName = existing ? getString(existing, 'name')! : `${tokenVolumePrefix}${suffix}`;
  let needsVolume = false;
  for (const field of ['initContainers', 'containers']) {
    for (const c of getArray(spec, field) ?? []) {
      if (!isObject(c)) continue;
      const mounts = (getArray(c, 'volumeMounts') ?? []) as Json[];
      if (mounts.some((m) => isObject(m) && m.mountPath === tokenMountPath)) continue;
      c.volumeMounts = [...mounts, { name: volumeName, readOnly: true, mountPath: tokenMountPath }];
      needsVolume = true;
    }
  }
  if (!existing && needsVolume) spec.volumes = [...(getArray(spec, 'volumes') ?? []), tokenVolume(volumeName)];
}

export interface AdmissionLookup {
  serviceAccount(namespace: string, name: string): Promise<KubeObject | undefined>;
}

async function findServiceAccount(lookup: AdmissionLookup, namespace: string, name: string): Promise<KubeObject | undefined> {
  const attempts = name === 'default' ? 10 : 1;
  const interval = 100 + randomInt(100);
  for (let i = 0; i < attempts; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, interval));
    const sa = await lookup.serviceAccount(namespace, name);
    if (sa) return sa;
  }
  return undefined;
}

/** Runs the plugin on a pod being created (after defaulting). Throws Forbidden when the service account is missing. */
export async function admitPod(pod: KubeObject, lookup: AdmissionLookup, suffix: () => string = randomVolumeSuffix): Promise<void> {
  if (pod.metadata.annotations?.[mirrorAnnotation] !== undefined) return;
  const spec = getMap(pod, 'spec') ?? {};
  pod.spec = spec;
  const namespace = pod.metadata.namespace ?? 'default';
  const saName = getString(spec, 'serviceAccountName') || 'default';
  spec.serviceAccountName = saName;
  spec.serviceAccount = saName;
  const sa = await findServiceAccount(lookup, namespace, saName);
  if (!sa) {
    const podName = pod.metadata.name ?? '';
    throw new ApiError('Forbidden', `pods "${podName}" is forbidden: error looking up service account ${namespace}/${saName}: serviceaccount "${saName}" not found`, {
      name: podName,
      group: '',
      kind: 'pods',
    });
  }
  if (shouldAutomount(spec, sa)) mountServiceAccountToken(spec, suffix());
  const pullSecrets = getArray(sa, 'imagePullSecrets');
  if ((getArray(spec, 'imagePullSecrets') ?? []).length === 0 && pullSecrets && pullSecrets.length > 0) {
    spec.imagePullSecrets = pullSecrets.filter(isObject).map((s) => ({ name: getString(s, 'name') ?? '' }));
  }
}

/** Validation of serviceAccountToken projections in a pod spec (upstream: at least 10 minutes, at most 2^32 s, a path). Pure. */
export function projectedTokenErrors(spec: unknown, minSeconds = 600, base = 'spec'): StatusCause[] {
  const causes: StatusCause[] = [];
  (getArray(spec, 'volumes') ?? []).forEach((v, i) => {
    (getArray(getMap(v, 'projected'), 'sources') ?? []).forEach((s, j) => {
      const tok = getMap(s, 'serviceAccountToken');
      if (!tok) return;
      const field = `${base}.volumes[${i}].projected.sources[${j}].serviceAccountToken`;
      const exp = tok.expirationSeconds;
      if (typeof exp === 'number' && exp < minSeconds) {
        causes.push({ field: `${field}.expirationSeconds`, message: `Invalid value: ${exp}: may not specify a duration less than ${minSeconds === 600 ? '10 minutes' : `${minSeconds} seconds`}` });
      } else if (typeof exp === 'number' && exp > 2 ** 32) {
        causes.push({ field: `${field}.expirationSeconds`, message: `Invalid value: ${exp}: may not specify a duration larger than 2^32 seconds` });
      }
      if (!getString(tok, 'path')) causes.push({ reason: 'FieldValueRequired', field: `${field}.path`, message: 'Required value' });
    });
  });
  return causes;
}

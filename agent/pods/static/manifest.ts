/**
 * Static pod manifests: one file → one pod, as upstream's file source reads
 * them (pkg/kubelet/config/file.go + common.go). Pure.
 *
 * Design notes:
 * - A manifest is YAML or JSON (JSON is YAML), one `apiVersion: v1, kind: Pod`
 *   object. It is validated with the apiserver's own rules (name, containers)
 *   and defaulted with the apiserver's pod defaulters (lab/apiserver), so the
 *   workers see the same shape as a pod from the apiserver.
 * - UID: unless the manifest sets one, the hex MD5 of the decoded object (keys
 *   sorted), `host:<node>` and `file:<path>` — upstream hashes the same three
 *   things. The same content on the same node from the same file keeps its UID
 *   across agent restarts (restart safety); an edit gives a new UID (the old pod
 *   is killed, the new one started, as upstream). The UID is also the config
 *   hash (annotation kubernetes.io/config.hash), which a mirror pod carries as
 *   kubernetes.io/config.mirror.
 * - Name: `<name>-<node name lowercased>`; namespace `default` when missing;
 *   spec.nodeName = the node; a NoExecute `Exists` toleration (static pods are
 *   not evicted for node problems); status.phase Pending.
 */
import { createHash } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { KnodeError, errorMessage } from '../../../lib/errors.js';
import { defaultPodSpec } from '../../../lab/apiserver/defaults.js';
import { isObject, type JsonObject } from '../../../lab/apiserver/object.js';
import { nameErrors, podSpecErrors } from '../../../lab/apiserver/validation.js';
import { stableStringify } from '../hash.js';

export const configSourceAnnotation = 'kubernetes.io/config.source';
export const configHashAnnotation = 'kubernetes.io/config.hash';
export const configSeenAnnotation = 'kubernetes.io/config.seen';
export const configMirrorAnnotation = 'kubernetes.io/config.mirror';
/** The value of kubernetes.io/config.source for pods from --pod-manifest-path. */
export const fileSource = 'file';

/** `<name>-<node>` as upstream's generatePodName: unique among nodes. */
export function staticPodName(name: string, nodeName: string): string {
  return `${name}-${nodeName.toLowerCase()}`;
}

/** upstream's deterministic UID of a pod read from a file: MD5 over the decoded object, the host and the file. */
export function staticPodUid(manifest: unknown, nodeName: string, path: string): string {
  return createHash('md5').update(stableStringify(manifest)).update(`host:${nodeName}`).update(`file:${path}`).digest('hex');
}

/** A pod that came from a file (or any non-apiserver source). */
export function isStaticPod(pod: V1Pod): boolean {
  const source = pod.metadata?.annotations?.[configSourceAnnotation];
  return source !== undefined && source !== 'api';
}

/** A mirror pod: the apiserver's copy of a static pod. */
export function isMirrorPod(pod: V1Pod): boolean {
  return pod.metadata?.annotations?.[configMirrorAnnotation] !== undefined;
}

export function configHash(pod: V1Pod): string {
  return pod.metadata?.annotations?.[configHashAnnotation] ?? pod.metadata?.uid ?? '';
}

function invalid(path: string, message: string, cause?: unknown): KnodeError {
  return new KnodeError('STATIC_POD_INVALID', `static pod manifest ${path}: ${message}`, { ...(cause !== undefined ? { cause } : {}), details: { path } });
}

export interface ManifestContext {
  /** The file's path (part of the UID). */
  path: string;
  nodeName: string;
  /** kubernetes.io/config.seen (RFC 3339 with nanoseconds, as upstream). */
  seen: string;
}

/** Parses, validates and defaults one manifest file's text. Throws KnodeError STATIC_POD_INVALID. */
export function parseManifest(text: string, ctx: ManifestContext): V1Pod {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw invalid(ctx.path, `not YAML or JSON: ${errorMessage(err).split('\n')[0] ?? ''}`, err);
  }
  if (!isObject(doc)) throw invalid(ctx.path, 'not an object (expected a v1 Pod)');
  if (doc.apiVersion !== 'v1' || doc.kind !== 'Pod') throw invalid(ctx.path, `expected apiVersion v1, kind Pod (got ${String(doc.apiVersion)}, ${String(doc.kind)})`);
  const meta: JsonObject = isObject(doc.metadata) ? { ...doc.metadata } : {};
  const problems: string[] = [];
  const name = typeof meta.name === 'string' ? meta.name : '';
  if (name === '') problems.push('metadata.name: Required value');
  else for (const e of nameErrors('dns1123-subdomain', staticPodName(name, ctx.nodeName))) problems.push(`metadata.name: Invalid value: "${name}": ${e}`);
  if (meta.namespace !== undefined && (typeof meta.namespace !== 'string' || nameErrors('dns1123-label', meta.namespace).length > 0)) problems.push(`metadata.namespace: Invalid value: "${String(meta.namespace)}"`);
  for (const c of podSpecErrors(doc.spec)) problems.push(`${c.field ?? ''}: ${c.message}`);
  if (problems.length > 0) throw invalid(ctx.path, `invalid pod: ${problems.join('; ')}`);

  const uid = typeof meta.uid === 'string' && meta.uid !== '' ? meta.uid : staticPodUid(doc, ctx.nodeName, ctx.path);
  const annotations: Record<string, string> = {};
  if (isObject(meta.annotations)) for (const [k, v] of Object.entries(meta.annotations)) if (typeof v === 'string') annotations[k] = v;
  annotations[configHashAnnotation] = uid;
  annotations[configSourceAnnotation] = fileSource;
  annotations[configSeenAnnotation] = ctx.seen;

  const spec = defaultPodSpec(isObject(doc.spec) ? doc.spec : {});
  spec.nodeName = ctx.nodeName;
  const tolerations = Array.isArray(spec.tolerations) ? [...spec.tolerations] : [];
  if (!tolerations.some((t) => isObject(t) && t.operator === 'Exists' && t.effect === 'NoExecute' && t.key === undefined)) tolerations.push({ operator: 'Exists', effect: 'NoExecute' });
  spec.tolerations = tolerations;

  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { ...meta, name: staticPodName(name, ctx.nodeName), namespace: typeof meta.namespace === 'string' ? meta.namespace : 'default', uid, annotations },
    spec,
    status: { phase: 'Pending' },
  };
  return pod as unknown as V1Pod;
}

/** RFC 3339 with nanoseconds, as upstream writes kubernetes.io/config.seen. */
export function seenTimestamp(ms: number, nanosInMs = 0): string {
  const iso = new Date(ms).toISOString(); // 2024-01-02T03:04:05.678Z
  const frac = `${iso.slice(20, 23)}${String(nanosInMs).padStart(6, '0')}`.replace(/0+$/, '');
  return `${iso.slice(0, 19)}${frac === '' ? '' : `.${frac}`}Z`;
}

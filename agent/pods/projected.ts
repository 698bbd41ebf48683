/**
 * Projected volumes (`kubernetes.io~projected/<name>`), as upstream's projected
 * volume plugin builds them: one payload from several sources —
 * serviceAccountToken (a TokenRequest bound to the pod), configMap, secret and
 * downwardAPI — each file with its item mode or the volume's defaultMode (0644).
 * clusterTrustBundle sources are not supported and fail the set-up clearly.
 *
 * Design notes:
 * - `projectedPayload` is pure: it gets the objects and tokens already fetched
 *   (`ProjectedInputs`); `projectedInputs` does the fetching (lookup, token
 *   source). Errors of every source are collected into one VOLUME_SETUP error,
 *   as upstream aggregates them; the worker turns it into FailedMount and the
 *   pod waits.
 * - The token of a source is asked for on every set-up; the token source caches
 *   and refreshes (tokens.ts), so a refreshed token is rewritten by the atomic
 *   writer on the next pod sync.
 */
import type { V1Pod, V1ServiceAccountTokenProjection, V1Volume } from '@kubernetes/client-node';
import { errorMessage, isKnodeError } from '../../lib/errors.js';
import type { FilePayload } from './atomic-writer.js';
import type { TokenRequestSpec, TokenSource } from './tokens.js';
import type { ObjectLookup } from './types.js';
import { configMapFiles, downwardFiles, secretFiles, volumeError, type ConfigMapData, type DownwardContext, type SecretData } from './volumes.js';

/** Upstream's default expirationSeconds of a serviceAccountToken projection. */
export const defaultTokenExpirationSeconds = 3600;
/** Upstream's lower bound (validation: "may not specify a duration less than 10 minutes"). */
export const minTokenExpirationSeconds = 600;

export interface ProjectedInputs extends DownwardContext {
  /** ConfigMaps by name (undefined: not found). */
  configMaps: ReadonlyMap<string, ConfigMapData | undefined>;
  secrets: ReadonlyMap<string, SecretData | undefined>;
  /** Tokens by the index of their source in `projected.sources`. */
  tokens: ReadonlyMap<number, string>;
}

/** The TokenRequest for a serviceAccountToken source of `pod`. Throws on an expiration below `minSeconds`. Pure. */
export function tokenRequestSpec(pod: V1Pod, src: V1ServiceAccountTokenProjection, minSeconds = minTokenExpirationSeconds): TokenRequestSpec {
  const expirationSeconds = src.expirationSeconds ?? defaultTokenExpirationSeconds;
  if (!Number.isInteger(expirationSeconds) || expirationSeconds < minSeconds) {
    throw new Error(`serviceAccountToken expirationSeconds ${expirationSeconds} is below the minimum of ${minSeconds} seconds`);
  }
  return {
    audiences: src.audience !== undefined && src.audience !== '' ? [src.audience] : [],
    expirationSeconds,
    boundPod: { name: pod.metadata?.name ?? '', uid: pod.metadata?.uid ?? '' },
  };
}

/** The files of a projected volume from already-fetched inputs. Pure; throws one VOLUME_SETUP error for all failing sources. */
export function projectedPayload(pod: V1Pod, v: V1Volume, inputs: ProjectedInputs): Map<string, FilePayload> {
  const src = v.projected!;
  const defaultMode = src.defaultMode ?? 0o644;
  const out = new Map<string, FilePayload>();
  const errors: string[] = [];
  const add = (files: () => Map<string, FilePayload>): void => {
    try {
      for (const [p, f] of files()) out.set(p, f);
    } catch (err) {
      errors.push(stripPrefix(v.name, err));
    }
  };
  (src.sources ?? []).forEach((s, i) => {
    if (s.serviceAccountToken !== undefined) {
      const token = inputs.tokens.get(i);
      if (token === undefined) errors.push(`no token for source ${i}`);
      else out.set(s.serviceAccountToken.path, { data: Buffer.from(token, 'utf8'), mode: defaultMode });
    } else if (s.configMap !== undefined) {
      const cm = s.configMap;
      add(() => configMapFiles(v.name, cm, inputs.configMaps.get(cm.name ?? ''), defaultMode));
    } else if (s.secret !== undefined) {
      const sec = s.secret;
      add(() => secretFiles(v.name, sec, inputs.secrets.get(sec.name ?? ''), defaultMode));
    } else if (s.downwardAPI !== undefined) {
      const items = s.downwardAPI.items ?? [];
      add(() => downwardFiles(pod, v.name, items, defaultMode, inputs));
    } else if (s.clusterTrustBundle !== undefined) {
      errors.push('clusterTrustBundle projections are not supported by knode-agent');
    }
  });
  if (errors.length > 0) throw volumeError(v.name, errors.join(', '));
  return out;
}

function stripPrefix(volumeName: string, err: unknown): string {
  const msg = errorMessage(err);
  const prefix = `MountVolume.SetUp failed for volume "${volumeName}" : `;
  return msg.startsWith(prefix) ? msg.slice(prefix.length) : msg;
}

export interface ProjectedContext extends DownwardContext {
  lookup: ObjectLookup;
  tokens?: TokenSource;
  /** Lower bound of a token's expirationSeconds (default 600; lower only in tests). */
  minTokenExpirationSeconds?: number;
}

/** Fetches what the sources of a projected volume need; per-source failures become one VOLUME_SETUP error. */
export async function projectedInputs(pod: V1Pod, v: V1Volume, ctx: ProjectedContext): Promise<ProjectedInputs> {
  const ns = pod.metadata?.namespace ?? 'default';
  const configMaps = new Map<string, ConfigMapData | undefined>();
  const secrets = new Map<string, SecretData | undefined>();
  const tokens = new Map<number, string>();
  const errors: string[] = [];
  const sources = v.projected?.sources ?? [];
  for (let i = 0; i < sources.length; i++) {
    const s = sources[i]!;
    try {
      if (s.serviceAccountToken !== undefined) {
        if (ctx.tokens === undefined) throw new Error('service account tokens are not available (no apiserver connection)');
        const sa = pod.spec?.serviceAccountName || 'default';
        const spec = tokenRequestSpec(pod, s.serviceAccountToken, ctx.minTokenExpirationSeconds);
        tokens.set(i, await ctx.tokens.token(ns, sa, spec));
      } else if (s.configMap !== undefined) {
        const name = s.configMap.name ?? '';
        if (!configMaps.has(name)) configMaps.set(name, await ctx.lookup.getConfigMap(ns, name));
      } else if (s.secret !== undefined) {
        const name = s.secret.name ?? '';
        if (!secrets.has(name)) secrets.set(name, await ctx.lookup.getSecret(ns, name));
      }
    } catch (err) {
      errors.push(isKnodeError(err) ? stripPrefix(v.name, err) : errorMessage(err));
    }
  }
  if (errors.length > 0) throw volumeError(v.name, errors.join(', '));
  return { configMaps, secrets, tokens, hostIPs: ctx.hostIPs, podIPs: ctx.podIPs, nodeAllocatable: ctx.nodeAllocatable };
}

/**
 * Ensures a container's image is present per its pull policy, with events and
 * the waiting reasons upstream gives (InvalidImageName, ErrImageNeverPull,
 * ErrImagePull, ImagePullBackOff). Credentials come from a lookup (the pod's
 * imagePullSecrets); each is tried in turn, then an anonymous pull.
 */
import type { V1Container, V1Pod, V1Secret } from '@kubernetes/client-node';
import { errorMessage, KnodeError } from '../../lib/errors.js';
import type { AuthConfig, ImageService } from '../runtime/types.js';
import type { BackOff } from './backoff.js';
import { credentialsFromSecrets, invalidImageMessage, parseImageName, pullPolicy } from './images.js';
import type { CredentialsLookup, EventType, ObjectLookup } from './types.js';

/** A container that cannot start yet, with the waiting reason to show. */
export class StartError extends KnodeError {
  readonly reason: string;
  constructor(reason: string, message: string, options: { cause?: unknown } = {}) {
    super('CONTAINER_START', message, options);
    this.reason = reason;
  }
}

export interface PullContext {
  images: Pick<ImageService, 'imageStatus' | 'pullImage'>;
  credentials: CredentialsLookup | undefined;
  backoff: BackOff;
  event(type: EventType, reason: string, message: string): void;
  now(): number;
  /** The container's waiting reason from the previous attempt, if any. */
  previousReason?: string | undefined;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(3).replace(/\.?0+$/, '')}s`;
}

/** Returns the image reference to create the container from. Throws StartError. */
export async function ensureImage(pod: V1Pod, container: V1Container, ctx: PullContext): Promise<string> {
  const image = container.image ?? '';
  if (parseImageName(image) === undefined) {
    const message = invalidImageMessage(image);
    ctx.event('Warning', 'InspectFailed', message);
    throw new StartError('InvalidImageName', message);
  }
  const policy = pullPolicy(container);
  const present = await ctx.images.imageStatus({ image });
  if (present !== undefined && policy !== 'Always') {
    ctx.event('Normal', 'Pulled', `Container image "${image}" already present on machine`);
    return present.id;
  }
  if (policy === 'Never') {
    const message = `Container image "${image}" is not present with pull policy of Never`;
    ctx.event('Warning', 'ErrImageNeverPull', message);
    throw new StartError('ErrImageNeverPull', message);
  }
  const key = `${pod.metadata?.uid ?? ''}/${image}`;
  if (ctx.backoff.inBackOffSinceUpdate(key, ctx.now()) !== undefined) {
    const message = `Back-off pulling image "${image}"`;
    // Once per back-off period, not on every sync.
    if (ctx.previousReason !== 'ImagePullBackOff') ctx.event('Normal', 'BackOff', message);
    throw new StartError('ImagePullBackOff', message);
  }
  ctx.event('Normal', 'Pulling', `Pulling image "${image}"`);
  const started = ctx.now();
  const auths: (AuthConfig | undefined)[] = [...((await ctx.credentials?.credentialsFor(pod, image)) ?? []), undefined];
  let lastErr: unknown;
  for (const auth of auths) {
    try {
      const ref = await ctx.images.pullImage({ image }, auth === undefined ? {} : { auth });
      const st = await ctx.images.imageStatus({ image });
      ctx.event('Normal', 'Pulled', `Successfully pulled image "${image}" in ${seconds(ctx.now() - started)}${st !== undefined ? `. Image size: ${st.size} bytes.` : ''}`);
      return st?.id ?? ref;
    } catch (err) {
      lastErr = err;
    }
  }
  ctx.backoff.next(key, ctx.now());
  const message = errorMessage(lastErr);
  ctx.event('Warning', 'Failed', `Failed to pull image "${image}": ${message}`);
  ctx.event('Warning', 'Failed', 'Error: ErrImagePull');
  throw new StartError('ErrImagePull', `failed to pull image "${image}": ${message}`, { cause: lastErr });
}

/** Credentials from the pod's imagePullSecrets (kubernetes.io/dockerconfigjson), read through the lookup. */
export function pullSecretCredentials(lookup: ObjectLookup): CredentialsLookup {
  return {
    async credentialsFor(pod, image) {
      const ns = pod.metadata?.namespace ?? 'default';
      const secrets: V1Secret[] = [];
      for (const ref of pod.spec?.imagePullSecrets ?? []) {
        // A missing pull secret is not fatal: the pull is tried without it (as upstream).
        const s = await lookup.getSecret(ns, ref.name ?? '').catch(() => undefined);
        if (s !== undefined) secrets.push(s);
      }
      return credentialsFromSecrets(image, secrets);
    },
  };
}

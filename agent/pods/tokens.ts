/**
 * Service-account tokens for projected volumes, as the kubelet's token
 * manager (pkg/kubelet/token/token_manager.go) keeps them:
 *
 * - One cached TokenRequest answer per (namespace, service account, audiences,
 *   expirationSeconds, bound pod name and uid).
 * - A cached token is refreshed when it is older than 24 h, or when less than
 *   20 % of its TTL (plus a jitter of up to 10 s) is left, i.e. at about 80 %
 *   of its life. The projected volume is set up again on every pod sync, so a
 *   refreshed token reaches the file through the atomic writer.
 * - When a refresh fails and the cached token has not expired yet, the cached
 *   one is served (and the refresh retried on the next sync).
 * - Entries of a pod go when the pod goes (`forgetPod`); expired entries go
 *   on `cleanup`.
 *
 * `requiresRefresh` and `tokenCacheKey` are pure; the TokenRequest call itself is
 * a port (agent/kube/token-request.ts in the agent, a fake in unit tests).
 */

/** What a projected serviceAccountToken source asks for. */
export interface TokenRequestSpec {
  /** Empty: the apiserver's own audiences. */
  audiences: string[];
  expirationSeconds: number;
  boundPod: { name: string; uid: string };
}

/** A TokenRequest's answer. */
export interface IssuedToken {
  token: string;
  /** status.expirationTimestamp, ms since the epoch. */
  expiresAtMs: number;
  /** spec.expirationSeconds of the answer (the TTL the issue time is derived from). */
  expirationSeconds: number;
}

export type TokenRequester = (namespace: string, serviceAccount: string, spec: TokenRequestSpec) => Promise<IssuedToken>;

/** A token source for volume set-up: `token` answers from the cache or asks the apiserver. */
export interface TokenSource {
  token(namespace: string, serviceAccount: string, spec: TokenRequestSpec): Promise<string>;
  forgetPod(uid: string): void;
}

export const maxTokenTTLMs = 24 * 3600 * 1000;
export const maxRefreshJitterMs = 10_000;

export function tokenCacheKey(namespace: string, serviceAccount: string, spec: TokenRequestSpec): string {
  return JSON.stringify([namespace, serviceAccount, spec.audiences, spec.expirationSeconds, spec.boundPod.name, spec.boundPod.uid]);
}

/** Upstream's requiresRefresh: older than 24 h, or within 20 % of the TTL (+ jitter) of its expiry. Pure. */
export function requiresRefresh(t: IssuedToken, nowMs: number, jitterMs: number): boolean {
  const ttlMs = t.expirationSeconds * 1000;
  const issuedAtMs = t.expiresAtMs - ttlMs;
  if (nowMs > issuedAtMs + maxTokenTTLMs - jitterMs) return true;
  return nowMs > t.expiresAtMs - Math.floor((t.expirationSeconds * 20) / 100) * 1000 - jitterMs;
}

export interface TokenManagerOptions {
  now?: () => number;
  /** A jitter in [0, maxRefreshJitterMs) (default: random whole seconds, as upstream). */
  jitterMs?: () => number;
  /** Called when a refresh failed but a cached token is still served. */
  onStaleServed?: (err: unknown, namespace: string, serviceAccount: string) => void;
}

interface Entry {
  issued: IssuedToken;
  podUid: string;
}

export class ServiceAccountTokenManager implements TokenSource {
  private readonly cache = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly jitter: () => number;

  constructor(
    private readonly request: TokenRequester,
    private readonly options: TokenManagerOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.jitter = options.jitterMs ?? (() => Math.floor(Math.random() * (maxRefreshJitterMs / 1000)) * 1000);
  }

  async token(namespace: string, serviceAccount: string, spec: TokenRequestSpec): Promise<string> {
    const key = tokenCacheKey(namespace, serviceAccount, spec);
    const cached = this.cache.get(key);
    if (cached !== undefined && !requiresRefresh(cached.issued, this.now(), this.jitter())) return cached.issued.token;
    try {
      const issued = await this.request(namespace, serviceAccount, spec);
      this.cache.set(key, { issued, podUid: spec.boundPod.uid });
      return issued.token;
    } catch (err) {
      if (cached !== undefined && this.now() < cached.issued.expiresAtMs) {
        this.options.onStaleServed?.(err, namespace, serviceAccount);
        return cached.issued.token;
      }
      throw err;
    }
  }

  forgetPod(uid: string): void {
    for (const [key, e] of this.cache) if (e.podUid === uid) this.cache.delete(key);
  }

  /** Drops expired entries (upstream runs this every minute). */
  cleanup(): void {
    const now = this.now();
    for (const [key, e] of this.cache) if (now >= e.issued.expiresAtMs) this.cache.delete(key);
  }

  get size(): number {
    return this.cache.size;
  }
}

/**
 * When to renew the client certificate, as client-go's certificate manager
 * (util/certificate/certificate_manager.go nextRotationDeadline): at a
 * random point between 70 % and 90 % of the certificate's lifetime, so that
 * nodes made at the same time do not all renew at once. Failed renewals back
 * off exponentially (capped), never faster than `initialMs`. Pure.
 */

export interface Validity {
  notBefore: number;
  notAfter: number;
}

/** notBefore + total × (0.7 + 0.2 × random), random in [0, 1). */
export function rotationDeadline(v: Validity, random: number): number {
  const total = v.notAfter - v.notBefore;
  return v.notBefore + total * (0.7 + 0.2 * Math.min(Math.max(random, 0), 1));
}

/** The certificate is not usable for authentication at `now`. */
export function isExpired(v: Validity, now: number): boolean {
  return now >= v.notAfter;
}

/** Delay before retry number `attempt` (0-based) of a failed request. */
export function retryDelayMs(attempt: number, initialMs = 2000, maxMs = 5 * 60_000): number {
  return Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
}

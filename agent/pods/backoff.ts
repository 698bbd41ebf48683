/**
 * Per-(pod uid, container name) restart back-off, as upstream's flowcontrol.Backoff
 * used by the kubelet: `next` starts at the base (10 s) and doubles up to the
 * maximum (300 s); an entry not touched for 2 × max (10 min of clean running)
 * starts over. A container is "in back-off" while less than the current delay
 * has passed since it finished.
 */
export interface BackOffOptions {
  /** Initial delay, ms (upstream 10 s). */
  baseMs?: number;
  /** Maximum delay, ms (upstream 300 s). */
  maxMs?: number;
}

export interface BackOffView {
  /** The current delay when `key` is still backing off from an exit at `sinceMs`; undefined otherwise. */
  inBackOff(key: string, sinceMs: number, nowMs: number): number | undefined;
}

interface Entry {
  delayMs: number;
  lastUpdateMs: number;
}

export class BackOff implements BackOffView {
  readonly baseMs: number;
  readonly maxMs: number;
  private readonly entries = new Map<string, Entry>();

  constructor(options: BackOffOptions = {}) {
    this.baseMs = options.baseMs ?? 10_000;
    this.maxMs = options.maxMs ?? 300_000;
  }

  private expired(entry: Entry, nowMs: number): boolean {
    return nowMs - entry.lastUpdateMs > 2 * this.maxMs;
  }

  /**
   * Records a (re)start; `nowMs` is the event time (upstream passes the exited
   * container's finishedAt). Returns the delay the next exit will wait.
   */
  next(key: string, nowMs: number): number {
    const entry = this.entries.get(key);
    if (entry === undefined || this.expired(entry, nowMs)) {
      this.entries.set(key, { delayMs: this.baseMs, lastUpdateMs: nowMs });
      return this.baseMs;
    }
    entry.delayMs = Math.min(entry.delayMs * 2, this.maxMs);
    entry.lastUpdateMs = nowMs;
    return entry.delayMs;
  }

  inBackOff(key: string, sinceMs: number, nowMs: number): number | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined || this.expired(entry, nowMs)) return undefined;
    return nowMs - sinceMs < entry.delayMs ? entry.delayMs : undefined;
  }

  /** Like upstream IsInBackOffSinceUpdate: less than the delay since the last `next` (image pulls). */
  inBackOffSinceUpdate(key: string, nowMs: number): number | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined || this.expired(entry, nowMs)) return undefined;
    return nowMs - entry.lastUpdateMs < entry.delayMs ? entry.delayMs : undefined;
  }

  /** Current delay of `key` (undefined when none). */
  get(key: string): number | undefined {
    return this.entries.get(key)?.delayMs;
  }

  /** Forget entries not updated for 2 × max (call now and then). */
  gc(nowMs: number): void {
    for (const [k, e] of this.entries) if (this.expired(e, nowMs)) this.entries.delete(k);
  }

  /** Drop every entry of a pod (it went away). */
  forgetPod(uid: string): void {
    for (const k of this.entries.keys()) if (k.startsWith(`${uid}/`)) this.entries.delete(k);
  }
}

export function backOffKey(uid: string, containerName: string): string {
  return `${uid}/${containerName}`;
}

/** A duration as Go's time.Duration prints it: 10s, 2m40s, 5m0s, 500ms. */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  const totalS = ms / 1000;
  const h = Math.floor(totalS / 3600);
  const m = Math.floor((totalS - h * 3600) / 60);
  const s = totalS - h * 3600 - m * 60;
  const sText = `${Number.isInteger(s) ? s : Number(s.toFixed(3))}s`;
  if (h > 0) return `${h}h${m}m${sText}`;
  if (m > 0) return `${m}m${sText}`;
  return sText;
}

/** The CrashLoopBackOff waiting message, as upstream words it. */
export function crashLoopMessage(delayMs: number, containerName: string, pod: { name: string; namespace: string; uid: string }): string {
  return `back-off ${formatGoDuration(delayMs)} restarting failed container=${containerName} pod=${pod.name}_${pod.namespace}(${pod.uid})`;
}

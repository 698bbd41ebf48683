/**
 * Bounded-frequency runner (upstream k8s.io/kubernetes/pkg/util/async.BoundedFrequencyRunner, as
 * kube-proxy drives it).
 *
 * Design notes
 * - `run()` only requests a sync; the runner decides when: never sooner than minInterval after the
 *   previous sync started (bursts of watch events collapse into one sync), at the latest
 *   maxInterval after it (periodic resync even without events).
 * - A sync is full on the first run, after any failure, and when the last full one is older
 *   than fullInterval (hourly); otherwise partial. The callee (the backend) may still upgrade.
 * - A failed sync is retried after minInterval, doubling per consecutive failure up to
 *   maxRetryInterval (default maxInterval); requests during the back-off do not shorten it.
 * - Only one sync runs at a time; requests during a run are served by a run after it.
 * - Timing is a pure function (`nextRun`) of the runner's state; the clock is injected so the
 *   unit tests drive time by hand.
 */

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export type RunReason = 'initial' | 'requested' | 'periodic' | 'retry';

export interface RunRequest {
  full: boolean;
  reason: RunReason;
}

export interface RunnerTiming {
  minIntervalMs: number;
  maxIntervalMs: number;
  /** Full sync at least this often (default one hour). */
  fullIntervalMs: number;
  /** Cap of the failure back-off (default maxIntervalMs). */
  maxRetryIntervalMs: number;
}

export interface RunnerState {
  /** Start of the previous run (-Infinity before the first). */
  lastStartMs: number;
  /** Start of the previous successful full run. */
  lastFullMs: number;
  pending: boolean;
  /** Consecutive failures; > 0 means retryAtMs is set. */
  failures: number;
  retryAtMs: number;
  needFull: boolean;
}

/** When the next run happens and why. Pure. */
export function nextRun(state: RunnerState, now: number, timing: RunnerTiming): { atMs: number; reason: RunReason } {
  if (state.lastStartMs === -Infinity) return { atMs: now, reason: 'initial' };
  const periodic = state.lastStartMs + timing.maxIntervalMs;
  let best: { atMs: number; reason: RunReason } = { atMs: periodic, reason: 'periodic' };
  if (state.failures > 0) {
    if (state.retryAtMs < best.atMs) best = { atMs: state.retryAtMs, reason: 'retry' };
  } else if (state.pending) {
    const at = Math.max(now, state.lastStartMs + timing.minIntervalMs);
    if (at <= best.atMs) best = { atMs: at, reason: 'requested' };
  }
  // an overdue full sync; not while failing (the retry is full anyway, and a full sync that never
  // succeeded would otherwise be "due" at once and bypass the back-off)
  const fullDue = state.failures > 0 ? Infinity : state.lastFullMs + timing.fullIntervalMs;
  if (fullDue < best.atMs) best = { atMs: Math.max(fullDue, state.lastStartMs + timing.minIntervalMs), reason: 'periodic' };
  return { atMs: Math.max(best.atMs, now), reason: best.reason };
}

/** Whether the run starting at `now` must be full. Pure. */
export function isFullRun(state: RunnerState, now: number, timing: RunnerTiming): boolean {
  return state.needFull || now - state.lastFullMs >= timing.fullIntervalMs;
}

/** The back-off after `failures` consecutive failures. Pure. */
export function retryDelay(failures: number, timing: RunnerTiming): number {
  const base = Math.max(timing.minIntervalMs, 100);
  return Math.min(base * 2 ** Math.max(0, failures - 1), Math.max(timing.maxRetryIntervalMs, base));
}

export interface RunnerOptions {
  minIntervalMs: number;
  maxIntervalMs: number;
  fullIntervalMs?: number;
  maxRetryIntervalMs?: number;
  fn: (req: RunRequest) => Promise<void>;
  /** Called with the error of a failed run (the runner itself never throws). */
  onError?: (err: unknown, req: RunRequest & { failures: number; retryInMs: number }) => void;
  clock?: Clock;
}

export class BoundedFrequencyRunner {
  readonly timing: RunnerTiming;
  private readonly fn: RunnerOptions['fn'];
  private readonly onError: RunnerOptions['onError'];
  private readonly clock: Clock;
  private readonly st: RunnerState = {
    lastStartMs: -Infinity,
    lastFullMs: -Infinity,
    pending: false,
    failures: 0,
    retryAtMs: Infinity,
    needFull: true,
  };
  private timer: unknown;
  private running: Promise<void> | undefined;
  private stopped = true;
  /** Runs completed (successful or not); for tests and metrics. */
  runs = 0;

  constructor(opts: RunnerOptions) {
    this.timing = {
      minIntervalMs: opts.minIntervalMs,
      maxIntervalMs: opts.maxIntervalMs,
      fullIntervalMs: opts.fullIntervalMs ?? 3_600_000,
      maxRetryIntervalMs: opts.maxRetryIntervalMs ?? opts.maxIntervalMs,
    };
    this.fn = opts.fn;
    this.onError = opts.onError;
    this.clock = opts.clock ?? realClock;
  }

  get state(): Readonly<RunnerState> {
    return { ...this.st };
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule();
  }

  /** Request a sync (coalesced, rate-limited). */
  run(): void {
    this.st.pending = true;
    if (!this.running) this.schedule();
  }

  /** Stop scheduling; resolves when a run in progress has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private schedule(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopped || this.running) return;
    const now = this.clock.now();
    const next = nextRun(this.st, now, this.timing);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.running = this.tick(next.reason);
    }, next.atMs - now);
  }

  private async tick(reason: RunReason): Promise<void> {
    const now = this.clock.now();
    const req: RunRequest = { full: isFullRun(this.st, now, this.timing), reason };
    this.st.pending = false;
    this.st.lastStartMs = now;
    try {
      await this.fn(req);
      this.st.failures = 0;
      this.st.retryAtMs = Infinity;
      this.st.needFull = false;
      if (req.full) this.st.lastFullMs = now;
    } catch (err) {
      this.st.failures++;
      this.st.needFull = true;
      const retryInMs = retryDelay(this.st.failures, this.timing);
      this.st.retryAtMs = this.clock.now() + retryInMs;
      try {
        this.onError?.(err, { ...req, failures: this.st.failures, retryInMs });
      } catch {
        // a failing error hook must not stop the loop
      }
    } finally {
      this.runs++;
      this.running = undefined;
      this.schedule();
    }
  }
}

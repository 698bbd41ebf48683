/**
 * A work queue of keys as client-go's: a key added several times before it is
 * processed is processed once; a key added while it is being processed is
 * processed again afterwards (never concurrently); failed keys come back with
 * exponential back-off; `addAfter` schedules a later visit.
 */
import type { Logger } from '../../lib/log.js';
import { errorMessage } from '../../lib/errors.js';
import { apiReason } from './client.js';

export interface WorkQueueOptions {
  name: string;
  logger: Logger;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirtyWhileProcessing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private wake: (() => void) | undefined;
  private stopped = false;

  constructor(private readonly options: WorkQueueOptions) {}

  add(key: string): void {
    if (this.stopped) return;
    if (this.processing.has(key)) {
      this.dirtyWhileProcessing.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.wake?.();
  }

  addAfter(key: string, ms: number): void {
    if (this.stopped) return;
    const existing = this.timers.get(key);
    if (existing) clearTimeout(existing);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, Math.max(0, ms));
    this.timers.set(key, timer);
  }

  private retryLater(key: string): void {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const base = this.options.baseDelayMs ?? 50;
    this.addAfter(key, Math.min(base * 2 ** (n - 1), this.options.maxDelayMs ?? 30_000));
  }

  get length(): number {
    return this.queue.length;
  }

  /** Processes keys one at a time until the signal aborts. */
  async run(worker: (key: string) => Promise<void>, signal: AbortSignal): Promise<void> {
    const stop = (): void => {
      this.stopped = true;
      for (const t of this.timers.values()) clearTimeout(t);
      this.timers.clear();
      this.wake?.();
    };
    signal.addEventListener('abort', stop);
    try {
      while (!this.stopped) {
        const key = this.queue.shift();
        if (key === undefined) {
          await new Promise<void>((r) => (this.wake = r));
          this.wake = undefined;
          continue;
        }
        this.queued.delete(key);
        this.processing.add(key);
        try {
          await worker(key);
          this.failures.delete(key);
        } catch (err) {
          if (this.stopped) break;
          // A conflict only means our cache was behind: expected, retried at once-ish.
          const level = apiReason(err) === 'Conflict' ? 'debug' : 'warn';
          this.options.logger[level]('sync failed; will retry', { queue: this.options.name, key, err: errorMessage(err), attempt: (this.failures.get(key) ?? 0) + 1 });
          this.retryLater(key);
        } finally {
          this.processing.delete(key);
        }
        if (this.dirtyWhileProcessing.delete(key)) this.add(key);
      }
    } finally {
      signal.removeEventListener('abort', stop);
    }
  }
}

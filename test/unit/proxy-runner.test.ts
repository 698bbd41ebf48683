import t from 'tap';
import { BoundedFrequencyRunner, isFullRun, nextRun, retryDelay, type Clock, type RunRequest, type RunnerState, type RunnerTiming } from '../../proxy/runner.js';

/** A hand-driven clock: timers fire only in advance(). */
class FakeClock implements Clock {
  t = 1_000_000;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private seq = 0;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.push({ at: this.t + Math.max(0, ms), fn, id });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== h);
  }
  /** The time the next timer fires at (undefined: none). */
  next(): number | undefined {
    return this.timers.length === 0 ? undefined : Math.min(...this.timers.map((x) => x.at));
  }
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await flush();
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = due.at;
      due.fn();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

const timing: RunnerTiming = { minIntervalMs: 1000, maxIntervalMs: 30_000, fullIntervalMs: 3_600_000, maxRetryIntervalMs: 30_000 };
const base: RunnerState = { lastStartMs: -Infinity, lastFullMs: -Infinity, pending: false, failures: 0, retryAtMs: Infinity, needFull: true };

t.test('nextRun: the pure timing rules', async (t) => {
  t.same(nextRun(base, 5, timing), { atMs: 5, reason: 'initial' });
  const after = { ...base, lastStartMs: 100_000, lastFullMs: 100_000, needFull: false };
  t.same(nextRun(after, 100_010, timing), { atMs: 130_000, reason: 'periodic' }, 'nothing pending: syncPeriod');
  t.same(nextRun({ ...after, pending: true }, 100_010, timing), { atMs: 101_000, reason: 'requested' }, 'not sooner than minSyncPeriod');
  t.same(nextRun({ ...after, pending: true }, 105_000, timing), { atMs: 105_000, reason: 'requested' }, 'at once when min has passed');
  t.same(nextRun({ ...after, pending: true, failures: 2, retryAtMs: 103_000 }, 100_010, timing), { atMs: 103_000, reason: 'retry' }, 'back-off wins over requests');
  t.same(nextRun({ ...after, lastFullMs: -3_550_000 }, 100_010, timing), { atMs: 101_000, reason: 'periodic' }, 'an overdue full sync comes after minSyncPeriod');
  t.same(
    nextRun({ ...after, lastFullMs: -Infinity, failures: 3, retryAtMs: 104_000 }, 100_010, timing),
    { atMs: 104_000, reason: 'retry' },
    'a full sync that never succeeded still backs off',
  );
  t.equal(isFullRun({ ...after }, 100_500, timing), false);
  t.equal(isFullRun({ ...after }, 100_000 + 3_600_000, timing), true, 'hourly');
  t.equal(isFullRun({ ...after, needFull: true }, 100_500, timing), true, 'after a failure');
  t.same([1, 2, 3, 4, 5, 6, 10].map((n) => retryDelay(n, timing)), [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
});

function harness(fail: (n: number) => boolean = () => false) {
  const clock = new FakeClock();
  const calls: (RunRequest & { at: number })[] = [];
  const errors: number[] = [];
  const runner = new BoundedFrequencyRunner({
    minIntervalMs: 1000,
    maxIntervalMs: 30_000,
    clock,
    fn: async (req) => {
      calls.push({ ...req, at: clock.now() });
      if (fail(calls.length)) throw new Error('apply failed');
    },
    onError: (_err, info) => errors.push(info.retryInMs),
  });
  return { clock, calls, errors, runner, rel: () => calls.map((c) => ({ ...c, at: c.at - 1_000_000 })) };
}

t.test('first run at once and full; bursts collapse; minSyncPeriod honoured', async (t) => {
  const h = harness();
  h.runner.start();
  await h.clock.advance(0);
  t.same(h.rel(), [{ full: true, reason: 'initial', at: 0 }]);
  for (let i = 0; i < 50; i++) h.runner.run();
  await h.clock.advance(999);
  t.equal(h.calls.length, 1, 'not before minSyncPeriod');
  await h.clock.advance(1);
  t.same(h.rel()[1], { full: false, reason: 'requested', at: 1000 }, '50 requests → one partial sync');
  await h.clock.advance(5000);
  t.equal(h.calls.length, 2, 'nothing more without requests');
  h.runner.run();
  await h.clock.advance(0);
  t.same(h.rel()[2], { full: false, reason: 'requested', at: 6000 }, 'at once when minSyncPeriod has passed');
  await h.runner.stop();
});

t.test('periodic sync every syncPeriod, full hourly', async (t) => {
  const h = harness();
  h.runner.start();
  await h.clock.advance(0);
  await h.clock.advance(30_000);
  t.same(h.rel()[1], { full: false, reason: 'periodic', at: 30_000 });
  await h.clock.advance(3_600_000);
  const fulls = h.rel().filter((c) => c.full);
  t.equal(fulls.length, 2, 'initial + one hourly full');
  t.equal(fulls[1]!.at, 3_600_000, 'the hourly one, exactly an hour after the first');
  t.equal(h.calls.length, 1 + 3_630_000 / 30_000);
  await h.runner.stop();
});

t.test('failure: retry with back-off, the retry is full, success resets', async (t) => {
  const h = harness((n) => n >= 2 && n <= 4);
  h.runner.start();
  await h.clock.advance(0);
  h.runner.run();
  await h.clock.advance(1000); // call 2 fails
  t.same(h.errors, [1000]);
  t.equal(h.runner.state.failures, 1);
  h.runner.run();
  await h.clock.advance(999);
  t.equal(h.calls.length, 2, 'a request does not shorten the back-off');
  await h.clock.advance(1); // call 3 (retry) fails
  t.same(h.rel()[2], { full: true, reason: 'retry', at: 2000 });
  await h.clock.advance(2000); // call 4 fails after 2 s
  t.same(h.errors, [1000, 2000, 4000]);
  await h.clock.advance(4000); // call 5 succeeds
  t.same(h.rel()[4], { full: true, reason: 'retry', at: 8000 });
  t.equal(h.runner.state.failures, 0);
  h.runner.run();
  await h.clock.advance(1000);
  t.same(h.rel()[5], { full: false, reason: 'requested', at: 9000 }, 'partial again after a success');
  await h.runner.stop();
});

t.test('one run at a time: requests during a run are served after it', async (t) => {
  const clock = new FakeClock();
  let release: () => void = () => undefined;
  let running = 0;
  let maxRunning = 0;
  const calls: number[] = [];
  const runner = new BoundedFrequencyRunner({
    minIntervalMs: 1000,
    maxIntervalMs: 30_000,
    clock,
    fn: async () => {
      calls.push(clock.now());
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise<void>((r) => (release = r));
      running--;
    },
  });
  runner.start();
  await clock.advance(0);
  runner.run();
  runner.run();
  await clock.advance(5000);
  t.equal(calls.length, 1, 'still in the first run');
  release();
  await clock.advance(0);
  t.equal(calls.length, 2, 'the pending request runs as soon as the first ends (min interval already passed)');
  release();
  await clock.advance(0);
  t.equal(maxRunning, 1);
  const stopping = runner.stop();
  await stopping;
  await clock.advance(100_000);
  t.equal(calls.length, 2, 'nothing after stop');
  t.equal(clock.next(), undefined);
});

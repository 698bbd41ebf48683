/** Restart back-off: 10 s doubling to 300 s, reset after 10 min, upstream's message. */
import t from 'tap';
import { BackOff, backOffKey, crashLoopMessage, formatGoDuration } from '../../agent/pods/backoff.js';

t.test('doubling from 10 s to the 300 s cap', async (t) => {
  const b = new BackOff();
  const key = backOffKey('uid-1', 'app');
  let now = 1_000_000;
  const delays: number[] = [];
  for (let i = 0; i < 8; i++) {
    delays.push(b.next(key, now));
    now += 1000;
  }
  t.same(delays, [10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
});

t.test('in back-off while less than the delay has passed since the exit', async (t) => {
  const b = new BackOff();
  const key = backOffKey('uid-1', 'app');
  t.equal(b.inBackOff(key, 0, 0), undefined, 'no entry: not in back-off (first restart is immediate)');
  b.next(key, 100_000); // restarted after the first exit
  t.equal(b.inBackOff(key, 105_000, 106_000), 10_000, 'exited again at 105 s, 1 s later: back-off 10 s');
  t.equal(b.inBackOff(key, 105_000, 114_999), 10_000);
  t.equal(b.inBackOff(key, 105_000, 115_000), undefined, '10 s after the exit: may restart');
  t.equal(b.next(key, 105_000), 20_000);
  t.equal(b.inBackOff(key, 106_000, 125_000), 20_000);
});

t.test('reset after 10 minutes (2 x max) without a restart', async (t) => {
  const b = new BackOff();
  const key = 'p/c';
  for (let i = 0; i < 6; i++) b.next(key, i);
  t.equal(b.get(key), 300_000);
  t.equal(b.next(key, 5 + 600_000), 300_000, 'exactly 10 min: not yet expired');
  t.equal(b.next(key, 5 + 600_000 + 600_001), 10_000, 'more than 10 min of clean running: back to 10 s');
  t.equal(b.inBackOff(key, 0, 10 * 600_000), undefined, 'expired entries are not in back-off');
  b.gc(100 * 600_000);
  t.equal(b.get(key), undefined, 'gc drops expired entries');
});

t.test('configurable base for tests; forgetPod', async (t) => {
  const b = new BackOff({ baseMs: 1000, maxMs: 4000 });
  t.same([b.next('u/a', 0), b.next('u/a', 1), b.next('u/a', 2), b.next('u/a', 3)], [1000, 2000, 4000, 4000]);
  b.next('v/a', 0);
  b.forgetPod('u');
  t.equal(b.get('u/a'), undefined);
  t.equal(b.get('v/a'), 1000);
  t.equal(b.inBackOffSinceUpdate('v/a', 999), 1000);
  t.equal(b.inBackOffSinceUpdate('v/a', 1000), undefined);
});

t.test('messages as upstream', async (t) => {
  t.same([10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 500, 0].map(formatGoDuration), ['10s', '20s', '40s', '1m20s', '2m40s', '5m0s', '500ms', '0s']);
  t.equal(
    crashLoopMessage(20_000, 'app', { name: 'web', namespace: 'default', uid: 'u-1' }),
    'back-off 20s restarting failed container=app pod=web_default(u-1)',
  );
});

/** The CRI log format and /containerLogs selection (tail, since, timestamps, limitBytes, partial lines). */
import t from 'tap';
import { LineSplitter, LogSelector, parseContainerLogQuery, parseCriLogLine, type LogSelection } from '../../agent/server/cri-log.js';

const b = (s: string): Buffer => Buffer.from(s);

function render(lines: string[], sel: LogSelection): string {
  const s = new LogSelector(sel);
  const out: Buffer[] = [];
  for (const l of lines) out.push(...s.push(b(l)));
  out.push(...s.end());
  return Buffer.concat(out).toString();
}

const file = [
  '2026-01-01T00:00:01.000000001Z stdout F one',
  '2026-01-01T00:00:02.000000002Z stderr F two',
  '2026-01-01T00:00:03.000000003Z stdout P thr',
  '2026-01-01T00:00:03.500000000Z stderr F four',
  '2026-01-01T00:00:04.000000004Z stdout F ee',
  '2026-01-01T00:00:05.000000005Z stdout F five',
];

t.test('parses a CRI line', async (t) => {
  const l = parseCriLogLine(b('2026-01-01T00:00:01.123456789Z stderr P hello world'))!;
  t.equal(l.time, '2026-01-01T00:00:01.123456789Z');
  t.equal(l.stream, 'stderr');
  t.equal(l.partial, true);
  t.equal(l.content.toString(), 'hello world');
  t.equal(l.timeMs, Date.parse('2026-01-01T00:00:01.123Z'));
  t.equal(parseCriLogLine(b('2026-01-01T00:00:01Z stdout F '))!.content.toString(), '', 'empty line');
  t.equal(parseCriLogLine(b('2026-01-01T00:00:01Z stdout plain text'))!.content.toString(), 'plain text', 'no tag: full line');
  t.equal(parseCriLogLine(b('not a log line')), undefined);
  t.equal(parseCriLogLine(b('2026-01-01T00:00:01Z stdin F x')), undefined, 'unknown stream');
  t.equal(parseCriLogLine(b('')), undefined);
});

t.test('joins partial lines of a stream; other streams interleave', async (t) => {
  t.equal(render(file, {}), 'one\ntwo\nfour\nthree\nfive\n');
});

t.test('tailLines counts logical lines', async (t) => {
  t.equal(render(file, { tailLines: 2 }), 'three\nfive\n');
  t.equal(render(file, { tailLines: 0 }), '');
  t.equal(render(file, { tailLines: 100 }), 'one\ntwo\nfour\nthree\nfive\n');
});

t.test('since keeps lines at or after the time (a joined line has its first fragment\'s time)', async (t) => {
  t.equal(render(file, { sinceMs: Date.parse('2026-01-01T00:00:03Z') }), 'four\nthree\nfive\n');
  t.equal(render(file, { sinceMs: Date.parse('2026-01-01T00:00:03.2Z') }), 'four\nfive\n');
});

t.test('timestamps prefix each logical line once', async (t) => {
  t.equal(render(file.slice(2, 5), { timestamps: true }), '2026-01-01T00:00:03.500000000Z four\n2026-01-01T00:00:03.000000003Z three\n');
});

t.test('limitBytes cuts the output, even mid-line, and stops', async (t) => {
  const s = new LogSelector({ limitBytes: 6 });
  const out = file.flatMap((l) => s.push(b(l)));
  t.equal(Buffer.concat(out).toString(), 'one\ntw');
  t.equal(s.done, true);
  t.equal(render(file, { tailLines: 1, limitBytes: 3 }), 'fiv');
});

t.test('malformed lines are skipped', async (t) => {
  t.equal(render(['garbage', '2026-01-01T00:00:01Z stdout F ok', 'x y z'], {}), 'ok\n');
});

t.test('a tail of a big log keeps only the last lines', async (t) => {
  const s = new LogSelector({ tailLines: 3 });
  for (let i = 0; i < 100_000; i++) s.push(b(`2026-01-01T00:00:01Z stdout F line ${i}`));
  t.equal(Buffer.concat(s.end()).toString(), 'line 99997\nline 99998\nline 99999\n');
});

t.test('flushPartial emits a line that never got its final fragment', async (t) => {
  const s = new LogSelector({});
  t.same(s.push(b('2026-01-01T00:00:01Z stdout P half')), []);
  t.equal(Buffer.concat(s.flushPartial()).toString(), 'half');
});

t.test('LineSplitter keeps an unterminated rest for the next chunk', async (t) => {
  const sp = new LineSplitter();
  t.same(sp.push(b('a\nb')).map(String), ['a']);
  t.equal(sp.pendingBytes, 1);
  t.same(sp.push(b('c\n\nd')).map(String), ['bc', '']);
  sp.reset();
  t.same(sp.push(b('e\n')).map(String), ['e']);
});

t.test('query parameters', async (t) => {
  const now = Date.parse('2026-01-01T00:01:00Z');
  t.same(parseContainerLogQuery(new URLSearchParams('follow=true&tailLines=10&timestamps=1&limitBytes=5&sinceSeconds=30'), now), {
    follow: true,
    previous: false,
    timestamps: true,
    tailLines: 10,
    sinceMs: now - 30_000,
    limitBytes: 5,
  });
  t.same(parseContainerLogQuery(new URLSearchParams('sinceTime=2026-01-01T00:00:10Z&previous=true'), now).sinceMs, Date.parse('2026-01-01T00:00:10Z'));
  t.throws(() => parseContainerLogQuery(new URLSearchParams('tailLines=x'), now), /tailLines/);
  t.throws(() => parseContainerLogQuery(new URLSearchParams('tailLines=-1'), now), /tailLines/);
  t.throws(() => parseContainerLogQuery(new URLSearchParams('limitBytes=0'), now), /limitBytes/);
  t.throws(() => parseContainerLogQuery(new URLSearchParams('follow=maybe'), now), /follow/);
  t.throws(() => parseContainerLogQuery(new URLSearchParams('sinceTime=yesterday'), now), /sinceTime/);
  t.throws(() => parseContainerLogQuery(new URLSearchParams('sinceTime=2026-01-01T00:00:10Z&sinceSeconds=4'), now), /at most one/);
});

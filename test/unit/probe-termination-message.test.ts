/** Termination messages: which source wins, the CRI log tail, the file read back (no root: a temp dir). */
import t from 'tap';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exitedContainerMessage, parseCriLogTail, terminationLogMount, terminationMessage } from '../../agent/pods/termination-message.js';
import { terminationMessagePathAnnotation, terminationMessagePolicyAnnotation } from '../../agent/pods/labels.js';

t.test('which source wins', async (t) => {
  t.equal(terminationMessage({ file: 'bye', fallbackToLogs: true, logTail: () => 'logs' }), 'bye', 'the file when it has content');
  t.equal(terminationMessage({ file: '', fallbackToLogs: true, logTail: () => 'logs' }), 'logs', 'empty file + fallback: the logs');
  t.equal(terminationMessage({ file: undefined, fallbackToLogs: true, logTail: () => 'logs' }), 'logs', 'no file + fallback: the logs');
  t.equal(terminationMessage({ file: '', fallbackToLogs: false, logTail: () => 'logs' }), '', 'policy File: nothing');
});

t.test('CRI log tail: content only, partial lines joined, last 80 lines, 2048 bytes', async (t) => {
  const log = [
    '2026-11-23T10:00:00.000000000Z stdout F first',
    '2026-11-23T10:00:00.100000000Z stderr P par',
    '2026-11-23T10:00:00.200000000Z stderr F tial',
    '2026-11-23T10:00:00.300000000Z stdout F ',
    '',
  ].join('\n');
  t.equal(parseCriLogTail(log), 'first\npartial\n\n');
  const many = Array.from({ length: 100 }, (_, i) => `2026-11-23T10:00:00Z stdout F line ${i}`).join('\n');
  const tail = parseCriLogTail(many);
  t.equal(tail.split('\n')[0], 'line 20', 'the last 80 lines');
  const big = Array.from({ length: 10 }, () => `2026-11-23T10:00:00Z stdout F ${'x'.repeat(500)}`).join('\n');
  t.equal(Buffer.byteLength(parseCriLogTail(big)), 2048, 'at most 2048 bytes');
});

t.test('the termination-log file: created writable, read back into the message', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'knode-tlog-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const m = (await terminationLogMount(root, 'uid-1', { name: 'app' }))!;
  t.equal(m.containerPath, '/dev/termination-log', 'the default path');
  t.match(m.hostPath, join(root, 'pods', 'uid-1', 'containers', 'app') + '/');
  t.equal((await stat(m.hostPath)).mode & 0o777, 0o666);
  t.equal(await terminationLogMount(root, 'uid-1', { name: 'app', terminationMessagePath: '' }), undefined, 'an empty path: no file');
  const log = join(root, 'app.log');
  await writeFile(log, '2026-11-23T10:00:00Z stderr F it broke\n');
  const base = { exitCode: 1, reason: 'Error', message: '', mounts: [m], logPath: log, annotations: { [terminationMessagePathAnnotation]: '/dev/termination-log', [terminationMessagePolicyAnnotation]: 'File' } };
  t.equal(await exitedContainerMessage(base), '', 'empty file, policy File');
  t.equal(await exitedContainerMessage({ ...base, annotations: { ...base.annotations, [terminationMessagePolicyAnnotation]: 'FallbackToLogsOnError' } }), 'it broke\n', 'FallbackToLogsOnError on a failed exit');
  t.equal(await exitedContainerMessage({ ...base, exitCode: 0, annotations: { ...base.annotations, [terminationMessagePolicyAnnotation]: 'FallbackToLogsOnError' } }), '', 'no fallback on success');
  await writeFile(m.hostPath, 'goodbye');
  t.equal(await exitedContainerMessage(base), 'goodbye');
  t.equal(await exitedContainerMessage({ ...base, message: 'runtime says' }), 'runtime says: goodbye', 'appended to the runtime message');
  await writeFile(m.hostPath, 'y'.repeat(5000));
  t.equal((await exitedContainerMessage(base)).length, 4096, 'at most 4096 bytes');
});

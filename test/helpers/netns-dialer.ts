/**
 * A probe `Dialer` whose connections start inside a test's network namespace:
 * the agent's pod workers run in the test process (root namespace), the pods'
 * IPs exist only inside the namespace, and routes into it from the root
 * namespace are off limits.
 *
 * How: a small node process runs under `nsenter --net=<ns>` with an IPC
 * channel; for each dial it connects (paused, so it reads nothing) and passes
 * the connected socket back over IPC (SCM_RIGHTS). The test process then talks
 * on an ordinary TCP socket of the namespace. Errors come back as errno codes
 * and become the same DIAL_FAILED errors as the direct dialer's.
 * The process is killed in teardown (and exits when the test process goes).
 */
import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Dialer } from '../../agent/pods/probes/dial.js';
import { dialError } from '../../agent/pods/probes/dial.js';
import type { Teardownable } from './containerd.js';

const childCode = `
const net = require('node:net');
process.on('message', (m) => {
  const s = net.connect({ host: m.host, port: m.port });
  s.pause();
  let done = false;
  const finish = (msg, handle) => { if (done) return; done = true; clearTimeout(timer); if (handle) process.send(msg, handle); else { s.destroy(); process.send(msg); } };
  const timer = setTimeout(() => finish({ id: m.id, code: 'ETIMEDOUT', message: 'i/o timeout' }), m.timeoutMs);
  s.once('connect', () => finish({ id: m.id }, s));
  s.once('error', (e) => finish({ id: m.id, code: e.code, message: e.message }));
});
process.on('disconnect', () => process.exit(0));
`;

interface Reply {
  id: number;
  code?: string;
  message?: string;
}

export function netnsDialer(t: Teardownable, netnsPath: string): Dialer {
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // no test loaders in the helper
  const child = spawn('nsenter', [`--net=${netnsPath}`, process.execPath, '-e', childCode], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  child.unref();
  child.channel?.unref();
  const pending = new Map<number, { host: string; port: number; resolve: (s: Socket) => void; reject: (e: Error) => void }>();
  let seq = 0;
  child.on('message', (msg: Reply, handle: unknown) => {
    const p = pending.get(msg.id);
    if (p === undefined) return;
    pending.delete(msg.id);
    if (msg.code === undefined && handle !== undefined) p.resolve(handle as Socket);
    else p.reject(dialError(p.host, p.port, msg.code, msg.message ?? 'dial failed'));
  });
  child.on('exit', () => {
    for (const p of pending.values()) p.reject(new Error('netns dialer exited'));
    pending.clear();
  });
  return (host, port, timeoutMs) =>
    new Promise<Socket>((resolve, reject) => {
      if (child.exitCode !== null || !child.connected) return reject(new Error('netns dialer is not running'));
      const id = ++seq;
      pending.set(id, { host, port, resolve, reject });
      child.send({ id, host, port, timeoutMs });
    });
}

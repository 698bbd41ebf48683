/**
 * A knode program running inside a lab node: started with `nsenter --net=<node
 * netns> node <bundle> ...` so that it, and whatever it programs (routes,
 * iptables/nft rules), lives in the node's network namespace. Its command line
 * names the lab's dirs, so `down` finds it.
 *
 * Idempotent: one that runs (pid file + command-line marker) in the node's
 * current namespace, with the same arguments, is left alone; one left in a
 * namespace that was deleted and made anew, or started with other arguments,
 * is restarted.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { KnodeError } from '../../lib/errors.js';
import { netnsPath, type LabNode } from './layout.js';
import { readLogTail } from './logs.js';
import { daemonFromPidFile, inNetns, readProc, spawnDaemon, terminate, waitFor } from './proc.js';

export interface NodeDaemonSpec {
  node: LabNode;
  /** Program name for messages, e.g. knode-agent. */
  program: string;
  /** Arguments after `node`: the bundle, then its flags. */
  args: string[];
  pidFile: string;
  log: string;
  /** A path only this daemon's command line names (checked against pid reuse). */
  marker: string;
  /** Extra environment (on top of the lab's own). */
  env?: Record<string, string>;
}

export function nodeDaemonPid(spec: Pick<NodeDaemonSpec, 'pidFile' | 'marker'>): Promise<number | undefined> {
  return daemonFromPidFile(spec.pidFile, spec.marker);
}

/** Starts the daemon unless it runs as wanted; returns its pid and whether it was started. */
export async function ensureNodeDaemon(spec: NodeDaemonSpec): Promise<{ pid: number; started: boolean }> {
  let running = await nodeDaemonPid(spec);
  if (running !== undefined) {
    const info = await readProc(running);
    const sameArgs = info !== undefined && info.argv.slice(-spec.args.length).join('\0') === spec.args.join('\0');
    if (!sameArgs || !(await inNetns(running, netnsPath(spec.node.netns)))) {
      await terminate([running], { graceMs: 10_000 });
      running = undefined;
    }
  }
  if (running !== undefined) return { pid: running, started: false };
  await mkdir(dirname(spec.pidFile), { recursive: true });
  const daemon = await spawnDaemon({
    file: 'nsenter',
    args: [`--net=${netnsPath(spec.node.netns)}`, process.execPath, ...spec.args],
    logFile: spec.log,
    pidFile: spec.pidFile,
    ...(spec.env !== undefined ? { env: { ...process.env, ...spec.env } } : {}),
  });
  let exitCode: number | null | undefined;
  void daemon.exited.then((c) => {
    exitCode = c;
  });
  // It must not exit at once (bad flags, missing bundle); it retries anything transient itself.
  await waitFor(async () => exitCode !== undefined, 1500, 100);
  if (exitCode !== undefined) {
    throw new KnodeError('NODE_DAEMON_START_FAILED', `${spec.program} of ${spec.node.name} exited (code ${exitCode}); log ${spec.log}:\n${await readLogTail(spec.log)}`, {
      details: { node: spec.node.name, log: spec.log },
    });
  }
  return { pid: daemon.pid, started: true };
}

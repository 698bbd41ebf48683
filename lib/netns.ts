/**
 * Entering network namespaces.
 *
 * Design note — why there is no worker thread
 * ------------------------------------------
 * A CNI plugin is a fresh process per call: node start ~70 ms, loading `netlink` ~30 ms, while
 * the reference Go plugin does a whole ADD in ~12 ms. A worker_threads Worker costs another
 * isolate plus a second load of the netlink addon (tens of ms), on every call. So knode does the
 * "thread that does nothing else" differently, with the same guarantee:
 *
 * - `withNetnsSync(path, fn)` calls setns(fd, CLONE_NEWNET) on the main thread, runs `fn`
 *   **synchronously**, and setns()es back to the original namespace in a `finally`, before
 *   returning to the event loop. While `fn` runs, no other JavaScript can run (one JS thread, no
 *   await in between), so nothing else observes the foreign namespace.
 * - setns(2) with CLONE_NEWNET changes the namespace of the calling OS thread only. libuv's
 *   threadpool (fs, dns, crypto), V8's GC/compiler threads and koffi's async threads are separate
 *   OS threads created in the original namespace and are never moved. The main thread is the only
 *   one that changes, and only inside this function.
 * - What `fn` does must be complete or bound at return: a netlink socket created inside stays
 *   bound to that namespace for its whole life (sk->sk_net is fixed at socket()), so the async
 *   request/response traffic afterwards — from the main thread, back in the host namespace —
 *   still configures the target namespace. A /proc/sys/net file opened inside refers to that
 *   namespace's sysctl, so `writeFileSync` inside `fn` is correct.
 * - `fn` must not return a promise (rejected at run time): its continuation would run in the
 *   host namespace.
 * - If switching back fails, the process cannot know which namespace later work would hit: it
 *   aborts rather than risk configuring the wrong namespace.
 *
 * The reverse direction (moving a link into a namespace) never needs setns at all: netlink takes
 * an fd of the namespace (IFLA_NET_NS_FD), see `openNetnsFd`.
 */
import { closeSync, openSync, statSync } from 'node:fs';
import { KnodeError, errnoCode } from './errors.js';
import { koffiModule } from './netlink/native.js';

const CLONE_NEWNET = 0x40000000;
/** This thread's current network namespace (not /proc/self: that is the thread-group leader's). */
export const CURRENT_NETNS = '/proc/thread-self/ns/net';

type SetnsFn = (fd: number, nstype: number) => number;
let setnsFn: SetnsFn | undefined;
function setns(fd: number): void {
  if (!setnsFn) setnsFn = koffiModule().load('libc.so.6').func('int setns(int fd, int nstype)') as SetnsFn;
  if (setnsFn(fd, CLONE_NEWNET) !== 0) {
    const errno = koffiModule().errno();
    throw new KnodeError('NETNS_SETNS_FAILED', `setns(CLONE_NEWNET) failed (errno ${errno})`, { details: { errno } });
  }
}

/** Open a namespace file read-only; KnodeError NETNS_NOT_FOUND when it does not exist. */
export function openNetnsFd(nsPath: string): number {
  try {
    return openSync(nsPath, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      throw new KnodeError('NETNS_NOT_FOUND', `network namespace ${nsPath} does not exist`, { cause: err, details: { nsPath } });
    }
    throw new KnodeError('NETNS_OPEN_FAILED', `cannot open network namespace ${nsPath}`, { cause: err, details: { nsPath } });
  }
}

/** Run `fn` synchronously with the calling (main) thread inside the network namespace `nsPath`. */
export function withNetnsSync<T>(nsPath: string, fn: () => T): T {
  const target = openNetnsFd(nsPath);
  let orig: number;
  try {
    orig = openSync(CURRENT_NETNS, 'r');
  } catch (err) {
    closeSync(target);
    throw new KnodeError('NETNS_OPEN_FAILED', 'cannot open the current network namespace', { cause: err });
  }
  try {
    setns(target);
    let result: T;
    try {
      result = fn();
    } finally {
      try {
        setns(orig);
      } catch (err) {
        process.stderr.write(`knode: cannot return to the original network namespace: ${String(err)}; aborting\n`);
        process.abort();
      }
    }
    if (result !== null && typeof result === 'object' && typeof (result as { then?: unknown }).then === 'function') {
      throw new KnodeError('NETNS_ASYNC_FN', 'withNetnsSync needs a synchronous function');
    }
    return result;
  } finally {
    closeSync(orig);
    closeSync(target);
  }
}

export interface NetnsId {
  dev: number;
  ino: number;
}

/** Identity of a namespace file (device + inode, as `ip netns identify` compares them). */
export function netnsId(nsPath: string): NetnsId | undefined {
  try {
    const st = statSync(nsPath);
    return { dev: st.dev, ino: st.ino };
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

export function sameNetns(a: string, b: string): boolean {
  const x = netnsId(a);
  const y = netnsId(b);
  return x !== undefined && y !== undefined && x.dev === y.dev && x.ino === y.ino;
}

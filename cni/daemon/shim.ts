/**
 * The plugin shim: what `knode-bridge` (etc.) do first.
 *
 * Design notes
 * - The shim reads stdin, sends {plugin, CNI_* env, stdin} to knode-cni-daemon
 *   (KNODE_CNI_SOCKET or /run/knode/cni.sock), prints the daemon's stdout/stderr and exits with
 *   its code. Only node:net, node:fs and node:tty are loaded on that path; the plugin
 *   implementation (netlink, koffi, …) sits behind a dynamic import() that the bundler turns into
 *   a lazily evaluated module, so it is evaluated only in the fallback.
 * - Fallback to doing the work in-process (exactly what the plugin did before the daemon
 *   existed, through cni/skel.ts runPlugin) when nothing was done by a daemon: it is not there
 *   (ENOENT, ECONNREFUSED, …: the plugins stay correct when containerd runs them with no daemon
 *   at all), or it answers `fallback` (it lives in another network namespace than the caller),
 *   or it does not speak KNODE-CNI/2.
 * - Connected but no complete answer (the daemon died or hung): the work may be partly done, so
 *   it is not redone here; the runtime gets CNI error 11 ("try again later"), as from the sh
 *   launcher (cni/launcher.sh), and its next call finds the daemon back or falls back.
 * - KNODE_CNI_DAEMON=off skips the daemon entirely.
 * - stdin is read with readSync and stdout/stderr written with writeSync on fds 0/1/2 (no stream
 *   set-up on the fast path; a non-blocking stdin falls back to the stream).
 * - This shim is the alternative to the sh launcher (cni/launcher.sh, what is installed): it is
 *   what runs when a bundle is exec'd directly, and the launcher's fallback (KNODE_CNI_DAEMON=off).
 */
import { readSync, writeSync } from 'node:fs';
import { isatty } from 'node:tty';
import { requestDaemon } from './client.js';
import { CODE_TRY_AGAIN, LATEST_CNI_VERSION, requestFromEnv, socketPathFromEnv } from './protocol.js';
import type { DaemonPluginName } from './protocol.js';
import type { CniPlugin } from '../skel.js';

/** How long the shim waits for the daemon's answer (the daemon's own request timeout is 60 s). */
const SHIM_TIMEOUT_MS = 120_000;

function errCode(err: unknown): unknown {
  return typeof err === 'object' && err !== null && 'code' in err ? (err as { code: unknown }).code : undefined;
}

async function readAllStdin(): Promise<Buffer> {
  if (process.env.CNI_COMMAND === 'VERSION' && isatty(0)) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(65536);
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (err) {
      const code = errCode(err);
      if (code === 'EOF' || code === 'EBADF') break; // no stdin at all: an empty config
      if (code !== 'EAGAIN') throw err;
      // A non-blocking stdin: read the rest through the stream instead of spinning.
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      break;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks);
}

function writeAll(fd: number, text: string): void {
  const data = Buffer.from(text);
  let off = 0;
  while (off < data.length) {
    try {
      off += writeSync(fd, data, off);
    } catch (err) {
      if (errCode(err) !== 'EAGAIN') throw err;
    }
  }
}

async function inProcess(loadPlugin: () => Promise<CniPlugin>, stdin: Buffer): Promise<void> {
  const [{ runPlugin }, plugin] = await Promise.all([import('../skel.js'), loadPlugin()]);
  await runPlugin(plugin, stdin);
}

function configVersion(stdin: Buffer): string {
  try {
    const v: unknown = (JSON.parse(stdin.toString('utf8')) as { cniVersion?: unknown }).cniVersion;
    return typeof v === 'string' && v !== '' ? v : LATEST_CNI_VERSION;
  } catch {
    return LATEST_CNI_VERSION;
  }
}

/** The whole main of a plugin program. */
export async function runShim(name: DaemonPluginName, loadPlugin: () => Promise<CniPlugin>): Promise<void> {
  const stdin = await readAllStdin();
  if (process.env.KNODE_CNI_DAEMON === 'off') return inProcess(loadPlugin, stdin);
  const outcome = await requestDaemon(socketPathFromEnv(process.env), requestFromEnv(name, process.env, stdin), {
    timeoutMs: SHIM_TIMEOUT_MS,
  });
  if (outcome.kind === 'response') {
    const r = outcome.response;
    if (r.stderr !== '') writeAll(2, r.stderr.endsWith('\n') ? r.stderr : r.stderr + '\n');
    if (r.stdout !== '') writeAll(1, r.stdout + '\n');
    process.exitCode = r.exitCode;
    return;
  }
  if (outcome.kind === 'lost') {
    writeAll(
      1,
      JSON.stringify({
        cniVersion: configVersion(stdin),
        code: CODE_TRY_AGAIN,
        msg: `knode-cni-daemon took the ${process.env.CNI_COMMAND ?? ''} request but gave no answer (${outcome.reason}); try again later`,
      }) + '\n',
    );
    process.exitCode = 1;
    return;
  }
  return inProcess(loadPlugin, stdin);
}

/**
 * IPAM delegation from a main plugin (bridge), as the reference `ipam.ExecAdd/ExecDel/ExecCheck`.
 *
 * Design notes
 * - `knode-host-local` runs in-process (no second Node start-up, ~100 ms saved per call); it
 *   gets the very same CmdArgs (stdin config, env) as a separate process would.
 * - Any other type, including the reference `host-local`, is executed as `<CNI_PATH dir>/<type>`
 *   with the caller's environment and stdin, so knode-bridge works with any IPAM plugin. Its
 *   error JSON is re-raised with the delegate's code and message.
 * - The type is validated like a network name, so it can never name a path outside CNI_PATH.
 */
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { execFile } from '../../lib/exec.js';
import type { CmdArgs, CniCommand } from '../skel.js';
import { CniCode, CniError, isObject, parseResult } from '../types.js';
import type { CniResult } from '../types.js';
import { hostLocalAdd, hostLocalCheck, hostLocalDel, hostLocalGc } from './host-local.js';

const IN_PROCESS = 'knode-host-local';
const typeRe = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function findPlugin(type: string, path: readonly string[]): string {
  if (!typeRe.test(type)) throw new CniError(CniCode.InvalidConfig, `invalid plugin type "${type}"`);
  for (const dir of path) {
    const file = join(dir, type);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not in this directory
    }
  }
  throw new CniError(CniCode.InvalidConfig, `failed to find plugin "${type}" in path [${path.join(' ')}]`);
}

async function execPlugin(args: CmdArgs, type: string, command: CniCommand): Promise<string> {
  const file = findPlugin(type, args.path);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(args.env)) if (v !== undefined) env[k] = v;
  env.CNI_COMMAND = command;
  const res = await execFile(file, [], { input: args.stdin, env, allowFailure: true, timeoutMs: 60_000 });
  if (res.code !== 0) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(res.stdout);
    } catch {
      parsed = undefined;
    }
    if (isObject(parsed) && typeof parsed.code === 'number' && typeof parsed.msg === 'string') {
      const opts: { details?: string } = {};
      if (typeof parsed.details === 'string') opts.details = parsed.details;
      throw new CniError(parsed.code, parsed.msg, opts);
    }
    throw new CniError(CniCode.Internal, `IPAM plugin ${type} ${command} failed (exit ${res.code}): ${res.stderr.trim() || res.stdout.trim()}`);
  }
  return res.stdout;
}

export async function ipamAdd(args: CmdArgs, type: string): Promise<CniResult> {
  if (type === IN_PROCESS) return hostLocalAdd(args);
  const out = await execPlugin(args, type, 'ADD');
  let raw: unknown;
  try {
    raw = JSON.parse(out);
  } catch (err) {
    throw new CniError(CniCode.Decode, `cannot decode the result of IPAM plugin ${type}`, { cause: err });
  }
  return parseResult(raw, `${type} result`);
}

export async function ipamDel(args: CmdArgs, type: string): Promise<void> {
  if (type === IN_PROCESS) return hostLocalDel(args);
  await execPlugin(args, type, 'DEL');
}

export async function ipamCheck(args: CmdArgs, type: string): Promise<void> {
  if (type === IN_PROCESS) return hostLocalCheck(args);
  await execPlugin(args, type, 'CHECK');
}

export async function ipamGc(args: CmdArgs, type: string): Promise<void> {
  if (type === IN_PROCESS) return hostLocalGc(args);
  await execPlugin(args, type, 'GC');
}

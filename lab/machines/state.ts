/**
 * The lab's state file (<labRunDir>/lab.json): the shape that `up` made and
 * the daemons it started. `down` uses it first but never relies on it alone
 * (it also scans namespaces, processes and mounts by the lab's prefixes).
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { KnodeError, errnoCode } from '../../lib/errors.js';
import { isRuntimeKind, stateFile, type RuntimeKind } from './layout.js';

export interface MachineState {
  name: string;
  netns: string;
  address: string;
  runtimePid: number | undefined;
  socket: string;
  images: string[];
}

export interface LabState {
  version: 1;
  nodes: number;
  runtime: RuntimeKind;
  /** 'starting' until `up` finished; a lab left in 'starting' was interrupted. */
  phase: 'starting' | 'running';
  updatedAt: string;
  machines: MachineState[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseMachine(v: unknown): MachineState | undefined {
  if (!isRecord(v)) return undefined;
  const { name, netns, address, runtimePid, socket, images } = v;
  if (typeof name !== 'string' || typeof netns !== 'string' || typeof address !== 'string' || typeof socket !== 'string') return undefined;
  return {
    name,
    netns,
    address,
    socket,
    runtimePid: typeof runtimePid === 'number' ? runtimePid : undefined,
    images: Array.isArray(images) ? images.filter((i): i is string => typeof i === 'string') : [],
  };
}

export function parseState(text: string): LabState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new KnodeError('LAB_STATE_INVALID', `${stateFile} is not JSON`, { cause: err });
  }
  if (!isRecord(raw) || raw.version !== 1 || typeof raw.nodes !== 'number' || typeof raw.runtime !== 'string' || !isRuntimeKind(raw.runtime)) {
    throw new KnodeError('LAB_STATE_INVALID', `${stateFile} does not describe a lab (version 1)`);
  }
  const machines = Array.isArray(raw.machines) ? raw.machines.map(parseMachine) : [];
  if (machines.some((m) => m === undefined)) throw new KnodeError('LAB_STATE_INVALID', `${stateFile} has a malformed machine entry`);
  return {
    version: 1,
    nodes: raw.nodes,
    runtime: raw.runtime,
    phase: raw.phase === 'running' ? 'running' : 'starting',
    updatedAt: typeof raw.updatedAt === 'string' ? raw.updatedAt : '',
    machines: machines.filter((m): m is MachineState => m !== undefined),
  };
}

export async function readState(): Promise<LabState | undefined> {
  let text: string;
  try {
    text = await readFile(stateFile, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  return parseState(text);
}

/** Atomic write (temp file + rename). */
export async function writeState(state: LabState): Promise<void> {
  await mkdir(dirname(stateFile), { recursive: true });
  const tmp = `${stateFile}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify({ ...state, updatedAt: new Date().toISOString() }, null, 2) + '\n');
  await rename(tmp, stateFile);
}

export async function removeState(): Promise<void> {
  await rm(stateFile, { force: true });
}

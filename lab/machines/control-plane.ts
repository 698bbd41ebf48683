/**
 * The lab's control plane as a daemon: the knode-lab apiserver, started from
 * the root namespace so that it binds the host's 127.0.0.1:6443 (for kubectl),
 * then binds 172.31.0.1:6443 inside the underlay namespace (for the lab nodes)
 * and makes its outgoing connections (to kubelets) from there. The lab
 * controllers (scheduler, endpointslice, node-ipam, replicaset, deployment,
 * garbage collector) run in the same process, as clients of the lab URL.
 * Static bearer tokens (`tokens.csv`, the apiserver's --token-file) for two
 * lab users, made once per data dir: `lab-admin` (system:masters) and
 * `lab-viewer` (authenticated, no other rights): what tests use to check
 * token authentication through a TokenReview (e.g. the kubelet API).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { KnodeError } from '../../lib/errors.js';
import { labDataDir, labRunDir, repoRoot, underlay, underlayNetns } from '../paths.js';
import { netnsPath, type LabNode } from './layout.js';
import { readLogTail } from './logs.js';
import { daemonFromPidFile, spawnDaemon, waitFor } from './proc.js';

export const apiserverPort = 6443;

export const controlPlanePaths = {
  dataDir: join(labDataDir, 'apiserver'),
  adminKubeconfig: join(labDataDir, 'apiserver', 'admin.kubeconfig'),
  caCert: join(labDataDir, 'apiserver', 'pki', 'ca.crt'),
  persist: join(labDataDir, 'apiserver', 'objects.json'),
  pidFile: join(labRunDir, 'apiserver.pid'),
  log: join(labRunDir, 'apiserver.log'),
  hostUrl: `https://127.0.0.1:${apiserverPort}`,
  labUrl: `https://${underlay.bridgeAddress}:${apiserverPort}`,
  nodeKubeconfig: (node: string): string => join(labDataDir, 'apiserver', 'nodes', `${node}.kubeconfig`),
  tokenFile: join(labDataDir, 'apiserver', 'tokens.csv'),
} as const;

/** The lab's static token users: name → groups. */
export const labTokenUsers = { 'lab-admin': ['system:masters'], 'lab-viewer': ['lab:viewers'] } as const;
export type LabTokenUser = keyof typeof labTokenUsers;

/** The token file's text (upstream's CSV: token,user,uid,"groups"). Pure. */
export function renderTokenFile(tokens: Readonly<Record<LabTokenUser, string>>): string {
  const lines = (Object.keys(labTokenUsers) as LabTokenUser[]).map((user) => `${tokens[user]},${user},${user},"${labTokenUsers[user].join(',')}"`);
  return `# knode lab static tokens (apiserver --token-file)\n${lines.join('\n')}\n`;
}

/** The lab users' tokens, read from the token file. */
export async function readLabTokens(): Promise<Record<LabTokenUser, string>> {
  const text = await readFile(controlPlanePaths.tokenFile, 'utf8');
  const found = new Map(text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => [l.split(',')[1] ?? '', l.split(',')[0] ?? '']));
  const admin = found.get('lab-admin');
  const viewer = found.get('lab-viewer');
  if (!admin || !viewer) throw new KnodeError('LAB_TOKENS_MISSING', `${controlPlanePaths.tokenFile} lacks lab-admin or lab-viewer`);
  return { 'lab-admin': admin, 'lab-viewer': viewer };
}

/** Writes the token file with fresh random tokens unless it exists (mode 0600). */
async function ensureLabTokens(): Promise<void> {
  if (existsSync(controlPlanePaths.tokenFile)) return;
  const token = (): string => randomBytes(24).toString('base64url');
  await writeFile(controlPlanePaths.tokenFile, renderTokenFile({ 'lab-admin': token(), 'lab-viewer': token() }), { mode: 0o600 });
}

/** The apiserver's command line. Pure. */
export function apiserverArgs(nodes: readonly LabNode[]): string[] {
  const underlayPath = netnsPath(underlayNetns);
  return [
    join(repoRoot, 'dist', 'knode-lab.mjs'),
    'apiserver',
    '--data-dir', controlPlanePaths.dataDir,
    '--persist', controlPlanePaths.persist,
    '--listen', `127.0.0.1:${apiserverPort}`,
    '--listen', `${underlay.bridgeAddress}:${apiserverPort}@${underlayPath}`,
    '--egress-netns', underlayPath,
    '--node-server', controlPlanePaths.labUrl,
    '--controllers',
    '--token-file', controlPlanePaths.tokenFile,
    ...nodes.flatMap((n) => ['--node', n.name]),
  ];
}

/** GET /readyz on the host's loopback, trusting the lab CA. */
async function ready(): Promise<boolean> {
  if (!existsSync(controlPlanePaths.caCert)) return false;
  const ca = await readFile(controlPlanePaths.caCert);
  return new Promise((resolve) => {
    const req = request(`${controlPlanePaths.hostUrl}/readyz`, { ca, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

export async function controlPlanePid(): Promise<number | undefined> {
  return daemonFromPidFile(controlPlanePaths.pidFile, controlPlanePaths.dataDir);
}

/** Start the apiserver unless it runs and answers; returns its pid and whether it was started. */
export async function ensureControlPlane(nodes: readonly LabNode[]): Promise<{ pid: number; started: boolean }> {
  const running = await controlPlanePid();
  if (running !== undefined && (await ready()) && existsSync(controlPlanePaths.adminKubeconfig)) return { pid: running, started: false };
  await mkdir(labRunDir, { recursive: true });
  await mkdir(controlPlanePaths.dataDir, { recursive: true, mode: 0o700 });
  await ensureLabTokens();
  const daemon = await spawnDaemon({
    file: process.execPath,
    args: apiserverArgs(nodes),
    logFile: controlPlanePaths.log,
    pidFile: controlPlanePaths.pidFile,
  });
  let exitCode: number | null | undefined;
  void daemon.exited.then((c) => {
    exitCode = c;
  });
  // The admin kubeconfig is written just after the listeners answer: wait for both.
  const up = await waitFor(async () => exitCode !== undefined || ((await ready()) && existsSync(controlPlanePaths.adminKubeconfig)), 30_000, 200);
  if (!up || exitCode !== undefined) {
    throw new KnodeError('CONTROL_PLANE_START_FAILED', `the lab apiserver did not become ready; log ${controlPlanePaths.log}:\n${await readLogTail(controlPlanePaths.log)}`);
  }
  return { pid: daemon.pid, started: true };
}

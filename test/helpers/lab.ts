/**
 * Small helpers for lab e2e tests: run scripts/lab, kubectl with the lab's
 * admin kubeconfig, read JSON, poll with a bound. Tests using the lab must run
 * under `flock /run/knode-lab.lock` (fixed namespace names and ports).
 */
import { join } from 'node:path';
import { execFile, type ExecResult } from '../../lib/exec.js';
import { repoRoot } from '../../lab/paths.js';
import { controlPlanePaths } from '../../lab/machines/control-plane.js';
export { until } from './poll.js';

export const labScript = join(repoRoot, 'scripts/lab');

export function lab(args: string[], timeoutMs = 180_000): Promise<ExecResult> {
  return execFile(labScript, args, { allowFailure: true, timeoutMs });
}

export function kubectl(args: string[], input?: string): Promise<ExecResult> {
  return execFile('kubectl', args, {
    allowFailure: true,
    timeoutMs: 30_000,
    env: { ...process.env, KUBECONFIG: controlPlanePaths.adminKubeconfig },
    ...(input !== undefined ? { input } : {}),
  });
}

export async function getJson<T>(args: string[]): Promise<T> {
  const r = await kubectl([...args, '-o', 'json']);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}


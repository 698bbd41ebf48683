/**
 * exec probes: the command runs in the container through CRI ExecSync with the
 * probe's timeout (upstream pkg/probe/exec + the runtime's RunInContainer).
 *
 * Exit 0 succeeds, any other exit fails with the command's combined output
 * (at most 10 KiB, as upstream); a timeout fails with upstream's
 * `command "..." timed out`; any other runtime error is an error (not counted;
 * without an event when the container is gone).
 */
import { errorMessage, isKnodeError } from '../../../lib/errors.js';
import type { Runtime } from '../../runtime/types.js';
import type { ProbeRunOutcome } from './tracker.js';

export const maxProbeOutputBytes = 10 * 1024;

export async function runExecProbe(runtime: Pick<Runtime, 'execSync'>, containerId: string, command: string[], timeoutSeconds: number): Promise<ProbeRunOutcome> {
  try {
    const r = await runtime.execSync(containerId, command, timeoutSeconds, { timeoutMs: (timeoutSeconds + 10) * 1000 });
    const output = Buffer.concat([r.stdout, r.stderr]).subarray(0, maxProbeOutputBytes).toString();
    return { result: r.exitCode === 0 ? 'success' : 'failure', output };
  } catch (err) {
    if (isKnodeError(err, 'DEADLINE_EXCEEDED') || /timeout .* exceeded|deadline exceeded/i.test(errorMessage(err))) {
      return { result: 'failure', output: `command ${JSON.stringify(command.join(' '))} timed out` };
    }
    // The container stopped under the probe (killed for a restart): nothing to report, the next tick sees it.
    if (isKnodeError(err, 'NOT_FOUND')) return { result: 'error', output: errorMessage(err), silent: true };
    return { result: 'error', output: errorMessage(err) };
  }
}

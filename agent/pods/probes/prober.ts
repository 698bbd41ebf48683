/**
 * Runs one probe of a container (upstream prober.go): picks the runner for the
 * handler, resolves host and port, retries a run that errored (up to 3 times,
 * as upstream's maxProbeRetries), and says which event the outcome deserves.
 *
 * The verdicts: success; warning (an unfollowed redirect) counts as success
 * with a ProbeWarning event; failure gives an Unhealthy event
 * "<Type> probe failed: <output>"; an error ("the probe could not run": a port
 * name the container does not have, no pod IP, a runtime error) gives
 * "<Type> probe errored: <error>" and is not counted.
 */
import type { V1Container } from '@kubernetes/client-node';
import { errorMessage } from '../../../lib/errors.js';
import type { Runtime } from '../../runtime/types.js';
import type { Dialer } from './dial.js';
import { runExecProbe } from './exec.js';
import { runGrpcProbe } from './grpc.js';
import { runHttpProbe } from './http.js';
import { httpProbeRequest, probeTypeName, resolveProbePort, type ProbeOutcome, type ResolvedProbe } from './spec.js';
import { runTcpProbe } from './tcp.js';
import type { ProbeRunOutcome } from './tracker.js';

export interface ProberDeps {
  runtime: Pick<Runtime, 'execSync'>;
  dial: Dialer;
  /** kube-probe/<major>.<minor> */
  userAgent: string;
}

export interface ProbeTarget {
  container: V1Container;
  containerId: string;
  /** The pod's primary IP ('' when it has none yet). */
  podIP: string;
}

export const maxProbeRetries = 3;

/** One run, no retries. Errors that mean "could not probe" come back as `result: 'error'`. */
export async function runProbeOnce(deps: ProberDeps, probe: ResolvedProbe, target: ProbeTarget): Promise<ProbeRunOutcome | ProbeOutcome> {
  const h = probe.handler;
  const timeoutMs = probe.timeoutSeconds * 1000;
  try {
    switch (h.kind) {
      case 'exec':
        return await runExecProbe(deps.runtime, target.containerId, h.command, probe.timeoutSeconds);
      case 'httpGet': {
        const port = resolveProbePort(h.port, target.container);
        const host = h.host ?? target.podIP;
        if (host === '') return { result: 'error', output: 'the pod has no IP yet' };
        return await runHttpProbe(deps.dial, httpProbeRequest(h, host, port, deps.userAgent), timeoutMs);
      }
      case 'tcpSocket': {
        const port = resolveProbePort(h.port, target.container);
        const host = h.host ?? target.podIP;
        if (host === '') return { result: 'error', output: 'the pod has no IP yet' };
        return await runTcpProbe(deps.dial, host, port, timeoutMs);
      }
      case 'grpc': {
        const port = resolveProbePort(h.port, target.container);
        if (target.podIP === '') return { result: 'error', output: 'the pod has no IP yet' };
        return await runGrpcProbe(deps.dial, target.podIP, port, h.service, timeoutMs, deps.userAgent);
      }
    }
  } catch (err) {
    return { result: 'error', output: errorMessage(err) };
  }
}

export interface ProbeVerdict {
  outcome: ProbeRunOutcome;
  event: { reason: 'Unhealthy' | 'ProbeWarning'; message: string } | undefined;
}

/** What a run's outcome means for the worker and the events. Pure. */
export function probeVerdict(probe: ResolvedProbe, o: ProbeRunOutcome | ProbeOutcome): ProbeVerdict {
  const name = probeTypeName(probe.type);
  switch (o.result) {
    case 'success':
      return { outcome: { result: 'success', output: o.output }, event: undefined };
    case 'warning':
      return { outcome: { result: 'success', output: o.output }, event: { reason: 'ProbeWarning', message: `${name} probe warning: ${o.output}` } };
    case 'failure':
      return { outcome: { result: 'failure', output: o.output }, event: { reason: 'Unhealthy', message: `${name} probe failed: ${o.output}` } };
    case 'error':
      return { outcome: o, event: o.silent === true ? undefined : { reason: 'Unhealthy', message: `${name} probe errored: ${o.output}` } };
  }
}

/** A run with upstream's retries of errored runs. */
export async function runProbe(deps: ProberDeps, probe: ResolvedProbe, target: ProbeTarget): Promise<ProbeVerdict> {
  let o: ProbeRunOutcome | ProbeOutcome = { result: 'error', output: 'not run' };
  for (let i = 0; i < maxProbeRetries; i++) {
    o = await runProbeOnce(deps, probe, target);
    if (o.result !== 'error') break;
  }
  return probeVerdict(probe, o);
}

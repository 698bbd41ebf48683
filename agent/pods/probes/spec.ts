/**
 * Container probes, the pure part: upstream's defaults, which handler a probe
 * uses, port resolution, the httpGet request, HTTP status classification and
 * the grace period a probe-failure kill gets.
 *
 * Design notes:
 * - Defaults as the apiserver's defaulting (pkg/apis/core/v1/defaults.go):
 *   periodSeconds 10, timeoutSeconds 1, successThreshold 1, failureThreshold 3,
 *   initialDelaySeconds 0. Liveness and startup probes only count one success
 *   (successThreshold must be 1 upstream; we clamp instead of rejecting).
 * - Ports as upstream's probe.ResolveContainerPort: a number, or a name looked
 *   up in the container's ports, or a number written as a string; 1..65535.
 * - httpGet as pkg/probe/http: host defaults to the pod IP, scheme lowercased,
 *   path parsed as a URL path (with its query), User-Agent `kube-probe/<major>.<minor>`
 *   and `Accept: *\/*` unless the probe sets them (an empty Accept removes it),
 *   a Host header sets the request's host. 2xx succeeds, 3xx (a redirect that
 *   was not followed) succeeds with a warning, anything else fails.
 */
import type { V1Container, V1Pod, V1Probe } from '@kubernetes/client-node';
import { KnodeError } from '../../../lib/errors.js';

export type ProbeType = 'liveness' | 'readiness' | 'startup';
export const probeTypes: readonly ProbeType[] = ['startup', 'liveness', 'readiness'];

/** "Liveness", "Readiness", "Startup" as upstream's probeType.String() prints them in events. */
export function probeTypeName(type: ProbeType): string {
  return type[0]!.toUpperCase() + type.slice(1);
}

export type ProbeHandler =
  | { kind: 'exec'; command: string[] }
  | { kind: 'httpGet'; host: string | undefined; port: number | string; path: string; scheme: 'http' | 'https'; headers: { name: string; value: string }[] }
  | { kind: 'tcpSocket'; host: string | undefined; port: number | string }
  | { kind: 'grpc'; port: number; service: string };

export interface ResolvedProbe {
  type: ProbeType;
  handler: ProbeHandler;
  initialDelaySeconds: number;
  periodSeconds: number;
  timeoutSeconds: number;
  successThreshold: number;
  failureThreshold: number;
  /** Probe-level terminationGracePeriodSeconds (liveness/startup), if set. */
  terminationGracePeriodSeconds: number | undefined;
}

export const probeDefaults = { initialDelaySeconds: 0, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 } as const;

export function containerProbe(container: V1Container, type: ProbeType): V1Probe | undefined {
  return type === 'liveness' ? container.livenessProbe : type === 'readiness' ? container.readinessProbe : container.startupProbe;
}

function positive(v: number | undefined, fallback: number): number {
  return v === undefined || !Number.isFinite(v) || v < 1 ? fallback : Math.floor(v);
}

/** The probe's handler; throws KnodeError INVALID_PROBE when it has none (or several). */
export function probeHandler(probe: V1Probe): ProbeHandler {
  const handlers: ProbeHandler[] = [];
  if (probe.exec !== undefined) handlers.push({ kind: 'exec', command: probe.exec.command ?? [] });
  if (probe.httpGet !== undefined) {
    const g = probe.httpGet;
    const scheme = (g.scheme ?? 'HTTP').toLowerCase();
    if (scheme !== 'http' && scheme !== 'https') throw new KnodeError('INVALID_PROBE', `unsupported httpGet scheme ${JSON.stringify(g.scheme)}`);
    handlers.push({ kind: 'httpGet', host: g.host === '' ? undefined : g.host, port: g.port as number | string, path: g.path ?? '', scheme, headers: g.httpHeaders ?? [] });
  }
  if (probe.tcpSocket !== undefined) handlers.push({ kind: 'tcpSocket', host: probe.tcpSocket.host === '' ? undefined : probe.tcpSocket.host, port: probe.tcpSocket.port as number | string });
  if (probe.grpc !== undefined) handlers.push({ kind: 'grpc', port: probe.grpc.port, service: probe.grpc.service ?? '' });
  if (handlers.length !== 1) throw new KnodeError('INVALID_PROBE', handlers.length === 0 ? 'probe has no handler (exec, httpGet, tcpSocket or grpc)' : 'probe has more than one handler');
  return handlers[0]!;
}

/** The container's probe of that type with upstream's defaults, or undefined when it has none. */
export function resolveProbe(container: V1Container, type: ProbeType): ResolvedProbe | undefined {
  const p = containerProbe(container, type);
  if (p === undefined || p === null) return undefined;
  const successThreshold = type === 'readiness' ? positive(p.successThreshold, probeDefaults.successThreshold) : 1;
  return {
    type,
    handler: probeHandler(p),
    initialDelaySeconds: p.initialDelaySeconds !== undefined && p.initialDelaySeconds > 0 ? Math.floor(p.initialDelaySeconds) : 0,
    periodSeconds: positive(p.periodSeconds, probeDefaults.periodSeconds),
    timeoutSeconds: positive(p.timeoutSeconds, probeDefaults.timeoutSeconds),
    successThreshold,
    failureThreshold: positive(p.failureThreshold, probeDefaults.failureThreshold),
    terminationGracePeriodSeconds: type === 'readiness' ? undefined : (p.terminationGracePeriodSeconds ?? undefined),
  };
}

/** upstream probe.ResolveContainerPort */
export function resolveProbePort(port: number | string, container: V1Container): number {
  let n: number;
  if (typeof port === 'number') {
    n = port;
  } else {
    const named = (container.ports ?? []).find((p) => p.name === port);
    if (named !== undefined) n = named.containerPort;
    else if (/^-?\d+$/.test(port)) n = Number(port);
    else throw new KnodeError('INVALID_PROBE', `port ${port} not found`);
  }
  if (!Number.isInteger(n) || n <= 0 || n >= 65536) throw new KnodeError('INVALID_PROBE', `invalid port number: ${n}`);
  return n;
}

/** host:port with IPv6 brackets (Go's net.JoinHostPort). */
export function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export interface HttpProbeRequest {
  url: URL;
  /** Header name (as given) → value, in order; what goes on the wire. */
  headers: [string, string][];
}

/** upstream's kube-probe User-Agent for our Kubernetes minor. */
export function probeUserAgent(kubeletVersion: string): string {
  const m = /^v?(\d+)\.(\d+)/.exec(kubeletVersion);
  return m === null ? 'kube-probe' : `kube-probe/${m[1]}.${m[2]}`;
}

/** The GET an httpGet probe sends (formatURL + NewProbeRequest). */
export function httpProbeRequest(handler: Extract<ProbeHandler, { kind: 'httpGet' }>, host: string, port: number, userAgent: string): HttpProbeRequest {
  const base = `${handler.scheme}://${joinHostPort(host, port)}`;
  const path = handler.path.startsWith('/') ? handler.path : `/${handler.path}`;
  let url: URL;
  try {
    url = new URL(base + path);
  } catch {
    url = new URL(base + encodeURI(path));
  }
  const headers: [string, string][] = [];
  const has = (name: string): boolean => handler.headers.some((h) => h.name.toLowerCase() === name);
  for (const h of handler.headers) {
    if (h.name.toLowerCase() === 'accept' && h.value === '') continue;
    headers.push([h.name, h.value]);
  }
  if (!has('user-agent')) headers.push(['User-Agent', userAgent]);
  if (!has('accept')) headers.push(['Accept', '*/*']);
  return { url, headers };
}

export type ProbeOutcome = { result: 'success' | 'warning' | 'failure'; output: string };

/** DoHTTPProbe's verdict on a response. */
export function classifyHttpStatus(status: number, body: string): ProbeOutcome {
  if (status >= 200 && status < 400) {
    if (status >= 300) return { result: 'warning', output: `Probe terminated redirects, Response body: ${body}` };
    return { result: 'success', output: body };
  }
  return { result: 'failure', output: `HTTP probe failed with statuscode: ${status}` };
}

/** Whether a redirect is followed: only to the same host name, at most 10 (upstream's RedirectChecker without followNonLocalRedirects). */
export function followRedirect(from: URL, to: URL, redirectsSoFar: number): 'follow' | 'stop' | 'too-many' {
  if (to.hostname !== from.hostname) return 'stop';
  if (redirectsSoFar >= 10) return 'too-many';
  return 'follow';
}

/**
 * The grace period to kill a container with after its probe failed
 * (setTerminationGracePeriod): the pod's deletion grace period, else the
 * probe's own terminationGracePeriodSeconds, else the pod's.
 */
export function probeKillGracePeriod(pod: V1Pod, container: V1Container | undefined, reason: 'LivenessFailed' | 'StartupFailed'): number {
  if (pod.metadata?.deletionGracePeriodSeconds !== undefined) return pod.metadata.deletionGracePeriodSeconds;
  const probe = reason === 'LivenessFailed' ? container?.livenessProbe : container?.startupProbe;
  if (probe?.terminationGracePeriodSeconds !== undefined && probe.terminationGracePeriodSeconds !== null) return probe.terminationGracePeriodSeconds;
  return pod.spec?.terminationGracePeriodSeconds ?? 30;
}

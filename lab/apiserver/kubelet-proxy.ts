/**
 * Reaching the kubelet of a pod's node, as upstream's apiserver does for
 * pods/log, pods/exec, pods/attach and pods/portforward: the node's InternalIP
 * (else Hostname, else ExternalIP) and status.daemonEndpoints.kubeletEndpoint.Port
 * (default 10250), over TLS with the apiserver's kubelet client certificate
 * (CN=kube-apiserver-kubelet-client, O=system:masters, signed by the lab CA).
 * Like upstream without --kubelet-certificate-authority, the kubelet's
 * serving certificate is not verified.
 *
 * Design notes:
 * - The target computations are pure (pod, node, query in; host, port, path
 *   out). The streaming subresources are proxied as raw upgraded connections:
 *   the request head goes to the kubelet, whose answer (101 and the streams,
 *   or an error Status) goes back to the client byte for byte — the kubelet
 *   decides what it can serve (SPDY, WebSocket v4/v5, the port-forward
 *   tunnel).
 */
import { connect as tlsConnect } from 'node:tls';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { ApiError, badRequest } from './errors.js';
import { getArray, getMap, getNumber, getString, isObject } from './object.js';
import type { KubeObject } from './object.js';

export interface KubeletTarget {
  host: string;
  port: number;
  path: string;
}

export interface KubeletClientCert {
  cert: string;
  key: string;
}

/** The node's kubelet address and port. Pure. */
export function kubeletAddress(node: KubeObject | undefined, nodeName: string): { host: string; port: number } {
  if (!node) throw new ApiError('NotFound', `nodes "${nodeName}" not found`, { name: nodeName, kind: 'nodes' });
  const status = getMap(node, 'status');
  const addresses = (getArray(status, 'addresses') ?? []).filter(isObject);
  let host: string | undefined;
  for (const type of ['InternalIP', 'Hostname', 'ExternalIP']) {
    host = getString(addresses.find((a) => a.type === type), 'address');
    if (host) break;
  }
  if (!host) throw new ApiError('InternalError', `node ${nodeName} has no address to reach its kubelet`);
  const port = getNumber(getMap(getMap(status, 'daemonEndpoints'), 'kubeletEndpoint'), 'Port') ?? 10250;
  return { host, port };
}

/** The pod's node name; 400 when it is not scheduled. Pure. */
export function podNodeName(pod: KubeObject): string {
  const nodeName = getString(getMap(pod, 'spec'), 'nodeName');
  if (!nodeName) throw badRequest(`pod ${pod.metadata.name ?? ''} does not have a host assigned`);
  return nodeName;
}

/** The container a request is about: the named one (must exist) or the pod's only container. Pure. */
export function podContainer(pod: KubeObject, requested: string | null): string {
  const name = pod.metadata.name ?? '';
  const spec = getMap(pod, 'spec');
  const names = (key: string): string[] => (getArray(spec, key) ?? []).map((c) => getString(c, 'name')).filter((n): n is string => !!n);
  const main = names('containers');
  if (!requested) {
    if (main.length !== 1) throw badRequest(`a container name must be specified for pod ${name}, choose one of: [${main.join(' ')}]`);
    return main[0]!;
  }
  if (![...main, ...names('initContainers'), ...names('ephemeralContainers')].includes(requested)) throw badRequest(`container ${requested} is not valid for pod ${name}`);
  return requested;
}

const enc = encodeURIComponent;

export type StreamSubresource = 'exec' | 'attach' | 'portforward';

/**
 * The kubelet path of a streaming subresource, with upstream's kubelet
 * parameter names (command, input, output, error, tty as "1"; port). Pure.
 */
export function kubeletStreamTarget(sub: StreamSubresource, pod: KubeObject, node: KubeObject | undefined, query: URLSearchParams): KubeletTarget {
  const { host, port } = kubeletAddress(node, podNodeName(pod));
  const ns = pod.metadata.namespace ?? '';
  const name = pod.metadata.name ?? '';
  const q = new URLSearchParams();
  const on = (k: string): boolean => query.get(k) === 'true' || query.get(k) === '1';
  let path: string;
  if (sub === 'portforward') {
    for (const p of query.getAll('ports').flatMap((v) => v.split(','))) if (p) q.append('port', p);
    path = `/portForward/${enc(ns)}/${enc(name)}`;
  } else {
    const container = podContainer(pod, query.get('container'));
    if (sub === 'exec') {
      const command = query.getAll('command');
      if (command.length === 0) throw badRequest('you must specify at least 1 command');
      for (const c of command) q.append('command', c);
    }
    if (on('stdin')) q.set('input', '1');
    if (on('stdout')) q.set('output', '1');
    if (on('stderr')) q.set('error', '1');
    if (on('tty')) q.set('tty', '1');
    if (!on('stdin') && !on('stdout') && !on('stderr')) throw badRequest('you must specify at least 1 of stdin, stdout, stderr');
    path = `/${sub}/${enc(ns)}/${enc(name)}/${enc(container)}`;
  }
  const qs = q.toString();
  return { host, port, path: qs ? `${path}?${qs}` : path };
}

/** The request head for the kubelet: the client's method and headers (credentials dropped), the kubelet's path. Pure. */
export function kubeletRequestHead(req: Pick<IncomingMessage, 'method' | 'rawHeaders'>, target: KubeletTarget): string {
  const lines = [`${req.method ?? 'GET'} ${target.path} HTTP/1.1`, `Host: ${target.host}:${target.port}`];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    if (['host', 'authorization', 'content-length', 'transfer-encoding'].includes(name.toLowerCase())) continue;
    lines.push(`${name}: ${req.rawHeaders[i + 1]!.replace(/[\r\n]/g, '')}`);
  }
  return lines.join('\r\n') + '\r\n\r\n';
}

/** Writes a Status answer on a raw socket whose upgrade is refused, and closes it. */
export function rejectUpgrade(socket: Duplex, err: ApiError): void {
  const text = JSON.stringify(err.toStatus());
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(`HTTP/1.1 ${err.httpCode} ${err.reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`);
}

/** Proxies an upgrade request to the kubelet and joins the two connections until either closes. */
export function proxyKubeletUpgrade(target: KubeletTarget, client: KubeletClientCert, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    let connected = false;
    const upstream = tlsConnect({ host: target.host, port: target.port, cert: client.cert, key: client.key, rejectUnauthorized: false, servername: '' }, () => {
      connected = true;
      upstream.setTimeout(0);
      upstream.setNoDelay(true);
      upstream.write(kubeletRequestHead(req, target));
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.setTimeout(30_000, () => {
      if (!connected) upstream.destroy(new Error('timed out connecting to the kubelet'));
    });
    upstream.on('error', (err) => {
      if (!connected) reject(new ApiError('InternalError', `cannot reach the kubelet at ${target.host}:${target.port}: ${err.message}`));
      socket.destroy();
    });
    socket.on('error', () => upstream.destroy());
    // An end is passed on by pipe (what is buffered for the client still goes out); closing is only forced after a while.
    upstream.on('close', () => {
      socket.end();
      setTimeout(() => socket.destroy(), 30_000).unref();
      resolve();
    });
    socket.on('close', () => upstream.destroy());
  });
}

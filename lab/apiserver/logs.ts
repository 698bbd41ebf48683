/**
 * pods/log, proxied to the kubelet of the pod's node as upstream does:
 * GET https://<node address>:<kubelet port>/containerLogs/<ns>/<pod>/<container>
 * with the apiserver's kubelet client certificate (CN=kube-apiserver-kubelet-client,
 * O=system:masters, signed by the lab CA, so a kubelet trusting that CA
 * authenticates it). Like upstream without --kubelet-certificate-authority,
 * the kubelet's serving certificate is not verified.
 *
 * The address is the node's InternalIP (else Hostname, else ExternalIP) and
 * the port status.daemonEndpoints.kubeletEndpoint.Port (default 10250).
 */
import { request } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, badRequest } from './errors.js';
import { getArray, getMap, getNumber, getString, isObject } from './object.js';
import type { KubeObject } from './object.js';

export interface KubeletTarget {
  host: string;
  port: number;
  path: string;
}

const passThrough = ['follow', 'previous', 'sinceSeconds', 'sinceTime', 'timestamps', 'tailLines', 'limitBytes'];

/** Where to fetch the log of `pod` (pure). */
export function kubeletLogTarget(pod: KubeObject, node: KubeObject | undefined, query: URLSearchParams): KubeletTarget {
  const name = pod.metadata.name ?? '';
  const namespace = pod.metadata.namespace ?? '';
  const spec = getMap(pod, 'spec');
  const containers = [...(getArray(spec, 'containers') ?? []), ...(getArray(spec, 'initContainers') ?? [])]
    .map((c) => getString(c, 'name'))
    .filter((n): n is string => !!n);
  let container = query.get('container') ?? '';
  if (!container) {
    const main = (getArray(spec, 'containers') ?? []).map((c) => getString(c, 'name')).filter((n): n is string => !!n);
    if (main.length !== 1) throw badRequest(`a container name must be specified for pod ${name}, choose one of: [${main.join(' ')}]`);
    container = main[0]!;
  } else if (!containers.includes(container)) {
    throw badRequest(`container ${container} is not valid for pod ${name}`);
  }
  const nodeName = getString(spec, 'nodeName');
  if (!nodeName) throw badRequest(`pod ${name} does not have a host assigned`);
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
  const q = new URLSearchParams();
  for (const k of passThrough) {
    const v = query.get(k);
    if (v !== null) q.set(k, v);
  }
  const qs = q.toString();
  const path = `/containerLogs/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/${encodeURIComponent(container)}${qs ? `?${qs}` : ''}`;
  return { host, port, path };
}

export interface KubeletClientCert {
  cert: string;
  key: string;
}

const reasons: Record<number, 'NotFound' | 'BadRequest' | 'Forbidden' | 'Unauthorized'> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
};

/** Streams the kubelet's answer to `res`; ends when either side closes. */
export function proxyLogs(target: KubeletTarget, client: KubeletClientCert, req: IncomingMessage, res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    const upstream = request(
      {
        host: target.host,
        port: target.port,
        path: target.path,
        method: 'GET',
        cert: client.cert,
        key: client.key,
        rejectUnauthorized: false,
        timeout: 30_000,
      },
      (kres: IncomingMessage) => {
        const code = kres.statusCode ?? 502;
        if (code >= 300) {
          const chunks: Buffer[] = [];
          kres.on('data', (c: Buffer) => chunks.push(c));
          kres.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8').trim();
            reject(new ApiError(reasons[code] ?? 'InternalError', text || `the kubelet answered ${code}`));
          });
          return;
        }
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' });
        kres.pipe(res);
        kres.on('end', () => resolve());
        kres.on('error', () => resolve());
      },
    );
    upstream.setTimeout(30_000, () => upstream.destroy(new Error('timed out connecting to the kubelet')));
    upstream.on('error', (err) => {
      if (res.headersSent) {
        res.end();
        resolve();
      } else reject(new ApiError('InternalError', `cannot reach the kubelet at ${target.host}:${target.port}: ${err.message}`));
    });
    // A client that goes away (kubectl logs -f interrupted) ends the upstream request.
    req.on('close', () => upstream.destroy());
    upstream.end();
  });
}

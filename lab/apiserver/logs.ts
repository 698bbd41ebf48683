/**
 * pods/log, proxied to the kubelet of the pod's node as upstream does:
 * GET https://<node address>:<kubelet port>/containerLogs/<ns>/<pod>/<container>
 * with the apiserver's kubelet client certificate (how the kubelet is reached:
 * kubelet-proxy.ts).
 */
import { request } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError } from './errors.js';
import type { KubeObject } from './object.js';
import { kubeletAddress, podContainer, podNodeName, type KubeletClientCert, type KubeletTarget } from './kubelet-proxy.js';

export type { KubeletClientCert, KubeletTarget } from './kubelet-proxy.js';

const passThrough = ['follow', 'previous', 'sinceSeconds', 'sinceTime', 'timestamps', 'tailLines', 'limitBytes'];

/** Where to fetch the log of `pod` (pure). */
export function kubeletLogTarget(pod: KubeObject, node: KubeObject | undefined, query: URLSearchParams): KubeletTarget {
  const name = pod.metadata.name ?? '';
  const namespace = pod.metadata.namespace ?? '';
  const container = podContainer(pod, query.get('container'));
  const { host, port } = kubeletAddress(node, podNodeName(pod));
  const q = new URLSearchParams();
  for (const k of passThrough) {
    const v = query.get(k);
    if (v !== null) q.set(k, v);
  }
  const qs = q.toString();
  const path = `/containerLogs/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/${encodeURIComponent(container)}${qs ? `?${qs}` : ''}`;
  return { host, port, path };
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
        // The timeout is for reaching the kubelet: a quiet `logs -f` may stay idle for long.
        upstream.setTimeout(0);
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

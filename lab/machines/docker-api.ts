/**
 * A few Docker Engine API calls over a unix socket (node:http with socketPath).
 * Kept minimal on purpose: the lab only pings, loads images and removes
 * containers; the agent has its own full Docker runtime client.
 */
import { request } from 'node:http';
import { createReadStream } from 'node:fs';
import { KnodeError } from '../../lib/errors.js';

export interface DockerResponse {
  status: number;
  body: string;
}

export interface DockerRequest {
  socket: string;
  method: string;
  path: string;
  /** JSON body, or a file to stream (e.g. an image archive for /images/load). */
  json?: unknown;
  file?: string;
  /** Extra request headers, e.g. X-Registry-Auth for a pull. */
  headers?: Record<string, string>;
  timeoutMs?: number;
}

export function dockerRequest(req: DockerRequest): Promise<DockerResponse> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...req.headers };
    let payload: string | undefined;
    if (req.json !== undefined) {
      payload = JSON.stringify(req.json);
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(Buffer.byteLength(payload));
    } else if (req.file !== undefined) {
      headers['Content-Type'] = 'application/x-tar';
    }
    const r = request(
      { socketPath: req.socket, method: req.method, path: req.path, headers, timeout: req.timeoutMs ?? 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (e) => reject(new KnodeError('DOCKER_API_FAILED', `${req.method} ${req.path}: ${e.message}`, { cause: e })));
      },
    );
    r.on('timeout', () => r.destroy(new Error('timed out')));
    r.on('error', (e) => reject(new KnodeError('DOCKER_API_FAILED', `${req.method} ${req.path} on ${req.socket}: ${e.message}`, { cause: e })));
    if (payload !== undefined) {
      r.end(payload);
    } else if (req.file !== undefined) {
      const stream = createReadStream(req.file);
      stream.on('error', (e) => r.destroy(e));
      stream.pipe(r);
    } else {
      r.end();
    }
  });
}

/** Like dockerRequest, but a status outside 2xx is an error. */
export async function dockerCall(req: DockerRequest): Promise<DockerResponse> {
  const res = await dockerRequest(req);
  if (res.status < 200 || res.status >= 300) {
    throw new KnodeError('DOCKER_API_FAILED', `${req.method} ${req.path}: HTTP ${res.status}: ${res.body.trim()}`, {
      details: { status: res.status },
    });
  }
  return res;
}

/**
 * httpGet probes (upstream pkg/probe/http): a GET over a connection from the
 * `Dialer`, TLS without verification for HTTPS, redirects followed only to the
 * same host (at most 10), at most 10 KiB of body read, one timeout for the
 * whole exchange (Go's http.Client.Timeout). The verdict is spec.ts's
 * classifyHttpStatus; transport errors fail with Go's wording
 * (`Get "http://...": dial tcp ...: connect: connection refused`).
 */
import { request, type IncomingMessage } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import { isIP, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { errorMessage } from '../../../lib/errors.js';
import type { Dialer } from './dial.js';
import { maxProbeOutputBytes } from './exec.js';
import { classifyHttpStatus, followRedirect, type HttpProbeRequest, type ProbeOutcome } from './spec.js';

const redirectCodes = new Set([301, 302, 303, 307, 308]);

async function open(dial: Dialer, url: URL, timeoutMs: number): Promise<Socket> {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  const socket = await dial(host, port, timeoutMs);
  if (url.protocol !== 'https:') return socket;
  return new Promise<Socket>((resolve, reject) => {
    const tls = tlsConnect({ socket, rejectUnauthorized: false, ...(isIP(host) === 0 ? { servername: host } : {}) });
    tls.once('secureConnect', () => resolve(tls));
    tls.once('error', (err) => {
      tls.destroy();
      reject(err);
    });
  });
}

function get(dial: Dialer, url: URL, headers: [string, string][], timeoutMs: number, signal: AbortSignal): Promise<{ status: number; location: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    let hostHeader: string | undefined;
    const flat: string[] = [];
    for (const [k, v] of headers) {
      if (k.toLowerCase() === 'host') hostHeader = v;
      else flat.push(k, v);
    }
    flat.push('Host', hostHeader ?? url.host);
    const req = request(
      {
        method: 'GET',
        protocol: 'http:',
        host: url.hostname,
        path: url.pathname + url.search,
        headers: flat,
        signal,
        createConnection: (_opts, done) => {
          open(dial, url, timeoutMs).then(
            (s) => done(null, s),
            (err: unknown) => done(err instanceof Error ? err : new Error(String(err)), new PassThrough()),
          );
          return undefined;
        },
      },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const finish = (): void => {
          res.destroy();
          req.destroy();
          const loc = res.headers.location;
          resolve({ status: res.statusCode ?? 0, location: typeof loc === 'string' ? loc : undefined, body: Buffer.concat(chunks).subarray(0, maxProbeOutputBytes).toString() });
        };
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          size += chunk.length;
          if (size >= maxProbeOutputBytes) finish();
        });
        res.once('end', finish);
        res.once('error', reject);
      },
    );
    req.once('error', reject);
    req.end();
  });
}

/** Runs one httpGet probe (never throws: transport errors are failures, as upstream). */
export async function runHttpProbe(dial: Dialer, probe: HttpProbeRequest, timeoutMs: number): Promise<ProbeOutcome> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  let url = probe.url;
  try {
    for (let redirects = 0; ; redirects++) {
      let r;
      try {
        r = await get(dial, url, probe.headers, timeoutMs, ac.signal);
      } catch (err) {
        const why = ac.signal.aborted ? 'context deadline exceeded (Client.Timeout exceeded while awaiting headers)' : errorMessage(err);
        return { result: 'failure', output: `Get ${JSON.stringify(url.href)}: ${why}` };
      }
      if (redirectCodes.has(r.status) && r.location !== undefined) {
        let next: URL;
        try {
          next = new URL(r.location, url);
        } catch {
          return classifyHttpStatus(r.status, r.body);
        }
        const verdict = followRedirect(probe.url, next, redirects + 1);
        if (verdict === 'too-many') return { result: 'failure', output: `Get ${JSON.stringify(next.href)}: stopped after 10 redirects` };
        if (verdict === 'follow' && (next.protocol === 'http:' || next.protocol === 'https:')) {
          url = next;
          continue;
        }
      }
      return classifyHttpStatus(r.status, r.body);
    }
  } finally {
    clearTimeout(timer);
  }
}

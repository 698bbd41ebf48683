/**
 * grpc probes (upstream pkg/probe/grpc): one unary grpc.health.v1.Health/Check
 * with the probe's service name, plaintext, within the timeout; SERVING
 * succeeds, anything else fails with upstream's messages.
 *
 * Design notes:
 * - The call is made over node:http2 on a connection from the `Dialer`
 *   (upstream also dials through its probe dialer): @grpc/grpc-js takes no
 *   custom dialer, and a probe needs nothing of a channel (no balancing,
 *   retries or reconnects). The wire format is gRPC's: a 5-byte length prefix
 *   on the protobuf message, grpc-status / grpc-message in the trailers (or in
 *   the headers of a trailers-only answer). Tested against a @grpc/grpc-js server.
 * - HealthCheckRequest { string service = 1; } and
 *   HealthCheckResponse { ServingStatus status = 1; } are encoded with protobufjs.
 */
import { connect as http2Connect, constants as h2, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import protobuf from 'protobufjs';
import { errorMessage } from '../../../lib/errors.js';
import type { Dialer } from './dial.js';
import { joinHostPort, type ProbeOutcome } from './spec.js';

const servingStatus = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];
/** gRPC status codes as Go's codes.Code.String() names them. */
const codeNames = ['OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied', 'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated'];

/** A length-prefixed HealthCheckRequest. Pure. */
export function encodeHealthCheckRequest(service: string): Buffer {
  const w = protobuf.Writer.create();
  if (service !== '') w.uint32(10).string(service);
  const msg = w.finish();
  const frame = Buffer.alloc(5 + msg.length);
  frame.writeUInt32BE(msg.length, 1);
  frame.set(msg, 5);
  return frame;
}

/** The status of a length-prefixed HealthCheckResponse (0 = UNKNOWN when absent). Pure. */
export function decodeHealthCheckResponse(body: Buffer): number {
  if (body.length < 5) throw new Error('short gRPC message');
  if (body[0] !== 0) throw new Error('compressed gRPC message not supported');
  const len = body.readUInt32BE(1);
  const r = protobuf.Reader.create(body.subarray(5, 5 + len));
  let status = 0;
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 1 && (tag & 7) === 0) status = r.int32();
    else r.skipType(tag & 7);
  }
  return status;
}

interface CallResult {
  grpcStatus: number;
  grpcMessage: string;
  body: Buffer;
}

function call(session: ClientHttp2Session, service: string, userAgent: string, signal: AbortSignal): Promise<CallResult> {
  return new Promise((resolve, reject) => {
    const stream = session.request(
      {
        [h2.HTTP2_HEADER_METHOD]: 'POST',
        [h2.HTTP2_HEADER_PATH]: '/grpc.health.v1.Health/Check',
        [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
        [h2.HTTP2_HEADER_TE]: 'trailers',
        [h2.HTTP2_HEADER_USER_AGENT]: userAgent,
      },
      { signal },
    );
    const chunks: Buffer[] = [];
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders | undefined;
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (h) => (trailers = h));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('error', reject);
    stream.once('close', () => {
      const src = trailers ?? headers;
      const raw = src['grpc-status'];
      if (raw === undefined) {
        const status = Number(headers[h2.HTTP2_HEADER_STATUS]);
        reject(new Error(status !== 200 && status > 0 ? `unexpected HTTP status code received from server: ${status}` : 'stream closed without a grpc-status'));
        return;
      }
      const msg = src['grpc-message'];
      resolve({ grpcStatus: Number(raw), grpcMessage: typeof msg === 'string' ? decodeURIComponent(msg) : '', body: Buffer.concat(chunks) });
    });
    stream.end(encodeHealthCheckRequest(service));
  });
}

/** Runs one grpc probe against host:port (never throws). */
export async function runGrpcProbe(dial: Dialer, host: string, port: number, service: string, timeoutMs: number, userAgent: string): Promise<ProbeOutcome> {
  const addr = joinHostPort(host, port);
  const seconds = `${timeoutMs / 1000}s`;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  let session: ClientHttp2Session | undefined;
  try {
    let socket;
    try {
      socket = await dial(host, port, timeoutMs);
    } catch (err) {
      return { result: 'failure', output: `error: failed to connect service at ${JSON.stringify(addr)}: ${errorMessage(err)}` };
    }
    const s = socket;
    session = http2Connect(`http://${addr}`, { createConnection: () => s });
    session.on('error', () => undefined);
    let r: CallResult;
    try {
      r = await call(session, service, userAgent, ac.signal);
    } catch (err) {
      if (ac.signal.aborted) return { result: 'failure', output: `timeout: health rpc did not complete within ${seconds}` };
      return { result: 'failure', output: `error: health rpc probe failed: ${errorMessage(err)}` };
    }
    if (r.grpcStatus === 12) return { result: 'failure', output: `this server does not implement the grpc health protocol (grpc.health.v1.Health): ${r.grpcMessage}` };
    if (r.grpcStatus === 4) return { result: 'failure', output: `timeout: health rpc did not complete within ${seconds}` };
    if (r.grpcStatus !== 0) return { result: 'failure', output: `error: health rpc probe failed: rpc error: code = ${codeNames[r.grpcStatus] ?? `Code(${r.grpcStatus})`} desc = ${r.grpcMessage}` };
    let status: number;
    try {
      status = decodeHealthCheckResponse(r.body);
    } catch (err) {
      return { result: 'failure', output: `error: health rpc probe failed: ${errorMessage(err)}` };
    }
    if (status !== 1) return { result: 'failure', output: `service unhealthy (responded with ${JSON.stringify(servingStatus[status] ?? String(status))})` };
    return { result: 'success', output: 'service healthy' };
  } finally {
    clearTimeout(timer);
    session?.destroy();
  }
}

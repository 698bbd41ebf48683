/**
 * How the kubelet server serves /exec, /attach and /portForward once the
 * request is authorized and its pod and container are found: one interface,
 * two implementations, picked once from the runtime (`streamingBackendFor`).
 *
 * Design notes:
 * - runtimeUrlStreaming: CRI runtimes (containerd) run a streaming server;
 *   the kubelet asks for a URL (CRI Exec/Attach/PortForward) and proxies or
 *   translates the client's connection to it (streaming.ts, websocket.ts).
 * - directStreaming: runtimes without one (docker) offer `DirectStreams`;
 *   the kubelet terminates kubectl's protocols itself (direct-streaming.ts).
 * - `unsupported` is checked before any runtime call, so an upgrade nobody
 *   can serve gets 400 (kubectl then falls back to another protocol).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { KnodeError } from '../../lib/errors.js';
import type { DirectStreams, RuntimeService } from '../runtime/types.js';
import { directPlan, directUnsupported, serveDirectPortForward, serveDirectStdio, serveDirectStdioSpdy } from './direct-streaming.js';
import { proxyToRuntime, unsupportedUpgrade, type StreamRequest } from './streaming.js';
import { serveTunnel, serveV5, webSocketPlan } from './websocket.js';

export interface StreamUpgrade {
  req: IncomingMessage;
  socket: Duplex;
  head: Buffer;
}

export interface StreamingBackend {
  readonly name: 'runtime-url' | 'direct';
  /** Why this upgrade cannot be served (→ 400), or undefined. Pure. */
  unsupported(s: StreamRequest, headers: IncomingMessage['headers']): string | undefined;
  /** Serves the stream; `targetId` is the container (exec, attach) or the sandbox (portForward). */
  serve(u: StreamUpgrade, s: StreamRequest, targetId: string, onError: (err: Error) => void): Promise<void>;
}

export function runtimeUrlStreaming(runtime: RuntimeService): StreamingBackend {
  const url = (s: StreamRequest, id: string): Promise<string> => {
    if (s.kind === 'portForward') return runtime.portForward(id, s.ports);
    if (s.kind === 'exec') return runtime.exec(id, { cmd: s.command, tty: s.tty, stdin: s.stdin, stdout: s.stdout, stderr: s.stderr });
    return runtime.attach(id, { tty: s.tty, stdin: s.stdin, stdout: s.stdout, stderr: s.stderr });
  };
  return {
    name: 'runtime-url',
    unsupported: (s, headers) => (webSocketPlan(s.kind, headers) === undefined ? (unsupportedUpgrade(headers) ?? 'unsupported upgrade') : undefined),
    async serve(u, s, id, onError) {
      const plan = webSocketPlan(s.kind, u.req.headers);
      const target = await url(s, id);
      if (plan === 'v5') await serveV5(u.req, u.socket, u.head, target, s);
      else if (plan === 'tunnel') await serveTunnel(u.req, u.socket, u.head, target);
      else await proxyToRuntime(u.req, u.socket, u.head, target, onError);
    },
  };
}

export function directStreaming(streams: DirectStreams): StreamingBackend {
  return {
    name: 'direct',
    unsupported: (s, headers) => (directPlan(s.kind, headers) === undefined ? directUnsupported(s.kind, headers) : undefined),
    async serve(u, s, id, onError) {
      const plan = directPlan(s.kind, u.req.headers);
      if (plan === undefined) throw new KnodeError('BAD_REQUEST', directUnsupported(s.kind, u.req.headers));
      if (plan === 'spdy' || plan === 'tunnel') {
        await serveDirectPortForward(u.req, u.socket, u.head, plan, (port) => streams.portForwardConnect(id, port), onError);
      } else {
        const opts = { tty: s.tty, stdin: s.stdin, stdout: s.stdout, stderr: s.stderr };
        const open = s.kind === 'exec' ? () => streams.execStream(id, { cmd: s.command, ...opts }) : () => streams.attachStream(id, opts);
        if (plan === 'spdy-v4') await serveDirectStdioSpdy(u.socket, u.head, s, open, onError);
        else await serveDirectStdio(u.req, u.socket, u.head, plan, s, open, onError);
      }
    },
  };
}

/** The backend for a runtime: direct when it offers DirectStreams, else its streaming URLs. */
export function streamingBackendFor(runtime: RuntimeService & { readonly directStreams?: DirectStreams }): StreamingBackend {
  return runtime.directStreams !== undefined ? directStreaming(runtime.directStreams) : runtimeUrlStreaming(runtime);
}

/**
 * exec, attach and port-forward of the Docker backend, served in-process (as
 * cri-dockerd's own streaming server does): the kubelet server speaks
 * kubectl's protocols and drives these sessions directly.
 *
 * Design notes:
 * - exec: docker's exec API (create, then a hijacked start); attach: docker
 *   attach with stream=1. Both give one raw connection: stdin is written to it
 *   (end() half-closes it, which docker passes on as the process's stdin EOF);
 *   output is docker's multiplexed frames (frames.ts) without a TTY and raw
 *   bytes with one. Whether attach has a TTY is the container's, not the
 *   request's.
 * - The exit code of an exec is read with exec inspect once the output ended
 *   (docker sets it a moment later, hence the short poll).
 * - port-forward: a socket made inside the pause container's network
 *   namespace (/proc/<pid>/ns/net) connected to 127.0.0.1:port, as
 *   cri-dockerd does with nsenter; no process is spawned.
 */
import { Socket } from 'node:net';
import { PassThrough, type Duplex } from 'node:stream';
import type Docker from 'dockerode';
import { KnodeError } from '../../../lib/errors.js';
import { connectTcpInNetns } from '../../../lib/netns-daemon.js';
import type { AttachOptions, CallOptions, DirectStreams, ExecOptions, StdioSession } from '../types.js';
import { FrameParser } from './frames.js';

export type EngineCall = <T>(op: string, fn: () => Promise<T>, options?: CallOptions) => Promise<T>;

/** Splits docker's output connection into stdout/stderr streams (pausing the connection while they are full). */
function demux(conn: Duplex, tty: boolean, stderrWanted: boolean): { stdout: PassThrough; stderr: PassThrough | undefined } {
  const stdout = new PassThrough();
  const stderr = !tty && stderrWanted ? new PassThrough() : undefined;
  const parser = tty ? undefined : new FrameParser();
  const push = (out: PassThrough, data: Buffer): void => {
    if (!out.write(data)) {
      conn.pause();
      out.once('drain', () => conn.resume());
    }
  };
  conn.on('data', (chunk: Buffer) => {
    if (parser === undefined) {
      push(stdout, chunk);
      return;
    }
    for (const f of parser.push(chunk)) {
      if (f.stream === 'stderr') {
        if (stderr !== undefined) push(stderr, Buffer.from(f.payload));
      } else push(stdout, Buffer.from(f.payload));
    }
  });
  const finish = (): void => {
    stdout.end();
    stderr?.end();
  };
  conn.once('end', finish);
  conn.once('close', finish);
  return { stdout, stderr };
}

function ended(stream: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve) => {
    stream.once('end', resolve);
    stream.once('close', resolve);
  });
}

export class DockerStreams implements DirectStreams {
  constructor(
    private readonly docker: Docker,
    private readonly call: EngineCall,
  ) {}

  async execStream(containerId: string, o: ExecOptions, options?: CallOptions): Promise<StdioSession> {
    if (o.cmd.length === 0) throw new KnodeError('INVALID_ARGUMENT', 'exec: empty command');
    const tty = o.tty === true;
    const container = this.docker.getContainer(containerId);
    const exec = await this.call(
      `exec create ${containerId}`,
      () => container.exec({ Cmd: o.cmd, AttachStdin: o.stdin === true, AttachStdout: o.stdout === true || tty, AttachStderr: o.stderr === true && !tty, Tty: tty }),
      options,
    );
    const conn = (await this.call(`exec start ${containerId}`, () => exec.start({ hijack: true, stdin: o.stdin === true, Tty: tty }), options)) as Duplex;
    conn.on('error', () => undefined); // reported as the end of the output
    const { stdout, stderr } = demux(conn, tty, o.stderr === true);
    const outputDone = ended(stdout);
    let closed = false;
    return {
      stdin: o.stdin === true ? conn : undefined,
      stdout,
      stderr,
      resize: async (width, height) => {
        if (tty) await this.call(`exec resize ${containerId}`, () => exec.resize({ w: width, h: height }));
      },
      wait: async () => {
        await outputDone;
        if (closed) return undefined;
        for (let i = 0; i < 100; i++) {
          const r = await this.call(`exec inspect ${containerId}`, () => exec.inspect());
          if (!r.Running && r.ExitCode !== null) return r.ExitCode;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        throw new KnodeError('UNKNOWN', `exec in ${containerId}: docker reports no exit code`);
      },
      close: () => {
        closed = true;
        conn.destroy();
      },
    };
  }

  async attachStream(containerId: string, o: AttachOptions, options?: CallOptions): Promise<StdioSession> {
    const container = this.docker.getContainer(containerId);
    const info = await this.call(`inspect ${containerId}`, () => container.inspect(), options);
    if (!info.State.Running) throw new KnodeError('FAILED_PRECONDITION', `attach: container ${containerId} is not running`);
    const tty = info.Config.Tty === true;
    if (o.stdin === true && info.Config.OpenStdin !== true) throw new KnodeError('INVALID_ARGUMENT', `attach: container ${containerId} was not started with stdin open`);
    const conn = (await this.call(
      `attach ${containerId}`,
      () => container.attach({ stream: true, hijack: true, stdin: o.stdin === true, stdout: o.stdout === true || tty, stderr: o.stderr === true && !tty }),
      options,
    )) as Duplex;
    conn.on('error', () => undefined);
    const { stdout, stderr } = demux(conn, tty, o.stderr === true);
    const outputDone = ended(stdout);
    return {
      stdin: o.stdin === true ? conn : undefined,
      stdout,
      stderr,
      resize: async (width, height) => {
        if (tty) await this.call(`resize ${containerId}`, () => container.resize({ w: width, h: height }));
      },
      wait: async () => {
        await outputDone;
        return undefined;
      },
      close: () => conn.destroy(),
    };
  }

  async portForwardConnect(podSandboxId: string, port: number, options?: CallOptions): Promise<Socket> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new KnodeError('INVALID_ARGUMENT', `port-forward: invalid port ${port}`);
    const info = await this.call(`inspect ${podSandboxId}`, () => this.docker.getContainer(podSandboxId).inspect(), options);
    if (!info.State.Running || info.State.Pid <= 0) throw new KnodeError('FAILED_PRECONDITION', `port-forward: sandbox ${podSandboxId} is not running`);
    const fd = connectTcpInNetns(`/proc/${info.State.Pid}/ns/net`, '127.0.0.1', port);
    const socket = new Socket({ fd, readable: true, writable: true });
    socket.setNoDelay(true);
    return socket;
  }
}

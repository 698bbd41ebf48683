/**
 * The kubelet's own streaming (the Docker backend): which upgrades it serves,
 * the exit Status, resize parsing, the SPDY/3 server (dictionary-compressed
 * header blocks as Go's spdystream sends them, SYN_REPLY, PING), and
 * port-forward end to end over loopback: a SPDY client (the kubelet's own
 * SpdyClient) → the SPDY port-forward server → a TCP echo server; and exec
 * over v5.channel.k8s.io with an in-memory session.
 */
import t, { type Test } from 'tap';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { constants, createDeflate } from 'node:zlib';
import WebSocket from 'ws';
import { directPlan, exitStatus, parseResize, serveDirectPortForward, serveDirectStdio, serveDirectStdioSpdy } from '../../agent/server/direct-streaming.js';
import { decodeHeaderBlock, encodeSynReply, spdyDictionary, SpdyServer } from '../../agent/server/spdy-server.js';
import { encodeData, encodeHeaderBlock, encodeSynStream, FrameReader, FLAG_FIN, SpdyClient } from '../../agent/server/spdy.js';
import { parseStreamRequest } from '../../agent/server/streaming.js';
import type { StdioSession } from '../../agent/runtime/types.js';

const ws = (protocols: string): Record<string, string> => ({ upgrade: 'websocket', 'sec-websocket-protocol': protocols });

t.test('which upgrades the kubelet serves itself', async (t) => {
  t.equal(directPlan('exec', ws('v4.channel.k8s.io, v5.channel.k8s.io')), 'ws-v5');
  t.equal(directPlan('attach', ws('v4.channel.k8s.io')), 'ws-v4');
  t.equal(directPlan('exec', ws('channel.k8s.io')), undefined, 'v1 (plain-text errors) is not served');
  t.equal(directPlan('exec', { upgrade: 'SPDY/3.1', 'x-stream-protocol-version': 'v4.channel.k8s.io, v3.channel.k8s.io' }), 'spdy-v4', 'remotecommand v4 over SPDY');
  t.equal(directPlan('exec', { upgrade: 'SPDY/3.1', 'x-stream-protocol-version': 'v3.channel.k8s.io' }), undefined, 'older remotecommand versions are not served');
  t.equal(directPlan('portForward', { upgrade: 'SPDY/3.1' }), 'spdy');
  t.equal(directPlan('portForward', ws('SPDY/3.1+portforward.k8s.io')), 'tunnel');
  t.equal(directPlan('portForward', ws('v4.channel.k8s.io')), undefined);
  t.equal(directPlan('exec', {}), undefined);
});

t.test('exit Status and resize messages', async (t) => {
  t.same(exitStatus(0, ['true']), { metadata: {}, status: 'Success' });
  t.same(exitStatus(undefined, []), { metadata: {}, status: 'Success' }, 'attach: no exit code');
  const s = exitStatus(3, ['sh', '-c', 'exit 3']) as { status: string; reason: string; details: { causes: { reason: string; message: string }[] } };
  t.equal(s.status, 'Failure');
  t.equal(s.reason, 'NonZeroExitCode');
  t.same(s.details.causes, [{ reason: 'ExitCode', message: '3' }], 'kubectl reads the code from details.causes');
  t.same(parseResize(Buffer.from('{"Width":80,"Height":24}')), { width: 80, height: 24 });
  t.equal(parseResize(Buffer.from('{"Width":-1,"Height":24}')), undefined);
  t.equal(parseResize(Buffer.from('{"Width":"80"}')), undefined);
  t.equal(parseResize(Buffer.from('not json')), undefined);
});

t.test('the SPDY/3 header dictionary', async (t) => {
  const d = spdyDictionary();
  t.equal(d.length, 1423, 'the draft-3 dictionary is 1423 bytes');
  t.ok(d.includes(Buffer.from([0, 0, 0, 6, ...Buffer.from('200 OK'), 0, 0, 0, 7, ...Buffer.from('version')])), 'the status/version words');
  t.same([...d.subarray(0, 11)], [0, 0, 0, 7, ...Buffer.from('options')]);
  t.equal(d.subarray(-7).toString(), ',enq=0.');
});

t.test('header blocks', async (t) => {
  const h = decodeHeaderBlock(encodeHeaderBlock({ streamType: 'data', port: '80', requestID: '0' }));
  t.same([...h], [
    ['streamtype', 'data'],
    ['port', '80'],
    ['requestid', '0'],
  ]);
  t.throws(() => decodeHeaderBlock(Buffer.from([0, 0, 0, 2, 0, 0, 0, 9, 1])), /malformed SPDY header block/);
  t.equal(encodeSynReply(5, Buffer.from([9])).readUInt16BE(2), 2, 'SYN_REPLY is control type 2');
});

/** A header block compressed the way Go's spdystream does: zlib with the SPDY dictionary, one stream per session. */
function goCompressor(): (headers: Record<string, string>) => Promise<Buffer> {
  const z = createDeflate({ dictionary: spdyDictionary() });
  return (headers) =>
    new Promise((resolve) => {
      z.write(encodeHeaderBlock(headers));
      z.flush(constants.Z_SYNC_FLUSH, () => resolve(z.read() as Buffer));
    });
}

t.test('SPDY server: streams from a dictionary-compressing client, data, PING', async (t) => {
  const out: Buffer[] = [];
  const events: string[] = [];
  const server = new SpdyServer((b) => out.push(b), {
    onStream: (id, headers) => events.push(`stream ${id} ${headers.get('streamtype')} ${headers.get('port')}`),
    onData: (id, data, fin) => events.push(`data ${id} ${data.toString()}${fin ? ' FIN' : ''}`),
    onReset: (id) => events.push(`reset ${id}`),
    onError: (err) => events.push(`error ${err.message}`),
  });
  t.teardown(() => server.close());
  const compress = goCompressor();
  const ping = Buffer.from([0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]);
  const bytes = Buffer.concat([
    encodeSynStream(1, await compress({ streamType: 'error', port: '80', requestID: '0' })),
    encodeSynStream(3, await compress({ streamType: 'data', port: '80', requestID: '0' })),
    encodeData(3, Buffer.from('GET /'), FLAG_FIN),
    ping,
  ]);
  // in awkward pieces
  for (let i = 0; i < bytes.length; i += 7) server.receive(bytes.subarray(i, i + 7));
  await new Promise((r) => setTimeout(r, 50));
  t.same(events, ['stream 1 error 80', 'stream 3 data 80', 'data 3 GET / FIN']);
  const frames = new FrameReader().push(Buffer.concat(out));
  t.same(
    frames.map((f) => (f.control ? `control ${f.type}` : `data ${f.streamId}`)),
    ['control 2', 'control 2', 'control 6'],
    'a SYN_REPLY for each stream, the PING echoed',
  );
  server.write(3, Buffer.from('x'));
  server.end(3);
  server.write(99, Buffer.from('unknown stream: dropped'));
  const more = new FrameReader().push(Buffer.concat(out)).slice(3);
  t.same(
    more.map((f) => (f.control ? `control ${f.type}` : `data ${f.streamId} ${f.data.toString()} ${f.flags}`)),
    ['data 3 x 0', 'data 3  1'],
  );
});

t.test('SPDY server: garbage is an error, not a crash', async (t) => {
  const errors: string[] = [];
  const server = new SpdyServer(() => undefined, {
    onStream: () => undefined,
    onData: () => undefined,
    onReset: () => undefined,
    onError: (err) => errors.push(err.message),
  });
  t.teardown(() => server.close());
  server.receive(encodeSynStream(1, Buffer.from('not zlib at all')));
  await new Promise((r) => setTimeout(r, 50));
  t.equal(errors.length, 1);
});

/** An HTTP server whose upgrades run `serve`; returns its port. */
async function upgradeServer(t: Test, serve: (req: IncomingMessage, socket: Socket, head: Buffer) => Promise<void>): Promise<number> {
  const http = createHttpServer();
  http.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => void serve(req, socket, head));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    http.closeAllConnections();
    http.close();
  });
  return (http.address() as AddressInfo).port;
}

t.test('port-forward over SPDY: a client connection spliced to a TCP server', async (t) => {
  const echo = createServer((c) => {
    c.on('data', (d: Buffer) => c.write(`echo:${d.toString()}`));
    c.on('end', () => c.end());
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  t.teardown(() => echo.close());
  const echoPort = (echo.address() as AddressInfo).port;
  const asked: number[] = [];
  const port = await upgradeServer(t, (req, socket, head) =>
    serveDirectPortForward(req, socket, head, 'spdy', async (p) => {
      asked.push(p);
      if (p !== 4242) throw new Error('connection refused');
      return connect({ host: '127.0.0.1', port: echoPort });
    }, () => undefined),
  );
  const sock = connect({ host: '127.0.0.1', port });
  t.teardown(() => sock.destroy());
  sock.write(`POST /portForward/ns/pod HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n`);
  const head = await new Promise<string>((resolve) => sock.once('data', (d: Buffer) => resolve(d.toString('latin1'))));
  t.match(head, /^HTTP\/1\.1 101 /);
  const got = new Map<number, string>();
  const fins = new Set<number>();
  const client = new SpdyClient(sock, {
    onData: (id, data, fin) => {
      got.set(id, (got.get(id) ?? '') + data.toString());
      if (fin) fins.add(id);
    },
    onReset: () => undefined,
  });
  t.teardown(() => client.close());
  const errorId = await client.openStream({ streamType: 'error', port: '4242', requestID: '0' });
  const dataId = await client.openStream({ streamType: 'data', port: '4242', requestID: '0' });
  client.write(dataId, Buffer.from('hello'));
  client.end(dataId);
  const wait = async (ok: () => boolean): Promise<void> => {
    for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  };
  await wait(() => fins.has(dataId) && fins.has(errorId));
  t.equal(got.get(dataId), 'echo:hello', 'data through the forwarded connection');
  t.ok(fins.has(dataId) && fins.has(errorId), 'both streams half-closed when the connection ended');
  t.equal(got.get(errorId) ?? '', '', 'no error');

  const e2 = await client.openStream({ streamType: 'error', port: '81', requestID: '1' });
  await client.openStream({ streamType: 'data', port: '81', requestID: '1' });
  await wait(() => fins.has(e2));
  t.match(got.get(e2), /error forwarding port 81 to pod: connection refused/, 'a failed connect is reported on the error stream');
  t.same(asked, [4242, 81]);
});

t.test('exec over v5.channel.k8s.io: output, close-stdin, exit Status; a failing session as a Failure status', async (t) => {
  let lastStdin = '';
  const session = (exitCode: number): StdioSession => {
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    // "cat": stdin to stdout; at the end of stdin, one line to stderr and the exit.
    stdin.on('data', (d: Buffer) => {
      lastStdin += d.toString();
      stdout.write(d);
    });
    stdin.on('end', () => {
      stderr.end('bye\n');
      stdout.end();
    });
    return { stdin, stdout, stderr, resize: async () => undefined, wait: () => new Promise((r) => stdout.once('end', () => r(exitCode))), close: () => stdout.destroy() };
  };
  const port = await upgradeServer(t, (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const s = parseStreamRequest(url.pathname, url.searchParams)!;
    return serveDirectStdio(req, socket, head, 'ws-v5', s, async () => {
      if (s.command[0] === 'fail') throw new Error('no such container');
      return session(Number(s.command[1] ?? '0'));
    }, () => undefined);
  });
  const run = (cmd: string[], input: string): Promise<Map<number, string>> =>
    new Promise((resolve, reject) => {
      const q = cmd.map((c) => `command=${c}`).join('&');
      const c = new WebSocket(`ws://127.0.0.1:${port}/exec/ns/pod/ctr?${q}&stdin=1&stdout=1&stderr=1`, ['v5.channel.k8s.io']);
      const ch = new Map<number, string>();
      c.on('open', () => {
        c.send(Buffer.concat([Buffer.from([0]), Buffer.from(input)]));
        c.send(Buffer.from([255, 0]));
      });
      c.on('message', (d: Buffer) => ch.set(d[0]!, (ch.get(d[0]!) ?? '') + d.subarray(1).toString()));
      c.on('error', reject);
      c.on('close', () => resolve(ch));
    });
  const r = await run(['cat', '7'], 'some input');
  t.equal(r.get(1), 'some input', 'stdin to the session, its output on channel 1');
  t.equal(r.get(2), 'bye\n', 'stderr on channel 2 (after the close of stdin)');
  t.equal(JSON.parse(r.get(3) ?? '{}').details.causes[0].message, '7', 'the exit code on channel 3');
  t.equal(lastStdin, 'some input');
  const ok = await run(['cat', '0'], '');
  t.equal(JSON.parse(ok.get(3) ?? '{}').status, 'Success');
  const failed = await run(['fail'], '');
  const st = JSON.parse(failed.get(3) ?? '{}') as { status: string; message: string };
  t.equal(st.status, 'Failure');
  t.match(st.message, /no such container/);
});

t.test('exec over SPDY (remotecommand v4): streams by type, stdin FIN, Status on the error stream', async (t) => {
  const port = await upgradeServer(t, (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const s = parseStreamRequest(url.pathname, url.searchParams)!;
    return serveDirectStdioSpdy(socket, head, s, async () => {
      const stdin = new PassThrough();
      const stdout = new PassThrough();
      stdin.pipe(stdout);
      return { stdin, stdout, stderr: undefined, resize: async () => undefined, wait: () => new Promise((r) => stdout.once('end', () => r(5))), close: () => stdout.destroy() };
    }, () => undefined);
  });
  const sock = connect({ host: '127.0.0.1', port });
  t.teardown(() => sock.destroy());
  sock.write(`POST /exec/ns/pod/ctr?command=cat&stdin=1&stdout=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n`);
  const head = await new Promise<string>((resolve) => sock.once('data', (d: Buffer) => resolve(d.toString('latin1'))));
  t.match(head, /^HTTP\/1\.1 101 [^]*X-Stream-Protocol-Version: v4\.channel\.k8s\.io/);
  const got = new Map<number, string>();
  const client = new SpdyClient(sock, { onData: (id, d) => got.set(id, (got.get(id) ?? '') + d.toString()), onReset: () => undefined });
  t.teardown(() => client.close());
  const errorId = await client.openStream({ streamType: 'error' });
  const stdinId = await client.openStream({ streamType: 'stdin' });
  const stdoutId = await client.openStream({ streamType: 'stdout' });
  client.write(stdinId, Buffer.from('abc'));
  client.end(stdinId);
  await new Promise((r) => sock.once('close', r));
  t.equal(got.get(stdoutId), 'abc', 'stdin through the session to stdout');
  const status = JSON.parse(got.get(errorId) ?? '{}') as { reason?: string; details?: { causes?: { message?: string }[] } };
  t.equal(status.reason, 'NonZeroExitCode');
  t.equal(status.details?.causes?.[0]?.message, '5');
});

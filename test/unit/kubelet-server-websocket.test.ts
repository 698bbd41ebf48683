/** WebSocket plans (passthrough, v5 translation, port-forward tunnel), SPDY/3 framing, the runtime's upgrade answer. */
import t from 'tap';
import { constants, createInflate } from 'node:zlib';
import { PassThrough } from 'node:stream';
import { webSocketPlan } from '../../agent/server/websocket.js';
import { encodeData, encodeHeaderBlock, encodeRstStream, encodeSynStream, FrameReader, FLAG_FIN, SpdyClient } from '../../agent/server/spdy.js';
import { parseResponseHead } from '../../agent/server/runtime-upgrade.js';

const ws = (protocols: string): Record<string, string> => ({ upgrade: 'websocket', 'sec-websocket-protocol': protocols });

t.test('which upgrades are passed through, translated or refused', async (t) => {
  t.equal(webSocketPlan('exec', { upgrade: 'SPDY/3.1' }), 'passthrough');
  t.equal(webSocketPlan('portForward', { upgrade: 'SPDY/3.1' }), 'passthrough');
  t.equal(webSocketPlan('exec', ws('v5.channel.k8s.io')), 'v5');
  t.equal(webSocketPlan('attach', ws('v4.channel.k8s.io, v5.channel.k8s.io')), 'v5', 'v5 preferred (it can close stdin)');
  t.equal(webSocketPlan('exec', ws('v4.channel.k8s.io')), 'passthrough');
  t.equal(webSocketPlan('exec', { upgrade: 'websocket' }), 'passthrough', 'no subprotocol: the runtime decides');
  t.equal(webSocketPlan('portForward', ws('SPDY/3.1+portforward.k8s.io')), 'tunnel');
  t.equal(webSocketPlan('exec', ws('SPDY/3.1+portforward.k8s.io')), undefined);
  t.equal(webSocketPlan('portForward', ws('v5.channel.k8s.io')), undefined);
  t.equal(webSocketPlan('exec', ws('base64.binary.k8s.io')), undefined);
  t.equal(webSocketPlan('exec', {}), undefined);
});

t.test('SPDY/3 frames', async (t) => {
  const data = encodeData(3, Buffer.from('hi'), FLAG_FIN);
  t.same([...data], [0, 0, 0, 3, 1, 0, 0, 2, 0x68, 0x69], 'DATA: stream id, FIN, 24-bit length, payload');
  const rst = encodeRstStream(7, 5);
  t.same([...rst.subarray(0, 8)], [0x80, 3, 0, 3, 0, 0, 0, 8], 'control frame head: version 3, type 3, length 8');
  t.same([rst.readUInt16BE(2), rst.readUInt32BE(8), rst.readUInt32BE(12)], [3, 7, 5]);
  const block = encodeHeaderBlock({ streamType: 'stdin' });
  t.same([...block], [0, 0, 0, 1, 0, 0, 0, 10, ...Buffer.from('streamtype'), 0, 0, 0, 5, ...Buffer.from('stdin')], 'header names lower-cased');
  const syn = encodeSynStream(1, Buffer.from([1, 2, 3]));
  t.same([syn.readUInt16BE(2), syn.readUInt32BE(4) & 0xffffff, syn.readUInt32BE(8), syn.readUInt32BE(12)], [1, 13, 1, 0]);
  t.same([...syn.subarray(18)], [1, 2, 3]);

  const reader = new FrameReader();
  const all = Buffer.concat([data, rst, syn]);
  const frames = [...reader.push(all.subarray(0, 5)), ...reader.push(all.subarray(5, 20)), ...reader.push(all.subarray(20))];
  t.equal(frames.length, 3, 'frames split across chunks are reassembled');
  t.same(frames[0], { control: false, streamId: 3, flags: FLAG_FIN, data: Buffer.from('hi') });
  t.match(frames[1], { control: true, type: 3, flags: 0 });
  t.match(frames[2], { control: true, type: 1 });
});

t.test('a SPDY client session: odd stream ids, header blocks as one zlib stream, no window updates, ping echo', async (t) => {
  const wire = new PassThrough();
  const written: Buffer[] = [];
  const origWrite = wire.write.bind(wire);
  wire.write = ((chunk: Buffer) => {
    written.push(Buffer.from(chunk));
    return true;
  }) as typeof wire.write;
  const got: [number, string, boolean][] = [];
  const client = new SpdyClient(wire, { onData: (id, d, fin) => got.push([id, d.toString(), fin]), onReset: () => undefined });
  t.equal(await client.openStream({ streamType: 'error' }), 1);
  t.equal(await client.openStream({ streamType: 'stdout' }), 3);
  const syns = new FrameReader().push(Buffer.concat(written));
  const inflater = createInflate();
  const blocks = syns.map((f) => f.data.subarray(10));
  const out: Buffer[] = [];
  inflater.on('data', (c: Buffer) => out.push(c));
  for (const b of blocks) inflater.write(b);
  await new Promise<void>((r) => inflater.flush(constants.Z_SYNC_FLUSH, () => r()));
  t.same(Buffer.concat(out), Buffer.concat([encodeHeaderBlock({ streamType: 'error' }), encodeHeaderBlock({ streamType: 'stdout' })]), 'the blocks inflate in sequence');
  written.length = 0;
  origWrite(Buffer.concat([encodeData(3, Buffer.from('out')), encodeData(3, Buffer.alloc(0), FLAG_FIN)]));
  const ping = Buffer.from([0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 9]);
  origWrite(ping);
  await new Promise((r) => setImmediate(r));
  t.same(got, [[3, 'out', false], [3, '', true]]);
  t.same(Buffer.concat(written), ping, 'only the ping echo is written back (no WINDOW_UPDATE: containerd drops the connection on them)');
  client.close();
});

t.test('the runtime\'s upgrade answer', async (t) => {
  const h = parseResponseHead('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nX-Stream-Protocol-Version: v4.channel.k8s.io');
  t.equal(h?.status, 101);
  t.equal(h?.headers.get('x-stream-protocol-version'), 'v4.channel.k8s.io');
  t.equal(parseResponseHead('HTTP/1.1 403 Forbidden')?.status, 403);
  t.equal(parseResponseHead('garbage'), undefined);
});

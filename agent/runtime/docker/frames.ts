/**
 * The Docker Engine's multiplexed stream format (attach, logs and exec of a
 * container without a TTY): frames of an 8-byte header — stream type (1 stdout,
 * 2 stderr), three zero bytes, big-endian payload length — then the payload.
 *
 * Design notes:
 * - A small incremental parser instead of docker-modem's demuxStream: the log
 *   copier needs frame boundaries (one frame = one log message), which
 *   demuxStream loses by writing into two plain streams. Pure.
 */
export type FrameStream = 'stdout' | 'stderr';

export interface Frame {
  stream: FrameStream;
  payload: Buffer;
}

export class FrameParser {
  private buffered: Buffer = Buffer.alloc(0);

  /** Feeds bytes; returns the frames completed by them. */
  push(chunk: Buffer): Frame[] {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const frames: Frame[] = [];
    while (this.buffered.length >= 8) {
      const size = this.buffered.readUInt32BE(4);
      if (this.buffered.length < 8 + size) break;
      const type = this.buffered[0];
      // 0 is stdin (echoed by a TTY-less attach); treat it as stdout.
      frames.push({ stream: type === 2 ? 'stderr' : 'stdout', payload: this.buffered.subarray(8, 8 + size) });
      this.buffered = this.buffered.subarray(8 + size);
    }
    return frames;
  }

  /** Bytes of an incomplete frame left at the end of the stream. */
  get pending(): number {
    return this.buffered.length;
  }
}

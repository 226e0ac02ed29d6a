import { strict as assert } from 'assert';
import { Flags, type Frame, FrameParser, FrameType, HEADER_LENGTH, MESSAGE_LENGTH_MAX, encodeFrame } from '../../src/ttrpc';
import { hex } from '../support/ttrpc';

interface Oversize {
  id: number;
  length: number;
  type: number;
  flags: number;
}

function collect(maxLength?: number) {
  const frames: Frame[] = [];
  const oversize: Oversize[] = [];
  const parser = new FrameParser({
    maxLength,
    onFrame: (f) => frames.push(f),
    onOversize: (id, length, type, flags) => oversize.push({ id, length, type, flags }),
  });
  return { parser, frames, oversize };
}

describe('ttrpc frame', () => {
  it('has the protocol constants', () => {
    assert.equal(MESSAGE_LENGTH_MAX, 4194304);
    assert.equal(HEADER_LENGTH, 10);
    assert.deepEqual([FrameType.Request, FrameType.Response, FrameType.Data], [1, 2, 3]);
    assert.deepEqual([Flags.RemoteClosed, Flags.RemoteOpen, Flags.NoData], [1, 2, 4]);
  });

  it('encodes a big-endian 10-byte header followed by the data', () => {
    assert.deepEqual(encodeFrame(1, FrameType.Request, 0, Buffer.from('abc')), hex('00000003 00000001 01 00 616263'));
    assert.deepEqual(encodeFrame(0x01020304, FrameType.Data, Flags.RemoteClosed | Flags.NoData, Buffer.alloc(0)), hex('00000000 01020304 03 05'));
    assert.deepEqual(encodeFrame(0xffffffff, 2, 0xff, new Uint8Array([9])), hex('00000001 ffffffff 02 ff 09'));
  });

  it('rejects header fields that do not fit', () => {
    assert.throws(() => encodeFrame(-1, 1, 0, Buffer.alloc(0)), /stream id -1/);
    assert.throws(() => encodeFrame(2 ** 32, 1, 0, Buffer.alloc(0)), /stream id/);
    assert.throws(() => encodeFrame(1, 256, 0, Buffer.alloc(0)), /frame type 256/);
    assert.throws(() => encodeFrame(1, 1, 1.5, Buffer.alloc(0)), /frame flags 1.5/);
  });

  it('parses coalesced frames from one chunk as views of that chunk (no copy)', () => {
    const { parser, frames } = collect();
    const chunk = Buffer.concat([
      encodeFrame(1, 1, 0, Buffer.from('one')),
      encodeFrame(3, 3, Flags.RemoteClosed, Buffer.alloc(0)),
      encodeFrame(5, 2, 0, Buffer.from('three')),
    ]);
    parser.push(chunk);
    assert.equal(frames.length, 3);
    assert.deepEqual(
      frames.map((f) => [f.streamId, f.type, f.flags, f.data.toString()]),
      [
        [1, 1, 0, 'one'],
        [3, 3, 1, ''],
        [5, 2, 0, 'three'],
      ],
    );
    for (const f of frames) assert.equal(f.raw.buffer, chunk.buffer, 'frame inside a chunk must be a view');
    assert.deepEqual(frames[2].raw, encodeFrame(5, 2, 0, Buffer.from('three')));
    assert.equal(parser.pending, 0);
  });

  it('reassembles frames split at every possible byte boundary', () => {
    const stream = Buffer.concat([
      encodeFrame(1, 1, 0, Buffer.from('hello world')),
      encodeFrame(3, 1, 2, Buffer.alloc(0)),
      encodeFrame(5, 3, 0, Buffer.alloc(300, 7)),
    ]);
    for (let a = 0; a <= stream.length; a++) {
      for (let b = a; b <= stream.length; b += 7) {
        const { parser, frames } = collect();
        parser.push(stream.subarray(0, a));
        parser.push(stream.subarray(a, b));
        parser.push(stream.subarray(b));
        assert.equal(frames.length, 3, `split at ${a},${b}`);
        assert.equal(frames[0].data.toString(), 'hello world');
        assert.equal(frames[1].flags, 2);
        assert.deepEqual(frames[2].data, Buffer.alloc(300, 7));
        assert.deepEqual(Buffer.concat(frames.map((f) => f.raw)), stream);
      }
    }
  });

  it('parses a stream fed one byte at a time and reports pending bytes mid-frame', () => {
    const { parser, frames } = collect();
    const f = encodeFrame(7, 1, 0, Buffer.from('xyz'));
    for (let i = 0; i < f.length - 1; i++) {
      parser.push(f.subarray(i, i + 1));
      assert.equal(parser.pending, i + 1);
    }
    parser.push(f.subarray(f.length - 1));
    assert.equal(parser.pending, 0);
    assert.equal(frames.length, 1);
    assert.equal(frames[0].data.toString(), 'xyz');
  });

  it('discards an oversize frame without buffering it, reports it after the discard, and keeps parsing', () => {
    const { parser, frames, oversize } = collect(16);
    const big = encodeFrame(9, 1, 3, Buffer.alloc(100, 1));
    const next = encodeFrame(11, 1, 0, Buffer.from('ok'));
    parser.push(big.subarray(0, 50));
    assert.deepEqual(oversize, [], 'reported only once the whole frame is skipped');
    assert.equal(parser.pending, 50);
    parser.push(Buffer.concat([big.subarray(50), next]));
    assert.deepEqual(oversize, [{ id: 9, length: 100, type: 1, flags: 3 }]);
    assert.equal(frames.length, 1);
    assert.equal(frames[0].streamId, 11);
    assert.equal(parser.pending, 0);
  });

  it('accepts a frame of exactly maxLength and rejects maxLength + 1', () => {
    const { parser, frames, oversize } = collect(8);
    parser.push(encodeFrame(1, 1, 0, Buffer.alloc(8)));
    parser.push(encodeFrame(3, 1, 0, Buffer.alloc(9)));
    assert.equal(frames.length, 1);
    assert.deepEqual(
      oversize.map((o) => [o.id, o.length]),
      [[3, 9]],
    );
  });

  it('handles an oversize header split across chunks', () => {
    const { parser, oversize, frames } = collect(4);
    const big = encodeFrame(5, 3, 0, Buffer.alloc(10));
    parser.push(big.subarray(0, 3));
    parser.push(big.subarray(3, 12));
    parser.push(big.subarray(12));
    parser.push(encodeFrame(7, 1, 0, Buffer.from('a')));
    assert.deepEqual(oversize.map((o) => o.id), [5]);
    assert.deepEqual(frames.map((f) => f.streamId), [7]);
  });

  it('assembles large frames in buffers recycle() hands back, and takes back only its own', () => {
    const frames: Frame[] = [];
    const parser = new FrameParser({ onFrame: (f) => frames.push(f), onOversize: () => assert.fail('no oversize') });
    const payload = (seed: number) => Buffer.alloc(2 << 20, seed);
    const feed = (f: Buffer) => { for (let o = 0; o < f.length; o += 65536) parser.push(f.subarray(o, o + 65536)); };
    feed(encodeFrame(1, FrameType.Request, 0, payload(1)));
    const first = frames[0].raw;
    parser.recycle(Buffer.from(first)); // a copy: not the parser's
    parser.recycle(first);
    feed(encodeFrame(3, FrameType.Request, 0, payload(2)));
    assert.equal(frames[1].raw.buffer, first.buffer, 'the second large frame reuses the first one\'s buffer');
    assert.ok(frames[1].data.equals(payload(2)), 'with its own bytes');
    feed(encodeFrame(5, FrameType.Request, 0, payload(3)));
    assert.notEqual(frames[2].raw.buffer, first.buffer, 'a buffer still in use is not handed out twice');
    // Small frames are never pooled: recycle ignores them.
    feed(encodeFrame(7, FrameType.Request, 0, Buffer.alloc(100)));
    parser.recycle(frames[3].raw);
    feed(encodeFrame(9, FrameType.Request, 0, payload(4)));
    assert.notEqual(frames[4].raw.buffer, frames[3].raw.buffer);
  });

  it('validates maxLength', () => {
    assert.throws(() => collect(-1), /maxLength -1/);
    assert.throws(() => collect(2 ** 32), /maxLength/);
  });
});

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

  it('accepts every uint32 stream id and uint8 type and flags, and names the field of anything else', () => {
    assert.deepEqual(encodeFrame(0, 0, 0, Buffer.alloc(0)), hex('00000000 00000000 00 00'));
    assert.deepEqual(encodeFrame(0xffffffff, 0xff, 0xff, Buffer.alloc(0)), hex('00000000 ffffffff ff ff'));
    for (const [args, message] of [
      [[1.5, 1, 0], 'stream id 1.5 is not a uint32'],
      [[-1, 1, 0], 'stream id -1 is not a uint32'],
      [[2 ** 32, 1, 0], 'stream id 4294967296 is not a uint32'],
      [[1, -1, 0], 'frame type -1 is not a uint8'],
      [[1, 0.5, 0], 'frame type 0.5 is not a uint8'],
      [[1, 256, 0], 'frame type 256 is not a uint8'],
      [[1, 1, -1], 'frame flags -1 is not a uint8'],
      [[1, 1, 256], 'frame flags 256 is not a uint8'],
    ] as Array<[[number, number, number], string]>) {
      assert.throws(() => encodeFrame(...args, Buffer.alloc(0)), (e: Error) => e instanceof RangeError && e.message === `ttrpc: ${message}`, message);
    }
    // A length that does not fit the header's uint32 (a stand-in: a real 4 GiB buffer is too big for a test).
    assert.throws(() => encodeFrame(1, 1, 0, { length: 2 ** 32 } as Uint8Array),
      (e: Error) => e instanceof RangeError && e.message === 'ttrpc: frame data of 4294967296 bytes does not fit a uint32 length');
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

  it('hands out views of a chunk that is not from Node\'s shared pool, the empty frame that ends it too', () => {
    const { parser, frames } = collect();
    const bytes = Buffer.concat([encodeFrame(1, 1, 0, Buffer.from('one')), encodeFrame(3, 3, 0, Buffer.alloc(0))]);
    // Buffer.alloc never uses the pool that small copies come from, so a copy cannot share its memory.
    const chunk = Buffer.alloc(bytes.length);
    bytes.copy(chunk);
    parser.push(chunk);
    assert.deepEqual(frames.map((f) => [f.streamId, f.raw.buffer === chunk.buffer, f.raw.byteOffset]), [[1, true, 0], [3, true, 13]]);
  });

  it('emits an empty frame as soon as its split header is complete', () => {
    const { parser, frames } = collect();
    const f = encodeFrame(7, 2, 0, Buffer.alloc(0));
    parser.push(f.subarray(0, 4));
    parser.push(f.subarray(4));
    assert.deepEqual(frames.map((x) => x.streamId), [7]);
    assert.equal(parser.pending, 0);
  });

  it('accepts a frame of exactly maxLength whose header arrives split', () => {
    const { parser, frames, oversize } = collect(8);
    const f = encodeFrame(1, 1, 0, Buffer.alloc(8, 3));
    parser.push(f.subarray(0, 5));
    parser.push(f.subarray(5));
    assert.deepEqual(frames.map((x) => x.data), [Buffer.alloc(8, 3)]);
    assert.deepEqual(oversize, []);
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
    // Small frames are never pooled: recycle ignores them, whether a view of a chunk or assembled.
    feed(encodeFrame(7, FrameType.Request, 0, Buffer.alloc(100)));
    parser.recycle(frames[3].raw);
    feed(encodeFrame(9, FrameType.Request, 0, payload(4)));
    assert.notEqual(frames[4].raw.buffer, frames[3].raw.buffer);
    const straddling = encodeFrame(11, FrameType.Request, 0, Buffer.alloc(100000, 5));
    parser.push(straddling.subarray(0, 50000));
    parser.push(straddling.subarray(50000));
    assert.ok(frames[5].raw.equals(straddling));
    parser.recycle(frames[5].raw);
    feed(encodeFrame(13, FrameType.Request, 0, payload(5)));
    assert.notEqual(frames[6].raw.buffer, frames[5].raw.buffer, 'an assembled small frame is not pooled');
  });

  it('pools frames from 1 MiB on, keeps at most two spare buffers, and ignores a slice of its own buffer', () => {
    const frames: Frame[] = [];
    const parser = new FrameParser({ onFrame: (f) => frames.push(f), onOversize: () => assert.fail('no oversize') });
    const feed = (f: Buffer) => { for (let o = 0; o < f.length; o += 65536) parser.push(f.subarray(o, o + 65536)); };
    const large = (id: number) => encodeFrame(id, FrameType.Request, 0, Buffer.alloc(2 << 20, id));
    // Exactly 1 MiB with its header: the smallest pooled frame.
    feed(encodeFrame(1, FrameType.Request, 0, Buffer.alloc((1 << 20) - HEADER_LENGTH)));
    parser.recycle(frames[0].raw);
    feed(large(3));
    assert.equal(frames[1].raw.buffer, frames[0].raw.buffer, 'a 1 MiB frame\'s buffer is reused');
    // Three in flight, all given back: only two are kept.
    feed(large(5));
    feed(large(7));
    const given = [frames[1], frames[2], frames[3]].map((f) => f.raw.buffer);
    assert.equal(new Set(given).size, 3);
    for (const f of [frames[1], frames[2], frames[3]]) parser.recycle(f.raw);
    for (const id of [9, 11, 13]) feed(large(id));
    const reused = frames.slice(4).map((f) => given.includes(f.raw.buffer));
    assert.deepEqual(reused, [true, true, false]);
    // The data view of a pooled frame starts inside the buffer: not a frame the parser gave out.
    parser.recycle(frames[6].data);
    feed(large(15));
    assert.notEqual(frames[7].raw.buffer, frames[6].raw.buffer);
  });

  it('validates maxLength', () => {
    assert.throws(() => collect(-1), /maxLength -1/);
    assert.throws(() => collect(2 ** 32), /maxLength/);
    assert.throws(() => collect(1.5), /^RangeError: ttrpc: maxLength 1.5 must be an integer between 0 and 4294967295$/);
    // Both ends are valid: 0 accepts only empty frames.
    assert.doesNotThrow(() => collect(0xffffffff));
    const { parser, frames, oversize } = collect(0);
    parser.push(Buffer.concat([encodeFrame(1, 1, 0, Buffer.alloc(0)), encodeFrame(3, 1, 0, Buffer.alloc(1))]));
    assert.deepEqual(frames.map((f) => f.streamId), [1]);
    assert.deepEqual(oversize.map((o) => o.id), [3]);
  });
});

// Cut-through for forwarders: FrameParser offers a large frame once its opening is in (onLargeFrame), a
// sink then gets its bytes as they arrive, and Channel.openRaw writes such a frame in pieces while every
// other frame sent meanwhile waits behind it. peekCallName reads a request's names from that opening.
import { strict as assert } from 'assert';
import type * as net from 'net';
import {
  CUT_THROUGH_MIN, CUT_THROUGH_PREFIX, type Channel, type Frame, type FrameHead, FrameParser, FrameType, HEADER_LENGTH,
  encodeFrame, encodeRequest, peekCallName,
} from '../../src/ttrpc';
import { type RawPeer, channelPair, hex } from '../support/ttrpc';
import { removeDir, scratchDir } from '../support/scratch';

/** Data of `n` bytes where no two positions a few bytes apart hold the same pattern. */
function patterned(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >> 8)) & 0xff;
  return b;
}

/** Splits `b` into pieces of the given sizes (the last takes the rest). */
function split(b: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  for (const n of sizes) {
    out.push(b.subarray(off, Math.min(off + n, b.length)));
    off += n;
  }
  if (off < b.length) out.push(b.subarray(off));
  return out;
}

interface Offer {
  head: FrameHead;
  prefix: Buffer;
}

/** A parser that takes every offered frame into a sink (or none, with `take` false) and records it all. */
function parserWithSink(take: (head: FrameHead) => boolean) {
  const frames: Frame[] = [];
  const offers: Offer[] = [];
  const pieces: Buffer[][] = [];
  const ended: number[] = [];
  const parser = new FrameParser({
    onFrame: (f) => frames.push({ ...f, raw: Buffer.from(f.raw) }),
    onOversize: () => assert.fail('no oversize expected'),
    onLargeFrame: (head, prefix) => {
      offers.push({ head, prefix: Buffer.from(prefix) });
      if (!take(head)) return undefined;
      const mine: Buffer[] = [];
      const n = pieces.push(mine) - 1;
      return { write: (b) => void mine.push(Buffer.from(b)), end: () => void ended.push(n) };
    },
  });
  return { parser, frames, offers, pieces, ended };
}

describe('ttrpc cut-through', () => {
  describe('FrameParser.onLargeFrame', () => {
    // Made in a hook, not while mocha loads the file: a broken encoder then fails these tests instead of the load.
    let big: Buffer;
    before(() => {
      big = encodeFrame(7, FrameType.Data, 1, patterned(CUT_THROUGH_MIN + 1000));
    });

    it('offers a large frame that straddles chunks once header + prefix are in, and passes every byte on in order', () => {
      const p = parserWithSink(() => true);
      // The opening itself arrives in three pieces, the header split too.
      for (const c of split(big, [4, 200, 400, 70000])) p.parser.push(c);
      assert.equal(p.offers.length, 1);
      assert.deepEqual(p.offers[0].head, { streamId: 7, type: FrameType.Data, flags: 1, length: CUT_THROUGH_MIN + 1000 });
      assert.ok(p.offers[0].prefix.equals(big.subarray(HEADER_LENGTH, HEADER_LENGTH + CUT_THROUGH_PREFIX)), 'the prefix is the first data bytes');
      assert.deepEqual(p.ended, [0], 'end() once, after the last byte');
      assert.ok(Buffer.concat(p.pieces[0]).equals(big), 'the sink got header + data exactly');
      assert.equal(p.frames.length, 0, 'a frame taken by a sink is not also emitted');
      assert.equal(p.parser.pending, 0);
    });

    it('counts a frame passing through a sink as pending until its last byte', () => {
      const p = parserWithSink(() => true);
      p.parser.push(big.subarray(0, 100));
      assert.equal(p.parser.pending, 100, 'while the opening is gathered');
      p.parser.push(big.subarray(100, 5000));
      assert.equal(p.parser.pending, 5000, 'while it streams');
      assert.deepEqual(p.ended, []);
      p.parser.push(big.subarray(5000));
      assert.equal(p.parser.pending, 0);
    });

    it('assembles and emits the frame as usual when the offer is declined', () => {
      const p = parserWithSink(() => false);
      for (const c of split(big, [3, 9000, 9000, 50000])) p.parser.push(c);
      assert.equal(p.offers.length, 1);
      assert.equal(p.frames.length, 1);
      assert.ok(p.frames[0].raw.equals(big));
    });

    it('does not offer a frame that arrives whole in one chunk, a frame below CUT_THROUGH_MIN, or anything without a handler', () => {
      const p = parserWithSink(() => true);
      const small = encodeFrame(3, FrameType.Request, 0, patterned(CUT_THROUGH_MIN - 1));
      p.parser.push(Buffer.concat([big, small.subarray(0, 5)]));
      for (const c of split(small.subarray(5), [1000, 1000])) p.parser.push(c);
      assert.equal(p.offers.length, 0);
      assert.deepEqual(p.frames.map((f) => f.streamId), [7, 3]);
      const frames: Frame[] = [];
      const plain = new FrameParser({ onFrame: (f) => frames.push(f), onOversize: () => assert.fail('oversize') });
      for (const c of split(big, [100, 100])) plain.push(c);
      assert.equal(frames.length, 1);
    });

    it('offers a frame of exactly CUT_THROUGH_MIN data bytes, and assembles one byte shorter', () => {
      const p = parserWithSink(() => true);
      const least = encodeFrame(3, FrameType.Data, 0, patterned(CUT_THROUGH_MIN));
      const shorter = encodeFrame(5, FrameType.Data, 0, patterned(CUT_THROUGH_MIN - 1));
      for (const c of split(least, [1000, 1000])) p.parser.push(c);
      for (const c of split(shorter, [1000, 1000])) p.parser.push(c);
      assert.deepEqual(p.offers.map((o) => o.head.length), [CUT_THROUGH_MIN]);
      assert.ok(Buffer.concat(p.pieces[0]).equals(least), 'the smallest offered frame went to the sink');
      assert.deepEqual(p.frames.map((f) => f.streamId), [5]);
      assert.ok(p.frames[0].raw.equals(shorter));
    });

    it('goes on parsing the frames after a cut-through frame in the same chunk', () => {
      const p = parserWithSink(() => true);
      const after = encodeFrame(9, FrameType.Response, 0, Buffer.from('next'));
      p.parser.push(big.subarray(0, 1000));
      p.parser.push(Buffer.concat([big.subarray(1000), after, big.subarray(0, 20)]));
      assert.deepEqual(p.ended, [0]);
      assert.deepEqual(p.frames.map((f) => f.raw.toString('latin1')), [after.toString('latin1')]);
      p.parser.push(big.subarray(20));
      assert.deepEqual(p.ended, [0, 1], 'a second large frame is offered and passed on as well');
      assert.ok(Buffer.concat(p.pieces[1]).equals(big));
    });
  });

  describe('peekCallName', () => {
    let req: Buffer;
    before(() => {
      req = encodeRequest({ service: 'containerd.task.v2.Task', method: 'Create', payload: patterned(100000) });
    });

    it('reads service and method from the opening of a request', () => {
      assert.deepEqual(peekCallName(req.subarray(0, CUT_THROUGH_PREFIX)), { service: 'containerd.task.v2.Task', method: 'Create' });
    });

    it('reads the names in either order, and stops once it has both', () => {
      const methodFirst = Buffer.concat([hex('12 06'), Buffer.from('Create'), hex('0a 17'), Buffer.from('containerd.task.v2.Task')]);
      assert.deepEqual(peekCallName(methodFirst), { service: 'containerd.task.v2.Task', method: 'Create' });
      // What follows both names may be cut off anywhere: it is not read.
      assert.deepEqual(peekCallName(Buffer.concat([req.subarray(0, 2 + 23 + 2 + 6), hex('1a ff')])), { service: 'containerd.task.v2.Task', method: 'Create' });
    });

    it('answers undefined when a name is cut off, a name is missing, or another field comes first', () => {
      assert.equal(peekCallName(encodeRequest({ service: '', method: 'Create' })), undefined, 'only a method');
      assert.equal(peekCallName(req.subarray(0, 10)), undefined, 'service cut off');
      assert.equal(peekCallName(req.subarray(0, 2 + 'containerd.task.v2.Task'.length + 3)), undefined, 'method cut off');
      assert.equal(peekCallName(encodeRequest({ service: 's', method: '', payload: Buffer.alloc(0) }).subarray(0, 3)), undefined, 'only a service');
      const payloadFirst = Buffer.concat([Buffer.from([0x1a, 1, 0]), req]);
      assert.equal(peekCallName(payloadFirst), undefined, 'payload before the names');
      assert.equal(peekCallName(Buffer.from([0xff, 0xff, 0xff])), undefined, 'not protobuf');
    });
  });

  describe('Channel.openRaw', () => {
    let dir: string;
    let server: net.Server | undefined;
    let peer: RawPeer | undefined;
    let ch: Channel | undefined;
    beforeEach(() => {
      dir = scratchDir();
    });
    afterEach(() => {
      peer?.destroy();
      ch?.destroy();
      server?.close();
      removeDir(dir);
      peer = ch = server = undefined;
    });

    async function pair(): Promise<void> {
      ({ ch, peer, server } = await channelPair(dir));
    }

    it('writes a frame in pieces; frames sent meanwhile follow it, in order', async () => {
      await pair();
      const c = ch as Channel;
      const big = encodeFrame(5, FrameType.Data, 0, patterned(300000));
      c.send(1, FrameType.Response, 0, Buffer.from('before'));
      const w = c.openRaw(300000);
      w.write(big.subarray(0, 4));
      c.send(2, FrameType.Response, 0, Buffer.from('small, meanwhile'));
      c.send(3, FrameType.Data, 0, patterned(100000)); // large, written by reference
      c.sendRaw(encodeFrame(4, FrameType.Response, 0, Buffer.from('raw, meanwhile')));
      await new Promise((r) => setTimeout(r, 20)); // the batch's microtask and any socket writes ran
      w.write(big.subarray(4, 200000));
      w.write(big.subarray(200000));
      w.end();
      const got: Frame[] = [];
      for (let i = 0; i < 5; i++) got.push(await (peer as RawPeer).next());
      assert.deepEqual(got.map((f) => f.streamId), [1, 5, 2, 3, 4]);
      assert.ok(got[1].raw.equals(big), 'the pieced frame arrived intact');
      assert.ok(got[3].data.equals(patterned(100000)));
    });

    it('does not report a frame held behind an open one as backpressure: the open frame needs its source to keep flowing', async () => {
      await pair();
      const c = ch as Channel;
      const big = encodeFrame(5, FrameType.Data, 0, patterned(CUT_THROUGH_MIN));
      const w = c.openRaw(CUT_THROUGH_MIN);
      w.write(big.subarray(0, 100));
      // A large and a small frame: both would be written at once without the open frame.
      assert.equal(c.sendRaw(encodeFrame(6, FrameType.Data, 0, patterned(100000))), true);
      assert.equal(c.send(7, FrameType.Response, 0, Buffer.from('small')), true);
      assert.ok(c.writableLength < 100000, 'the held frame is not counted as waiting on the socket');
      w.write(big.subarray(100));
      w.end();
      const peerFrames = [];
      for (let i = 0; i < 3; i++) peerFrames.push(await (peer as RawPeer).next());
      assert.deepEqual(peerFrames.map((f) => f.streamId), [5, 6, 7]);
      assert.ok(peerFrames[0].raw.equals(big));
    });

    it('refuses a second open frame, more bytes than announced, an early end, and an oversize length', async () => {
      await pair();
      const c = ch as Channel;
      assert.throws(() => c.openRaw(c.maxLength + 1), /exceeds|maximum|ResourceExhausted|larger/i);
      const w = c.openRaw(10);
      assert.throws(() => c.openRaw(10), /another frame is open/);
      assert.throws(() => w.write(Buffer.alloc(HEADER_LENGTH + 11)), /bytes with 20 left/);
      w.write(Buffer.alloc(HEADER_LENGTH));
      assert.throws(() => w.end(), /ended 10 bytes short/);
    });

    it('close() while a frame is open ends the connection instead of sending an unframed rest', async () => {
      await pair();
      const c = ch as Channel;
      const w = c.openRaw(1000);
      w.write(encodeFrame(5, FrameType.Data, 0, Buffer.alloc(1000)).subarray(0, 500));
      c.send(6, FrameType.Response, 0, Buffer.from('never framed'));
      c.close();
      await (peer as RawPeer).closed;
      assert.equal((peer as RawPeer).frames.length, 0, 'the peer saw no frame (half of one, then EOF)');
      assert.equal(w.write(Buffer.alloc(10)), false, 'writes after close are dropped');
    });
  });
});

import { strict as assert } from 'assert';
import type * as net from 'net';
import { type Channel, Code, type Frame, FrameType, HEADER_LENGTH, TtrpcError, encodeFrame } from '../../src/ttrpc';
import { type RawPeer, channelPair as pair, until } from '../support/ttrpc';
import { removeDir, scratchDir } from '../support/scratch';

function frames(ch: Channel): Frame[] {
  const got: Frame[] = [];
  ch.on('frame', (f: Frame) => got.push(f));
  return got;
}

function closeEvents(ch: Channel): (Error | undefined)[] {
  const got: (Error | undefined)[] = [];
  ch.on('close', (err?: Error) => got.push(err));
  return got;
}

describe('ttrpc Channel', () => {
  let dir: string;
  let server: net.Server | undefined;
  let peer: RawPeer | undefined;
  let ch: Channel | undefined;

  beforeEach(() => {
    dir = scratchDir();
  });
  afterEach(async () => {
    ch?.destroy();
    peer?.destroy();
    if (server) await new Promise((r) => server!.close(r));
    server = peer = ch = undefined;
    removeDir(dir);
  });

  it('sends frames with one header+data write and receives them', async () => {
    ({ ch, peer, server } = await pair(dir));
    const got = frames(ch);
    assert.equal(ch.send(1, FrameType.Request, 0, Buffer.from('abc')), true);
    const f = await peer.next();
    assert.deepEqual(f.raw, encodeFrame(1, 1, 0, Buffer.from('abc')));
    peer.sendFrame(2, FrameType.Response, 0, Buffer.from('xyz'));
    await until(() => got.length === 1, 'frame at the channel');
    assert.equal(got[0].streamId, 2);
    assert.equal(got[0].data.toString(), 'xyz');
  });

  it('writes the small frames sent in one run of JS with one socket write, in order', async () => {
    let socket: net.Socket;
    ({ ch, peer, server, socket } = await pair(dir));
    const writes: number[] = [];
    const write: (b: Buffer) => boolean = socket.write.bind(socket);
    socket.write = ((b: Buffer) => {
      writes.push(b.length);
      return write(b);
    });
    const received = encodeFrame(9, 3, 0, Buffer.from('raw'));
    assert.equal(ch.send(1, FrameType.Request, 0, Buffer.from('a')), true);
    assert.equal(ch.sendRaw(received), true);
    assert.equal(ch.send(3, FrameType.Request, 0, Buffer.from('bb')), true);
    assert.equal(ch.writableLength, 11 + 13 + 12, 'batched bytes count as waiting to be written');
    assert.deepEqual(writes, [], 'nothing written before the batch is flushed');
    const got = [await peer.next(), await peer.next(), await peer.next()];
    assert.deepEqual(got.map((f) => [f.streamId, f.data.toString()]), [[1, 'a'], [9, 'raw'], [3, 'bb']]);
    assert.deepEqual(writes, [36], 'one write for the three frames');
    // A large frame flushes what is batched before it, so order holds across both paths.
    ch.send(5, FrameType.Data, 0, Buffer.from('small'));
    ch.send(7, FrameType.Data, 0, Buffer.alloc(32 * 1024, 7));
    const [small, large] = [await peer.next(), await peer.next()];
    assert.deepEqual([small.streamId, large.streamId, large.data.length], [5, 7, 32 * 1024]);
  });

  it("reports a full batch with false and emits 'drain' once it is written", async () => {
    let socket: net.Socket;
    ({ ch, peer, server, socket } = await pair(dir));
    const limit = socket.writableHighWaterMark;
    const chunk = Buffer.alloc(Math.ceil(limit / 2), 1);
    const drained = new Promise<void>((r) => ch!.once('drain', () => r()));
    assert.equal(ch.send(1, FrameType.Data, 0, chunk), true);
    assert.equal(ch.send(3, FrameType.Data, 0, chunk), false, 'batch reaches the high-water mark');
    await drained;
    assert.deepEqual([(await peer.next()).streamId, (await peer.next()).streamId], [1, 3]);
  });

  it("still emits 'drain' after a false send when the socket's queue emptied before the batch was written", async () => {
    let socket: net.Socket;
    ({ ch, peer, server, socket } = await pair(dir));
    // Simulate a socket queue that is full when send() looks and empty by the time the batch is written.
    let queued = socket.writableHighWaterMark;
    Object.defineProperty(socket, 'writableLength', { configurable: true, get: () => queued });
    const drained = new Promise<void>((r) => ch!.once('drain', () => r()));
    assert.equal(ch.send(1, FrameType.Data, 0, Buffer.from('x')), false);
    queued = 0;
    await drained;
    assert.equal((await peer.next()).streamId, 1);
  });

  it('sends large data (written by reference, corked) intact', async () => {
    ({ ch, peer, server } = await pair(dir));
    const big = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = i % 251;
    ch.send(5, FrameType.Data, 1, big);
    const f = await peer.next();
    assert.equal(f.streamId, 5);
    assert.equal(f.flags, 1);
    assert.ok(f.data.equals(big));
  });

  it('forwards a received frame untouched with sendRaw and refuses non-frames', async () => {
    ({ ch, peer, server } = await pair(dir));
    const got = frames(ch);
    const original = encodeFrame(7, 3, 5, Buffer.from('payload'));
    peer.write(original);
    await until(() => got.length === 1, 'frame');
    ch.sendRaw(got[0].raw);
    const echoed = await peer.next();
    assert.deepEqual(echoed.raw, original);
    assert.throws(() => ch!.sendRaw(Buffer.from([0, 0, 0, 9, 0, 0, 0, 1, 1, 0])), /sendRaw needs exactly one frame/);
    assert.throws(() => ch!.sendRaw(Buffer.alloc(3)), /sendRaw/);
  });

  it('sendWithHeadroom writes the header in place in front of the data, small and large', async () => {
    ({ ch, peer, server } = await pair(dir, 64 * 1024));
    const small = Buffer.concat([Buffer.alloc(HEADER_LENGTH), Buffer.from('in place')]);
    const large = Buffer.alloc(HEADER_LENGTH + 20 * 1024, 3);
    assert.equal(ch.sendWithHeadroom(3, FrameType.Request, 2, small), true);
    ch.sendWithHeadroom(5, FrameType.Data, 0, large);
    assert.deepEqual((await peer.next()).raw, encodeFrame(3, FrameType.Request, 2, Buffer.from('in place')));
    const f = await peer.next();
    assert.deepEqual([f.streamId, f.data.length], [5, 20 * 1024]);
    assert.throws(() => ch!.sendWithHeadroom(7, 1, 0, Buffer.alloc(HEADER_LENGTH + 64 * 1024 + 1)), (e: unknown) => e instanceof TtrpcError && e.code === Code.ResourceExhausted);
    assert.throws(() => ch!.sendWithHeadroom(-1, 1, 0, small), RangeError);
    ch.destroy();
    assert.equal(ch.sendWithHeadroom(9, 1, 0, small), false);
  });

  it('refuses to send data above maxLength with TtrpcError ResourceExhausted', async () => {
    ({ ch, peer, server } = await pair(dir, 100));
    assert.throws(
      () => ch!.send(1, 1, 0, Buffer.alloc(101)),
      (e: unknown) =>
        e instanceof TtrpcError &&
        e.code === Code.ResourceExhausted &&
        e.message === 'message length 101 exceed maximum message size of 100',
    );
    assert.equal(ch.send(1, 1, 0, Buffer.alloc(100)), true);
  });

  it('reports oversize frames and keeps the connection', async () => {
    ({ ch, peer, server } = await pair(dir, 10));
    const got = frames(ch);
    const over: number[][] = [];
    ch.on('oversize', (id: number, len: number, type: number, flags: number) => over.push([id, len, type, flags]));
    peer.write(Buffer.concat([encodeFrame(3, 1, 2, Buffer.alloc(11)), encodeFrame(5, 1, 0, Buffer.from('ok'))]));
    await until(() => got.length === 1, 'frame after the oversize one');
    assert.deepEqual(over, [[3, 11, 1, 2]]);
    assert.equal(ch.closed, false);
  });

  it("emits 'close' exactly once, without error, when the peer hangs up at a frame boundary", async () => {
    ({ ch, peer, server } = await pair(dir));
    const closes = closeEvents(ch);
    peer.write(encodeFrame(1, 1, 0, Buffer.from('x')));
    peer.socket.end();
    await until(() => closes.length > 0, 'close');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(closes, [undefined]);
    assert.equal(ch.closed, true);
    assert.equal(ch.send(1, 1, 0, Buffer.from('late')), false, 'sending on a closed channel is a no-op');
    assert.equal(ch.sendRaw(encodeFrame(1, 1, 0, Buffer.alloc(0))), false);
  });

  it('reports a peer that hangs up in the middle of a frame', async () => {
    ({ ch, peer, server } = await pair(dir));
    const closes = closeEvents(ch);
    const f = encodeFrame(1, 1, 0, Buffer.from('truncated'));
    peer.write(f.subarray(0, 13));
    peer.socket.end();
    await until(() => closes.length > 0, 'close');
    assert.equal(closes.length, 1);
    assert.match(String(closes[0]?.message), /in the middle of a frame \(13 bytes of it received\)/);
  });

  it('turns socket errors into a single close event, never a throw or an error event', async () => {
    ({ ch, peer, server } = await pair(dir));
    const closes = closeEvents(ch);
    // The peer vanishes while we keep writing: EPIPE/ECONNRESET must end in one 'close', not a throw.
    peer.destroy();
    await until(() => {
      ch!.send(1, 1, 0, Buffer.alloc(64 * 1024));
      return closes.length > 0;
    }, 'close after the peer vanished');
    await new Promise((r) => setImmediate(r));
    assert.equal(closes.length, 1);
    assert.equal(ch.listenerCount('error'), 0);
  });

  it('close() flushes queued frames, then closes; frames arriving afterwards are dropped', async () => {
    ({ ch, peer, server } = await pair(dir));
    const got = frames(ch);
    const closes = closeEvents(ch);
    ch.send(1, 1, 0, Buffer.from('last words'));
    ch.close(); // in the same tick: the batched frame must still go out
    assert.equal(ch.closed, true);
    const f = await peer.next();
    assert.equal(f.data.toString(), 'last words');
    await until(() => closes.length === 1, 'close');
    assert.deepEqual(closes, [undefined]);
    assert.equal(got.length, 0);
    ch.close(); // idempotent
  });

  it("closes with the listener's error when a 'frame' listener throws", async () => {
    ({ ch, peer, server } = await pair(dir));
    const closes = closeEvents(ch);
    ch.on('frame', () => {
      throw new Error('listener bug');
    });
    peer.write(encodeFrame(1, 1, 0, Buffer.from('x')));
    await until(() => closes.length === 1, 'close');
    assert.equal(closes[0]?.message, 'listener bug');
  });

  it('pause() stops delivering frames until resume()', async () => {
    ({ ch, peer, server } = await pair(dir));
    const got = frames(ch);
    ch.pause();
    peer.write(encodeFrame(1, 1, 0, Buffer.from('held')));
    // Prove the peer's bytes reached our side: a round trip through the socket in the other direction.
    ch.send(9, 1, 0, Buffer.from('ping'));
    await peer.next();
    assert.equal(got.length, 0);
    ch.resume();
    await until(() => got.length === 1, 'frame after resume');
  });
});

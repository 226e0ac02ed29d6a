import { strict as assert } from 'assert';
import * as path from 'path';
import { type CallContext, Client, Code, FrameType, Server, type ServerStream, TtrpcError, encodeFrame, encodeRequest } from '../../src/ttrpc';
import { RawListener, type RawPeer, RawPeers, hex, until } from '../support/ttrpc';
import { removeDir, scratchDir } from '../support/scratch';

const SVC = 'stream.v1.Svc';

async function collect(it: AsyncIterable<Buffer>): Promise<string[]> {
  const out: string[] = [];
  for await (const m of it) out.push(m.toString());
  return out;
}

describe('ttrpc streaming (ttrpc >= 1.2 wire rules)', () => {
  let dir: string;
  let sock: string;
  let server: Server;
  let client: Client | undefined;
  let peers: RawPeers;
  let seen: { ctx: CallContext; stream: ServerStream }[];

  beforeEach(async () => {
    dir = scratchDir();
    sock = path.join(dir, 'st.sock');
    peers = new RawPeers();
    seen = [];
    server = new Server();
    // Server stream: the request payload is a count; sends that many messages, returns nothing.
    server.registerStream(
      SVC,
      'Count',
      async (ctx, stream) => {
        seen.push({ ctx, stream });
        const first = await stream.recv();
        const n = first && first.length ? first[0] : 0;
        for (let i = 0; i < n; i++) stream.send(Buffer.from(`m${i}`));
        assert.equal(await stream.recv(), undefined, 'a server-only stream has exactly one inbound message');
      },
      { clientStream: false, serverStream: true },
    );
    // Server stream that ends with a last message in the closing Data frame.
    server.registerStream(SVC, 'Final', (_ctx, stream) => {
      stream.send(Buffer.from('first'));
      return Buffer.from('z');
    }, { clientStream: false, serverStream: true });
    // Client stream: sums bytes of every message, answers with a Response.
    server.registerStream(
      SVC,
      'Sum',
      async (_ctx, stream) => {
        let sum = 0;
        for await (const m of stream) for (const b of m) sum += b;
        return Buffer.from(String(sum));
      },
      { clientStream: true, serverStream: false },
    );
    // Bidirectional: echoes each message upper-cased, then ends.
    server.registerStream(
      SVC,
      'Upper',
      async (_ctx, stream) => {
        for await (const m of stream) stream.send(Buffer.from(m.toString().toUpperCase()));
      },
      { clientStream: true, serverStream: true },
    );
    // Sends two messages then fails.
    server.registerStream(
      SVC,
      'Broken',
      async (_ctx, stream) => {
        stream.send(Buffer.from('one'));
        stream.send(Buffer.from('two'));
        throw new TtrpcError(Code.DataLoss, 'disk on fire');
      },
      { clientStream: false, serverStream: true },
    );
    server.registerStream(SVC, 'Hang', (ctx, stream) => {
      seen.push({ ctx, stream });
      return new Promise<void>(() => {});
    }, { clientStream: true, serverStream: true });
    server.register(SVC, { Unary: (_c, p) => p });
    await server.listen(sock);
  });

  afterEach(async () => {
    client?.close();
    client = undefined;
    peers.destroyAll();
    server.close();
    removeDir(dir);
  });

  async function newClient(): Promise<Client> {
    client = await Client.connect(sock);
    return client;
  }

  const rawPeer = (): Promise<RawPeer> => peers.connect(sock);

  it('server-streaming: messages arrive in order, the stream ends, response resolves empty', async () => {
    const c = await newClient();
    const s = c.stream(SVC, 'Count', { clientStream: false, serverStream: true, payload: Buffer.from([3]) });
    assert.deepEqual(await collect(s), ['m0', 'm1', 'm2']);
    assert.deepEqual(await s.response, Buffer.alloc(0));
    assert.equal(c.pendingCount, 0);
  });

  it('server-streaming with an empty request message still runs the handler (ttrpc issue 126)', async () => {
    const c = await newClient();
    const s = c.stream(SVC, 'Count', { clientStream: false, serverStream: true });
    assert.deepEqual(await collect(s), []);
    assert.equal(seen.length, 1);
  });

  it('a closing Data frame may carry the last message', async () => {
    const c = await newClient();
    const s = c.stream(SVC, 'Final', { clientStream: false, serverStream: true });
    assert.deepEqual(await collect(s), ['first', 'z']);
  });

  it('client-streaming: send, closeSend, final Response payload', async () => {
    const c = await newClient();
    const s = c.stream(SVC, 'Sum', { clientStream: true, serverStream: false });
    s.send(Buffer.from([1, 2]));
    s.send(Buffer.from([3]));
    s.send(Buffer.alloc(0));
    s.closeSend();
    s.closeSend();
    assert.equal((await s.response).toString(), '6');
    assert.throws(() => s.send(Buffer.from([1])), (e: unknown) => e instanceof TtrpcError && e.code === Code.FailedPrecondition);
  });

  it('bidirectional: interleaved sends and receives', async () => {
    const c = await newClient();
    const s = c.stream(SVC, 'Upper', { clientStream: true, serverStream: true });
    s.send(Buffer.from('abc'));
    assert.equal((await s.recv())?.toString(), 'ABC');
    s.send(Buffer.from('def'));
    assert.equal((await s.recv())?.toString(), 'DEF');
    s.closeSend();
    assert.equal(await s.recv(), undefined);
    await s.response;
  });

  it('an error status ends the stream after the messages sent before it', async () => {
    const c = await newClient();
    const s = c.stream(SVC, 'Broken', { clientStream: false, serverStream: true });
    const got: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const m of s) got.push(m.toString());
      })(),
      (e: unknown) => e instanceof TtrpcError && e.code === Code.DataLoss && e.message === 'disk on fire',
    );
    assert.deepEqual(got, ['one', 'two']);
    await assert.rejects(s.response, (e: unknown) => e instanceof TtrpcError && e.code === Code.DataLoss);
  });

  it('deadlines apply to streams: the handler is aborted and the client gets DeadlineExceeded', async () => {
    const c = await newClient();
    const s = c.stream(SVC, 'Hang', { clientStream: true, serverStream: true, timeoutMs: 30 });
    await assert.rejects(s.recv(), (e: unknown) => e instanceof TtrpcError && e.code === Code.DeadlineExceeded);
    await until(() => seen.length === 1 && seen[0].ctx.signal.aborted, 'server handler aborted');
    await assert.rejects(seen[0].stream.recv(), (e: unknown) => e instanceof TtrpcError && e.code === Code.DeadlineExceeded);
  });

  it('a dropped connection fails open streams with Unavailable; cancel() abandons one locally', async () => {
    const c = await newClient();
    const a = c.stream(SVC, 'Hang', { clientStream: true, serverStream: true });
    const b = c.stream(SVC, 'Hang', { clientStream: true, serverStream: true });
    await until(() => seen.length === 2, 'both handlers running');
    b.cancel();
    await assert.rejects(b.response, (e: unknown) => e instanceof TtrpcError && e.code === Code.Canceled);
    assert.equal(c.pendingCount, 1);
    server.close();
    await assert.rejects(a.recv(), (e: unknown) => e instanceof TtrpcError && e.code === Code.Unavailable && /closed/.test(e.message));
    assert.equal(c.pendingCount, 0);
    const late = c.stream(SVC, 'Count', { clientStream: false, serverStream: true });
    await assert.rejects(late.response, (e: unknown) => e instanceof TtrpcError && e.code === Code.Unavailable);
  });

  it('send() is refused on a stream that is not client-streaming, and stream.send() on a non-server-streaming method', async () => {
    const c = await newClient();
    const s = c.stream(SVC, 'Count', { clientStream: false, serverStream: true, payload: Buffer.from([0]) });
    assert.throws(() => s.send(Buffer.from('x')), /without clientStream/);
    await s.response;
    let thrown: unknown;
    server.registerStream(SVC, 'NoSend', (_ctx, stream) => {
      try {
        stream.send(Buffer.from('x'));
      } catch (e) {
        thrown = e;
      }
      return Buffer.from('ok');
    }, { clientStream: true, serverStream: false });
    const t = c.stream(SVC, 'NoSend', { clientStream: true, serverStream: false });
    t.closeSend();
    assert.equal((await t.response).toString(), 'ok');
    assert.ok(thrown instanceof TtrpcError && thrown.code === Code.FailedPrecondition);
  });

  describe('exact frames on the wire (hex written from the protocol spec)', () => {
    let listener: RawListener;
    beforeEach(async () => {
      listener = new RawListener(path.join(dir, 'raw.sock'));
      await listener.listen();
    });
    afterEach(async () => {
      await listener.close();
    });

    it('client: server-stream Request carries RemoteClosed; client-stream Request RemoteOpen, Data, closing Data', async () => {
      const c = await Client.connect(listener.path);
      client = c;
      const peer = await listener.accept();
      c.stream('s', 'M', { clientStream: false, serverStream: true, payload: Buffer.from('p') });
      // len 9, id 1, Request, RemoteClosed; Request{service "s", method "M", payload "p"}
      assert.deepEqual((await peer.next()).raw, hex('00000009 00000001 01 01  0a0173 12014d 1a0170'));
      const s = c.stream('s', 'M', { clientStream: true, serverStream: false });
      assert.deepEqual((await peer.next()).raw, hex('00000006 00000003 01 02  0a0173 12014d'));
      s.send(Buffer.from('x'));
      assert.deepEqual((await peer.next()).raw, hex('00000001 00000003 03 00  78'));
      s.closeSend();
      assert.deepEqual((await peer.next()).raw, hex('00000000 00000003 03 05'));
      // The server's Data frames and closing frame reach the client stream.
      const got = c.stream('s', 'M', { clientStream: false, serverStream: true });
      await peer.next();
      peer.write(hex('00000002 00000005 03 00 6869'));
      peer.write(hex('00000000 00000005 03 05'));
      assert.deepEqual(await collect(got), ['hi']);
    });

    it('server: Data frames, closing Data with RemoteClosed|NoData, closing Data with a message, and a client-stream Response', async () => {
      const p = await rawPeer();
      const req = (id: number, method: string, flags: number, payload?: Buffer) =>
        encodeFrame(id, FrameType.Request, flags, encodeRequest({ service: SVC, method, payload }));
      p.write(req(1, 'Count', 1, Buffer.from([2])));
      assert.deepEqual((await p.next()).raw, hex('00000002 00000001 03 00 6d30'));
      assert.deepEqual((await p.next()).raw, hex('00000002 00000001 03 00 6d31'));
      assert.deepEqual((await p.next()).raw, hex('00000000 00000001 03 05'));
      p.write(req(3, 'Final', 1));
      assert.deepEqual((await p.next()).raw, hex('00000005 00000003 03 00 6669727374'));
      assert.deepEqual((await p.next()).raw, hex('00000001 00000003 03 01 7a'));
      p.write(req(5, 'Sum', 2));
      p.write(hex('00000002 00000005 03 00 0203'));
      p.write(hex('00000000 00000005 03 05'));
      // Response{payload "5"}
      assert.deepEqual((await p.next()).raw, hex('00000003 00000005 02 00 120135'));
      // A Request with flags 0 to a streaming method is unary-compatible: one message, then remote closed.
      p.write(req(7, 'Count', 0, Buffer.from([1])));
      assert.deepEqual((await p.next()).raw, hex('00000002 00000007 03 00 6d30'));
      assert.deepEqual((await p.next()).raw, hex('00000000 00000007 03 05'));
      // Data after the client closed its side of a live stream is ignored; Data for a finished stream is not.
      p.write(req(9, 'Hang', 2));
      p.write(hex('00000000 00000009 03 05'));
      p.write(hex('00000001 00000009 03 00 01'));
      p.write(hex('00000001 00000005 03 00 01'));
      const r = await p.nextResponse();
      assert.equal(r.streamId, 5);
      assert.equal(r.res.status?.message, 'StreamID is no longer active');
    });
  });
});

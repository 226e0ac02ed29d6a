import { strict as assert } from 'assert';
import * as path from 'path';
import { type CallContext, Client, Code, FrameType, Server, encodeFrame, encodeRequest } from '../../src/ttrpc';
import { type RawPeer, RawPeers, prng, until } from '../support/ttrpc';
import { removeDir, scratchDir } from '../support/scratch';

const SVC = 'robust.v1.Svc';

describe('ttrpc robustness', () => {
  let dir: string;
  let sock: string;
  let server: Server;
  let errors: Error[];
  let peers: RawPeers;
  let contexts: CallContext[];
  let release: (() => void)[];
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);

  before(() => {
    process.on('unhandledRejection', onUnhandled);
  });
  after(() => {
    process.removeListener('unhandledRejection', onUnhandled);
  });

  beforeEach(async () => {
    dir = scratchDir();
    sock = path.join(dir, 'r.sock');
    errors = [];
    peers = new RawPeers();
    contexts = [];
    release = [];
    unhandled.length = 0;
    server = new Server({ onError: (e) => errors.push(e) });
    server.register(SVC, {
      Echo: (_c, p) => p,
      ThrowString: () => {
        // eslint-disable-next-line @typescript-eslint/only-throw-error -- a handler that throws a non-Error
        throw 'a bare string';
      },
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- a handler that rejects with nothing
      RejectUndefined: () => Promise.reject(undefined),
      // Answers only when released, possibly after its connection is gone.
      Late: (ctx) => {
        contexts.push(ctx);
        return new Promise<Uint8Array>((resolve) => release.push(() => resolve(Buffer.from('late'))));
      },
      LateThrow: (ctx) => {
        contexts.push(ctx);
        return new Promise<Uint8Array>((_r, reject) => release.push(() => reject(new Error('after close'))));
      },
    });
    await server.listen(sock);
  });

  afterEach(async () => {
    peers.destroyAll();
    server.close();
    removeDir(dir);
  });

  const connect = (): Promise<RawPeer> => peers.connect(sock);

  async function serverStillAnswers(): Promise<void> {
    const c = await Client.connect(sock);
    try {
      assert.equal((await c.call(SVC, 'Echo', Buffer.from('ping'))).toString(), 'ping');
    } finally {
      c.close();
    }
  }

  it('a frame whose first header byte is set (a >16 MiB length) is discarded as oversize; the connection survives', async () => {
    const p = await connect();
    const header = Buffer.from([0x01, 0x00, 0x00, 0x00, 0, 0, 0, 1, 1, 0]); // 16 MiB data
    p.write(header);
    p.write(Buffer.alloc(16 * 1024 * 1024));
    p.write(encodeFrame(3, FrameType.Request, 0, encodeRequest({ service: SVC, method: 'Echo', payload: Buffer.from('ok') })));
    const first = await p.nextResponse();
    assert.equal(first.res.status?.code, Code.ResourceExhausted);
    assert.equal((await p.nextResponse()).res.payload.toString(), 'ok');
  });

  it('a truncated frame followed by EOF closes that connection only, reported to onError', async () => {
    const p = await connect();
    const f = encodeFrame(1, FrameType.Request, 0, encodeRequest({ service: SVC, method: 'Echo', payload: Buffer.alloc(100) }));
    p.write(f.subarray(0, 40));
    p.socket.end();
    await p.closed;
    await until(() => server.connectionCount === 0, 'server to drop the connection');
    assert.ok(errors.some((e) => /in the middle of a frame/.test(e.message)), errors.map((e) => e.message).join('; '));
    await serverStillAnswers();
  });

  it('garbage Request bodies are answered with InvalidArgument, one per frame', async () => {
    const p = await connect();
    const rnd = prng(7);
    let id = 1;
    let expected = 0;
    for (let i = 0; i < 200; i++) {
      const body = Buffer.alloc(1 + Math.floor(rnd() * 40));
      for (let j = 0; j < body.length; j++) body[j] = Math.floor(rnd() * 256);
      p.write(encodeFrame(id, FrameType.Request, 0, body));
      id += 2;
      expected++;
    }
    const codes = new Set<number>();
    for (let i = 0; i < expected; i++) codes.add((await p.nextResponse()).res.status?.code ?? 0);
    // Random bytes either fail to decode (3) or decode to an unknown service (12); never anything else.
    for (const c of codes) assert.ok(c === Code.InvalidArgument || c === Code.Unimplemented, `unexpected code ${c}`);
    assert.ok(codes.has(Code.InvalidArgument));
  });

  it('handlers that throw a bare string or reject with undefined produce Unknown statuses, not crashes', async () => {
    const c = await Client.connect(sock);
    try {
      await assert.rejects(c.call(SVC, 'ThrowString', Buffer.alloc(0)), { code: Code.Unknown, message: 'a bare string' });
      await assert.rejects(c.call(SVC, 'RejectUndefined', Buffer.alloc(0)), { code: Code.Unknown, message: 'undefined' });
    } finally {
      c.close();
    }
    assert.deepEqual(unhandled, []);
  });

  it('a peer that disconnects mid-frame with calls in flight: handlers aborted, late answers dropped, nothing leaks', async () => {
    const p = await connect();
    const req = (id: number, method: string) => encodeFrame(id, FrameType.Request, 0, encodeRequest({ service: SVC, method }));
    p.write(Buffer.concat([req(1, 'Late'), req(3, 'LateThrow')]));
    await until(() => contexts.length === 2, 'handlers running');
    p.write(req(5, 'Echo').subarray(0, 7));
    p.destroy();
    await until(() => server.connectionCount === 0, 'connection dropped');
    assert.ok(contexts.every((c) => c.signal.aborted));
    for (const r of release) r();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(unhandled, []);
    await serverStillAnswers();
  });

  it('a client whose server vanishes mid-response fails its calls and empties its pending map', async () => {
    // A fake server that answers half a frame, then dies.
    const net = await import('net');
    const fakePath = path.join(dir, 'fake.sock');
    const fake = net.createServer((s) => {
      s.once('data', () => {
        s.write(encodeFrame(1, FrameType.Response, 0, Buffer.from([0x12, 0x02, 0x6f, 0x6b])).subarray(0, 11));
        s.destroy();
      });
    });
    await new Promise<void>((r) => fake.listen(fakePath, () => r()));
    try {
      const c = await Client.connect(fakePath);
      const calls = [c.call('x', 'y', Buffer.alloc(0)), c.call('x', 'z', Buffer.alloc(0))];
      for (const call of calls) await assert.rejects(call, { code: Code.Unavailable });
      assert.equal(c.pendingCount, 0);
      assert.equal(c.closed, true);
    } finally {
      await new Promise((r) => fake.close(r));
    }
    assert.deepEqual(unhandled, []);
  });
});

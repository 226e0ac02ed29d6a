import { strict as assert } from 'assert';
import * as path from 'path';
import { Client, Code, FrameType, TtrpcError, decodeRequest, encodeFrame, encodeResponse } from '../../src/ttrpc';
import { RawListener, type RawPeer, until } from '../support/ttrpc';
import { removeDir, scratchDir } from '../support/scratch';

function respond(peer: RawPeer, id: number, payload: string | Buffer, status?: { code: number; message: string }): void {
  const body = encodeResponse({ payload: Buffer.from(payload), status: status ? { ...status, details: [] } : undefined });
  peer.write(encodeFrame(id, FrameType.Response, 0, body));
}

function isTtrpc(code: Code, message: RegExp | string) {
  return (e: unknown) => {
    assert.ok(e instanceof TtrpcError, `expected a TtrpcError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  };
}

describe('ttrpc Client', () => {
  let dir: string;
  let listener: RawListener;
  let client: Client | undefined;

  beforeEach(async () => {
    dir = scratchDir();
    listener = new RawListener(path.join(dir, 'c.sock'));
    await listener.listen();
  });
  afterEach(async () => {
    client?.close();
    client = undefined;
    await listener.close();
    removeDir(dir);
  });

  async function connected(): Promise<{ c: Client; peer: RawPeer }> {
    const c = await Client.connect(listener.path);
    client = c;
    return { c, peer: await listener.accept() };
  }

  it('numbers requests 1, 3, 5 ... with unary flags and matches out-of-order responses', async () => {
    const { c, peer } = await connected();
    const calls = [c.call('s', 'A', Buffer.from('a')), c.call('s', 'B', Buffer.from('b')), c.call('s', 'C', Buffer.from('c'))];
    const reqs = [await peer.next(), await peer.next(), await peer.next()];
    assert.deepEqual(
      reqs.map((f) => [f.streamId, f.type, f.flags]),
      [
        [1, 1, 0],
        [3, 1, 0],
        [5, 1, 0],
      ],
    );
    const decoded = decodeRequest(reqs[1].data);
    assert.deepEqual([decoded.service, decoded.method, decoded.payload.toString(), decoded.timeoutNano], ['s', 'B', 'b', 0]);
    respond(peer, 5, 'C!');
    respond(peer, 1, 'A!');
    respond(peer, 3, 'B!');
    assert.deepEqual((await Promise.all(calls)).map(String), ['A!', 'B!', 'C!']);
    assert.equal(c.pendingCount, 0);
  });

  it('sends metadata and timeout_nano, and rejects error statuses as TtrpcError', async () => {
    const { c, peer } = await connected();
    const md = [
      { key: 'containerd-namespace-ttrpc', value: 'k8s.io' },
      { key: 'a', value: '1' },
    ];
    const p = c.call('s', 'M', Buffer.alloc(0), { metadata: md, timeoutMs: 5000 });
    const req = decodeRequest((await peer.next()).data);
    assert.deepEqual(req.metadata, md);
    assert.equal(req.timeoutNano, 5e9);
    respond(peer, 1, '', { code: Code.NotFound, message: 'container x not found' });
    await assert.rejects(p, isTtrpc(Code.NotFound, 'container x not found'));
  });

  it('treats an explicit OK status as success and still returns the payload', async () => {
    const { c, peer } = await connected();
    const p = c.call('s', 'M', Buffer.alloc(0));
    await peer.next();
    // status { code: 0, message: "" } present but empty, then payload
    peer.write(encodeFrame(1, FrameType.Response, 0, Buffer.from([0x0a, 0x00, 0x12, 0x01, 0x2a])));
    assert.deepEqual(await p, Buffer.from([0x2a]));
  });

  it('fails a call locally with DeadlineExceeded and drops its late answer', async () => {
    const { c, peer } = await connected();
    const p = c.call('s', 'Slow', Buffer.alloc(0), { timeoutMs: 20 });
    const req = decodeRequest((await peer.next()).data);
    assert.equal(req.timeoutNano, 20e6);
    await assert.rejects(p, isTtrpc(Code.DeadlineExceeded, 'context deadline exceeded'));
    assert.equal(c.pendingCount, 0);
    respond(peer, 1, 'too late');
    const next = c.call('s', 'Fast', Buffer.alloc(0));
    assert.equal((await peer.next()).streamId, 3);
    respond(peer, 3, 'on time');
    assert.equal((await next).toString(), 'on time');
  });

  it('abandons a call on its AbortSignal with Canceled', async () => {
    const { c, peer } = await connected();
    const ac = new AbortController();
    const p = c.call('s', 'X', Buffer.alloc(0), { signal: ac.signal });
    await peer.next();
    ac.abort();
    await assert.rejects(p, isTtrpc(Code.Canceled, 'context canceled'));
    assert.equal(c.pendingCount, 0);
    await assert.rejects(c.call('s', 'X', Buffer.alloc(0), { signal: ac.signal }), isTtrpc(Code.Canceled, /canceled/));
  });

  it('fails every pending call with Unavailable "ttrpc: closed" when the connection drops, and runs onClose once', async () => {
    const { c, peer } = await connected();
    const closes: (Error | undefined)[] = [];
    c.onClose((err) => closes.push(err));
    const pending = [c.call('s', 'A', Buffer.alloc(0)), c.call('s', 'B', Buffer.alloc(0), { timeoutMs: 60000 })];
    await peer.next();
    await peer.next();
    peer.destroy();
    for (const p of pending) await assert.rejects(p, isTtrpc(Code.Unavailable, 'ttrpc: closed'));
    await until(() => closes.length > 0, 'onClose');
    assert.equal(c.closed, true);
    assert.equal(c.pendingCount, 0);
    assert.deepEqual(closes, [undefined]);
    await assert.rejects(c.call('s', 'C', Buffer.alloc(0)), isTtrpc(Code.Unavailable, 'ttrpc: closed'));
    // A hook added after the fact still runs (asynchronously).
    const late = await new Promise<Error | undefined>((r) => c.onClose(r));
    assert.equal(late, undefined);
  });

  it('reports a server that dies mid-frame through onClose(err)', async () => {
    const { c, peer } = await connected();
    const closed = new Promise<Error | undefined>((r) => c.onClose(r));
    const p = c.call('s', 'A', Buffer.alloc(0));
    await peer.next();
    peer.write(encodeFrame(1, FrameType.Response, 0, Buffer.from('half')).subarray(0, 12));
    peer.socket.end();
    await assert.rejects(p, isTtrpc(Code.Unavailable, /closed/));
    assert.match(String((await closed)?.message), /middle of a frame/);
  });

  it('close() rejects pending calls and is idempotent', async () => {
    const { c, peer } = await connected();
    const p = c.call('s', 'A', Buffer.alloc(0));
    await peer.next();
    c.close();
    c.close();
    await assert.rejects(p, isTtrpc(Code.Unavailable, 'ttrpc: closed'));
    await peer.closed;
  });

  it('refuses an oversize request locally and fails a call whose answer is oversize', async () => {
    const { c, peer } = await connected();
    await assert.rejects(
      c.call('s', 'Big', Buffer.alloc(4 << 20)),
      isTtrpc(Code.ResourceExhausted, /^message length \d+ exceed maximum message size of 4194304$/),
    );
    const p = c.call('s', 'BigAnswer', Buffer.alloc(0));
    const req = await peer.next();
    assert.equal(req.streamId, 3, 'the refused call used id 1 without sending it');
    peer.write(encodeFrame(3, FrameType.Response, 0, Buffer.alloc((4 << 20) + 1)));
    await assert.rejects(p, isTtrpc(Code.ResourceExhausted, 'message length 4194305 exceed maximum message size of 4194304'));
  });

  it('fails a call whose response cannot be decoded with Internal', async () => {
    const { c, peer } = await connected();
    const p = c.call('s', 'A', Buffer.alloc(0));
    await peer.next();
    peer.write(encodeFrame(1, FrameType.Response, 0, Buffer.from([0x12, 0x09])));
    await assert.rejects(p, isTtrpc(Code.Internal, /cannot decode the response/));
    assert.equal(c.pendingCount, 0);
  });

  it('names the path when it cannot connect', async () => {
    const missing = path.join(dir, 'missing.sock');
    await assert.rejects(Client.connect(missing), isTtrpc(Code.Unavailable, new RegExp(`cannot connect to ${missing}: .*ENOENT`)));
  });
});

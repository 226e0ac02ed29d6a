import { strict as assert } from 'assert';
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import {
  type CallContext,
  Client,
  Code,
  FrameType,
  MESSAGE_LENGTH_MAX,
  Server,
  TtrpcError,
  encodeFrame,
  encodeRequest,
} from '../../src/ttrpc';
import { RawPeer, RawPeers, until } from '../support/ttrpc';
import { removeDir, scratchDir } from '../support/scratch';

const SVC = 'test.v1.Svc';

function request(id: number, method: string, payload = Buffer.alloc(0), extra?: { timeoutNano?: number; metadata?: { key: string; value: string }[]; service?: string }): Buffer {
  return encodeFrame(
    id,
    FrameType.Request,
    0,
    encodeRequest({ service: extra?.service ?? SVC, method, payload, timeoutNano: extra?.timeoutNano, metadata: extra?.metadata }),
  );
}

/** A deferred the test resolves to let a handler finish. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

describe('ttrpc Server', () => {
  let dir: string;
  let sock: string;
  let server: Server;
  let peers: RawPeers;
  let errors: Error[];
  let contexts: CallContext[];
  let aborts: TtrpcError[];
  let gates: Map<string, { promise: Promise<void>; open: () => void }>;

  beforeEach(async () => {
    dir = scratchDir();
    sock = path.join(dir, 's.sock');
    peers = new RawPeers();
    errors = [];
    contexts = [];
    aborts = [];
    gates = new Map();
    server = new Server({ onError: (e) => errors.push(e) });
    server.register(SVC, {
      Echo: (_ctx, p) => p,
      AsyncEcho: async (_ctx, p) => p,
      Wait: async (ctx, p) => {
        contexts.push(ctx);
        const key = p.toString();
        if (!gates.has(key)) gates.set(key, gate());
        await gates.get(key)!.promise;
        return Buffer.from(`done ${key}`);
      },
      Hang: (ctx) => {
        contexts.push(ctx);
        return new Promise<Uint8Array>(() => {});
      },
      // Subscribes to the signal at once (the signal exists before the abort) and records the abort event.
      Listen: (ctx) => {
        contexts.push(ctx);
        ctx.signal.addEventListener('abort', () => aborts.push(ctx.signal.reason as TtrpcError), { once: true });
        return new Promise<Uint8Array>(() => {});
      },
      Meta: (ctx) => Buffer.from(JSON.stringify({ md: ctx.metadata, hasDeadline: ctx.deadline !== undefined, id: ctx.streamId })),
      FailTtrpc: () => {
        throw new TtrpcError(Code.FailedPrecondition, 'not ready', [{ typeUrl: 'x/y', value: Buffer.from([1]) }]);
      },
      FailPlain: async () => {
        throw new Error('boom');
      },
      FailErrno: () => {
        const e: NodeJS.ErrnoException = new Error('open /nope: no such file or directory');
        e.code = 'ENOENT';
        throw e;
      },
      ReturnUndefined: () => undefined as unknown as Uint8Array,
    });
    await server.listen(sock);
  });

  afterEach(async () => {
    peers.destroyAll();
    server.close();
    removeDir(dir);
  });

  const connect = (): Promise<RawPeer> => peers.connect(sock);

  it('creates the socket with mode 0600 and answers a call', async () => {
    assert.equal(fs.statSync(sock).mode & 0o777, 0o600);
    const p = await connect();
    p.write(request(1, 'Echo', Buffer.from('hi')));
    const { streamId, res, frame } = await p.nextResponse();
    assert.equal(streamId, 1);
    assert.equal(frame.flags, 0);
    assert.equal(res.status, undefined, 'success carries no status field');
    assert.equal(res.payload.toString(), 'hi');
  });

  it('answers concurrent requests out of order, on their stream ids', async () => {
    const p = await connect();
    p.write(Buffer.concat([request(1, 'Wait', Buffer.from('a')), request(3, 'Wait', Buffer.from('b')), request(5, 'AsyncEcho', Buffer.from('c'))]));
    const first = await p.nextResponse();
    assert.equal(first.streamId, 5);
    await until(() => gates.size === 2, 'both Wait handlers running');
    gates.get('b')!.open();
    const second = await p.nextResponse();
    assert.deepEqual([second.streamId, second.res.payload.toString()], [3, 'done b']);
    gates.get('a')!.open();
    const third = await p.nextResponse();
    assert.deepEqual([third.streamId, third.res.payload.toString()], [1, 'done a']);
  });

  it('enforces timeout_nano: answers DeadlineExceeded and aborts the handler signal', async () => {
    const p = await connect();
    p.write(request(1, 'Hang', Buffer.alloc(0), { timeoutNano: 30e6 }));
    const { res } = await p.nextResponse();
    assert.deepEqual(res.status, { code: Code.DeadlineExceeded, message: 'context deadline exceeded', details: [] });
    assert.equal(contexts.length, 1);
    assert.ok(contexts[0].deadline !== undefined);
    assert.equal(contexts[0].signal.aborted, true);
    assert.equal((contexts[0].signal.reason as TtrpcError).code, Code.DeadlineExceeded);
    assert.equal(errors.length, 0);
  });

  it('fires the abort event for a handler already listening on ctx.signal, once', async () => {
    const p = await connect();
    p.write(request(1, 'Listen', Buffer.alloc(0), { timeoutNano: 30e6 }));
    const { res } = await p.nextResponse();
    assert.equal(res.status?.code, Code.DeadlineExceeded);
    assert.equal(aborts.length, 1);
    assert.equal(aborts[0].code, Code.DeadlineExceeded);
    assert.equal(contexts[0].signal, contexts[0].signal, 'the same signal on every read');
    p.destroy();
    await until(() => server.connectionCount === 0, 'connection gone');
    assert.equal(aborts.length, 1, 'a later connection loss does not abort again');
  });

  it('answers an already-expired (negative) timeout at once without running the handler', async () => {
    const p = await connect();
    p.write(request(1, 'Hang', Buffer.alloc(0), { timeoutNano: -5 }));
    const { res } = await p.nextResponse();
    assert.equal(res.status?.code, Code.DeadlineExceeded);
    assert.equal(contexts.length, 0);
  });

  it('passes metadata (repeated keys, in order) and the deadline to the handler', async () => {
    const p = await connect();
    const md = [
      { key: 'containerd-namespace-ttrpc', value: 'default' },
      { key: 'k', value: '1' },
      { key: 'k', value: '2' },
    ];
    p.write(request(1, 'Meta', Buffer.alloc(0), { metadata: md, timeoutNano: 60e9 }));
    const { res } = await p.nextResponse();
    assert.deepEqual(JSON.parse(res.payload.toString()), { md, hasDeadline: true, id: 1 });
    p.write(request(3, 'Meta'));
    const second = await p.nextResponse();
    assert.deepEqual(JSON.parse(second.res.payload.toString()), { md: [], hasDeadline: false, id: 3 });
  });

  it('answers unknown service and method with Unimplemented, worded like Go', async () => {
    const p = await connect();
    p.write(request(1, 'Echo', Buffer.alloc(0), { service: 'no.Such' }));
    p.write(request(3, 'Nope'));
    assert.deepEqual((await p.nextResponse()).res.status, { code: 12, message: 'service no.Such', details: [] });
    assert.deepEqual((await p.nextResponse()).res.status, { code: 12, message: 'method Nope', details: [] });
  });

  it('answers an undecodable Request with InvalidArgument "unmarshal request error: ..."', async () => {
    const p = await connect();
    p.write(encodeFrame(1, FrameType.Request, 0, Buffer.from([0x0a, 0x05, 0x61])));
    const { streamId, res } = await p.nextResponse();
    assert.equal(streamId, 1);
    assert.equal(res.status?.code, Code.InvalidArgument);
    assert.match(res.status.message, /^unmarshal request error: .+/);
  });

  it('answers an oversize frame with ResourceExhausted and keeps the connection', async () => {
    const p = await connect();
    const big = Buffer.alloc(MESSAGE_LENGTH_MAX + 1);
    p.write(encodeFrame(1, FrameType.Request, 0, big));
    p.write(request(3, 'Echo', Buffer.from('still here')));
    const over = await p.nextResponse();
    assert.equal(over.streamId, 1);
    assert.deepEqual(over.res.status, {
      code: Code.ResourceExhausted,
      message: 'message length 4194305 exceed maximum message size of 4194304',
      details: [],
    });
    const next = await p.nextResponse();
    assert.deepEqual([next.streamId, next.res.payload.toString()], [3, 'still here']);
  });

  it('rejects even stream ids, re-used or decreasing ids, and Data on unknown streams', async () => {
    const p = await connect();
    p.write(request(2, 'Echo'));
    let r = await p.nextResponse();
    assert.deepEqual([r.streamId, r.res.status], [2, { code: 3, message: 'StreamID must be odd for client initiated streams', details: [] }]);
    p.write(request(5, 'Echo', Buffer.from('five')));
    r = await p.nextResponse();
    assert.equal(r.res.payload.toString(), 'five');
    for (const id of [5, 3]) {
      p.write(request(id, 'Echo'));
      r = await p.nextResponse();
      assert.deepEqual([r.streamId, r.res.status], [id, { code: 3, message: 'StreamID cannot be re-used and must increment', details: [] }]);
    }
    p.write(encodeFrame(7, FrameType.Data, 0, Buffer.from('x')));
    r = await p.nextResponse();
    assert.deepEqual([r.streamId, r.res.status], [7, { code: 3, message: 'StreamID is no longer active', details: [] }]);
  });

  it('ignores unknown frame types', async () => {
    const p = await connect();
    p.write(encodeFrame(1, 0x7f, 0, Buffer.from('future')));
    p.write(encodeFrame(3, FrameType.Response, 0, Buffer.alloc(0)));
    p.write(request(5, 'Echo', Buffer.from('after')));
    const r = await p.nextResponse();
    assert.deepEqual([r.streamId, r.res.payload.toString()], [5, 'after'], 'no answer to the unknown frames');
  });

  it('turns handler failures into statuses: TtrpcError as thrown, errno mapped, anything else Unknown', async () => {
    const p = await connect();
    p.write(Buffer.concat([request(1, 'FailTtrpc'), request(3, 'FailPlain'), request(5, 'FailErrno'), request(7, 'ReturnUndefined')]));
    const byId = new Map<number, unknown>();
    for (let i = 0; i < 4; i++) {
      const r = await p.nextResponse();
      byId.set(r.streamId, r.res.status);
    }
    assert.deepEqual(byId.get(1), { code: 9, message: 'not ready', details: [{ typeUrl: 'x/y', value: Buffer.from([1]) }] });
    assert.deepEqual(byId.get(3), { code: 2, message: 'boom', details: [] });
    assert.deepEqual(byId.get(5), { code: 5, message: 'open /nope: no such file or directory', details: [] });
    const undef = byId.get(7) as { code: number; message: string };
    assert.equal(undef.code, Code.Unknown);
    assert.match(undef.message, /marshal called with nil: handler for test\.v1\.Svc\/ReturnUndefined returned undefined/);
    // Bugs (non-TtrpcError throws, bad return values) are also reported to onError; chosen statuses are not.
    assert.equal(errors.length, 3);
    p.write(request(9, 'Echo', Buffer.from('alive')));
    assert.equal((await p.nextResponse()).res.payload.toString(), 'alive');
  });

  it('answers ResourceExhausted when a handler returns more than 4 MiB, and a stream handler returning a non-buffer with Unknown', async () => {
    server.register('big.Svc', { Huge: () => Buffer.alloc(MESSAGE_LENGTH_MAX + 1) });
    server.registerStream('big.Svc', 'Weird', () => 'text' as unknown as Uint8Array, { clientStream: false, serverStream: true });
    const p = await connect();
    p.write(request(1, 'Huge', Buffer.alloc(0), { service: 'big.Svc' }));
    const r = await p.nextResponse();
    assert.equal(r.res.status?.code, Code.ResourceExhausted);
    assert.match(r.res.status.message, /^message length \d+ exceed maximum message size of 4194304$/);
    p.write(request(3, 'Weird', Buffer.alloc(0), { service: 'big.Svc' }));
    const w = await p.nextResponse();
    assert.equal(w.res.status?.code, Code.Unknown);
    assert.match(w.res.status.message, /stream handler for big\.Svc\/Weird returned a string instead of a Uint8Array or nothing/);
    assert.equal(errors.length, 2);
  });

  it('refuses duplicate methods and non-function handlers at registration', () => {
    assert.throws(() => server.register(SVC, { Echo: (_c, p) => p }), /method test\.v1\.Svc\/Echo is already registered/);
    assert.throws(() => server.registerStream(SVC, 'Echo', () => undefined, { clientStream: true, serverStream: true }), /already registered/);
    assert.throws(() => server.register(SVC, { Bad: 42 as unknown as () => Uint8Array }), /handler for test\.v1\.Svc\/Bad is not a function/);
    assert.throws(() => server.register('', { X: (_c, p) => p }), /empty service or method name/);
    // Adding methods to an existing service is fine.
    server.register(SVC, { Extra: (_c, p) => p });
  });

  it('keeps serving other calls while a handler never answers', async () => {
    const p = await connect();
    p.write(request(1, 'Hang'));
    p.write(request(3, 'Echo', Buffer.from('x')));
    const r = await p.nextResponse();
    assert.equal(r.streamId, 3);
  });

  it('shutdown() stops accepting, lets in-flight calls finish, then closes the connection and the socket file', async () => {
    const p = await connect();
    p.write(request(1, 'Wait', Buffer.from('g')));
    await until(() => gates.has('g'), 'handler running');
    let finished = false;
    const done = server.shutdown().then(() => (finished = true));
    await until(() => !fs.existsSync(sock), 'listener closed');
    await assert.rejects(RawPeer.connect(sock), /ENOENT|ECONNREFUSED/);
    assert.equal(finished, false, 'waits for the in-flight call');
    gates.get('g')!.open();
    const r = await p.nextResponse();
    assert.equal(r.res.payload.toString(), 'done g');
    await p.closed;
    await done;
    assert.equal(contexts[0].signal.aborted, false, 'a finished call is not aborted');
    assert.equal(server.connectionCount, 0);
  });

  it('shutdown() gives up after its bound, aborting what is still running', async () => {
    const p = await connect();
    p.write(request(1, 'Hang'));
    await until(() => contexts.length === 1, 'handler running');
    await server.shutdown({ timeoutMs: 20 });
    await p.closed;
    assert.equal(contexts[0].signal.aborted, true);
    assert.equal((contexts[0].signal.reason as TtrpcError).code, Code.Canceled);
  });

  it('close() closes at once and aborts in-flight handlers', async () => {
    const p = await connect();
    p.write(request(1, 'Hang'));
    await until(() => contexts.length === 1, 'handler running');
    server.close();
    await p.closed;
    assert.equal(contexts[0].signal.aborted, true);
    await assert.rejects(server.listen(path.join(dir, 'again.sock')), /shut down/);
  });

  it('refuses to listen on an existing path and leaves it alone', async () => {
    const other = path.join(dir, 'taken');
    fs.writeFileSync(other, 'not a socket');
    const s2 = new Server();
    await assert.rejects(s2.listen(other), /cannot listen on .*taken: .*EADDRINUSE.*remove the stale socket/);
    assert.equal(fs.readFileSync(other, 'utf8'), 'not a socket');
    await assert.rejects(s2.listen(sock), /EADDRINUSE/);
    assert.ok(fs.existsSync(sock), "another server's socket is not removed");
    s2.close();
  });

  it('serveSocket() serves an already-connected socket', async () => {
    const viaPath = path.join(dir, 'plain.sock');
    const plain = net.createServer((s) => server2.serveSocket(s));
    const server2 = new Server();
    server2.register('x', { Up: (_c, p) => Buffer.concat([p, Buffer.from('!')]) });
    await new Promise<void>((r) => plain.listen(viaPath, () => r()));
    try {
      const c = await Client.connect(viaPath);
      assert.equal((await c.call('x', 'Up', Buffer.from('hey'))).toString(), 'hey!');
      c.close();
      await server2.shutdown();
    } finally {
      server2.close();
      await new Promise((r) => plain.close(r));
    }
  });
});

describe('ttrpc Server.listenFd', function () {
  let dir: string;
  let child: ChildProcess | undefined;

  beforeEach(() => {
    dir = scratchDir();
  });
  afterEach(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      process.kill(child.pid!, 'SIGKILL');
      await exited;
    }
    child = undefined;
    removeDir(dir);
  });

  it('serves a listening socket inherited as fd 3 (as a shim daemon gets it from start)', async function () {
    const sock = path.join(dir, 'inherited.sock');
    const index = path.resolve(__dirname, '../../src/ttrpc/index.js');
    const serverCode = `
      const { Server } = require(${JSON.stringify(index)});
      const s = new Server();
      s.register('fd.Svc', { Pid: () => Buffer.from(String(process.pid)) });
      s.listenFd(3).then(() => process.stdout.write('ready\\n'), (e) => { process.stderr.write(e.message); process.exit(1); });`;
    // python binds+listens, puts the socket on fd 3 and execs node (same pid), like a shim's start does.
    const py =
      'import os,socket,sys\n' +
      's=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(16)\n' +
      'os.dup2(s.fileno(), 3); os.set_inheritable(3, True)\n' +
      'os.execv(sys.argv[2], sys.argv[2:])\n';
    child = spawn('python3', ['-c', py, sock, process.execPath, '-e', serverCode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    await new Promise<void>((resolve, reject) => {
      child!.stdout!.on('data', (d) => String(d).includes('ready') && resolve());
      child!.once('exit', (code) => reject(new Error(`server child exited ${code}: ${stderr}`)));
    });
    const c = await Client.connect(sock);
    try {
      assert.equal((await c.call('fd.Svc', 'Pid', Buffer.alloc(0))).toString(), String(child.pid));
    } finally {
      c.close();
    }
  });
});

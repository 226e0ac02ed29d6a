// Conformance of our TTRPC library (src/ttrpc) with Debian's Go ttrpc 1.1.1, the version containerd 1.6
// speaks: our client against the Go server, the Go client against our server, and where behaviour is
// server-defined, the same probe sent to both servers with the answers compared.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  Client,
  Code,
  FrameParser,
  FrameType,
  HEADER_LENGTH,
  MESSAGE_LENGTH_MAX,
  Server,
  TtrpcError,
  decodeResponse,
  encodeFrame,
  encodeRequest,
  type Frame,
  type Status,
} from '../../src/ttrpc';
import { goPeerPath } from '../support/gopeer';
import { scratchDir } from '../support/scratch';
import { runPeer, startPeerServer, type PeerServer } from '../peers/spawn';
import { ECHO_SERVICE, echoHandlers, formatMeta } from '../peers/echo-service';

const hex = (s: string | Buffer) => (typeof s === 'string' ? Buffer.from(s) : s).toString('hex');
const then = (method: string, payload: string | Buffer) => ['-then', `${ECHO_SERVICE}/${method}:${hex(payload)}`];

/** Payload size whose Echo Request (service, method, payload) encodes to exactly `target` bytes. */
function payloadSizeForRequest(target: number): number {
  let n = target - 64;
  for (let i = 0; i < 8; i++) {
    n += target - encodeRequest({ service: ECHO_SERVICE, method: 'Echo', payload: Buffer.alloc(n) }).length;
  }
  return n;
}

/** Send raw frames on a fresh connection and collect `count` frames back. */
function rawExchange(sock: string, frames: Buffer[], count: number): Promise<Frame[]> {
  return new Promise((resolve, reject) => {
    const got: Frame[] = [];
    const socket = net.createConnection(sock);
    const done = (err?: Error) => {
      socket.destroy();
      if (err) reject(err);
      else resolve(got);
    };
    const parser = new FrameParser({
      onFrame: (f) => {
        got.push({ ...f, data: Buffer.from(f.data), raw: Buffer.from(f.raw) });
        if (got.length === count) done();
      },
      onOversize: (id, len) => done(new Error(`unexpected oversize frame ${len} on stream ${id}`)),
    });
    socket.on('data', (chunk) => parser.push(chunk));
    socket.on('error', (e) => done(e));
    socket.on('close', () => done(new Error(`connection to ${sock} closed after ${got.length} of ${count} frames`)));
    socket.on('connect', () => { for (const f of frames) socket.write(f); });
  });
}

function requestFrame(streamId: number, method: string, payload: string | Buffer, timeoutNano = 0): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload;
  return encodeFrame(streamId, FrameType.Request, 0, encodeRequest({ service: ECHO_SERVICE, method, payload: p, timeoutNano }));
}

/** A frame announcing `length` data bytes, followed by that many zero bytes. */
function oversizeFrame(streamId: number, length: number): Buffer {
  const b = Buffer.alloc(HEADER_LENGTH + length);
  b.writeUInt32BE(length, 0);
  b.writeUInt32BE(streamId, 4);
  b[8] = FrameType.Request;
  return b;
}

/** Status and payload of a Response frame, with the stream id it came on. */
function answer(f: Frame): { streamId: number; status?: Pick<Status, 'code' | 'message'>; payload: string } {
  assert.equal(f.type, FrameType.Response);
  const r = decodeResponse(f.data);
  const status = r.status && r.status.code !== 0 ? { code: r.status.code, message: r.status.message } : undefined;
  return { streamId: f.streamId, ...(status ? { status } : {}), payload: r.payload.toString() };
}

async function rejection(p: Promise<unknown>): Promise<TtrpcError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof TtrpcError, `expected a TtrpcError, got ${String(err)}`);
    return err;
  }
  assert.fail('the call succeeded; expected it to fail');
}

describe('TTRPC conformance with Go ttrpc 1.1.1', function () {
  let peer: string;
  let dir: string;
  let goSock: string;
  let oursSock: string;
  let goServer: PeerServer | undefined;
  let ours: Server | undefined;
  const serverErrors: Error[] = [];
  const clients: Client[] = [];
  const sockets = () => ({ go: goSock, ours: oursSock });

  async function connect(sock: string): Promise<Client> {
    const c = await Client.connect(sock);
    clients.push(c);
    return c;
  }

  /** Run the Go client (flags: -parallel / -then ...; args: [timeout_ms] [k=v ...]); its lines and exit code. */
  async function goClient(sock: string, method: string, payload: string | Buffer, opts: { flags?: string[]; args?: string[] } = {}) {
    const r = await runPeer(peer, ['client', ...(opts.flags ?? []), sock, ECHO_SERVICE, method, hex(payload), ...(opts.args ?? [])]);
    assert.ok(r.code === 0 || r.code === 3, `Go client failed (exit ${r.code}): ${r.stderr}`);
    return { lines: r.stdout.split('\n').filter((l) => l !== ''), code: r.code };
  }

  before(async function () {
    peer = goPeerPath(); // builds on first use (a few seconds, offline)
    dir = scratchDir('conformance');
    goSock = path.join(dir, 'go.sock');
    oursSock = path.join(dir, 'ours.sock');
    goServer = await startPeerServer(peer, ['server', goSock], 'Go ttrpc peer server');
    ours = new Server({ onError: (e) => serverErrors.push(e) });
    ours.register(ECHO_SERVICE, echoHandlers());
    ours.register('katavol.test.Extra', {
      Throw: () => { throw new Error('plain error from a handler'); },
    });
    await ours.listen(oursSock);
  });

  afterEach(function () {
    for (const c of clients.splice(0)) c.close();
  });

  after(async function () {
    ours?.close();
    await goServer?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('unary echo', function () {
    const payloads = [Buffer.from('hello'), Buffer.alloc(0), Buffer.from(Array.from({ length: 256 }, (_, i) => i))];

    it('our client -> Go server echoes payloads byte for byte', async function () {
      const c = await connect(goSock);
      for (const p of payloads) assert.deepEqual(await c.call(ECHO_SERVICE, 'Echo', p), p);
    });

    it('Go client -> our server echoes payloads byte for byte', async function () {
      for (const p of payloads) {
        const { lines, code } = await goClient(oursSock, 'Echo', p);
        assert.equal(code, 0);
        assert.deepEqual(lines, p.length ? [hex(p)] : []);
      }
    });
  });

  describe('errors', function () {
    const failures = [
      [Code.NotFound, 'container not found'],
      [Code.FailedPrecondition, 'not created: ünïcode ok'],
      [Code.InvalidArgument, ''],
      [Code.Unimplemented, 'not implemented'],
      [Code.Internal, 'a: b: c'],
    ] as const;

    it('Go server statuses reach our client as TtrpcError with the same code and message', async function () {
      const c = await connect(goSock);
      for (const [code, message] of failures) {
        const err = await rejection(c.call(ECHO_SERVICE, 'Fail', Buffer.from(`${code}:${message}`)));
        assert.deepEqual([err.code, err.message], [code, message]);
      }
    });

    it('the Go client prints the same errors from our server as from the Go server', async function () {
      const [first, ...more] = failures.map(([code, msg]) => `${code}:${msg}`);
      const flags = more.flatMap((f) => then('Fail', f));
      const fromGo = await goClient(goSock, 'Fail', first, { flags });
      const fromOurs = await goClient(oursSock, 'Fail', first, { flags });
      assert.equal(fromOurs.code, 3);
      assert.deepEqual(fromOurs.lines, failures.map(([code, msg], i) => `#${i} error code=${code} msg=${msg}`));
      assert.deepEqual(fromOurs.lines, fromGo.lines);
    });

    it('a plain Error thrown by our handler reaches the Go client as Unknown (2) with its message', async function () {
      const r = await runPeer(peer, ['client', oursSock, 'katavol.test.Extra', 'Throw', '']);
      assert.equal(r.stdout, 'error code=2 msg=plain error from a handler\n');
    });

    it('unknown service and method: same code and message from both servers', async function () {
      const probes: Array<[string, string]> = [['katavol.test.Nope', 'Echo'], [ECHO_SERVICE, 'Nope']];
      const expected = ['service katavol.test.Nope', 'method Nope'];
      const seen: Record<string, Array<[number, string]>> = {};
      for (const [name, sock] of Object.entries(sockets())) {
        const c = await connect(sock);
        seen[name] = [];
        for (const [service, method] of probes) {
          const err = await rejection(c.call(service, method, Buffer.from('x')));
          seen[name].push([err.code, err.message]);
        }
      }
      assert.deepEqual(seen.go, expected.map((m) => [Code.Unimplemented, m]));
      assert.deepEqual(seen.ours, seen.go);
    });

    it('unknown service and method: the Go client prints the same for both servers', async function () {
      const out: Record<string, string[]> = {};
      for (const [name, sock] of Object.entries(sockets())) {
        const a = await runPeer(peer, ['client', sock, 'katavol.test.Nope', 'Echo', '78']);
        const b = await runPeer(peer, ['client', sock, ECHO_SERVICE, 'Nope', '78']);
        out[name] = [a.stdout, b.stdout];
      }
      assert.deepEqual(out.go, ['error code=12 msg=service katavol.test.Nope\n', 'error code=12 msg=method Nope\n']);
      assert.deepEqual(out.ours, out.go);
    });
  });

  describe('deadlines', function () {
    it('our client -> Go server: a call past its timeout fails with DeadlineExceeded (4)', async function () {
      const c = await connect(goSock);
      const err = await rejection(c.call(ECHO_SERVICE, 'Sleep', Buffer.from('5000'), { timeoutMs: 100 }));
      assert.equal(err.code, Code.DeadlineExceeded);
      // the connection is still good afterwards
      assert.equal((await c.call(ECHO_SERVICE, 'Echo', Buffer.from('after'))).toString(), 'after');
    });

    it('timeout_nano alone (no client timer): both servers answer 4 "context deadline exceeded"', async function () {
      const answers: Record<string, unknown> = {};
      for (const [name, sock] of Object.entries(sockets())) {
        const [f] = await rawExchange(sock, [requestFrame(1, 'Sleep', '5000', 100e6)], 1);
        answers[name] = answer(f);
      }
      assert.deepEqual(answers.go, { streamId: 1, status: { code: Code.DeadlineExceeded, message: 'context deadline exceeded' }, payload: '' });
      assert.deepEqual(answers.ours, answers.go);
    });

    it('Go client -> our server: same output as Go client -> Go server', async function () {
      const fromGo = await goClient(goSock, 'Sleep', '5000', { args: ['100'] });
      const fromOurs = await goClient(oursSock, 'Sleep', '5000', { args: ['100'] });
      assert.deepEqual(fromGo.lines, ['error code=4 msg=context deadline exceeded']);
      assert.deepEqual(fromOurs.lines, fromGo.lines);
    });

    it('a timeout reaches the handler as a deadline, in both directions', async function () {
      const c = await connect(goSock);
      assert.equal((await c.call(ECHO_SERVICE, 'Meta', Buffer.alloc(0), { timeoutMs: 10_000 })).toString(), 'deadline=yes\n');
      assert.equal((await c.call(ECHO_SERVICE, 'Meta', Buffer.alloc(0))).toString(), 'deadline=no\n');
      const { lines } = await goClient(oursSock, 'Meta', '', { args: ['10000'] });
      assert.deepEqual(lines, [hex('deadline=yes\n')]);
    });
  });

  describe('metadata', function () {
    const md = [
      { key: 'containerd-namespace-ttrpc', value: 'default' },
      { key: 'a', value: '1' },
      { key: 'a', value: '2' },
    ];
    const expected = formatMeta(md, false);

    it('our client -> Go server: every key and repeated value arrives', async function () {
      const c = await connect(goSock);
      assert.equal(expected, 'deadline=no\na=1\na=2\ncontainerd-namespace-ttrpc=default\n');
      assert.equal((await c.call(ECHO_SERVICE, 'Meta', Buffer.alloc(0), { metadata: md })).toString(), expected);
    });

    it('Go client -> our server: our handler sees what the Go server sees', async function () {
      const args = ['containerd-namespace-ttrpc=default', 'a=1', 'a=2'];
      const fromOurs = await goClient(oursSock, 'Meta', '', { args });
      const fromGo = await goClient(goSock, 'Meta', '', { args });
      assert.deepEqual(fromOurs.lines, [hex(expected)]);
      assert.deepEqual(fromOurs.lines, fromGo.lines);
    });
  });

  describe('concurrency on one connection', function () {
    const sleeps = ['450', '150', '300'];
    const completion = ['150', '300', '450'];

    it('our client -> Go server: concurrent calls complete out of order', async function () {
      const c = await connect(goSock);
      const order: string[] = [];
      await Promise.all(sleeps.map(async (ms) => {
        order.push((await c.call(ECHO_SERVICE, 'Sleep', Buffer.from(ms))).toString());
      }));
      assert.deepEqual(order, completion);
    });

    it('Go client -> our server: concurrent calls complete out of order', async function () {
      const { lines } = await goClient(oursSock, 'Sleep', sleeps[0], {
        flags: ['-parallel', ...then('Sleep', sleeps[1]), ...then('Sleep', sleeps[2])],
      });
      assert.deepEqual(lines, [`#1 ${hex('150')}`, `#2 ${hex('300')}`, `#0 ${hex('450')}`]);
    });
  });

  describe('connection loss', function () {
    it('Go server stopping mid-call: our pending call fails with a "closed" TtrpcError, onClose fires', async function () {
      const sock = path.join(dir, 'go-dying.sock');
      const dying = await startPeerServer(peer, ['server', sock], 'Go ttrpc peer server (to be stopped)');
      try {
        const c = await connect(sock);
        let closed = false;
        c.onClose(() => { closed = true; });
        const pending = rejection(c.call(ECHO_SERVICE, 'Sleep', Buffer.from('30000')));
        await dying.waitForOutput(/^sleeping 30000$/);
        await dying.stop();
        const err = await pending;
        assert.match(err.message, /closed/);
        assert.ok(closed && c.closed);
      } finally {
        await dying.stop();
      }
    });

    it('our server closing mid-call: the Go client reports "ttrpc: closed", as it does for a Go server', async function () {
      const out: Record<string, string> = {};
      for (const impl of ['go', 'ours'] as const) {
        const sock = path.join(dir, `${impl}-closing.sock`);
        let stop: () => Promise<void>;
        let inFlight: Promise<void>;
        if (impl === 'go') {
          const s = await startPeerServer(peer, ['server', sock], 'Go ttrpc peer server (to be stopped)');
          stop = () => s.stop();
          inFlight = s.waitForOutput(/^sleeping 30000$/);
        } else {
          const s = new Server();
          const handlers = echoHandlers();
          let entered!: () => void;
          inFlight = new Promise<void>((r) => { entered = r; });
          s.register(ECHO_SERVICE, { ...handlers, Sleep: (ctx, p) => { entered(); return handlers.Sleep(ctx, p); } });
          await s.listen(sock);
          stop = async () => s.close();
        }
        try {
          const run = runPeer(peer, ['client', sock, ECHO_SERVICE, 'Sleep', hex('30000')]);
          await inFlight;
          await stop();
          out[impl] = (await run).stdout;
        } finally {
          await stop();
        }
      }
      assert.equal(out.go, 'error code=2 msg=ttrpc: closed\n');
      assert.equal(out.ours, out.go);
    });
  });

  // Server answers to malformed input, sent raw to both servers. (Deliberate differences, not tested
  // here: ttrpc 1.1.1 accepts a reused stream id and ignores Data frames; ours rejects both like ttrpc >= 1.2.)
  describe('protocol edge cases', function () {
    it('an even stream id: both answer 3 "StreamID must be odd..." on that id', async function () {
      const answers: Record<string, unknown> = {};
      for (const [name, sock] of Object.entries(sockets())) {
        answers[name] = answer((await rawExchange(sock, [requestFrame(2, 'Echo', 'x')], 1))[0]);
      }
      assert.deepEqual(answers.go, { streamId: 2, status: { code: Code.InvalidArgument, message: 'StreamID must be odd for client initiated streams' }, payload: '' });
      assert.deepEqual(answers.ours, answers.go);
    });

    it('an undecodable Request: both answer 3 "unmarshal request error: ..." and keep the connection', async function () {
      // field 1 (service) claims 5 bytes, only 1 follows
      const garbage = encodeFrame(1, FrameType.Request, 0, Buffer.from([0x0a, 0x05, 0x41]));
      for (const sock of Object.values(sockets())) {
        const [bad, good] = (await rawExchange(sock, [garbage, requestFrame(3, 'Echo', 'ok')], 2)).map(answer);
        assert.equal(bad.streamId, 1);
        assert.equal(bad.status?.code, Code.InvalidArgument);
        // the text after the prefix is the protobuf decoder's own wording (gogo: "unexpected EOF")
        assert.match(bad.status?.message ?? '', /^unmarshal request error: \S/);
        assert.deepEqual(good, { streamId: 3, payload: 'ok' });
      }
    });

    it('an unknown frame type is ignored by both', async function () {
      const answers: Record<string, unknown> = {};
      for (const [name, sock] of Object.entries(sockets())) {
        const frames = await rawExchange(sock, [encodeFrame(1, 0x7f, 0, Buffer.from('zz')), requestFrame(3, 'Echo', 'y')], 1);
        answers[name] = frames.map(answer);
      }
      assert.deepEqual(answers.go, [{ streamId: 3, payload: 'y' }]);
      assert.deepEqual(answers.ours, answers.go);
    });
  });

  describe('message size limit (4 MiB Request)', function () {
    const atLimit = payloadSizeForRequest(MESSAGE_LENGTH_MAX);
    const payload = Buffer.alloc(atLimit, 0x5a);
    const over = Buffer.alloc(atLimit + 1, 0x5a);
    const overMessage = `message length ${MESSAGE_LENGTH_MAX + 1} exceed maximum message size of ${MESSAGE_LENGTH_MAX}`;

    it('the chosen payload puts the Request exactly at the limit', function () {
      assert.equal(encodeRequest({ service: ECHO_SERVICE, method: 'Echo', payload }).length, MESSAGE_LENGTH_MAX);
      assert.equal(encodeRequest({ service: ECHO_SERVICE, method: 'Echo', payload: over }).length, MESSAGE_LENGTH_MAX + 1);
    });

    it('our client -> Go server: a Request of exactly 4 MiB goes through', async function () {
      const c = await connect(goSock);
      const reply = await c.call(ECHO_SERVICE, 'Echo', payload);
      assert.equal(reply.length, payload.length);
      assert.ok(reply.equals(payload));
    });

    it('Go client -> our server: a Request of exactly 4 MiB goes through', async function () {
      const file = path.join(dir, 'limit.bin');
      fs.writeFileSync(file, payload);
      const r = await runPeer(peer, ['client', oursSock, ECHO_SERVICE, 'Echo', `@${file}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(Buffer.from(r.stdout.trim(), 'hex').equals(payload));
    });

    it('our client refuses one byte over locally with ResourceExhausted and keeps the connection', async function () {
      const c = await connect(goSock);
      const err = await rejection(c.call(ECHO_SERVICE, 'Echo', over));
      assert.equal(err.code, Code.ResourceExhausted);
      assert.equal((await c.call(ECHO_SERVICE, 'Echo', Buffer.from('still here'))).toString(), 'still here');
    });

    it('one byte over on the wire: both servers answer 8 with the same message and keep the connection', async function () {
      const answers: Record<string, unknown> = {};
      for (const [name, sock] of Object.entries(sockets())) {
        const frames = await rawExchange(sock, [oversizeFrame(1, MESSAGE_LENGTH_MAX + 1), requestFrame(3, 'Echo', 'next')], 2);
        answers[name] = frames.map(answer).sort((a, b) => a.streamId - b.streamId);
      }
      assert.deepEqual(answers.go, [
        { streamId: 1, status: { code: Code.ResourceExhausted, message: overMessage }, payload: '' },
        { streamId: 3, payload: 'next' },
      ]);
      assert.deepEqual(answers.ours, answers.go);
    });

    it('Go client -> our server: one byte over gets ResourceExhausted, the next call on the connection works', async function () {
      const file = path.join(dir, 'over.bin');
      fs.writeFileSync(file, over);
      const out: Record<string, string> = {};
      for (const [name, sock] of Object.entries(sockets())) {
        const r = await runPeer(peer, ['client', ...then('Echo', 'next'), sock, ECHO_SERVICE, 'Echo', `@${file}`]);
        out[name] = r.stdout;
      }
      assert.equal(out.go, `#0 error code=8 msg=${overMessage}\n#1 ${hex('next')}\n`);
      assert.equal(out.ours, out.go);
    });
  });
});

// Seeded, reproducible fuzzing of the server over real unix sockets: >= 100,000 random and mutated frames,
// written in random-size pieces, over many connections that end in every way a peer can end. Afterwards the
// server must still be up and answer a valid call. Set TTRPC_FUZZ_SEED to replay another seed.

import { strict as assert } from 'assert';
import * as path from 'path';
import {
  Client,
  Code,
  codeName,
  decodeResponse,
  Flags,
  type Frame,
  FrameParser,
  FrameType,
  encodeFrame,
  encodeRequest,
} from '../../src/ttrpc';
import { RawPeers, prng, until } from '../support/ttrpc';
import { removeDir, scratchDir } from '../support/scratch';
import { SVC, generate, int, pick, randomBytes, writeInPieces } from '../support/fuzz-gen';
import type { Stats } from './fuzz-server';
import { MeasuredChild, checkMemory } from '../support/child-stats';

const SEED = Number(process.env.TTRPC_FUZZ_SEED ?? 0x5eed);
// 105,000 frames in make test; `make fuzz` sets KATAVOL_FUZZ_FRAMES=1000000.
const FRAMES_PER_CONNECTION = 4200;
const CONNECTIONS = Math.max(25, Math.ceil(Number(process.env.KATAVOL_FUZZ_FRAMES ?? 0) / FRAMES_PER_CONNECTION));
const SENTINEL_ID = 0xffffffff; // odd and larger than any id the generator uses

describe('ttrpc fuzz (seeded)', function () {
  this.timeout(120000 + CONNECTIONS * 4000);
  let dir: string;
  const children: MeasuredChild<Stats>[] = [];
  const peers = new RawPeers();
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);

  before(() => process.on('unhandledRejection', onUnhandled));
  after(() => process.removeListener('unhandledRejection', onUnhandled));

  beforeEach(() => {
    dir = scratchDir('ttrpc-fuzz');
  });
  afterEach(() => {
    peers.destroyAll();
    for (const c of children.splice(0)) c.stop();
    removeDir(dir);
  });

  it('the parser yields the same frames whatever the split points', () => {
    const rnd = prng(SEED);
    const frames = generate(rnd, 3000, 0);
    const stream = Buffer.concat(frames);
    const whole: Buffer[] = [];
    new FrameParser({ onFrame: (f) => whole.push(Buffer.from(f.raw)), onOversize: () => assert.fail('no oversize expected') }).push(stream);
    assert.equal(whole.length, frames.length);
    for (let round = 0; round < 20; round++) {
      const pieces: Buffer[] = [];
      const parser = new FrameParser({ onFrame: (f: Frame) => pieces.push(Buffer.from(f.raw)), onOversize: () => assert.fail('oversize') });
      let off = 0;
      while (off < stream.length) {
        const n = Math.min(stream.length - off, rnd() < 0.3 ? 1 + int(rnd, 12) : 1 + int(rnd, 4096));
        parser.push(stream.subarray(off, off + n));
        off += n;
      }
      assert.equal(pieces.length, whole.length, `round ${round}`);
      assert.ok(Buffer.concat(pieces).equals(stream), `round ${round}: bytes differ`);
    }
  });

  it(`survives ${CONNECTIONS * FRAMES_PER_CONNECTION} random and mutated frames over real sockets (seed ${SEED})`, async () => {
    const sock = path.join(dir, 'fuzz.sock');
    // The server alone in a process (test/ttrpc/fuzz-server.ts): its memory is measured, not the harness's.
    const server = await MeasuredChild.start<Stats>(path.join(__dirname, 'fuzz-server.js'), [sock]);
    children.push(server);

    const rnd = prng(SEED);
    const before = await server.stats();
    const t0 = process.hrtime.bigint();
    let totalFrames = 0;
    const endings = { clean: 0, truncated: 0, desync: 0, abrupt: 0 };
    const codes = new Map<number, number>();
    let dataFrames = 0;
    let warm: Stats | undefined;
    for (let c = 0; c < CONNECTIONS; c++) {
      // A quarter in, the server has reached its working size (V8 and malloc keep pages they used once).
      if (c === Math.floor(CONNECTIONS / 4)) warm = await server.stats();
      const peer = await peers.connect(sock);
      const frames = generate(rnd, FRAMES_PER_CONNECTION, c < 4 ? 1 : 0);
      totalFrames += frames.length;
      await writeInPieces(rnd, peer, Buffer.concat(frames));
      // Sentinel: once its answer arrives, the server has processed everything before it on this connection.
      peer.write(encodeFrame(SENTINEL_ID, FrameType.Request, 0, encodeRequest({ service: SVC, method: 'Echo', payload: Buffer.from(`sentinel ${c}`) })));
      await until(() => peer.frames.some((f) => f.streamId === SENTINEL_ID && f.type === FrameType.Response), `sentinel answer on connection ${c}`);
      for (const f of peer.frames) {
        if (f.type === FrameType.Response) codes.set(decodeResponse(f.data).status?.code ?? 0, (codes.get(decodeResponse(f.data).status?.code ?? 0) ?? 0) + 1);
        else dataFrames++;
        assert.ok(f.type === FrameType.Response || f.type === FrameType.Data, `server sent frame type ${f.type}`);
        assert.ok(f.flags === 0 || f.type === FrameType.Data, 'Responses carry no flags');
        if (f.type === FrameType.Data) assert.equal(f.flags & ~(Flags.RemoteClosed | Flags.NoData), 0);
      }
      // End the connection in one of the ways a peer can.
      const how = pick(rnd, ['clean', 'truncated', 'desync', 'abrupt'] as const);
      endings[how]++;
      if (how === 'truncated') {
        peer.write(encodeFrame(SENTINEL_ID, FrameType.Request, 0, randomBytes(rnd, 64)).subarray(0, 5 + int(rnd, 20)));
        peer.socket.end();
      } else if (how === 'desync') {
        // A header whose length is garbage (maybe huge): the server is mid-frame when we hang up.
        peer.write(Buffer.concat([Buffer.from([int(rnd, 256), int(rnd, 256), int(rnd, 256), 1 + int(rnd, 255), 0, 0, 0, 1, 1, 0]), randomBytes(rnd, 30)]));
        peer.socket.end();
      } else if (how === 'abrupt') {
        peer.destroy();
      } else {
        peer.socket.end();
      }
      await peer.closed;
      peer.frames.splice(0); // the answers were checked: the harness keeps none of them (the RSS check is the server's)
    }
    assert.ok(totalFrames >= 100000, `only ${totalFrames} frames`);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    // Every connection is released, then the server process's memory after a forced collection: nothing
    // a peer sent stays (no stream, buffer, timer or listener outlives its connection).
    const after = await server.statsWhen((st) => st.connections === 0);
    assert.equal(after.connections, 0, 'all fuzz connections released');
    assert.ok(warm);
    const summary = checkMemory('the fuzzed server', before, warm, after, { plateau: CONNECTIONS >= 40 });
    if (process.env.KATAVOL_FUZZ_FRAMES) {
      console.log(`      server fuzz: ${totalFrames} frames in ${seconds.toFixed(1)} s = ${Math.round(totalFrames / seconds)} frames/s; crashes: ${unhandled.length + after.unhandled.length}; server errors reported: ${after.errorCount}; ${summary}`);
    }
    // What the server reported are the handlers' own failures and peers hanging up, nothing of its own.
    for (const [kind] of after.errorKinds) assert.match(kind, /handler for fuzz\.vN\.Svc\/(Throw|Undefined)|server connection closed/, kind);
    assert.deepEqual(after.unhandled, []);

    // The server is up and answers a valid call; nothing escaped as an unhandled rejection.
    const client = await Client.connect(sock);
    try {
      assert.equal((await client.call(SVC, 'Echo', Buffer.from('still alive'))).toString(), 'still alive');
      const s = client.stream(SVC, 'Count', { clientStream: false, serverStream: true, payload: Buffer.from([3]) });
      const got: number[] = [];
      for await (const m of s) got.push(m[0]);
      assert.deepEqual(got, [0, 1, 2]);
    } finally {
      client.close();
    }
    assert.deepEqual(unhandled, []);
    assert.ok(endings.clean + endings.truncated + endings.desync + endings.abrupt === CONNECTIONS);
    // The input reached every answer path (a generator regression would show up here).
    for (const code of [Code.OK, Code.Unknown, Code.InvalidArgument, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Unimplemented]) {
      assert.ok((codes.get(code) ?? 0) > 0, `no ${codeName(code)} answer in the fuzz run: ${JSON.stringify([...codes])}`);
    }
    assert.ok(dataFrames > 0, 'no streaming Data answers in the fuzz run');
    if (process.env.TTRPC_FUZZ_VERBOSE) console.log({ codes: [...codes], dataFrames, endings, errors: after.errorCount, errorKinds: after.errorKinds });
  });
});

// Seeded fuzzing of the shim proxy in both directions: containerd's side sends random and mutated frames
// (task calls, Create with random payloads, unknown services) in random pieces, while a hostile downstream
// answers each request with a random frame, garbage, Data frames or nothing, and sends frames nobody asked
// for. Some frames both ways are large enough to cross the proxy cut-through, and some connections end in
// the middle of one, from either side. The proxy must neither crash nor leak: every connection ends, nothing escapes as an unhandled
// rejection, and a fresh connection through the same proxy still works. make test runs 20,000 frames,
// `make fuzz` 1,000,000 (KATAVOL_FUZZ_FRAMES). KATAVOL_FUZZ_TRACE=N prints the proxy's memory figures every N
// connections (5,000 frames each).
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { Client, FrameParser, FrameType, encodeFrame, encodeRequest, encodeResponse } from '../../src/ttrpc';
import { RawPeer, prng, until } from '../support/ttrpc';
import { generate, int, largeBytes, largeFrame, pick, randomBytes, writeInPieces, type Rnd } from '../support/fuzz-gen';
import { MeasuredChild, checkMemory, memoryLine } from '../support/child-stats';
import type { ProxyStats } from './proxy-fuzz-server';
import { tmpDir } from '../support/containerd';
import { DAEMON_NODE_FLAGS } from '../../src/shim/oom';

const SEED = Number(process.env.TTRPC_FUZZ_SEED ?? 0x5eed);
const TOTAL = Math.max(20000, Number(process.env.KATAVOL_FUZZ_FRAMES ?? 0));
const PER_CONNECTION = 5000;
const TASK = 'containerd.task.v2.Task';
const TASK_METHODS = ['Create', 'Create', 'Delete', 'Start', 'Shutdown', 'State', 'Kill', 'Wait', 'Connect', 'Pids', 'Nope'];
const SENTINEL_ID = 0xffffffff;
const TRACE = Number(process.env.KATAVOL_FUZZ_TRACE ?? 0);

/** A downstream shim that answers badly on purpose; `sane` makes it answer every request with OK. */
class HostileDownstream {
  readonly server: net.Server;
  sane = false;
  framesSent = 0;
  private readonly sockets = new Set<net.Socket>();
  constructor(private readonly rnd: Rnd) {
    this.server = net.createServer((s) => this.serve(s));
  }
  private serve(s: net.Socket): void {
    this.sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => this.sockets.delete(s));
    const send = (b: Buffer) => {
      this.framesSent++;
      if (!s.destroyed) s.write(b);
    };
    const rnd = this.rnd;
    const parser = new FrameParser({
      onFrame: (f) => {
        if (f.type !== FrameType.Request) return;
        if (this.sane || f.streamId === SENTINEL_ID) return send(encodeFrame(f.streamId, FrameType.Response, 0, encodeResponse({ payload: Buffer.from('ok') })));
        const r = rnd();
        if (r < 0.4) send(encodeFrame(f.streamId, FrameType.Response, 0, encodeResponse({ payload: randomBytes(rnd, 32), ...(rnd() < 0.3 ? { status: { code: int(rnd, 20), message: 'x', details: [] } } : {}) })));
        else if (r < 0.55) send(encodeFrame(f.streamId, FrameType.Response, int(rnd, 8), randomBytes(rnd, 40))); // garbage body
        else if (r < 0.7) send(encodeFrame(f.streamId, FrameType.Data, int(rnd, 8), randomBytes(rnd, 24)));
        else if (r < 0.8) send(encodeFrame(int(rnd, 2 ** 31), int(rnd, 256), int(rnd, 256), randomBytes(rnd, 24))); // unsolicited
        else if (r < 0.802) send(encodeFrame(f.streamId, FrameType.Response, 0, Buffer.alloc(4 * 2 ** 20 + 1 + int(rnd, 64)))); // oversize answer
        else if (r < 0.812) send(encodeFrame(f.streamId, pick(rnd, [FrameType.Response, FrameType.Data]), 0, largeBytes(rnd, 65536 + int(rnd, 200000)))); // large answer
        else if (r < 0.81205) {
          // Dies in the middle of a large answer.
          const big = encodeFrame(f.streamId, FrameType.Response, 0, largeBytes(rnd, 65536 + int(rnd, 200000)));
          send(big.subarray(0, 1 + int(rnd, big.length - 1)));
          s.destroy();
        }
        // else: never answered
      },
      onOversize: () => undefined,
    });
    s.on('data', (c: Buffer) => parser.push(c));
  }
  closeAll(): void {
    for (const s of this.sockets) s.destroy();
  }
}

describe('shim proxy fuzz (seeded, both directions)', function () {
  this.timeout(120000 + Math.ceil(TOTAL / PER_CONNECTION) * 4000);
  let dir: string;
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  before(() => process.on('unhandledRejection', onUnhandled));
  after(() => process.removeListener('unhandledRejection', onUnhandled));
  beforeEach(() => { dir = tmpDir('katavol-pfuzz-'); });
  const children: MeasuredChild<ProxyStats>[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) c.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it(`survives ${TOTAL} random frames from containerd's side and a hostile downstream (seed ${SEED})`, async () => {
    const rnd = prng(SEED);
    const downSock = path.join(dir, 'down.sock');
    const upSock = path.join(dir, 'up.sock');
    const down = new HostileDownstream(prng(SEED + 1));
    await new Promise<void>((r) => down.server.listen(downSock, r));
    // The proxy alone in a process (test/shim/proxy-fuzz-server.ts): its memory is measured, not the harness's.
    const proxy = await MeasuredChild.start<ProxyStats>(path.join(__dirname, 'proxy-fuzz-server.js'), [upSock, downSock, path.join(dir, 'volumes')], DAEMON_NODE_FLAGS);
    children.push(proxy);

    const before = await proxy.stats();
    const t0 = process.hrtime.bigint();
    let sent = 0;
    let received = 0;
    const endings = { sentinel: 0, closed: 0 };
    try {
      let warm: ProxyStats | undefined;
      for (let c = 0; sent < TOTAL; c++) {
        if (c === Math.floor(TOTAL / PER_CONNECTION / 4)) warm = await proxy.stats();
        if (TRACE && c % TRACE === 0) console.log(`      ${sent} frames: ${memoryLine(await proxy.stats())}`);
        const peer = await RawPeer.connect(upSock);
        const n = Math.min(PER_CONNECTION, TOTAL - sent);
        // Task calls (Create is decoded and intercepted) mixed with another service's frames.
        const frames = rnd() < 0.7 ? generate(rnd, n, c % 10 === 0 ? 1 : 0, { service: TASK, methods: TASK_METHODS }, 4) : generate(rnd, n, 0, undefined, 4);
        sent += frames.length;
        await writeInPieces(rnd, peer, Buffer.concat(frames)).catch(() => undefined); // the proxy may hang up first
        if (c % 10 === 5 && !peer.socket.destroyed) {
          // containerd's side dies in the middle of a large frame.
          const big = largeFrame(rnd, 0x7ffffff1, pick(rnd, [TASK, 'fuzz.v1.Svc']), TASK_METHODS);
          await writeInPieces(rnd, peer, big.subarray(0, 1 + int(rnd, big.length - 1))).catch(() => undefined);
          peer.destroy();
        }
        if (!peer.socket.destroyed) {
          peer.write(encodeFrame(SENTINEL_ID, FrameType.Request, 0, encodeRequest({ service: 'fuzz.v1.Svc', method: 'Echo', payload: Buffer.from('sentinel') })));
        }
        let closed = false;
        void peer.closed.then(() => (closed = true));
        await until(() => closed || peer.frames.some((f) => f.streamId === SENTINEL_ID && f.type === FrameType.Response), `sentinel answer or close on connection ${c}`);
        if (closed) endings.closed++;
        else endings.sentinel++;
        received += peer.frames.length;
        pick(rnd, [() => peer.socket.end(), () => peer.destroy()])();
        await peer.closed;
      }
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const after = await proxy.statsWhen((st) => st.open === 0);
      assert.equal(after.open, 0, 'every proxied connection ended');
      assert.ok(warm);
      const memory = checkMemory('the fuzzed proxy', before, warm, after, { plateau: TOTAL / PER_CONNECTION >= 40 });
      if (process.env.KATAVOL_FUZZ_FRAMES) {
        console.log(`      proxy fuzz: ${sent} frames up, ${down.framesSent} down (${received} reached containerd's side) in ${seconds.toFixed(1)} s = ${Math.round((sent + down.framesSent) / seconds)} frames/s; crashes: ${unhandled.length + after.unhandled.length}; ${memory}; connections ended by sentinel ${endings.sentinel}, by the proxy ${endings.closed}`);
      }
      assert.ok(sent >= TOTAL);
      assert.ok(endings.sentinel > 0, 'some connections lived through their frames');
      assert.ok(down.framesSent > 0 && received > 0, 'frames went both ways');

      // Still serving: a well-behaved exchange through the same proxy.
      down.sane = true;
      const client = await Client.connect(upSock);
      try {
        assert.equal((await client.call(TASK, 'State', Buffer.from([0x0a, 0x01, 0x78]))).toString(), 'ok');
      } finally {
        client.close();
      }
      assert.deepEqual(unhandled, []);
      const last = await proxy.stats();
      assert.deepEqual(last.unhandled, []);
      assert.ok(!last.logged.some((l) => /TypeError|uncaught/.test(l)), last.logged.join(''));
    } finally {
      down.closeAll();
      down.server.close();
    }
  });
});

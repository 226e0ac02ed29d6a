// Fixtures for suites that speak TTRPC raw: a frame-level peer and listener, a seeded PRNG for fuzzing, hex and waiting helpers.

import * as net from 'net';
import * as path from 'path';
import { Channel, type Frame, FrameParser, decodeResponse, encodeFrame, type Response } from '../../src/ttrpc';

/**
 * The raw forwarder of src/ttrpc/README.md, one direction: every frame of `from` goes to `to` unchanged
 * (onFrame sees it first); reading `from` pauses while `to`'s socket is full, and `to` closes with `from`.
 */
export function forwardFrames(from: Channel, to: Channel, onFrame?: (f: Frame) => void): void {
  let paused = false;
  from.on('frame', (f: Frame) => {
    onFrame?.(f);
    if (!to.sendRaw(f.raw) && !to.closed && !paused) {
      paused = true;
      from.pause();
      to.once('drain', () => {
        paused = false;
        from.resume();
      });
    }
  });
  from.on('close', () => to.close());
}

/** A peer that speaks raw frames over a socket and records everything it receives. */
export class RawPeer {
  readonly frames: Frame[] = [];
  oversize: number[] = [];
  private waiters: ((f: Frame) => void)[] = [];
  private readonly parser: FrameParser;
  readonly closed: Promise<void>;

  constructor(readonly socket: net.Socket) {
    this.parser = new FrameParser({
      onFrame: (f) => {
        // Copy: the chunk may be referenced elsewhere; tests keep frames around.
        const raw = Buffer.from(f.raw);
        const copy: Frame = { ...f, raw, data: raw.subarray(10) };
        const w = this.waiters.shift();
        if (w) w(copy);
        else this.frames.push(copy);
      },
      onOversize: (id) => this.oversize.push(id),
    });
    socket.on('data', (c: Buffer) => this.parser.push(c));
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static connect(p: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(p);
      s.once('error', reject);
      s.once('connect', () => {
        s.removeListener('error', reject);
        resolve(new RawPeer(s));
      });
    });
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  sendFrame(id: number, type: number, flags: number, data: Uint8Array): void {
    this.socket.write(encodeFrame(id, type, flags, data));
  }

  /** Next received frame; rejects if the connection closes first. */
  next(): Promise<Frame> {
    const f = this.frames.shift();
    if (f) return Promise.resolve(f);
    return new Promise((resolve, reject) => {
      const onClose = () => reject(new Error('RawPeer: connection closed while waiting for a frame'));
      this.socket.once('close', onClose);
      this.waiters.push((fr) => {
        this.socket.removeListener('close', onClose);
        resolve(fr);
      });
    });
  }

  async nextResponse(): Promise<{ streamId: number; res: Response; frame: Frame }> {
    const f = await this.next();
    if (f.type !== 2) throw new Error(`RawPeer: expected a Response frame, got type ${f.type}`);
    return { streamId: f.streamId, res: decodeResponse(f.data), frame: f };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A connected pair over a real unix socket in `dir`: our Channel on one end, a RawPeer on the other. */
export async function channelPair(dir: string, maxLength?: number): Promise<{ ch: Channel; peer: RawPeer; server: net.Server; socket: net.Socket }> {
  const sock = path.join(dir, 'ch.sock');
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(sock, () => r()));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const peer = await RawPeer.connect(sock);
  const socket = await accepted;
  const ch = new Channel(socket, { maxLength });
  return { ch, peer, server, socket };
}

/** The raw peers a test opens, destroyed together when it ends. */
export class RawPeers {
  private readonly open: RawPeer[] = [];

  async connect(sock: string): Promise<RawPeer> {
    const p = await RawPeer.connect(sock);
    this.open.push(p);
    return p;
  }

  destroyAll(): void {
    for (const p of this.open.splice(0)) p.destroy();
  }
}

/** A listening socket that hands each accepted connection out as a RawPeer (to test the Client). */
export class RawListener {
  private readonly server: net.Server;
  private readonly all: RawPeer[] = [];
  private readonly unclaimed: RawPeer[] = [];
  private waiters: ((p: RawPeer) => void)[] = [];

  constructor(readonly path: string) {
    this.server = net.createServer((s) => {
      const p = new RawPeer(s);
      this.all.push(p);
      const w = this.waiters.shift();
      if (w) w(p);
      else this.unclaimed.push(p);
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.path, () => resolve());
    });
  }

  /** The next accepted connection. */
  accept(): Promise<RawPeer> {
    const p = this.unclaimed.shift();
    if (p) return Promise.resolve(p);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close(): Promise<void> {
    for (const p of this.all) p.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Deterministic PRNG (mulberry32) so fuzz failures reproduce from the seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/** Resolves on the next macrotask turn (lets socket I/O settle without timing assumptions). */
export function tick(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** Waits until cond() is true, polling on I/O turns; fails with `what` after many turns. */
export async function until(cond: () => boolean, what: string, turns = 100000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, i < 100 ? 0 : 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

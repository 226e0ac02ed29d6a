// The seeded frame generator shared by the server fuzz (test/ttrpc/fuzz.test.ts) and the proxy fuzz
// (test/shim/proxy-fuzz.test.ts): random, well-formed and mutated frames, written in random pieces.
import { CUT_THROUGH_MIN, FrameType, MESSAGE_LENGTH_MAX, encodeFrame, encodeRequest } from '../../src/ttrpc';
import type { RawPeer } from './ttrpc';

export const SVC = 'fuzz.v1.Svc';

export type Rnd = () => number;

export const int = (rnd: Rnd, n: number) => Math.floor(rnd() * n);
export const pick = <T>(rnd: Rnd, xs: readonly T[]): T => xs[int(rnd, xs.length)];

export function randomBytes(rnd: Rnd, max: number): Buffer {
  const b = Buffer.alloc(int(rnd, max + 1));
  for (let i = 0; i < b.length; i++) b[i] = int(rnd, 256);
  return b;
}

export const METHODS = ['Echo', 'Echo', 'Throw', 'Slow', 'Undefined', 'Count', 'Sum', 'Hang', 'Nope'] as const;

/** Generates one connection's worth of frames (each a complete, self-consistent frame). */
export function generate(rnd: Rnd, count: number, oversize: number, target: { service: string; methods: readonly string[] } = { service: SVC, methods: METHODS }, large = 0): Buffer[] {
  const SVC_ = target.service;
  const frames: Buffer[] = [];
  let lastId = 1;
  const oversizeAt = new Set<number>();
  for (let i = 0; i < oversize; i++) oversizeAt.add(int(rnd, count));
  const largeAt = new Set<number>();
  for (let i = 0; i < large; i++) largeAt.add(int(rnd, count));
  for (let i = 0; i < count; i++) {
    if (oversizeAt.has(i)) {
      frames.push(encodeFrame(lastId, FrameType.Request, 0, Buffer.alloc(MESSAGE_LENGTH_MAX + 1 + int(rnd, 100))));
      continue;
    }
    if (largeAt.has(i)) {
      frames.push(largeFrame(rnd, (lastId += 2), SVC_, target.methods));
      continue;
    }
    const r = rnd();
    // Stream ids: mostly increasing odd, sometimes even, re-used, zero or random.
    const idRoll = rnd();
    let id: number;
    if (idRoll < 0.8) id = lastId += 2;
    else if (idRoll < 0.88) id = lastId + 1;
    else if (idRoll < 0.95) id = Math.max(1, lastId - 2 * int(rnd, 5));
    else if (idRoll < 0.97) id = 0;
    else if (idRoll < 0.99) id = int(rnd, lastId + 1);
    else id = lastId += 2 * (1 + int(rnd, 100000)); // a jump forward, which later ids continue from
    if (lastId > 0x7ff00000) lastId = 1;
    if (r < 0.35) {
      // A well-formed request (known or unknown method/service), with random flags, metadata and deadline.
      const method = pick(rnd, target.methods);
      const body = encodeRequest({
        service: rnd() < 0.95 ? SVC_ : randomBytes(rnd, 8).toString('latin1'),
        method,
        payload: randomBytes(rnd, 24),
        timeoutNano: pick(rnd, [0, 0, 0, -1, 1, 2e6, 60e9]),
        metadata: rnd() < 0.3 ? [{ key: 'k', value: randomBytes(rnd, 6).toString('hex') }] : [],
      });
      const flags = rnd() < 0.7 ? 0 : int(rnd, 8);
      frames.push(encodeFrame(id, FrameType.Request, flags, body));
    } else if (r < 0.55) {
      // A mutated request: flipped bytes, truncation, or appended garbage (the header length stays consistent).
      const body = Buffer.from(encodeRequest({ service: SVC_, method: pick(rnd, target.methods), payload: randomBytes(rnd, 16), timeoutNano: 5e9 }));
      const m = rnd();
      let out: Buffer = body;
      if (m < 0.5) {
        for (let k = 0, n = 1 + int(rnd, 4); k < n && body.length > 0; k++) body[int(rnd, body.length)] ^= 1 << int(rnd, 8);
      } else if (m < 0.8) {
        out = body.subarray(0, int(rnd, body.length));
      } else {
        out = Buffer.concat([body, randomBytes(rnd, 12)]);
      }
      frames.push(encodeFrame(id, FrameType.Request, 0, out));
    } else if (r < 0.7) {
      // Data frames with any flags, on recent or random streams.
      const sid = rnd() < 0.7 ? Math.max(1, lastId - 2 * int(rnd, 3)) : id;
      frames.push(encodeFrame(sid, FrameType.Data, int(rnd, 8), rnd() < 0.2 ? Buffer.alloc(0) : randomBytes(rnd, 20)));
    } else if (r < 0.85) {
      // Random type and flags, random body.
      frames.push(encodeFrame(id, int(rnd, 256), int(rnd, 256), randomBytes(rnd, 32)));
    } else {
      // Pure garbage as a Request body.
      frames.push(encodeFrame(id, FrameType.Request, int(rnd, 4), randomBytes(rnd, 48)));
    }
  }
  return frames;
}

/** A random fill of `n` bytes, cheap at any size: random head and tail around a repeated byte. */
export function largeBytes(rnd: Rnd, n: number): Buffer {
  const b = Buffer.alloc(n, int(rnd, 256));
  randomBytes(rnd, 64).copy(b, 0);
  randomBytes(rnd, 64).copy(b, Math.max(0, n - 64));
  return b;
}

/**
 * A frame large enough to cross a proxy cut-through (CUT_THROUGH_MIN and up): a well-formed request
 * (any method, so also ones a proxy must read whole), one whose names are damaged, a Data frame, or
 * any type.
 */
export function largeFrame(rnd: Rnd, id: number, service: string, methods: readonly string[]): Buffer {
  const n = CUT_THROUGH_MIN + int(rnd, 200000);
  const r = rnd();
  if (r < 0.7) {
    const body = Buffer.from(encodeRequest({ service, method: pick(rnd, methods), payload: largeBytes(rnd, n) }));
    if (r >= 0.5) for (let k = 0, m = 1 + int(rnd, 4); k < m; k++) body[int(rnd, Math.min(64, body.length))] ^= 1 << int(rnd, 8);
    return encodeFrame(id, FrameType.Request, 0, body);
  }
  if (r < 0.85) return encodeFrame(id, FrameType.Data, int(rnd, 8), largeBytes(rnd, n));
  return encodeFrame(id, int(rnd, 256), int(rnd, 256), largeBytes(rnd, n));
}

/** Writes `data` in random-size pieces (1 byte .. 16 KiB), yielding to the event loop now and then. */
export async function writeInPieces(rnd: Rnd, peer: RawPeer, data: Buffer): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const tiny = rnd() < 0.2;
    const n = Math.min(data.length - off, 1 + int(rnd, tiny ? 16 : 16384));
    const ok = peer.socket.write(data.subarray(off, off + n));
    off += n;
    if (!ok) {
      // The other side may hang up instead of reading on: then no 'drain' ever comes.
      const closed = await new Promise<boolean>((r) => {
        const onDrain = () => { peer.socket.off('close', onClose); r(false); };
        const onClose = () => { peer.socket.off('drain', onDrain); r(true); };
        peer.socket.once('drain', onDrain).once('close', onClose);
      });
      if (closed) return;
    }
    else if (rnd() < 0.05) await new Promise((r) => setImmediate(r));
  }
}


export const mib = (n: number): string => (n / 2 ** 20).toFixed(1);

// TTRPC framing: a 10-byte big-endian header (data length, stream id, type, flags) followed by the data.
// The parser is incremental and copy-avoiding: a frame that lies inside one socket chunk is handed out as a
// view of that chunk; only a frame that straddles chunks is assembled, once, into a buffer of its exact size.

/** Largest data length a peer may send (ttrpc's messageLengthMax). */
export const MESSAGE_LENGTH_MAX = 4 << 20;
/** Bytes in a frame header. */
export const HEADER_LENGTH = 10;

export enum FrameType {
  Request = 1,
  Response = 2,
  Data = 3,
}

export enum Flags {
  RemoteClosed = 1,
  RemoteOpen = 2,
  NoData = 4,
}

export interface Frame {
  streamId: number;
  type: number;
  flags: number;
  /** The frame's data (a view: no copy). */
  data: Buffer;
  /** Header + data exactly as received; can be forwarded as-is with Channel.sendRaw. */
  raw: Buffer;
}

/** Writes a header for `length` data bytes into `buf` at `offset`. */
export function writeHeader(buf: Buffer, offset: number, length: number, streamId: number, type: number, flags: number): void {
  buf.writeUInt32BE(length, offset);
  buf.writeUInt32BE(streamId, offset + 4);
  buf[offset + 8] = type;
  buf[offset + 9] = flags;
}

/** Checks header fields; a bad value is a programming error, so it throws a RangeError naming the field. */
export function checkHeaderFields(streamId: number, type: number, flags: number): void {
  if (!Number.isInteger(streamId) || streamId < 0 || streamId > 0xffffffff) {
    throw new RangeError(`ttrpc: stream id ${streamId} is not a uint32`);
  }
  if (!Number.isInteger(type) || type < 0 || type > 0xff) throw new RangeError(`ttrpc: frame type ${type} is not a uint8`);
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xff) throw new RangeError(`ttrpc: frame flags ${flags} is not a uint8`);
}

/** One buffer holding header + a copy of `data`. Does not enforce a maximum length (Channel.send does). */
export function encodeFrame(streamId: number, type: number, flags: number, data: Uint8Array): Buffer {
  checkHeaderFields(streamId, type, flags);
  // Stryker disable next-line EqualityOperator: the boundary is a 4 GiB buffer, too big for a test; 2^32 is refused in test/ttrpc/frame.test.ts
  if (data.length > 0xffffffff) throw new RangeError(`ttrpc: frame data of ${data.length} bytes does not fit a uint32 length`);
  const out = Buffer.allocUnsafe(HEADER_LENGTH + data.length);
  writeHeader(out, 0, data.length, streamId, type, flags);
  out.set(data, HEADER_LENGTH);
  return out;
}

export interface FrameParserOptions {
  /** Largest accepted data length; default MESSAGE_LENGTH_MAX. */
  maxLength?: number;
  /** Called for every complete frame, in order. Must not throw (see push). */
  onFrame: (f: Frame) => void;
  /** Called once an oversize frame's data has been read and discarded (as Go ttrpc does before answering). */
  onOversize: (streamId: number, length: number, type: number, flags: number) => void;
  /**
   * Cut-through for a forwarder: a frame of at least CUT_THROUGH_MIN data bytes that does not arrive
   * whole is offered here once its header and first CUT_THROUGH_PREFIX data bytes are in. Returning a
   * sink passes the frame's bytes on as they arrive, never assembled; returning undefined assembles it
   * as usual. Must not throw.
   */
  onLargeFrame?: (head: FrameHead, prefix: Buffer) => FrameSink | undefined;
}

/** The header fields of a frame offered for cut-through. */
export interface FrameHead {
  streamId: number;
  type: number;
  flags: number;
  /** Data length. */
  length: number;
}

/**
 * Takes one frame's bytes in order (the header and prefix first, then the rest of the data in socket-
 * chunk pieces), then end() once all header + length bytes were written. The pieces are views of socket
 * chunks that nothing else writes to, so they may be kept (e.g. queued for a socket write).
 */
export interface FrameSink {
  write(bytes: Buffer): void;
  end(): void;
}

/** Frames from this data length on are offered for cut-through (when they straddle socket reads). */
export const CUT_THROUGH_MIN = 64 * 1024;
/** Data bytes gathered before a frame is offered: enough for a request's service and method names. */
export const CUT_THROUGH_PREFIX = 512;

/** Frames from this size on are assembled in recyclable buffers (see FrameParser.recycle). */
const RECYCLE_MIN = 1 << 20;
/** Spare buffers a parser keeps: enough for the frames in flight on one connection with backpressure. */
const SPARE_BUFFERS = 2;

/**
 * Incremental frame parser: feed it socket chunks of any size, split or coalesced at any byte boundary.
 * It never holds more than one (accepted-size) frame; oversize frames are skipped without being buffered,
 * and a large frame handed to a sink (onLargeFrame) passes through in pieces, never held whole.
 * Callbacks run synchronously inside push(); the parser's state is updated before each callback, but if a
 * callback throws, the rest of that chunk is not parsed (callers should treat the stream as broken).
 */
export class FrameParser {
  private readonly maxLength: number;
  private readonly onFrame: (f: Frame) => void;
  private readonly onOversize: (streamId: number, length: number, type: number, flags: number) => void;
  // Header bytes of a header that straddles chunks.
  private readonly hdr = Buffer.alloc(HEADER_LENGTH);
  private hdrFilled = 0;
  // Frame being assembled across chunks (exact size header+data), and how much of it is filled.
  private partial: Buffer | null = null;
  private partialFilled = 0;
  // Oversize frame being skipped: header fields and bytes still to skip.
  private discardLeft = 0;
  private discardDone = 0;
  private discardLength = 0;
  private discardStream = 0;
  private discardType = 0;
  private discardFlags = 0;
  private discarding = false;
  private readonly onLargeFrame: FrameParserOptions['onLargeFrame'];
  // A large frame's header + first data bytes, gathered before it is offered (onLargeFrame).
  private offer: Buffer | null = null;
  private offerFilled = 0;
  // The sink taking a cut-through frame, and how many of its bytes have passed.
  private sink: FrameSink | null = null;
  private sinkTotal = 0;
  private sinkDone = 0;
  // Large frames are assembled in buffers of the full frame capacity, which recycle() hands back once
  // the receiver is done with them (a proxy, after forwarding): a flood of large frames then reuses a
  // few buffers instead of leaving one garbage buffer per frame for a later collection.
  private readonly spare: ArrayBuffer[] = [];
  private readonly mine = new WeakSet<ArrayBuffer>();

  constructor(opts: FrameParserOptions) {
    const max = opts.maxLength ?? MESSAGE_LENGTH_MAX;
    if (!Number.isInteger(max) || max < 0 || max > 0xffffffff) {
      throw new RangeError(`ttrpc: maxLength ${max} must be an integer between 0 and 4294967295`);
    }
    this.maxLength = max;
    this.onFrame = opts.onFrame;
    this.onOversize = opts.onOversize;
    this.onLargeFrame = opts.onLargeFrame;
  }

  /** Bytes received of the current incomplete frame (buffered, or being discarded); 0 at a frame boundary. */
  get pending(): number {
    if (this.discarding) return HEADER_LENGTH + this.discardDone;
    if (this.partial) return this.partialFilled;
    if (this.offer) return this.offerFilled;
    if (this.sink) return this.sinkDone;
    return this.hdrFilled;
  }

  push(chunk: Buffer): void {
    let off = 0;
    const end = chunk.length;
    while (off < end) {
      if (this.discarding) {
        const n = Math.min(this.discardLeft, end - off);
        off += n;
        this.discardLeft -= n;
        this.discardDone += n;
        if (this.discardLeft === 0) this.finishDiscard();
        continue;
      }
      if (this.sink) {
        const n = Math.min(this.sinkTotal - this.sinkDone, end - off);
        const piece = chunk.subarray(off, off + n);
        off += n;
        this.sinkDone += n;
        if (this.sinkDone === this.sinkTotal) {
          const sink = this.sink;
          this.sink = null;
          sink.write(piece);
          sink.end();
        } else {
          this.sink.write(piece);
        }
        continue;
      }
      if (this.offer) {
        const o = this.offer;
        const n = Math.min(o.length - this.offerFilled, end - off);
        chunk.copy(o, this.offerFilled, off, off + n);
        off += n;
        this.offerFilled += n;
        if (this.offerFilled === o.length) this.decideOffer();
        continue;
      }
      if (this.partial) {
        const p = this.partial;
        const n = Math.min(p.length - this.partialFilled, end - off);
        chunk.copy(p, this.partialFilled, off, off + n);
        off += n;
        this.partialFilled += n;
        if (this.partialFilled === p.length) {
          this.partial = null;
          this.partialFilled = 0;
          this.emit(p);
        }
        continue;
      }
      if (this.hdrFilled > 0 || end - off < HEADER_LENGTH) {
        // Header straddles chunks: gather it in this.hdr.
        const n = Math.min(HEADER_LENGTH - this.hdrFilled, end - off);
        chunk.copy(this.hdr, this.hdrFilled, off, off + n);
        off += n;
        this.hdrFilled += n;
        if (this.hdrFilled < HEADER_LENGTH) continue;
        this.hdrFilled = 0;
        const length = this.hdr.readUInt32BE(0);
        if (length > this.maxLength) {
          this.startDiscard(this.hdr, 0, length);
          continue;
        }
        if (this.offerable(length)) {
          this.startOffer(this.hdr, 0, length);
          continue;
        }
        const frame = this.allocate(HEADER_LENGTH + length);
        this.hdr.copy(frame, 0);
        if (length === 0) {
          this.emit(frame);
        } else {
          this.partial = frame;
          this.partialFilled = HEADER_LENGTH;
        }
        continue;
      }
      // At a frame boundary with a whole header in this chunk.
      const length = chunk.readUInt32BE(off);
      if (length > this.maxLength) {
        this.startDiscard(chunk, off, length);
        off += HEADER_LENGTH;
        continue;
      }
      const total = HEADER_LENGTH + length;
      if (end - off >= total) {
        const raw = chunk.subarray(off, off + total);
        off += total;
        this.emit(raw);
        continue;
      }
      if (this.offerable(length)) {
        // Large and continuing in later chunks: gather its opening and offer it before assembling.
        this.startOffer(chunk, off, length);
        off += HEADER_LENGTH;
        continue;
      }
      // Frame continues in later chunks: assemble it once, at its exact size.
      const frame = this.allocate(total);
      chunk.copy(frame, 0, off, end);
      this.partial = frame;
      this.partialFilled = end - off;
      off = end;
    }
  }

  /**
   * Gives back the bytes of a frame this parser assembled, once nothing refers to them any more (e.g.
   * when the socket write that forwarded them has completed); the next large frame is assembled in
   * them. Anything else (a small frame, a slice of a socket chunk, a copy) is ignored.
   */
  recycle(raw: Buffer): void {
    const ab = raw.buffer as ArrayBuffer;
    if (raw.byteOffset !== 0 || !this.mine.has(ab) || this.spare.length >= SPARE_BUFFERS || this.spare.includes(ab)) return;
    this.spare.push(ab);
  }

  private offerable(length: number): boolean {
    return this.onLargeFrame !== undefined && length >= CUT_THROUGH_MIN;
  }

  /** Starts gathering a large frame's header (at h[off]) and first data bytes. */
  private startOffer(h: Buffer, off: number, length: number): void {
    const o = Buffer.allocUnsafe(HEADER_LENGTH + Math.min(length, CUT_THROUGH_PREFIX));
    h.copy(o, 0, off, off + HEADER_LENGTH);
    this.offer = o;
    this.offerFilled = HEADER_LENGTH;
  }

  /** The opening is in: hand the frame to a sink, or go on assembling it. */
  private decideOffer(): void {
    const o = this.offer as Buffer;
    this.offer = null;
    this.offerFilled = 0;
    const length = o.readUInt32BE(0);
    const head: FrameHead = { streamId: o.readUInt32BE(4), type: o[8], flags: o[9], length };
    const offerTo = this.onLargeFrame as NonNullable<FrameParserOptions['onLargeFrame']>; // offerable() checked it
    const sink = offerTo(head, o.subarray(HEADER_LENGTH));
    if (!sink) {
      const frame = this.allocate(HEADER_LENGTH + length);
      o.copy(frame, 0);
      this.partial = frame;
      this.partialFilled = o.length;
      return;
    }
    // The opening is never the whole frame: only frames that continue past it are offered.
    this.sink = sink;
    this.sinkTotal = HEADER_LENGTH + length;
    this.sinkDone = o.length;
    sink.write(o);
  }

  /** A buffer for one frame of `total` bytes: a spare or new full-capacity one for a large frame. */
  private allocate(total: number): Buffer {
    if (total < RECYCLE_MIN) return Buffer.allocUnsafe(total);
    let ab = this.spare.pop();
    if (!ab) {
      ab = new ArrayBuffer(HEADER_LENGTH + this.maxLength);
      this.mine.add(ab);
    }
    return Buffer.from(ab, 0, total);
  }

  private emit(raw: Buffer): void {
    this.onFrame({
      streamId: raw.readUInt32BE(4),
      type: raw[8],
      flags: raw[9],
      data: raw.subarray(HEADER_LENGTH),
      raw,
    });
  }

  private startDiscard(h: Buffer, off: number, length: number): void {
    this.discarding = true;
    this.discardLength = length;
    this.discardStream = h.readUInt32BE(off + 4);
    this.discardType = h[off + 8];
    this.discardFlags = h[off + 9];
    this.discardLeft = length;
    this.discardDone = 0;
  }

  private finishDiscard(): void {
    this.discarding = false;
    this.discardDone = 0;
    this.onOversize(this.discardStream, this.discardLength, this.discardType, this.discardFlags);
  }
}

// A framed TTRPC connection over a stream socket. This is the "raw" layer: it knows frames, not calls, so a
// proxy can forward every frame (any service, streaming or not) without decoding it.

import { EventEmitter } from 'events';
import type * as net from 'net';
import { type Frame, type FrameHead, type FrameSink, FrameParser, HEADER_LENGTH, MESSAGE_LENGTH_MAX, checkHeaderFields, writeHeader } from './frame';
import { oversizeError } from './errors';

// Below this size header and data are copied into one buffer; above it the data is written by reference
// between cork/uncork (one writev, no copy).
const COPY_THRESHOLD = 16 * 1024;

export interface ChannelOptions {
  /** Largest data length accepted and sent; default MESSAGE_LENGTH_MAX (4 MiB). */
  maxLength?: number;
  /**
   * Cut-through (see FrameParserOptions.onLargeFrame): a forwarder returns openRaw() of the other
   * Channel to pass a large frame on as it arrives; such a frame is never emitted as 'frame'.
   */
  onLargeFrame?: (head: FrameHead, prefix: Buffer) => FrameSink | undefined;
}

/** A frame being written in pieces (Channel.openRaw). */
export interface RawFrameWriter extends FrameSink {
  /** Same as FrameSink.write; false when the socket's buffer is full (wait for 'drain' if you care). */
  write(bytes: Buffer): boolean;
}

/** A Channel's events and their arguments (listeners get these types without restating them). */
export interface ChannelEvents {
  /** A complete frame; f.data / f.raw are views valid for as long as you keep them. */
  frame: [f: Frame];
  /** A frame above maxLength was read and discarded. */
  oversize: [streamId: number, length: number, type: number, flags: number];
  /** The socket's write buffer emptied (after send returned false). */
  drain: [];
  /**
   * Exactly once; err set when the socket failed, the peer hung up mid-frame, or a 'frame' listener
   * threw. Socket errors never throw and never emit 'error'.
   */
  close: [err?: Error];
}

interface Held {
  bytes: Uint8Array;
  done: (() => void) | undefined;
}

export class Channel extends EventEmitter<ChannelEvents> {
  readonly maxLength: number;
  private readonly socket: net.Socket;
  private readonly parser: FrameParser;
  private _closed = false;
  private localClose = false;
  private closeEmitted = false;
  private error: Error | undefined;
  // Small frames sent in one run of JS (e.g. the answers to every request in one socket chunk, or the
  // requests of callers woken by those answers) are held here and written together from a microtask:
  // one write syscall instead of one per frame. Large frames flush the batch first, so order is kept.
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private flushQueued = false;
  // send() returned false while the frame sat in the batch: a 'drain' is owed even if the socket takes it.
  private drainOwed = false;
  private readonly flushBatch = (): void => this.flush();
  // While a frame is being written in pieces (openRaw), everything else sent waits here, in order.
  private open: { left: number; held: Held[] } | undefined;

  constructor(socket: net.Socket, opts?: ChannelOptions) {
    super();
    this.socket = socket;
    this.maxLength = opts?.maxLength ?? MESSAGE_LENGTH_MAX;
    this.parser = new FrameParser({
      maxLength: this.maxLength,
      onFrame: (f) => {
        if (!this._closed) this.emit('frame', f);
      },
      onOversize: (id, len, type, flags) => {
        if (!this._closed) this.emit('oversize', id, len, type, flags);
      },
      onLargeFrame: opts?.onLargeFrame && ((head, prefix) => (this._closed ? undefined : opts.onLargeFrame?.(head, prefix))),
    });
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => {
      this.error ??= err;
    });
    socket.on('end', () => this.checkMidFrame());
    socket.on('drain', () => {
      this.drainOwed = false;
      this.emit('drain');
    });
    socket.on('close', () => this.finish());
    if (socket.destroyed) queueMicrotask(() => this.finish());
  }

  get closed(): boolean {
    return this._closed;
  }

  /** Bytes waiting to be written (for callers applying backpressure); frames held behind openRaw's do not count. */
  get writableLength(): number {
    return this.socket.writableLength + this.batchBytes;
  }

  /**
   * Sends one frame. Returns false if the channel is closed (the frame is dropped) or the socket's buffer
   * is full (the frame is queued; wait for 'drain' if you care). Throws TtrpcError(ResourceExhausted)
   * if data exceeds maxLength, RangeError for invalid header fields. Large `data` is written by
   * reference: do not modify it afterwards.
   */
  send(streamId: number, type: number, flags: number, data: Uint8Array): boolean {
    checkHeaderFields(streamId, type, flags);
    if (data.length > this.maxLength) throw oversizeError(data.length, this.maxLength);
    if (this._closed) return false;
    if (data.length <= COPY_THRESHOLD) {
      const buf = Buffer.allocUnsafe(HEADER_LENGTH + data.length);
      writeHeader(buf, 0, data.length, streamId, type, flags);
      buf.set(data, HEADER_LENGTH);
      return this.enqueue(buf);
    }
    this.flush();
    const s = this.socket;
    const hdr = Buffer.allocUnsafe(HEADER_LENGTH);
    writeHeader(hdr, 0, data.length, streamId, type, flags);
    s.cork();
    this.write(hdr);
    const ok = this.write(data);
    s.uncork();
    return ok;
  }

  /**
   * Internal fast path for encoders: `frame` holds HEADER_LENGTH unwritten bytes, then the data. The header
   * is written in place, so the data is neither allocated twice nor copied. Same checks and return value
   * as send(); the buffer is kept by reference.
   */
  sendWithHeadroom(streamId: number, type: number, flags: number, frame: Buffer): boolean {
    checkHeaderFields(streamId, type, flags);
    const length = frame.length - HEADER_LENGTH;
    if (length > this.maxLength) throw oversizeError(length, this.maxLength);
    if (this._closed) return false;
    writeHeader(frame, 0, length, streamId, type, flags);
    if (length <= COPY_THRESHOLD) return this.enqueue(frame);
    this.flush();
    return this.write(frame);
  }

  /**
   * Forwards a complete frame (e.g. Frame.raw from another Channel) untouched. Same return value as send.
   * `from`: the Channel the frame came from, which gets its bytes back for reuse once they are written
   * (see FrameParser.recycle); only pass it when nothing else refers to the frame.
   */
  sendRaw(frameBytes: Buffer, from?: Channel): boolean {
    if (frameBytes.length < HEADER_LENGTH || frameBytes.readUInt32BE(0) !== frameBytes.length - HEADER_LENGTH) {
      throw new RangeError(`ttrpc: sendRaw needs exactly one frame (header length field does not match ${frameBytes.length} bytes)`);
    }
    if (this._closed) return false;
    if (frameBytes.length <= HEADER_LENGTH + COPY_THRESHOLD) return this.enqueue(frameBytes);
    this.flush();
    return this.write(frameBytes, from && (() => from.parser.recycle(frameBytes)));
  }

  /**
   * Starts writing one frame of `length` data bytes in pieces, as a forwarder passes on a frame it gets
   * in pieces (ChannelOptions.onLargeFrame): write() its header + data bytes exactly as received, then
   * end(). Frames sent meanwhile wait and follow it. If the source fails before the frame is complete,
   * this connection cannot be framed any more: close it (close() while a frame is open destroys).
   */
  openRaw(length: number): RawFrameWriter {
    if (this.open) throw new Error('ttrpc: openRaw while another frame is open on this channel');
    if (length > this.maxLength) throw oversizeError(length, this.maxLength);
    this.flush(); // frames sent before it go first
    const frame = { left: HEADER_LENGTH + length, held: [] as Held[] };
    this.open = frame;
    return {
      write: (bytes: Buffer): boolean => {
        if (bytes.length > frame.left) throw new RangeError(`ttrpc: openRaw frame given ${bytes.length} bytes with ${frame.left} left`);
        frame.left -= bytes.length;
        if (this.open !== frame || this._closed || this.socket.destroyed) return false;
        return this.socket.write(bytes);
      },
      end: (): void => {
        if (this.open !== frame) return;
        if (frame.left !== 0) throw new RangeError(`ttrpc: openRaw frame ended ${frame.left} bytes short`);
        this.open = undefined;
        let ok = true;
        for (const h of frame.held) ok = this.write(h.bytes, h.done);
        this.payDrain(ok);
      },
    };
  }

  /**
   * Every frame's bytes reach the socket here; while a frame is open (openRaw), they wait behind it. Held
   * bytes are not backpressure: they leave as soon as the open frame's source has fed it, so a caller that
   * paused that source for them would wait forever (only the socket's own buffer counts).
   */
  private write(bytes: Uint8Array, done?: () => void): boolean {
    if (this.open) {
      this.open.held.push({ bytes, done });
      return true;
    }
    if (this.socket.destroyed) return false;
    return done ? this.socket.write(bytes, done) : this.socket.write(bytes);
  }

  /** The socket emits 'drain' only after a write it refused; one it took pays an owed 'drain' here. */
  private payDrain(socketTookIt: boolean): void {
    if (!socketTookIt || !this.drainOwed) return;
    this.drainOwed = false;
    process.nextTick(() => {
      if (!this.closeEmitted) this.emit('drain');
    });
  }

  /** Holds a small frame for the batch write; the same answer socket.write would give for the whole batch. */
  private enqueue(frame: Buffer): boolean {
    this.batch.push(frame);
    this.batchBytes += frame.length;
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushBatch);
    }
    if (this.writableLength < this.socket.writableHighWaterMark) return true;
    this.drainOwed = true;
    return false;
  }

  /** Writes the batched frames as one buffer. */
  private flush(): void {
    this.flushQueued = false;
    const n = this.batch.length;
    if (n === 0) return;
    const frames = this.batch;
    const bytes = this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    if (this.socket.destroyed) return;
    this.payDrain(this.write(n === 1 ? frames[0] : Buffer.concat(frames, bytes)));
  }

  /** Stops reading (backpressure for a forwarder); frames already parsed are still delivered. */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Flushes queued writes, then closes. Frames arriving meanwhile are dropped. 'close' follows. */
  close(): void {
    if (this._closed) return;
    this._closed = true;
    this.localClose = true;
    this.flush();
    const s = this.socket;
    if (s.destroyed) return;
    if (this.open) {
      // A frame written in pieces is unfinished: nothing after it could be framed.
      s.destroy();
      return;
    }
    if (s.writableLength === 0) {
      s.destroy();
      return;
    }
    // Give queued frames a chance to leave, but never wait on a peer that does not read.
    s.end(() => s.destroy());
    const t = setTimeout(() => s.destroy(), 1000);
    t.unref();
    s.once('close', () => clearTimeout(t));
  }

  /** Closes at once, dropping queued writes. */
  destroy(err?: Error): void {
    if (err) this.error ??= err;
    else this.localClose = true;
    this._closed = true;
    // Frames already sent go out as they would have without batching; the socket's own queue is dropped.
    this.flush();
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this._closed) return;
    try {
      this.parser.push(chunk);
    } catch (err) {
      // A listener threw: the frame boundary can no longer be trusted, so the connection ends with that error.
      this.destroy(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private checkMidFrame(): void {
    const pending = this.parser.pending;
    if (pending > 0 && !this._closed) {
      this.error ??= new Error(`ttrpc: peer closed the connection in the middle of a frame (${pending} bytes of it received)`);
    }
  }

  private finish(): void {
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    this._closed = true;
    if (!this.error && !this.localClose) this.checkMidFrameAtClose();
    this.emit('close', this.error);
  }

  private checkMidFrameAtClose(): void {
    const pending = this.parser.pending;
    if (pending > 0) this.error = new Error(`ttrpc: connection closed in the middle of a frame (${pending} bytes of it received)`);
  }
}

export type { Frame };

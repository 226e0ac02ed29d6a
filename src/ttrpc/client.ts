// TTRPC client: odd, increasing stream ids from 1; calls answered in any order; no cancel frame exists, so an
// abandoned call (deadline, abort) is only forgotten locally and its late answer dropped.

import * as net from 'net';
import { Channel, type Frame } from './channel';
import { Flags, FrameType, HEADER_LENGTH } from './frame';
import { Code, TtrpcError, closedError, messageOf, oversizeError } from './errors';
import { type KeyValue, decodeResponse, encodeRequestAfter } from './wire';
import { ClientStream, type ClientStreamOptions, type StreamSink } from './client-stream';

/** Undoes a subscription. */
export interface Disposable {
  dispose(): void;
}

export interface ClientOptions {
  /** Largest message accepted/sent; default MESSAGE_LENGTH_MAX (4 MiB). */
  maxLength?: number;
}

export interface CallOptions {
  /** Sent as timeout_nano; the call also fails locally with DeadlineExceeded when it passes. */
  timeoutMs?: number;
  metadata?: KeyValue[];
  /** Abandons the call: it rejects with TtrpcError Canceled (the server is not told; ttrpc has no cancel frame). */
  signal?: AbortSignal;
}

const MAX_STREAM_ID = 0xffffffff;
const MAX_TIMER_MS = 0x7fffffff;

/** A pending unary call. A class rather than closures per call. */
class PendingCall {
  timer: NodeJS.Timeout | undefined = undefined;
  signal: AbortSignal | undefined = undefined;
  onAbort: (() => void) | undefined = undefined;
  constructor(
    readonly resolve: (b: Buffer) => void,
    readonly reject: (e: TtrpcError) => void,
  ) {}
}

type Entry = PendingCall | ClientStream;

export class Client implements StreamSink {
  private readonly channel: Channel;
  private readonly pending = new Map<number, Entry>();
  private nextId = 1;
  private closeCbs: ((err?: Error) => void)[] = [];
  private closeErr: Error | undefined;
  private isClosed = false;
  private closeNotified = false;

  /** Connects to a unix socket path; rejects with TtrpcError Unavailable naming the path. */
  static connect(path: string, opts?: ClientOptions): Promise<Client> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(path);
      const onError = (err: Error) => {
        socket.destroy();
        reject(new TtrpcError(Code.Unavailable, `ttrpc: cannot connect to ${path}: ${err.message}`));
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.removeListener('error', onError);
        resolve(new Client(socket, opts));
      });
    });
  }

  constructor(socket: net.Socket, opts?: ClientOptions) {
    this.channel = new Channel(socket, { maxLength: opts?.maxLength });
    this.channel.on('frame', (f: Frame) => this.onFrame(f));
    this.channel.on('oversize', (id: number, length: number) => {
      this.failEntry(id, oversizeError(length, this.channel.maxLength));
    });
    this.channel.on('close', (err?: Error) => this.onChannelClose(err));
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Calls in flight plus open streams (0 after close: nothing leaks). */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Unary call. Resolves with the response payload (a view, no copy); rejects with TtrpcError. */
  call(service: string, method: string, payload: Uint8Array, opts?: CallOptions): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      if (this.isClosed) return reject(closedError());
      if (opts?.signal?.aborted) return reject(canceled());
      const id = this.allocId();
      if (id < 0) return reject(idsExhausted());
      try {
        const timeoutNano = timeoutNanoOf(opts?.timeoutMs);
        const frame = encodeRequestAfter({ service, method, payload: toBuffer(payload), timeoutNano, metadata: opts?.metadata }, HEADER_LENGTH);
        this.channel.sendWithHeadroom(id, FrameType.Request, 0, frame);
      } catch (err) {
        return reject(err instanceof TtrpcError ? err : new TtrpcError(Code.InvalidArgument, messageOf(err), undefined, { cause: err }));
      }
      const p = new PendingCall(resolve, reject);
      this.pending.set(id, p);
      if (opts?.timeoutMs !== undefined && opts.timeoutMs <= MAX_TIMER_MS) {
        p.timer = setTimeout(() => this.failEntry(id, deadline()), Math.max(0, opts.timeoutMs));
      }
      if (opts?.signal) {
        p.signal = opts.signal;
        p.onAbort = () => this.failEntry(id, canceled());
        opts.signal.addEventListener('abort', p.onAbort, { once: true });
      }
    });
  }

  /**
   * Opens a streaming call (ttrpc >= 1.2). The request goes out at once: with RemoteOpen for client-streaming
   * methods, RemoteClosed otherwise (flags 0 if neither side streams). See ClientStream.
   */
  stream(service: string, method: string, opts: ClientStreamOptions): ClientStream {
    const id = this.isClosed ? -1 : this.allocId();
    const s = new ClientStream(this, id, opts);
    if (this.isClosed) {
      s._fail(closedError());
      return s;
    }
    if (id < 0) {
      s._fail(idsExhausted());
      return s;
    }
    const flags = opts.clientStream ? Flags.RemoteOpen : opts.serverStream ? Flags.RemoteClosed : 0;
    try {
      const frame = encodeRequestAfter(
        {
          service,
          method,
          payload: opts.payload ? toBuffer(opts.payload) : undefined,
          timeoutNano: timeoutNanoOf(opts.timeoutMs),
          metadata: opts.metadata,
        },
        HEADER_LENGTH,
      );
      this.channel.sendWithHeadroom(id, FrameType.Request, flags, frame);
    } catch (err) {
      s._fail(err instanceof TtrpcError ? err : new TtrpcError(Code.InvalidArgument, messageOf(err), undefined, { cause: err }));
      return s;
    }
    this.pending.set(id, s);
    if (opts.timeoutMs !== undefined && opts.timeoutMs <= MAX_TIMER_MS) {
      s._timer = setTimeout(() => this.failEntry(id, deadline()), Math.max(0, opts.timeoutMs));
    }
    return s;
  }

  /**
   * Called once when the connection is gone (err set when it failed); soon after this call if already
   * closed. dispose() on the result unsubscribes.
   */
  onClose(cb: (err?: Error) => void): Disposable {
    if (this.closeNotified) {
      const err = this.closeErr;
      let live = true;
      queueMicrotask(() => live && cb(err));
      return { dispose: () => void (live = false) };
    }
    this.closeCbs.push(cb);
    return {
      dispose: () => {
        const i = this.closeCbs.indexOf(cb);
        if (i >= 0) this.closeCbs.splice(i, 1);
      },
    };
  }

  /** Closes the connection; pending calls reject with TtrpcError Unavailable "ttrpc: closed". */
  close(): void {
    if (this.isClosed) return;
    this.channel.close();
    this.abortAll();
  }

  // ---- StreamSink (used by ClientStream) ----

  /** @internal */
  _sendData(id: number, flags: number, data: Uint8Array): void {
    if (this.isClosed || this.pending.get(id) === undefined) throw closedError();
    this.channel.send(id, FrameType.Data, flags, data);
  }

  /** @internal */
  _forget(id: number): void {
    this.pending.delete(id);
  }

  // ---- internals ----

  private allocId(): number {
    const id = this.nextId;
    if (id > MAX_STREAM_ID) return -1;
    this.nextId += 2;
    return id;
  }

  private onFrame(f: Frame): void {
    const e = this.pending.get(f.streamId);
    if (e === undefined) return; // late answer to an abandoned call, or a stray frame: dropped
    if (e instanceof ClientStream) {
      e._onFrame(f);
      if (e._finished) this.pending.delete(f.streamId);
      return;
    }
    if (f.type !== FrameType.Response) return; // Data on a unary call: ignore
    let res;
    try {
      res = decodeResponse(f.data);
    } catch (err) {
      this.failEntry(f.streamId, new TtrpcError(Code.Internal, `ttrpc: cannot decode the response: ${messageOf(err)}`, undefined, { cause: err }));
      return;
    }
    this.settle(f.streamId, e);
    if (res.status && res.status.code !== Code.OK) e.reject(TtrpcError.fromStatus(res.status));
    else e.resolve(res.payload);
  }

  private settle(id: number, p: PendingCall): void {
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    if (p.signal && p.onAbort) p.signal.removeEventListener('abort', p.onAbort);
  }

  private failEntry(id: number, err: TtrpcError): void {
    const e = this.pending.get(id);
    if (e === undefined) return;
    if (e instanceof ClientStream) {
      this.pending.delete(id);
      e._fail(err);
      return;
    }
    this.settle(id, e);
    e.reject(err);
  }

  private abortAll(): void {
    this.isClosed = true;
    const entries = [...this.pending.keys()];
    for (const id of entries) this.failEntry(id, closedError());
    this.pending.clear();
  }

  private onChannelClose(err?: Error): void {
    this.closeErr = err;
    this.abortAll();
    const cbs = this.closeCbs;
    this.closeCbs = [];
    this.closeNotified = true;
    for (const cb of cbs) {
      try {
        cb(err);
      } catch {
        // A throwing close hook must not stop the others.
      }
    }
  }
}

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

function timeoutNanoOf(ms: number | undefined): number {
  if (ms === undefined) return 0;
  if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`ttrpc: timeoutMs ${ms} must be a finite number >= 0`);
  return Math.max(1, Math.round(ms * 1e6));
}

function deadline(): TtrpcError {
  return new TtrpcError(Code.DeadlineExceeded, 'context deadline exceeded');
}

function canceled(): TtrpcError {
  return new TtrpcError(Code.Canceled, 'context canceled');
}

function idsExhausted(): TtrpcError {
  return new TtrpcError(Code.ResourceExhausted, 'ttrpc: stream ids exhausted on this connection; open a new one');
}

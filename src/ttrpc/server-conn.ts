// One accepted connection on a Server: validates frames exactly as Go ttrpc does, dispatches requests
// concurrently and answers them on their stream id in completion order.

import { type Channel, type Frame } from './channel';
import { Flags, FrameType, HEADER_LENGTH } from './frame';
import { Code, TtrpcError, messageOf, oversizeError, toStatus } from './errors';
import { type CallContext, type MethodEntry, type ServerStream, type ServiceRegistry, type StreamKind } from './handlers';
import { MessageQueue } from './queue';
import { type KeyValue, type Request, type Status, decodeRequest, encodeResponse, encodeResponseAfter } from './wire';

const EMPTY = Buffer.alloc(0);
// setTimeout cannot wait longer than this; longer deadlines are simply not armed.
const MAX_TIMER_MS = 0x7fffffff;
const MAX_STATUS_MESSAGE = 16 * 1024;

function deadlineError(): TtrpcError {
  return new TtrpcError(Code.DeadlineExceeded, 'context deadline exceeded');
}

function canceledError(): TtrpcError {
  return new TtrpcError(Code.Canceled, 'context canceled');
}

/**
 * One call in flight; it is also the handler's CallContext. The AbortController is created only when a
 * handler reads ctx.signal (most never do, and creating one costs more than the rest of a small call).
 */
class ActiveCall implements CallContext {
  done = false;
  timer: NodeJS.Timeout | undefined = undefined;
  stream: ServerStreamImpl | undefined = undefined;
  deadline: number | undefined = undefined;
  private controller: AbortController | undefined = undefined;
  private abortReason: Error | undefined = undefined;

  constructor(
    readonly streamId: number,
    readonly service: string,
    readonly method: string,
    readonly metadata: KeyValue[],
  ) {}

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.abortReason !== undefined) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  abort(reason: Error): void {
    if (this.abortReason !== undefined) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
  }
}

class ServerStreamImpl implements ServerStream {
  readonly queue = new MessageQueue();
  constructor(
    private readonly conn: ServerConnection,
    private readonly call: ActiveCall,
    readonly kind: StreamKind,
    private readonly method: string,
  ) {}

  recv(): Promise<Buffer | undefined> {
    return this.queue.recv();
  }

  send(msg: Uint8Array): void {
    if (!this.kind.serverStream) {
      throw new TtrpcError(Code.FailedPrecondition, `ttrpc: ${this.method} is not a server-streaming method; return the response instead`);
    }
    if (this.call.done) throw new TtrpcError(Code.FailedPrecondition, 'ttrpc: stream closed');
    this.conn.channel.send(this.call.streamId, FrameType.Data, 0, msg);
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return this.queue[Symbol.asyncIterator]();
  }
}

export interface ConnectionHooks {
  onError(err: Error): void;
  /** Called whenever the number of active calls drops to zero, and once on close. */
  onIdle(conn: ServerConnection): void;
  onClose(conn: ServerConnection): void;
}

export class ServerConnection {
  readonly channel: Channel;
  private readonly calls = new Map<number, ActiveCall>();
  private lastStreamId = 0;
  private closeWhenIdle = false;

  constructor(
    channel: Channel,
    private readonly registry: ServiceRegistry,
    private readonly hooks: ConnectionHooks,
  ) {
    this.channel = channel;
    channel.on('frame', (f: Frame) => this.onFrame(f));
    channel.on('oversize', (id: number, length: number) => this.onOversize(id, length));
    channel.on('close', (err?: Error) => this.onClose(err));
  }

  get activeCalls(): number {
    return this.calls.size;
  }

  /** Graceful: close as soon as no call is in flight (new requests meanwhile are still served, as in Go). */
  drain(): void {
    this.closeWhenIdle = true;
    if (this.calls.size === 0) this.channel.close();
  }

  /** Immediate: in-flight handlers are aborted and their answers dropped. */
  close(): void {
    this.abortAll();
    this.channel.close();
  }

  private sendStatus(streamId: number, code: Code, message: string): void {
    // Messages quoting peer input (e.g. a service name) are capped so the answer always fits in a frame.
    if (message.length > MAX_STATUS_MESSAGE) message = `${message.slice(0, MAX_STATUS_MESSAGE)}...`;
    this.channel.send(streamId, FrameType.Response, 0, encodeResponse({ status: { code, message, details: [] } }));
  }

  private onFrame(f: Frame): void {
    const id = f.streamId;
    if (id % 2 !== 1) {
      this.sendStatus(id, Code.InvalidArgument, 'StreamID must be odd for client initiated streams');
      return;
    }
    if (f.type === FrameType.Data) {
      const call = this.calls.get(id);
      if (!call) {
        this.sendStatus(id, Code.InvalidArgument, 'StreamID is no longer active');
        return;
      }
      // Data for a unary call, or after the client closed its side, is ignored.
      const stream = call.stream;
      if (!stream || stream.queue.finished) return;
      if ((f.flags & Flags.NoData) === 0) stream.queue.push(f.data);
      if (f.flags & Flags.RemoteClosed) stream.queue.end();
      return;
    }
    if (f.type !== FrameType.Request) return; // unknown/unsupported frame types are ignored for compatibility
    if (id <= this.lastStreamId) {
      this.sendStatus(id, Code.InvalidArgument, 'StreamID cannot be re-used and must increment');
      return;
    }
    this.lastStreamId = id;
    let req: Request;
    try {
      req = decodeRequest(f.data);
    } catch (err) {
      this.sendStatus(id, Code.InvalidArgument, `unmarshal request error: ${messageOf(err)}`);
      return;
    }
    const methods = this.registry.lookup(req.service);
    if (!methods) {
      this.sendStatus(id, Code.Unimplemented, `service ${req.service}`);
      return;
    }
    const entry = methods.get(req.method);
    if (!entry) {
      this.sendStatus(id, Code.Unimplemented, `method ${req.method}`);
      return;
    }
    this.start(id, f.flags, req, entry);
  }

  private onOversize(id: number, length: number): void {
    const err = oversizeError(length, this.channel.maxLength);
    const call = this.calls.get(id);
    if (call) this.finish(call, err.toStatus(), EMPTY, err);
    else this.sendStatus(id, err.code, err.message);
  }

  private start(id: number, flags: number, req: Request, entry: MethodEntry): void {
    if (req.timeoutNano < 0) {
      // Deadline already passed when it was sent (Go computes timeout_nano from the caller's deadline).
      this.sendStatus(id, Code.DeadlineExceeded, 'context deadline exceeded');
      return;
    }
    const call = new ActiveCall(id, req.service, req.method, req.metadata);
    if (req.timeoutNano > 0) {
      const ms = req.timeoutNano / 1e6;
      call.deadline = Date.now() + ms;
      if (ms <= MAX_TIMER_MS) {
        call.timer = setTimeout(() => this.onDeadline(call), Math.ceil(ms));
      }
    }
    this.calls.set(id, call);

    let result: unknown;
    try {
      if (entry.kind === 'unary') {
        result = entry.handler(call, req.payload);
      } else {
        const stream = new ServerStreamImpl(this, call, entry.stream, req.method);
        call.stream = stream;
        const remoteOpen = entry.stream.clientStream && (flags & Flags.RemoteOpen) !== 0;
        if (!entry.stream.clientStream || req.payload.length > 0) stream.queue.push(req.payload);
        if (!remoteOpen) stream.queue.end();
        result = entry.handler(call, stream);
      }
    } catch (err) {
      this.fail(call, err);
      return;
    }
    if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
      (result as Promise<unknown>).then(
        (v) => this.succeed(call, entry, v),
        (err) => this.fail(call, err),
      );
    } else {
      this.succeed(call, entry, result);
    }
  }

  private succeed(call: ActiveCall, entry: MethodEntry, v: unknown): void {
    if (call.done) return;
    const isBytes = v instanceof Uint8Array;
    if (entry.kind === 'unary' && !isBytes) {
      const err = new TtrpcError(
        Code.Unknown,
        `ttrpc: marshal called with nil: handler for ${call.service}/${call.method} returned ${describe(v)} instead of a Uint8Array`,
      );
      this.hooks.onError(err);
      this.finish(call, err.toStatus(), EMPTY);
      return;
    }
    if (entry.kind === 'stream' && !isBytes && v !== undefined && v !== null) {
      const err = new TtrpcError(
        Code.Unknown,
        `ttrpc: stream handler for ${call.service}/${call.method} returned ${describe(v)} instead of a Uint8Array or nothing`,
      );
      this.hooks.onError(err);
      this.finish(call, err.toStatus(), EMPTY);
      return;
    }
    const payload = isBytes ? (v) : EMPTY;
    if (entry.kind === 'stream' && entry.stream.serverStream) {
      // A server stream ends with a closing Data frame, not a Response.
      call.done = true;
      const flags = Flags.RemoteClosed | (payload.length === 0 ? Flags.NoData : 0);
      this.sendChecked(call.streamId, FrameType.Data, flags, payload);
      this.end(call);
      return;
    }
    this.finish(call, null, payload);
  }

  private fail(call: ActiveCall, err: unknown): void {
    if (call.done) return;
    if (!(err instanceof TtrpcError)) {
      this.hooks.onError(new Error(`ttrpc: handler for ${call.service}/${call.method} failed: ${toStatus(err).message}`));
    }
    this.finish(call, toStatus(err), EMPTY);
  }

  private onDeadline(call: ActiveCall): void {
    call.timer = undefined;
    const err = deadlineError();
    this.finish(call, err.toStatus(), EMPTY, err);
  }

  /** Ends the call with a Response; `abortWith` also aborts the handler's signal. */
  private finish(call: ActiveCall, status: Status | null, payload: Uint8Array, abortWith?: Error): void {
    if (call.done) return;
    call.done = true;
    // Answer first, then clean up: cleanup may close a draining connection.
    const frame = encodeResponseAfter(status, payload, HEADER_LENGTH);
    try {
      this.channel.sendWithHeadroom(call.streamId, FrameType.Response, 0, frame);
    } catch (err) {
      this.refuseAnswer(call.streamId, err);
    }
    this.end(call, abortWith);
  }

  /** Sends, turning a local "too large" refusal into an error status on that stream. */
  private sendChecked(streamId: number, type: number, flags: number, data: Uint8Array): void {
    try {
      this.channel.send(streamId, type, flags, data);
    } catch (err) {
      this.refuseAnswer(streamId, err);
    }
  }

  /** An answer could not be sent (too large): report it and answer with that error instead. */
  private refuseAnswer(streamId: number, err: unknown): void {
    const st = toStatus(err);
    this.hooks.onError(new Error(`ttrpc: cannot send the answer on stream ${streamId}: ${st.message}`));
    this.sendStatus(streamId, st.code, st.message);
  }

  private end(call: ActiveCall, abortWith?: Error): void {
    call.done = true;
    if (call.timer) clearTimeout(call.timer);
    call.timer = undefined;
    this.calls.delete(call.streamId);
    if (abortWith) {
      call.stream?.queue.fail(abortWith);
      call.abort(abortWith);
    }
    if (this.calls.size === 0) {
      this.hooks.onIdle(this);
      if (this.closeWhenIdle) this.channel.close();
    }
  }

  private onClose(err?: Error): void {
    if (err) this.hooks.onError(new Error(`ttrpc: server connection closed: ${err.message}`));
    this.abortAll();
    this.hooks.onClose(this);
  }

  private abortAll(): void {
    const reason = canceledError();
    for (const call of this.calls.values()) {
      call.done = true;
      if (call.timer) clearTimeout(call.timer);
      call.timer = undefined;
      call.stream?.queue.fail(reason);
      call.abort(reason);
    }
    this.calls.clear();
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'object') return `an object (${(v).constructor?.name ?? 'Object'})`;
  return `a ${typeof v}`;
}

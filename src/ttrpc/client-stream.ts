// The client's side of a streaming call (ttrpc >= 1.2 wire rules: Data frames both ways, the last one from a
// side carries RemoteClosed, plus NoData when it has no message).

import type { Frame } from './frame';
import { Flags, FrameType } from './frame';
import { Code, TtrpcError, messageOf } from './errors';
import { MessageQueue } from './queue';
import { type KeyValue, decodeResponse } from './wire';

export interface ClientStreamOptions {
  /** The client sends messages with send()/closeSend() (request flag RemoteOpen). */
  clientStream: boolean;
  /** The server answers with a stream of messages (read with recv() / for await). */
  serverStream: boolean;
  metadata?: KeyValue[];
  /** Sent as timeout_nano; the stream also fails locally with DeadlineExceeded when it passes. */
  timeoutMs?: number;
  /** The request message carried by the Request frame (the argument of a server-streaming method). */
  payload?: Uint8Array;
}

/** What a ClientStream needs from its Client. */
export interface StreamSink {
  _sendData(id: number, flags: number, data: Uint8Array): void;
  _forget(id: number): void;
}

const EMPTY = Buffer.alloc(0);

/**
 * A streaming call in progress.
 *  - send(msg) / closeSend(): client -> server messages (client-streaming methods only);
 *  - recv() / `for await (const m of stream)`: server -> client messages; ends when the server closes
 *    the stream, throws TtrpcError if it ends with an error status, the deadline passes or the connection drops;
 *  - response: settles when the call is over: the final Response's payload (client-streaming methods), or an
 *    empty Buffer when the server ended with a closing Data frame; rejects with TtrpcError otherwise.
 *    It never causes an unhandled rejection if you do not await it.
 */
export class ClientStream implements AsyncIterable<Buffer> {
  readonly response: Promise<Buffer>;
  /** @internal */ _finished = false;
  /** @internal */ _timer: NodeJS.Timeout | undefined = undefined;
  private readonly queue = new MessageQueue();
  private sendClosed: boolean;
  private resolveResponse!: (b: Buffer) => void;
  private rejectResponse!: (e: TtrpcError) => void;

  constructor(
    private readonly sink: StreamSink,
    readonly streamId: number,
    private readonly opts: ClientStreamOptions,
  ) {
    this.sendClosed = !opts.clientStream;
    this.response = new Promise<Buffer>((resolve, reject) => {
      this.resolveResponse = resolve;
      this.rejectResponse = reject;
    });
    this.response.catch(() => {}); // observed by whoever awaits it; never "unhandled"
  }

  /** Sends one message (Data frame, no flags). Throws TtrpcError FailedPrecondition after closeSend()/the end. */
  send(msg: Uint8Array): void {
    if (!this.opts.clientStream) {
      throw new TtrpcError(Code.FailedPrecondition, 'ttrpc: send() on a stream opened without clientStream');
    }
    if (this.sendClosed || this._finished) throw new TtrpcError(Code.FailedPrecondition, 'ttrpc: stream closed for sending');
    this.sink._sendData(this.streamId, 0, msg);
  }

  /** Tells the server no more messages follow (Data with RemoteClosed|NoData). Idempotent. */
  closeSend(): void {
    if (this.sendClosed) return;
    this.sendClosed = true;
    if (this._finished) return;
    this.sink._sendData(this.streamId, Flags.RemoteClosed | Flags.NoData, EMPTY);
  }

  recv(): Promise<Buffer | undefined> {
    return this.queue.recv();
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return this.queue[Symbol.asyncIterator]();
  }

  /** Abandons the call locally (TtrpcError Canceled); later frames for it are dropped. */
  cancel(): void {
    if (this._finished) return;
    this.sink._forget(this.streamId);
    this._fail(new TtrpcError(Code.Canceled, 'context canceled'));
  }

  /** @internal */
  _onFrame(f: Frame): void {
    if (this._finished) return;
    if (f.type === FrameType.Data) {
      if ((f.flags & Flags.NoData) === 0) this.queue.push(f.data);
      if (f.flags & Flags.RemoteClosed) this.succeed(EMPTY);
      return;
    }
    if (f.type !== FrameType.Response) return;
    let res;
    try {
      res = decodeResponse(f.data);
    } catch (err) {
      this._fail(new TtrpcError(Code.Internal, `ttrpc: cannot decode the response: ${messageOf(err)}`, undefined, { cause: err }));
      return;
    }
    if (res.status && res.status.code !== Code.OK) {
      this._fail(TtrpcError.fromStatus(res.status));
      return;
    }
    if (this.opts.serverStream && res.payload.length > 0) this.queue.push(res.payload);
    this.succeed(res.payload);
  }

  /** @internal */
  _fail(err: TtrpcError): void {
    if (this._finished) return;
    this.done();
    this.queue.fail(err);
    this.rejectResponse(err);
  }

  private succeed(payload: Buffer): void {
    this.done();
    this.queue.end();
    this.resolveResponse(payload);
  }

  private done(): void {
    this._finished = true;
    this.sendClosed = true;
    if (this._timer) clearTimeout(this._timer);
    this._timer = undefined;
  }
}

// Types a service implementation sees, and the service registry.

import type { KeyValue } from './wire';

export interface CallContext {
  service: string;
  method: string;
  streamId: number;
  /** Request metadata in arrival order (repeated keys allowed). */
  metadata: KeyValue[];
  /** Absolute deadline in ms since the epoch, from the request's timeout_nano; absent when none. */
  deadline?: number;
  /**
   * Aborted when the deadline passes (reason: TtrpcError DeadlineExceeded), when the connection closes or
   * the server is closed (reason: TtrpcError Canceled). Once aborted, the handler's answer is ignored.
   */
  signal: AbortSignal;
}

/** A unary method: request payload in, response payload out (throw a TtrpcError to choose the status code). */
export type UnaryHandler = (ctx: CallContext, payload: Buffer) => Promise<Uint8Array> | Uint8Array;

/** The server's side of a streaming call. */
export interface ServerStream extends AsyncIterable<Buffer> {
  /**
   * Next message from the client, or undefined once the client closed its side. For a method that is not
   * client-streaming, the request payload is the one and only message. Rejects with the abort reason
   * (TtrpcError) once the call is aborted, after any buffered messages.
   */
  recv(): Promise<Buffer | undefined>;
  /**
   * Sends one message as a Data frame (server-streaming methods only). Throws TtrpcError FailedPrecondition
   * if the method is not server-streaming or the call already finished.
   */
  send(msg: Uint8Array): void;
}

/**
 * A streaming method. What it returns ends the call:
 *  - server-streaming method: a final Data frame with RemoteClosed, carrying the returned bytes, or
 *    RemoteClosed|NoData when it returns nothing/empty;
 *  - client-streaming only: a Response with the returned bytes as payload (empty when nothing).
 * A throw ends it with a Response carrying the error status (as for unary calls).
 */
export type StreamHandler = (ctx: CallContext, stream: ServerStream) => Promise<Uint8Array | void> | Uint8Array | void;

export interface StreamKind {
  clientStream: boolean;
  serverStream: boolean;
}

export type MethodEntry =
  | { kind: 'unary'; handler: UnaryHandler }
  | { kind: 'stream'; handler: StreamHandler; stream: StreamKind };

/** service name -> method name -> entry. */
export class ServiceRegistry {
  private readonly services = new Map<string, Map<string, MethodEntry>>();

  add(service: string, method: string, entry: MethodEntry): void {
    if (!service || !method) throw new Error(`ttrpc: cannot register an empty service or method name ("${service}"/"${method}")`);
    let methods = this.services.get(service);
    if (!methods) {
      methods = new Map();
      this.services.set(service, methods);
    }
    if (methods.has(method)) throw new Error(`ttrpc: method ${service}/${method} is already registered`);
    methods.set(method, entry);
  }

  lookup(service: string): Map<string, MethodEntry> | undefined {
    return this.services.get(service);
  }
}

// gRPC status codes and the error type that carries them across the wire.

import type { Any, Status } from './wire';

export enum Code {
  OK = 0,
  Canceled = 1,
  Unknown = 2,
  InvalidArgument = 3,
  DeadlineExceeded = 4,
  NotFound = 5,
  AlreadyExists = 6,
  PermissionDenied = 7,
  ResourceExhausted = 8,
  FailedPrecondition = 9,
  Aborted = 10,
  OutOfRange = 11,
  Unimplemented = 12,
  Internal = 13,
  Unavailable = 14,
  DataLoss = 15,
  Unauthenticated = 16,
}

/** "FailedPrecondition" for 9; "Code(42)" for codes gRPC does not define. */
export function codeName(code: number): string {
  const name = (Code as unknown as Record<number, string>)[code];
  return typeof name === 'string' ? name : `Code(${code})`;
}

/** An error with a gRPC status code; what a handler throws to choose the code, and what a Client call rejects with. */
export class TtrpcError extends Error {
  readonly code: Code;
  readonly details: Any[];

  constructor(code: Code, message: string, details?: Any[], options?: ErrorOptions) {
    super(message, options);
    this.name = 'TtrpcError';
    this.code = code;
    this.details = details ?? [];
  }

  toStatus(): Status {
    return { code: this.code, message: this.message, details: this.details };
  }

  static fromStatus(s: Status): TtrpcError {
    return new TtrpcError(s.code, s.message, s.details);
  }
}

/**
 * The text of a thrown value, for an error that wraps it (which keeps the value as its `cause`). The
 * library's own copy of the rule: src/ttrpc depends on nothing outside Node.
 */
export function messageOf(err: unknown): string {
  const message = (err as { message?: unknown } | null | undefined)?.message;
  return typeof message === 'string' ? message : String(err);
}

// Node errno codes mapped the way Go's convertCode maps os.IsExist / IsNotExist / IsPermission.
const ERRNO_CODES: Record<string, Code> = {
  EEXIST: Code.AlreadyExists,
  ENOTEMPTY: Code.AlreadyExists,
  ENOENT: Code.NotFound,
  ENOTDIR: Code.NotFound,
  EACCES: Code.PermissionDenied,
  EPERM: Code.PermissionDenied,
};

/**
 * Turns anything thrown by a handler into a Status: a TtrpcError keeps its code/message/details; an aborted
 * operation becomes Canceled; a Node errno error is mapped like Go's convertCode; anything else is Unknown
 * with its message. Never returns a status without a message for a failure.
 */
export function toStatus(err: unknown): Status {
  if (err instanceof TtrpcError) return err.toStatus();
  if (isForeignTtrpcError(err)) return { code: err.code, message: err.message, details: err.details ?? [] };
  if (err instanceof Error) {
    const errno = (err as NodeJS.ErrnoException).code;
    // Own keys only: `in` would take inherited names ('constructor') for errno codes.
    if (typeof errno === 'string' && Object.hasOwn(ERRNO_CODES, errno)) {
      return { code: ERRNO_CODES[errno], message: err.message, details: [] };
    }
    if (err.name === 'AbortError') return { code: Code.Canceled, message: err.message || 'context canceled', details: [] };
    if (err.name === 'TimeoutError') return { code: Code.DeadlineExceeded, message: err.message || 'context deadline exceeded', details: [] };
    return { code: Code.Unknown, message: err.message || err.name || 'unknown error', details: [] };
  }
  let message: string;
  try {
    message = typeof err === 'string' ? err : JSON.stringify(err) ?? String(err);
  } catch {
    message = String(err);
  }
  return { code: Code.Unknown, message: message || 'unknown error', details: [] };
}

/** A TtrpcError from another copy of this module (instanceof fails across copies). */
function isForeignTtrpcError(err: unknown): err is { code: number; message: string; details?: Any[] } {
  if (!(err instanceof Error) || err.name !== 'TtrpcError') return false;
  const code = (err as unknown as { code?: unknown }).code;
  return Number.isInteger(code) && (code as number) >= -0x80000000 && (code as number) <= 0x7fffffff;
}

/** The error pending calls fail with when the connection is gone (Go's ErrClosed text "ttrpc: closed"). */
export function closedError(): TtrpcError {
  return new TtrpcError(Code.Unavailable, 'ttrpc: closed');
}

/** Receive-side oversize message, worded as Go ttrpc's server answers it. */
export function oversizeError(length: number, max: number): TtrpcError {
  return new TtrpcError(Code.ResourceExhausted, `message length ${length} exceed maximum message size of ${max}`);
}

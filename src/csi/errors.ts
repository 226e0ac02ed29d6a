// CSI errors: a gRPC status code with a message that names the volume and the fix. Handlers throw
// CsiError; the server (the one edge that answers) turns it, or anything else, into the gRPC status.
import { status as Status } from '@grpc/grpc-js';
import { VolumeError, messageOf } from '../volumes/types';

export { Status };

export class CsiError extends Error {
  constructor(
    readonly code: Status,
    readonly volumeId: string,
    readonly problem: string,
    readonly fix: string,
    options?: { cause?: unknown },
  ) {
    super(`${volumeId ? `volume ${JSON.stringify(volumeId)}: ` : ''}${problem}${fix ? `; ${fix}` : ''}`, options);
    this.name = 'CsiError';
  }
}

/** A factory bound to one code, so call sites read `invalid(id, problem, fix)`. */
const coded = (code: Status) => (volumeId: string, problem: string, fix: string, cause?: unknown): CsiError =>
  new CsiError(code, volumeId, problem, fix, cause === undefined ? undefined : { cause });

export const invalidArgument = coded(Status.INVALID_ARGUMENT);
export const notFound = coded(Status.NOT_FOUND);
export const alreadyExists = coded(Status.ALREADY_EXISTS);
export const failedPrecondition = coded(Status.FAILED_PRECONDITION);
export const outOfRange = coded(Status.OUT_OF_RANGE);
export const resourceExhausted = coded(Status.RESOURCE_EXHAUSTED);
export const internal = coded(Status.INTERNAL);

/**
 * Runs a registry/host step; a VolumeError it throws (already naming volume, file and fix) becomes a
 * CsiError with `code`, prefixed by the CSI volume id so kubelet's event names what the user sees.
 */
export function volumeStep<T>(volumeId: string, code: Status, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof VolumeError) throw new CsiError(code, volumeId, e.message, '', { cause: e });
    throw e;
  }
}

/** The status an error is answered with: CsiError keeps its code, anything else is INTERNAL. */
export function toStatus(e: unknown): { code: Status; details: string } {
  if (e instanceof CsiError) return { code: e.code, details: e.message };
  return { code: Status.INTERNAL, details: `katavol csi: unexpected error: ${messageOf(e)}` };
}

import { strict as assert } from 'assert';
import { Code, TtrpcError, closedError, codeName, oversizeError, toStatus } from '../../src/ttrpc';
import { messageOf } from '../../src/ttrpc/errors';

function errno(code: string, message: string): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error(message);
  e.code = code;
  return e;
}

describe('ttrpc errors', () => {
  it('numbers the gRPC codes as gRPC does and names them', () => {
    assert.equal(Code.FailedPrecondition, 9);
    assert.equal(Code.Unauthenticated, 16);
    assert.equal(codeName(9), 'FailedPrecondition');
    assert.equal(codeName(0), 'OK');
    assert.equal(codeName(12), 'Unimplemented');
    assert.equal(codeName(42), 'Code(42)');
  });

  it('carries code, message and details to and from a Status', () => {
    const details = [{ typeUrl: 'type.googleapis.com/x', value: Buffer.from([1, 2]) }];
    const e = new TtrpcError(Code.NotFound, 'no such thing', details);
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'TtrpcError');
    assert.deepEqual(e.toStatus(), { code: 5, message: 'no such thing', details });
    const back = TtrpcError.fromStatus(e.toStatus());
    assert.equal(back.code, Code.NotFound);
    assert.equal(back.message, 'no such thing');
    assert.deepEqual(back.details, details);
    assert.deepEqual(new TtrpcError(Code.Internal, 'x').details, []);
  });

  it('maps thrown values to a Status: TtrpcError as-is, errno like Go convertCode, the rest Unknown', () => {
    assert.deepEqual(toStatus(new TtrpcError(Code.Aborted, 'a')), { code: 10, message: 'a', details: [] });
    assert.equal(toStatus(errno('ENOENT', 'open /x: no such file')).code, Code.NotFound);
    assert.equal(toStatus(errno('EEXIST', 'exists')).code, Code.AlreadyExists);
    assert.equal(toStatus(errno('EACCES', 'denied')).code, Code.PermissionDenied);
    assert.equal(toStatus(errno('EPERM', 'denied')).code, Code.PermissionDenied);
    assert.equal(toStatus(errno('EIO', 'io')).code, Code.Unknown);
    const abort = new Error('stopped');
    abort.name = 'AbortError';
    assert.deepEqual(toStatus(abort), { code: Code.Canceled, message: 'stopped', details: [] });
    assert.deepEqual(toStatus(new Error('boom')), { code: Code.Unknown, message: 'boom', details: [] });
    assert.deepEqual(toStatus('plain string'), { code: Code.Unknown, message: 'plain string', details: [] });
    assert.deepEqual(toStatus({ a: 1 }), { code: Code.Unknown, message: '{"a":1}', details: [] });
    assert.deepEqual(toStatus(undefined), { code: Code.Unknown, message: 'undefined', details: [] });
    assert.equal(toStatus(new Error('')).message, 'Error', 'a failure never has an empty message');
    // A TtrpcError from another copy of the library (instanceof fails) keeps its code.
    const foreign = Object.assign(new Error('from elsewhere'), { name: 'TtrpcError', code: 6, details: [] });
    assert.deepEqual(toStatus(foreign), { code: 6, message: 'from elsewhere', details: [] });
  });

  it('maps every errno Go\'s convertCode knows, keeping the message; any other code, or one that is not a string, is Unknown', () => {
    for (const [code, want] of [
      ['EEXIST', Code.AlreadyExists], ['ENOTEMPTY', Code.AlreadyExists], ['ENOENT', Code.NotFound],
      ['ENOTDIR', Code.NotFound], ['EACCES', Code.PermissionDenied], ['EPERM', Code.PermissionDenied],
    ] as const) {
      assert.deepEqual(toStatus(errno(code, `${code} text`)), { code: want, message: `${code} text`, details: [] });
    }
    // Names an object has by inheritance are not errno codes.
    for (const code of ['constructor', 'toString', '__proto__']) {
      assert.deepEqual(toStatus(errno(code, 'odd')), { code: Code.Unknown, message: 'odd', details: [] });
    }
    // A numeric code is not an errno name, nor does an Error with a code become a TtrpcError.
    assert.deepEqual(toStatus(Object.assign(new Error('numeric'), { code: 5 })), { code: Code.Unknown, message: 'numeric', details: [] });
    assert.deepEqual(toStatus(Object.assign(new Error('object'), { code: { toString: () => 'ENOENT' } })), { code: Code.Unknown, message: 'object', details: [] });
  });

  it('maps aborts and timeouts, and gives each a message when the error has none', () => {
    const named = (name: string, message: string) => Object.assign(new Error(message), { name });
    assert.deepEqual(toStatus(named('AbortError', '')), { code: Code.Canceled, message: 'context canceled', details: [] });
    assert.deepEqual(toStatus(named('TimeoutError', 'too slow')), { code: Code.DeadlineExceeded, message: 'too slow', details: [] });
    assert.deepEqual(toStatus(named('TimeoutError', '')), { code: Code.DeadlineExceeded, message: 'context deadline exceeded', details: [] });
    assert.deepEqual(toStatus(named('', '')), { code: Code.Unknown, message: 'unknown error', details: [] });
  });

  it('describes thrown non-errors: JSON when it can, else their string form, never an empty message', () => {
    assert.deepEqual(toStatus(''), { code: Code.Unknown, message: 'unknown error', details: [] });
    assert.equal(toStatus(10n).message, '10', 'JSON.stringify throws on a BigInt');
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    assert.equal(toStatus(circular).message, '[object Object]');
    assert.equal(toStatus(Symbol('s')).message, 'Symbol(s)', 'JSON.stringify gives undefined for a symbol');
  });

  it('keeps the code, message and details of a TtrpcError subclass that has a name of its own', () => {
    class Refused extends TtrpcError {
      constructor(message: string) {
        super(Code.FailedPrecondition, message, [{ typeUrl: 't', value: Buffer.from([1]) }]);
        this.name = 'Refused';
      }
    }
    assert.deepEqual(toStatus(new Refused('fix it')), { code: Code.FailedPrecondition, message: 'fix it', details: [{ typeUrl: 't', value: Buffer.from([1]) }] });
  });

  it('takes the code of a TtrpcError from another copy of the library only when it is an int32', () => {
    const foreign = (code: unknown, details?: unknown) => Object.assign(new Error('from elsewhere'), { name: 'TtrpcError', code, details });
    assert.deepEqual(toStatus(foreign(-0x80000000)), { code: -0x80000000, message: 'from elsewhere', details: [] });
    assert.deepEqual(toStatus(foreign(0x7fffffff)), { code: 0x7fffffff, message: 'from elsewhere', details: [] });
    const details = [{ typeUrl: 't', value: Buffer.from([1]) }];
    assert.deepEqual(toStatus(foreign(9, details)), { code: 9, message: 'from elsewhere', details });
    for (const code of ['6', 1.5, -0x80000001, 0x80000000, undefined]) {
      assert.deepEqual(toStatus(foreign(code)), { code: Code.Unknown, message: 'from elsewhere', details: [] }, String(code));
    }
    // Not an Error at all: described, not trusted.
    assert.deepEqual(toStatus({ name: 'TtrpcError', code: 6, message: 'm' }), { code: Code.Unknown, message: '{"name":"TtrpcError","code":6,"message":"m"}', details: [] });
  });

  it('words the closed and oversize errors as Go ttrpc does', () => {
    assert.deepEqual(closedError().toStatus(), { code: Code.Unavailable, message: 'ttrpc: closed', details: [] });
    assert.deepEqual(oversizeError(5, 4).toStatus(), { code: Code.ResourceExhausted, message: 'message length 5 exceed maximum message size of 4', details: [] });
  });

  it('takes the text of any thrown value', () => {
    assert.equal(messageOf(new Error('boom')), 'boom');
    assert.equal(messageOf('plain'), 'plain');
    assert.equal(messageOf(undefined), 'undefined');
    assert.equal(messageOf(null), 'null');
    assert.equal(messageOf({ message: 42 }), '[object Object]');
    assert.equal(messageOf({ message: '' }), '');
  });
});

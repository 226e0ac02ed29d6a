import { strict as assert } from 'assert';
import { Code, TtrpcError, codeName, toStatus } from '../../src/ttrpc';

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
});

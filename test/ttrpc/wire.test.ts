import { strict as assert } from 'assert';
import {
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  peekServiceMethod,
} from '../../src/ttrpc';
import { hex } from '../support/ttrpc';

describe('ttrpc wire messages', () => {
  // Expected bytes written by hand from request.proto: tag = field << 3 | wire type.
  const fullRequest = hex(`
    0a 03 737663
    12 01 4d
    1a 02 6162
    20 80e497d012
    2a 06 0a016b 120176
    2a 06 0a016b 120177`);

  it('encodes a Request in field order, with a varint timeout and repeated metadata', () => {
    const got = encodeRequest({
      service: 'svc',
      method: 'M',
      payload: Buffer.from('ab'),
      timeoutNano: 5e9,
      metadata: [
        { key: 'k', value: 'v' },
        { key: 'k', value: 'w' },
      ],
    });
    assert.deepEqual(got, fullRequest);
  });

  it('omits empty payload, zero timeout and empty metadata (proto3 defaults)', () => {
    assert.deepEqual(encodeRequest({ service: 's', method: 'm' }), hex('0a0173 12016d'));
    assert.deepEqual(encodeRequest({ service: 's', method: 'm', payload: new Uint8Array(0), timeoutNano: 0 }), hex('0a0173 12016d'));
  });

  it('encodes a negative timeout as a 10-byte two-complement varint', () => {
    assert.deepEqual(encodeRequest({ service: '', method: '', timeoutNano: -1 }), hex('20 ffffffffffffffffff01'));
    assert.throws(() => encodeRequest({ service: '', method: '', timeoutNano: 1.5 }), /timeoutNano 1.5/);
  });

  it('decodes a Request with payload as a view into the input', () => {
    const req = decodeRequest(fullRequest);
    assert.equal(req.service, 'svc');
    assert.equal(req.method, 'M');
    assert.equal(req.payload.toString(), 'ab');
    assert.equal(req.payload.buffer, fullRequest.buffer);
    assert.equal(req.payload.byteOffset, fullRequest.byteOffset + 10);
    assert.equal(req.timeoutNano, 5e9);
    assert.deepEqual(req.metadata, [
      { key: 'k', value: 'v' },
      { key: 'k', value: 'w' },
    ]);
  });

  it('round-trips negative and large timeouts and UTF-8 strings', () => {
    for (const t of [-1, -5e9, -(2 ** 53 - 1), 1, 2 ** 32, 2 ** 53 - 1]) {
      assert.equal(decodeRequest(encodeRequest({ service: 'x', method: 'y', timeoutNano: t })).timeoutNano, t);
    }
    const r = decodeRequest(encodeRequest({ service: 'dienst/ü', method: '方法', metadata: [{ key: 'ключ', value: '' }] }));
    assert.equal(r.service, 'dienst/ü');
    assert.equal(r.method, '方法');
    assert.deepEqual(r.metadata, [{ key: 'ключ', value: '' }]);
  });

  it('decodes an empty buffer as an empty Request and skips unknown fields of every wire type', () => {
    assert.deepEqual(decodeRequest(Buffer.alloc(0)), { service: '', method: '', payload: Buffer.alloc(0), timeoutNano: 0, metadata: [] });
    const withUnknown = hex('48 01  51 0102030405060708  5d 01020304  62 01 00  0a0173 12016d');
    const r = decodeRequest(withUnknown);
    assert.equal(r.service, 's');
    assert.equal(r.method, 'm');
  });

  for (const [what, bytes, re] of [
    ['a length past the end', '0a 05 61', /length 5 exceeds the remaining 1 bytes/],
    ['a wrong wire type for a known field', '08 01', /wrong wire type 0 for field 1/],
    ['field number 0', '00', /illegal tag 0/],
    ['a group wire type', '0b', /illegal wire type 3 for field 1/],
    ['an unterminated varint', '20 ff', /unexpected EOF in varint/],
    ['an over-long varint', '20 ffffffffffffffffffff01', /varint longer than 10 bytes/],
    ['a truncated fixed64', '51 0102', /unexpected EOF/],
    ['a malformed metadata entry', '2a 02 0a 05', /length 5 exceeds/],
  ] as [string, string, RegExp][]) {
    it(`rejects a Request with ${what}`, () => {
      assert.throws(() => decodeRequest(hex(bytes)), re);
    });
  }

  it('peeks service and method without decoding metadata', () => {
    assert.deepEqual(peekServiceMethod(fullRequest), { service: 'svc', method: 'M' });
    assert.throws(() => peekServiceMethod(hex('0a 09 61')), /exceeds/);
  });

  it('encodes a successful Response without any status field, like Go', () => {
    assert.deepEqual(encodeResponse({ payload: Buffer.from('ok') }), hex('12 02 6f6b'));
    assert.deepEqual(encodeResponse({ status: null, payload: Buffer.from('ok') }), hex('12 02 6f6b'));
    assert.deepEqual(encodeResponse({ status: { code: 0, message: '', details: [] }, payload: Buffer.from('ok') }), hex('12 02 6f6b'));
    assert.deepEqual(encodeResponse({}), Buffer.alloc(0));
  });

  it('encodes an error Response with a google.rpc.Status', () => {
    assert.deepEqual(encodeResponse({ status: { code: 5, message: 'nf', details: [] } }), hex('0a 06 0805 12026e66'));
    // Negative int32 codes are sign-extended to 10 bytes.
    assert.deepEqual(encodeResponse({ status: { code: -1, message: '', details: [] } }), hex('0a 0b 08 ffffffffffffffffff01'));
    const withDetail = encodeResponse({
      status: { code: 9, message: 'm', details: [{ typeUrl: 't', value: Buffer.from([1]) }] },
      payload: Buffer.from([2]),
    });
    assert.deepEqual(withDetail, hex('0a 0d 0809 12016d 1a06 0a0174 120101  12 01 02'));
  });

  it('decodes Responses: absent status, error status, details, negative code', () => {
    const ok = decodeResponse(hex('12 02 6f6b'));
    assert.equal(ok.status, undefined);
    assert.equal(ok.payload.toString(), 'ok');
    const err = decodeResponse(hex('0a 0d 0809 12016d 1a06 0a0174 120101  12 01 02'));
    assert.deepEqual(err.status, { code: 9, message: 'm', details: [{ typeUrl: 't', value: Buffer.from([1]) }] });
    assert.deepEqual(err.payload, Buffer.from([2]));
    assert.equal(decodeResponse(hex('0a 0b 08 ffffffffffffffffff01')).status?.code, -1);
    assert.throws(() => decodeResponse(hex('0a 03 08')), /exceeds/);
    assert.throws(() => decodeResponse(hex('12 01')), /unexpected EOF in varint|exceeds/);
  });
});

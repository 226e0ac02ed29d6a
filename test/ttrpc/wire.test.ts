import { strict as assert } from 'assert';
import {
  decodeRequest,
  decodeResponse,
  decodeStatus,
  encodeRequest,
  encodeResponse,
  encodeStatus,
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

  // Each envelope message skips fields it does not know (a newer peer may send them) and names itself
  // and the field when a known field arrives with the wrong wire type.
  const unknownFields = '48 01  51 0102030405060708  5d 01020304  62 01 00';

  it('skips unknown fields inside metadata entries, statuses, details and Responses', () => {
    const kv = `${unknownFields} 0a016b 120176`;
    const req = decodeRequest(hex(`2a ${(hex(kv).length).toString(16).padStart(2, '0')} ${kv}`));
    assert.deepEqual(req.metadata, [{ key: 'k', value: 'v' }]);
    const any = `${unknownFields} 0a0174 120101`;
    const status = `0809 ${unknownFields} 12016d 1a ${hex(any).length.toString(16).padStart(2, '0')} ${any}`;
    const res = decodeResponse(hex(`${unknownFields} 0a ${hex(status).length.toString(16).padStart(2, '0')} ${status} 12 01 02`));
    assert.deepEqual(res.status, { code: 9, message: 'm', details: [{ typeUrl: 't', value: Buffer.from([1]) }] });
    assert.deepEqual(res.payload, Buffer.from([2]));
    assert.deepEqual(peekServiceMethod(hex(`${unknownFields} 0a0173 1a0100 12016d`)), { service: 's', method: 'm' });
  });

  it('decodes absent fields as their proto3 defaults: empty strings, an empty payload, no details', () => {
    assert.deepEqual(decodeRequest(hex('2a 00')).metadata, [{ key: '', value: '' }]);
    assert.deepEqual(peekServiceMethod(Buffer.alloc(0)), { service: '', method: '' });
    assert.deepEqual(decodeResponse(hex('0a 02 0805')), { status: { code: 5, message: '', details: [] }, payload: Buffer.alloc(0) });
    assert.deepEqual(decodeStatus(hex('1a 00')), { code: 0, message: '', details: [{ typeUrl: '', value: Buffer.alloc(0) }] });
  });

  for (const [what, decode, bytes, re] of [
    ['Request service', decodeRequest, '08 01', /^Error: Request: wrong wire type 0 for field 1$/],
    ['Request method', decodeRequest, '10 01', /^Error: Request: wrong wire type 0 for field 2$/],
    ['Request payload', decodeRequest, '18 01', /^Error: Request: wrong wire type 0 for field 3$/],
    ['Request timeout', decodeRequest, '22 00', /^Error: Request: wrong wire type 2 for field 4$/],
    ['Request metadata', decodeRequest, '28 01', /^Error: Request: wrong wire type 0 for field 5$/],
    ['KeyValue key', decodeRequest, '2a 02 0801', /^Error: KeyValue: wrong wire type 0 for field 1$/],
    ['KeyValue value', decodeRequest, '2a 02 1001', /^Error: KeyValue: wrong wire type 0 for field 2$/],
    ['peeked service', peekServiceMethod, '08 01', /^Error: Request: wrong wire type 0 for field 1$/],
    ['peeked method', peekServiceMethod, '10 01', /^Error: Request: wrong wire type 0 for field 2$/],
    ['Response status', decodeResponse, '08 01', /^Error: Response: wrong wire type 0 for field 1$/],
    ['Response payload', decodeResponse, '10 01', /^Error: Response: wrong wire type 0 for field 2$/],
    ['Status code', decodeStatus, '0a 00', /^Error: Status: wrong wire type 2 for field 1$/],
    ['Status message', decodeStatus, '10 01', /^Error: Status: wrong wire type 0 for field 2$/],
    ['Status details', decodeStatus, '18 01', /^Error: Status: wrong wire type 0 for field 3$/],
    ['Any type_url', decodeStatus, '1a 02 0801', /^Error: Any: wrong wire type 0 for field 1$/],
    ['Any value', decodeStatus, '1a 02 1001', /^Error: Any: wrong wire type 0 for field 2$/],
  ] as [string, (b: Buffer) => unknown, string, RegExp][]) {
    it(`names the message and field of a wrongly typed ${what}`, () => {
      assert.throws(() => decode(hex(bytes)), re);
    });
  }

  it('accepts exactly the int32 status codes', () => {
    for (const code of [-0x80000000, 0x7fffffff]) assert.equal(decodeStatus(encodeStatus({ code, message: '', details: [] })).code, code);
    for (const code of [-0x80000001, 0x80000000, 1.5, NaN]) {
      assert.throws(() => encodeStatus({ code, message: '', details: [] }), new RegExp(`^RangeError: ttrpc: status code ${code} is not an int32$`));
    }
  });

  it('encodes a status with code 0 but a message or details (not OK) without a code field', () => {
    assert.deepEqual(encodeResponse({ status: { code: 0, message: 'm', details: [] } }), hex('0a 03 12016d'));
    assert.deepEqual(encodeResponse({ status: { code: 0, message: '', details: [{ typeUrl: 't', value: Buffer.alloc(0) }] } }), hex('0a 05 1a03 0a0174'));
    // Fields the caller left out are proto3 defaults.
    assert.deepEqual(encodeStatus({ code: 5 } as never), hex('0805'));
  });

  it('encodes several details, each with its own lengths', () => {
    const details = [
      { typeUrl: 'type.googleapis.com/a', value: Buffer.from([1, 2, 3]) },
      { typeUrl: 'b', value: Buffer.alloc(0) },
      { typeUrl: '', value: Buffer.from('ü') },
    ];
    const st = encodeStatus({ code: 3, message: 'bad', details });
    assert.deepEqual(st, Buffer.concat([
      hex('0803 1203'), Buffer.from('bad'),
      hex('1a1c 0a15'), Buffer.from('type.googleapis.com/a'), hex('1203 010203'),
      hex('1a03 0a0162'),
      hex('1a04 1202 c3bc'),
    ]));
    assert.deepEqual(decodeStatus(st), { code: 3, message: 'bad', details });
  });
});

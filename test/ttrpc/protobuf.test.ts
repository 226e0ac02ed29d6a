// The protobuf reader and varint writer under the envelope codec (src/ttrpc/protobuf.ts), also used by the
// shim's own decoders: bounds, 64-bit varints and the exact bytes written.
import { strict as assert } from 'assert';
import { Reader, WIRE_BYTES, lenFieldSize, varintSize, writeVarint } from '../../src/ttrpc/protobuf';
import { decodeRequest, encodeRequest } from '../../src/ttrpc';
import { hex } from '../support/ttrpc';

/** The varint writeVarint produces for v, exactly as many bytes as varintSize says. */
function varint(v: number): Buffer {
  const b = Buffer.alloc(16, 0xee);
  const end = writeVarint(b, 0, v);
  assert.equal(end, varintSize(v), `varintSize(${v})`);
  return b.subarray(0, end);
}

describe('ttrpc protobuf reader and writer', () => {
  it('writes varints of every width, 0 and the 7-bit boundaries included', () => {
    assert.deepEqual(varint(0), hex('00'));
    assert.deepEqual(varint(127), hex('7f'));
    assert.deepEqual(varint(128), hex('8001'));
    assert.deepEqual(varint(16383), hex('ff7f'));
    assert.deepEqual(varint(16384), hex('808001'));
    assert.deepEqual(varint(2 ** 53 - 1), hex('ffffffffffffff0f'));
    assert.equal(lenFieldSize(0), 2);
    assert.equal(lenFieldSize(128), 131);
  });

  it('writes negative numbers as 10-byte two\'s complement, carrying into the high word', () => {
    assert.deepEqual(varint(-1), hex('ffffffffffffffffff01'));
    // -2^32: the low word is 0, so the +1 of the two's complement carries into the high word.
    assert.deepEqual(varint(-(2 ** 32)), hex('80808080f0ffffffff01'));
    for (const v of [-(2 ** 32), -(2 ** 33), -(2 ** 52)]) {
      assert.equal(decodeRequest(encodeRequest({ service: '', method: '', timeoutNano: v })).timeoutNano, v);
    }
  });

  it('continues right after a negative varint and a 128-byte field', () => {
    const payload = Buffer.alloc(128, 7);
    const req = encodeRequest({ service: 's', method: '', payload, timeoutNano: -1, metadata: [{ key: 'k', value: '' }, { key: '', value: '' }] });
    assert.deepEqual(req, Buffer.concat([hex('0a0173 1a8001'), payload, hex('20 ffffffffffffffffff01  2a03 0a016b  2a00')]));
    assert.deepEqual(decodeRequest(req).metadata, [{ key: 'k', value: '' }, { key: '', value: '' }]);
  });

  it('reads no further than its end, even when the buffer goes on', () => {
    const b = hex('80 01  0a 02 6162');
    assert.throws(() => new Reader(b, 0, 1).uint32(), /^Error: unexpected EOF in varint$/);
    const r = new Reader(b, 2, 5);
    assert.equal(r.tag(), (1 << 3) | WIRE_BYTES);
    assert.throws(() => r.bytes(), /^Error: length 2 exceeds the remaining 1 bytes$/);
    assert.throws(() => new Reader(hex('0a 02 61 62'), 2, 3).skip(1), /^Error: unexpected EOF$/);
  });

  it('rejects a 10-byte varint beyond 64 bits and lengths or tags beyond 32 bits', () => {
    assert.throws(() => new Reader(hex('ffffffffffffffffff02')).uint32(), /^Error: varint overflows 64 bits$/);
    assert.equal(new Reader(hex('ffffffffffffffffff01')).int64(), -1);
    // 2^32 as a length or as a tag: the low word alone would read as 0.
    assert.throws(() => decodeRequest(hex('1a 8080808010')), /^Error: length 0 exceeds the remaining 0 bytes$/);
    assert.throws(() => decodeRequest(hex('0a 8080808010')), /^Error: length 0 exceeds the remaining 0 bytes$/);
    assert.throws(() => decodeRequest(hex('8880808010 00')), /^Error: field tag overflows 32 bits$/);
    assert.throws(() => decodeRequest(hex('1a 05 61')), /^Error: length 5 exceeds the remaining 1 bytes$/);
  });

  it('skips fixed-size fields that end exactly at the end, and refuses them one byte short, wherever they start', () => {
    assert.deepEqual(decodeRequest(hex('0a0173 51 0102030405060708')).service, 's');
    assert.deepEqual(decodeRequest(hex('0a0173 5d 01020304')).service, 's');
    assert.throws(() => decodeRequest(hex('0a0173 0a0173 51 01020304050607')), /^Error: unexpected EOF$/);
    assert.throws(() => decodeRequest(hex('0a0173 0a0173 5d 010203')), /^Error: unexpected EOF$/);
  });

  it('refuses to skip a wire type it does not know (groups, or a caller\'s mistake)', () => {
    for (const wire of [3, 4, 6, 7]) assert.throws(() => new Reader(hex('00')).skip(wire), new RegExp(`^Error: illegal wire type ${wire}$`));
  });
});

// The daemon's collection pacing (src/shim/gc-pacer.ts): one young-generation collection per PACE bytes
// read, none without gc(). Its effect on memory is shown by test/shim/flood.test.ts.
import { strict as assert } from 'assert';
import { GcPacer, PACE } from '../../src/shim/gc-pacer';

describe('shim gc pacer', () => {
  it('asks for a young-generation collection each time PACE bytes have been read, counting across calls', () => {
    const asked: unknown[] = [];
    const p = new GcPacer((o) => void asked.push(o));
    p.readBytes(PACE - 1);
    assert.deepEqual(asked, []);
    p.readBytes(1);
    assert.deepEqual(asked, [{ type: 'minor' }]);
    for (let i = 0; i < 4; i++) p.readBytes(PACE / 2);
    assert.equal(asked.length, 3);
    assert.equal(p.collections, 3);
  });

  it('does nothing, and never throws, where Node runs without --expose-gc', () => {
    const p = new GcPacer(undefined);
    p.readBytes(PACE * 3);
    assert.equal(p.collections, 0);
  });
});

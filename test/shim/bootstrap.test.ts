// The downstream's start output in each form containerd reads, and our answer in the same form.
import { strict as assert } from 'assert';
import { answerBootstrap, parseBootstrap } from '../../src/shim/bootstrap';
import { decodeBootstrapResult, encodeBootstrapResult } from '../peers/bootstrap-forms';

const DS = '/opt/shim';
const THEIRS = 'unix:///run/containerd/s/0123';
const OURS = 'unix:///run/katavol/abcd.sock';

describe('shim bootstrap: downstream start output -> our answer', () => {
  it('plain stays plain (version 2); a trailing newline or stray stdout lines are tolerated', () => {
    for (const out of [THEIRS, `${THEIRS}\n`, `time="x" level=info msg=hello\n${THEIRS}`]) {
      const b = parseBootstrap(Buffer.from(out), DS);
      assert.deepEqual([b.form, b.version, b.protocol, b.address], ['plain', 2, 'ttrpc', THEIRS]);
      assert.equal(answerBootstrap(b, OURS).toString(), OURS);
    }
  });

  it('JSON keeps its version and every other field, with our address', () => {
    const raw = Buffer.from(`{"version":3,"address":"${THEIRS}","protocol":"ttrpc","metadata":{"k":"v"}}\n`);
    const b = parseBootstrap(raw, DS);
    assert.deepEqual([b.form, b.version, b.address], ['json', 3, THEIRS]);
    assert.equal(answerBootstrap(b, OURS).toString(), `{"version":3,"address":"${OURS}","protocol":"ttrpc","metadata":{"k":"v"}}\n`);
    // Go's encoding/json matches keys case-insensitively; so do we.
    const upper = parseBootstrap(Buffer.from(`{"Version":2,"Address":"${THEIRS}","Protocol":"TTRPC"}`), DS);
    assert.deepEqual([upper.version, upper.address], [2, THEIRS]);
    assert.equal(answerBootstrap(upper, OURS).toString(), `{"Version":2,"Address":"${OURS}","Protocol":"TTRPC"}`);
  });

  it('protobuf: field 2 replaced, every other field byte for byte (newlines and NULs included)', () => {
    const raw = encodeBootstrapResult({ version: 3, address: THEIRS, protocol: 'ttrpc', capabilities: [0, 7], metadata: { 'x\n': 'a\0b' } });
    const b = parseBootstrap(raw, DS);
    assert.deepEqual([b.form, b.version, b.protocol, b.address], ['protobuf', 3, 'ttrpc', THEIRS]);
    const ans = answerBootstrap(b, OURS);
    const want = encodeBootstrapResult({ version: 3, address: OURS, protocol: 'ttrpc', capabilities: [0, 7], metadata: { 'x\n': 'a\0b' } });
    assert.ok(ans.equals(want), ans.toString('hex'));
    assert.deepEqual(decodeBootstrapResult(ans).metadata, { 'x\n': 'a\0b' });
    // An unknown field (a newer BootstrapResult) is kept too.
    const unknown = Buffer.concat([raw, Buffer.from([0x32, 0x02, 0x0a, 0x00])]);
    const a2 = answerBootstrap(parseBootstrap(unknown, DS), OURS);
    assert.ok(a2.subarray(a2.length - 4).equals(Buffer.from([0x32, 0x02, 0x0a, 0x00])));
  });

  it('a text address never reads as protobuf (as in containerd 2.3, which tries protobuf first)', () => {
    for (const out of [THEIRS, '/run/x.sock', `{"version":3,"address":"${THEIRS}","protocol":"ttrpc"}`]) {
      assert.notEqual(parseBootstrap(Buffer.from(out), DS).form, 'protobuf', out);
    }
  });

  it('refuses a protocol other than TTRPC, and JSON that containerd would misread, naming the downstream', () => {
    assert.throws(() => parseBootstrap(Buffer.from(`{"version":3,"address":"${THEIRS}","protocol":"grpc"}`), DS),
      /downstream shim \/opt\/shim announced protocol "grpc" .*katavol proxies TTRPC only/);
    assert.throws(() => parseBootstrap(encodeBootstrapResult({ version: 3, address: THEIRS, protocol: 'grpc' }), DS), /protocol "grpc" .*protobuf bootstrap, version 3/);
    assert.throws(() => parseBootstrap(Buffer.from(`{"version":3,"address":"${THEIRS}"}`), DS), /protocol ""/);
    assert.throws(() => parseBootstrap(Buffer.from(`{"version":1,"address":"${THEIRS}","protocol":"ttrpc"}`), DS), /JSON bootstrap with version 1: containerd reads such output as a plain address/);
    assert.throws(() => parseBootstrap(Buffer.from('{"version":3,"protocol":"ttrpc"}'), DS), /JSON bootstrap without an address/);
    assert.throws(() => parseBootstrap(Buffer.from(' \n'), DS), /\/opt\/shim start printed no address/);
  });
});

import * as assert from 'assert';
import { parseMountInfo, serializeMountInfo, suggestVolumeType } from '../../src/volumes/mountinfo';
import { type MountInfo, VolumeError } from '../../src/volumes/types';

const where = { volumePath: '/kubelet/v1' };
const parse = (s: string, notes?: string[]): MountInfo => parseMountInfo(s, { ...where, notes });

function rejects(json: string, problem: RegExp, fix?: RegExp): VolumeError {
  let caught: unknown;
  try {
    parse(json);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof VolumeError, `expected a VolumeError for ${json}`);
  assert.match(caught.problem, problem);
  if (fix) assert.match(caught.fix, fix);
  assert.strictEqual(caught.volumePath, '/kubelet/v1');
  return caught;
}

describe('volumes/mountinfo', () => {
  it('round-trips every field in the canonical compact form runtime-rs writes', () => {
    const json = '{"volume-type":"spdkvol","device":"/tmp/s.sock","fstype":"xfs","metadata":{"num_queues":"4","a b":"\\"q\\"\\n"},"options":["ro","discard"]}';
    const info = parse(json);
    assert.deepStrictEqual(info, {
      volumeType: 'spdkvol', device: '/tmp/s.sock', fsType: 'xfs',
      metadata: { num_queues: '4', 'a b': '"q"\n' }, options: ['ro', 'discard'],
    });
    const out = serializeMountInfo(info);
    assert.strictEqual(out, '{"volume-type":"spdkvol","device":"/tmp/s.sock","fstype":"xfs","metadata":{"a b":"\\"q\\"\\n","num_queues":"4"},"options":["ro","discard"]}');
    assert.deepStrictEqual(parse(out), info);
  });

  it('omits empty metadata and options', () => {
    const info = parse('{"volume-type":"directvol","device":"/d","fstype":"ext4","metadata":{},"options":[]}');
    assert.strictEqual(serializeMountInfo(info), '{"volume-type":"directvol","device":"/d","fstype":"ext4"}');
  });

  it('refuses a NUL byte in device, fstype or an option (it used to reach stat and mount as a truncated path)', () => {
    rejects('{"volume-type":"directvol","device":"/dev/sdb\\u0000x","fstype":"ext4"}', /"device" "\/dev\/sdb\\u0000x" holds a NUL byte/, /remove the \\u0000 from "device"/);
    rejects('{"volume-type":"directvol","device":"/d","fstype":"ext4\\u0000"}', /"fstype" .* holds a NUL byte/);
    rejects('{"volume-type":"directvol","device":"/d","fstype":"ext4","options":["rw","ro\\u0000"]}', /"options"\[1\] "ro\\u0000" holds a NUL byte/);
  });

  it('accepts the legacy volume_type / fs_type spellings and says so', () => {
    const notes: string[] = [];
    const info = parse('{"volume_type":"directvol","device":"/d","fs_type":"ext4"}', notes);
    assert.deepStrictEqual(info, { volumeType: 'directvol', device: '/d', fsType: 'ext4', metadata: {}, options: [] });
    assert.strictEqual(notes.length, 2);
    assert.match(notes[0], /legacy key "volume_type"/);
  });

  it('accepts metadata given as a string holding a JSON object, and null metadata/options', () => {
    assert.deepStrictEqual(parse('{"volume-type":"directvol","device":"/d","fstype":"ext4","metadata":"{}"}').metadata, {});
    assert.deepStrictEqual(parse('{"volume-type":"directvol","device":"/d","fstype":"ext4","metadata":"{\\"fsGroup\\":\\"1000\\"}"}').metadata, { fsGroup: '1000' });
    const n = parse('{"volume-type":"directvol","device":"/d","fstype":"ext4","metadata":null,"options":null}');
    assert.deepStrictEqual([n.metadata, n.options], [{}, []]);
  });

  it('keeps a "__proto__" metadata key as plain data', () => {
    const info = parse('{"volume-type":"directvol","device":"/d","fstype":"ext4","metadata":{"__proto__":"x"}}');
    assert.deepStrictEqual(Object.keys(info.metadata), ['__proto__']);
    assert.strictEqual(serializeMountInfo(info), '{"volume-type":"directvol","device":"/d","fstype":"ext4","metadata":{"__proto__":"x"}}');
  });

  it('ignores unknown keys (like Kata) and reports them', () => {
    const notes: string[] = [];
    const info = parse('{"volume-type":"directvol","device":"/d","fstype":"ext4","extra":1}', notes);
    assert.strictEqual(serializeMountInfo(info), '{"volume-type":"directvol","device":"/d","fstype":"ext4"}');
    assert.match(notes.join(), /unknown key "extra"/);
  });

  it('rejects duplicate keys, also through a legacy spelling', () => {
    rejects('{"volume-type":"directvol","device":"/a","device":"/b","fstype":"ext4"}', /duplicate key "device"/);
    rejects('{"volume-type":"directvol","volume_type":"directvol","device":"/a","fstype":"ext4"}', /"volume-type" is given twice/, /keep only/);
    rejects('{"volume-type":"directvol","device":"/a","fstype":"ext4","metadata":{"k":"1","k":"2"}}', /duplicate key "k" in metadata/);
  });

  it('rejects non-string metadata values with the quoted fix', () => {
    rejects('{"volume-type":"directvol","device":"/a","fstype":"ext4","metadata":{"fsGroup":4}}', /metadata "fsGroup" is a number 4/, /"fsGroup":"4"/);
    rejects('{"volume-type":"directvol","device":"/a","fstype":"ext4","metadata":{"x":true}}', /boolean/);
    rejects('{"volume-type":"directvol","device":"/a","fstype":"ext4","metadata":"[1]"}', /string holding an array/);
    rejects('{"volume-type":"directvol","device":"/a","fstype":"ext4","metadata":5}', /must be an object/);
  });

  it('rejects unknown volume types and names the alias that was meant', () => {
    rejects('{"volume-type":"block","device":"/a","fstype":"ext4"}', /"block" is not a Kata volume type/, /"directvol"/);
    rejects('{"volume-type":"VFIO","device":"/a","fstype":"ext4"}', /not a Kata volume type/, /"vfiovol"/);
    rejects('{"volume-type":"spdk","device":"/a","fstype":"ext4"}', /not a Kata volume type/, /"spdkvol"/);
    rejects('{"volume-type":"zzz","device":"/a","fstype":"ext4"}', /not a Kata volume type/, /one of directvol, vfiovol, spdkvol, spoolvol/);
    assert.strictEqual(suggestVolumeType('DirectVol'), 'directvol');
  });

  it('rejects wrong-case keys with the right spelling, missing keys and wrong types', () => {
    rejects('{"volume-type":"directvol","Device":"/a","fstype":"ext4"}', /"Device": keys are case-sensitive/, /"device"/);
    rejects('{"volume-type":"directvol","fstype":"ext4"}', /no "device"/);
    rejects('{"volume-type":"directvol","device":7,"fstype":"ext4"}', /"device" must be a string/);
    rejects('{"volume-type":"directvol","device":"/a","fstype":"ext4","options":"ro,bind"}', /"options" must be a list/, /\["ro","bind"\]/);
    rejects('{"volume-type":"directvol","device":"/a","fstype":"ext4","options":[1]}', /options must be strings/);
  });

  it('rejects malformed JSON, trailing garbage and non-objects with an example', () => {
    rejects('{"volume-type":"directvol",}', /not valid JSON/, /single-quote/);
    rejects('{"volume-type":"directvol","device":"/a","fstype":"ext4"} x', /trailing characters/);
    rejects('[]', /must be a JSON object, found an array/);
    rejects('', /not valid JSON/);
  });

  it('every refusal says exactly what is wrong and how to write it instead', () => {
    const example = `give one JSON object such as '{"volume-type":"directvol","device":"/dev/sdb","fstype":"ext4"}' (single-quote it in the shell)`;
    const head = '"volume-type":"directvol","device":"/a","fstype":"ext4"';
    const cases: Array<[string, string, string]> = [
      ['{"volume-type":"directvol","device":"/a","device":"/b","fstype":"ext4"}', 'mount info is not valid JSON: duplicate key "device" at character 42', 'give each key once'],
      ['{', 'mount info is not valid JSON: expected a quoted key, found end of input at character 2', example],
      // "duplicate key" inside another syntax error is not a duplicate key.
      ['{"duplicate key" 1}', 'mount info is not valid JSON: expected \':\' after key "duplicate key", found "1" at character 18', example],
      ['{"volume_type":"directvol","volume-type":"directvol","device":"/a","fstype":"ext4"}', 'key "volume-type" is given twice ("volume_type" and "volume-type")', 'keep only "volume-type"'],
      ['{"volume-type":"directvol","device":"/a","fstype":"ext4","fs_type":"xfs"}', 'key "fstype" is given twice ("fstype" and "fs_type")', 'keep only "fstype"'],
      ['{"device":"/a","fstype":"ext4"}', 'mount info has no "volume-type"', 'add "volume-type":"directvol"'],
      ['{"volume-type":"directvol","fstype":"ext4"}', 'mount info has no "device"', 'add "device":"/dev/sdb"'],
      ['{"volume-type":"directvol","device":"/a"}', 'mount info has no "fstype"', 'add "fstype":"ext4"'],
      ['{"volume-type":5,"device":"/a","fstype":"ext4"}', '"volume-type" must be a string, found a number 5', 'write "volume-type":"directvol"'],
      ['{"volume-type":"directvol","device":["/a"],"fstype":"ext4"}', '"device" must be a string, found an array', 'write "device":"/dev/sdb"'],
      ['{"volume-type":"directvol","device":"/a","fstype":true}', '"fstype" must be a string, found a boolean true', 'write "fstype":"ext4"'],
      ['{"Volume_Type":"directvol","device":"/a","fstype":"ext4"}', 'unknown key "Volume_Type": keys are case-sensitive and Kata ignores this one', 'spell it "volume-type"'],
      [`{${head},"metadata":"{x"}`, '"metadata" is a string that is not a JSON object (expected a quoted key, found "x" at character 2)', 'write metadata as an object, e.g. "metadata":{"fsGroup":"1000"}'],
      [`{${head},"metadata":"[1]"}`, '"metadata" is a string holding an array, not an object', 'write metadata as an object, e.g. "metadata":{}'],
      [`{${head},"metadata":5}`, '"metadata" must be an object of strings, found a number 5', 'write e.g. "metadata":{"fsGroup":"1000"}'],
      [`{${head},"metadata":{"x":null}}`, 'metadata "x" is null; metadata values must be strings', 'quote it: "x":"..."'],
      [`{${head},"metadata":{"x":{"y":"1"}}}`, 'metadata "x" is an object; metadata values must be strings', 'quote it: "x":"..."'],
      [`{${head},"metadata":{"x":false}}`, 'metadata "x" is a boolean false; metadata values must be strings', 'quote it: "x":"false"'],
      [`{${head},"metadata":{"x":12}}`, 'metadata "x" is a number 12; metadata values must be strings', 'quote it: "x":"12"'],
      [`{${head},"options":"ro,,bind"}`, '"options" must be a list of strings, found a string "ro,,bind"', 'write a list: "options":["ro","bind"]'],
      [`{${head},"options":5}`, '"options" must be a list of strings, found a number 5', 'write a list of strings, e.g. "options":["ro"]'],
      [`{${head},"options":["ro",1]}`, '"options"[1] is a number 1; options must be strings', 'write e.g. "options":["ro","discard"]'],
      [`{${head},"options":["ro","d\\u0000"]}`, '"options"[1] "d\\u0000" holds a NUL byte, which no mount option can', 'remove the \\u0000 from "options"[1]'],
    ];
    for (const [json, problem, fix] of cases) {
      const e = rejects(json, /./);
      assert.deepStrictEqual([e.problem, e.fix], [problem, fix], json);
    }
  });

  it('says when metadata given as a JSON string was read as an object; the parsed metadata is an ordinary object', () => {
    const notes: string[] = [];
    const info = parse('{"volume-type":"directvol","device":"/d","fstype":"ext4","metadata":"{\\"fsGroup\\":\\"1000\\"}"}', notes);
    assert.deepStrictEqual(notes, ['read "metadata" given as a JSON string as an object (stored as an object, which Kata requires)']);
    assert.deepStrictEqual(parse('{"volume-type":"directvol","device":"/d","fstype":"ext4","metadata":{"a":"1"}}', notes).metadata, { a: '1' });
    assert.strictEqual(notes.length, 1, 'an object is not noted');
    // Callers may change the result like any parsed JSON (the CSI plugin and the CLI build on it).
    info.metadata.fsGroup = '2000';
    delete info.metadata.fsGroup;
    assert.deepStrictEqual(info.metadata, {});
  });

  it('suggests a volume type whatever its case or separators', () => {
    for (const t of ['direct-vol', 'Direct_Vol', 'direct vol']) assert.strictEqual(suggestVolumeType(t), 'directvol', t);
    assert.strictEqual(suggestVolumeType('vhost-user-blk'), 'spdkvol');
    assert.strictEqual(suggestVolumeType('nfs'), undefined);
  });

  it('suggests the type for each name older docs and other runtimes use for it', () => {
    const meant: Array<[string, string]> = [
      ['block', 'directvol'], ['blk', 'directvol'], ['raw', 'directvol'], ['raw-block', 'directvol'], ['direct', 'directvol'],
      ['direct-volume', 'directvol'], ['file', 'directvol'], ['disk', 'directvol'], ['virtio-blk', 'directvol'],
      ['vfio', 'vfiovol'], ['vfio-volume', 'vfiovol'], ['vfio-pci', 'vfiovol'],
      ['spdk', 'spdkvol'], ['spdk-volume', 'spdkvol'], ['vhost-user-blk', 'spdkvol'], ['vhost-user', 'spdkvol'],
      ['spool', 'spoolvol'], ['spool-volume', 'spoolvol'],
    ];
    assert.deepStrictEqual(meant.map(([name]) => [name, suggestVolumeType(name)]), meant);
  });
});

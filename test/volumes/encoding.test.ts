import * as assert from 'assert';
import { MAX_VOLUME_PATH_BYTES, decodeLooseDirName, decodeVolumeDirName, encodeVolumePath } from '../../src/volumes/encoding';

// The worked examples of the reference (§2), computed with coreutils base64 + tr '+/' '-_'.
const EXAMPLES: Array<[string, string]> = [
  ['/kubelet/kata-test-vol-001/volume001', 'L2t1YmVsZXQva2F0YS10ZXN0LXZvbC0wMDEvdm9sdW1lMDAx'],
  ['/kubelet/kata-direct-vol-002/directvol002', 'L2t1YmVsZXQva2F0YS1kaXJlY3Qtdm9sLTAwMi9kaXJlY3R2b2wwMDI='],
  ['/kubelet/kata-vfio-vol-003/vfiovol003', 'L2t1YmVsZXQva2F0YS12ZmlvLXZvbC0wMDMvdmZpb3ZvbDAwMw=='],
  ['/var/lib/kubelet/pods/abc/volumes/kubernetes.io~csi/pvc-1/mount', 'L3Zhci9saWIva3ViZWxldC9wb2RzL2FiYy92b2x1bWVzL2t1YmVybmV0ZXMuaW9-Y3NpL3B2Yy0xL21vdW50'],
  ['/a?b>', 'L2E_Yj4='],
  ['../../etc/passwd', 'Li4vLi4vZXRjL3Bhc3N3ZA=='],
  ['abcdddd', 'YWJjZGRkZA=='],
];

describe('volumes/encoding', () => {
  for (const [p, name] of EXAMPLES) {
    it(`encodes ${p} as Kata does and decodes it back`, () => {
      assert.strictEqual(encodeVolumePath(p), name);
      assert.strictEqual(decodeVolumeDirName(name), p);
    });
  }

  it('encodes the exact UTF-8 bytes, without normalising the path', () => {
    assert.strictEqual(encodeVolumePath('/vol/é'), Buffer.from('/vol/é', 'utf8').toString('base64').replace(/\//g, '_').replace(/\+/g, '-'));
    assert.notStrictEqual(encodeVolumePath('/a/b'), encodeVolumePath('/a/b/'));
    assert.strictEqual(decodeVolumeDirName(encodeVolumePath('/vol/é')), '/vol/é');
  });

  it('refuses names that are not exactly an encoding', () => {
    assert.strictEqual(decodeVolumeDirName('L2E_Yj4'), undefined, 'padding dropped');
    assert.strictEqual(decodeVolumeDirName('L2E/Yj4='), undefined, 'standard alphabet');
    assert.strictEqual(decodeVolumeDirName('mountInfo.json'), undefined);
    assert.strictEqual(decodeVolumeDirName(''), undefined);
    assert.strictEqual(decodeVolumeDirName('_w=='), undefined, 'invalid UTF-8');
    assert.strictEqual(decodeLooseDirName('L2E_Yj4'), '/a?b>');
  });

  it('decodes nothing but the exact encoding: no other alphabet, padding, characters or trailing bits', () => {
    for (const name of ['L2E-Yj4', 'L2E+Yj4=', 'L2E=x', ' L2E=', 'L2E=\n', 'L2E', 'L2F=', 'L2E==', '=', '====']) {
      assert.strictEqual(decodeVolumeDirName(name), undefined, JSON.stringify(name));
    }
    assert.strictEqual(decodeVolumeDirName('L2E='), '/a');
    assert.strictEqual(decodeVolumeDirName('L2E-Yj4='), '/a>b>');
  });

  it('reads a mis-encoded name (padding dropped, the "+" alphabet) as the path it was probably meant for, and nothing else', () => {
    assert.strictEqual(decodeLooseDirName('L2E-Yj4'), '/a>b>');
    assert.strictEqual(decodeLooseDirName('L2E+Yj4='), '/a>b>');
    assert.strictEqual(decodeLooseDirName('L2E+Yj4'), '/a>b>');
    assert.strictEqual(decodeLooseDirName('L2E_Yj4'), '/a?b>');
    assert.strictEqual(decodeLooseDirName('YQ'), 'a');
    for (const name of ['', 'A', '.L2Ex', 'L2Ex.', 'L2E_Yj4=x', 'L2E_Yj4===', '_w==', 'mountInfo.json', '.katavol-locks']) {
      assert.strictEqual(decodeLooseDirName(name), undefined, JSON.stringify(name));
    }
  });

  it('knows the longest path whose name fits in 255 bytes', () => {
    assert.strictEqual(MAX_VOLUME_PATH_BYTES, 189);
    assert.ok(encodeVolumePath('x'.repeat(189)).length <= 255);
    assert.ok(encodeVolumePath('x'.repeat(190)).length > 255);
  });
});

import * as assert from 'assert';
import { agentDriverFor, filterBlockStorageOptions, isDevDestination, predictStorage, virtPathForIndex } from '../../../src/backends/runtime-rs/guest';
import { driveIdFor, rewrittenOptions } from '../../../src/backends/runtime-rs/volume';

describe('runtime-rs guest view', () => {
  it('names guest disks like runtime-rs: vda..vdz, then vdaa', () => {
    const cases: Array<[number, string]> = [
      [0, '/dev/vda'], [1, '/dev/vdb'], [25, '/dev/vdz'], [26, '/dev/vdaa'], [27, '/dev/vdab'],
      [51, '/dev/vdaz'], [52, '/dev/vdba'], [701, '/dev/vdzz'], [702, '/dev/vdaaa'],
    ];
    for (const [i, name] of cases) assert.strictEqual(virtPathForIndex(i), name, `index ${i}`);
    assert.throws(() => virtPathForIndex(-1), RangeError);
    assert.throws(() => virtPathForIndex(1.5), RangeError);
    assert.throws(() => virtPathForIndex(-1), /^RangeError: device index must be a whole number >= 0, got -1$/);
  });

  it('maps block drivers to agent drivers', () => {
    assert.strictEqual(agentDriverFor('virtio-blk-pci'), 'blk');
    assert.strictEqual(agentDriverFor('virtio-blk-mmio'), 'mmioblk');
  });

  it('filters bind flags from storage options and adds ro once', () => {
    assert.deepStrictEqual(filterBlockStorageOptions(['bind', 'noatime', 'rbind', 'ro']), ['noatime', 'ro']);
    assert.deepStrictEqual(
      predictStorage({ driver: 'mmioblk', source: '/dev/vdb', fsType: 'xfs', options: ['rbind', 'rw', 'noatime'], readOnly: true }),
      { driver: 'mmioblk', source: '/dev/vdb', fs_type: 'xfs', options: ['rw', 'noatime', 'ro'] },
    );
    assert.deepStrictEqual(
      predictStorage({ driver: 'blk', fsType: 'ext4', options: ['ro', 'bind'], readOnly: true }),
      { driver: 'blk', fs_type: 'ext4', options: ['ro'] },
    );
  });

  it('binds the device node for a destination under /dev (fs_type bind plus the OCI options)', () => {
    assert.deepStrictEqual(
      predictStorage({ driver: 'mmioblk', source: '/dev/vda', fsType: 'ext4', options: ['bind'], readOnly: false, devBind: { destination: '/dev/xvdb', ociOptions: ['rbind', 'rw'] } }),
      { driver: 'mmioblk', source: '/dev/vda', fs_type: 'bind', options: ['rbind', 'rw'] },
    );
    assert.strictEqual(isDevDestination('/dev'), true);
    assert.strictEqual(isDevDestination('/development'), false);
    assert.deepStrictEqual(
      predictStorage({ driver: 'mmioblk', source: '/dev/vda', fsType: 'ext4', options: [], readOnly: false, devBind: { destination: '/development', ociOptions: ['rbind'] } }),
      { driver: 'mmioblk', source: '/dev/vda', fs_type: 'ext4', options: [] },
    );
  });

  it('rewrites OCI options: ro added once, a contradicting rw dropped, the rest kept in order', () => {
    assert.deepStrictEqual(rewrittenOptions(['rbind', 'rw', 'nosuid'], true), ['rbind', 'nosuid', 'ro']);
    assert.deepStrictEqual(rewrittenOptions(['ro', 'rbind'], true), ['ro', 'rbind']);
    assert.deepStrictEqual(rewrittenOptions(['rbind', 'rw'], false), ['rbind', 'rw']);
  });

  it('derives a stable 16-hex drive id per device', () => {
    const a = driveIdFor('blk:/images/a.img');
    assert.match(a, /^[0-9a-f]{16}$/);
    assert.strictEqual(driveIdFor('blk:/images/a.img'), a);
    assert.notStrictEqual(driveIdFor('blk:/images/b.img'), a);
  });
});

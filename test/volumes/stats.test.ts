import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { Registry } from '../../src/volumes/registry';
import { volumeStats } from '../../src/volumes/stats';
import { VolumeError } from '../../src/volumes/types';
import { scratchDir } from '../support/scratch';
import { LoopFixture, ext4Bytes, mkExt4 } from '../support/disks';

const MiB = 1 << 20;
const VOL = '/kubelet/stats-vol';

describe('volumes/stats', () => {
  let scratch: string;
  let reg: Registry;
  let img: string;
  const loops = new LoopFixture();

  beforeEach(() => {
    scratch = scratchDir('stats');
    reg = new Registry(path.join(scratch, 'root'));
    img = mkExt4(scratch, 'vol.img', 24 * MiB);
    reg.add(VOL, JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
  });
  afterEach(async () => {
    await loops.cleanup();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('reports an unmounted image: size, allocation, no loop, usage from the superblock, sandboxes', () => {
    reg.recordSandbox(VOL, 'pod-1', 'runc');
    const s = volumeStats(reg, VOL);
    assert.strictEqual(s.deviceKind, 'file');
    assert.strictEqual(s.sizeBytes, 24 * MiB);
    assert.strictEqual(s.allocatedBytes, fs.statSync(img).blocks * 512);
    assert.deepStrictEqual([s.loopDevices, s.mounts], [[], []]);
    assert.strictEqual(s.usage?.source, 'dumpe2fs');
    assert.strictEqual(s.usage?.totalBytes, ext4Bytes(img));
    assert.ok(s.usage.usedBytes > 0 && s.usage.availableBytes < s.usage.totalBytes - s.usage.usedBytes + 1);
    assert.deepStrictEqual(s.sandboxes, [{ id: 'pod-1', backend: 'runc', readOnly: false }]);
    assert.strictEqual(s.directory, reg.entryDir(VOL));
  });

  it('reports used/available bytes of a loop mount as df does, also from another mount namespace', async () => {
    const loop = loops.attach(img);
    const mnt = path.join(scratch, 'mnt');
    loops.mount(loop, mnt);
    const fd = fs.openSync(path.join(mnt, 'data'), 'w');
    fs.writeSync(fd, Buffer.alloc(3 * MiB, 1));
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    const s = volumeStats(reg, VOL);
    const df = fs.statfsSync(mnt);
    assert.deepStrictEqual(s.loopDevices, [loop]);
    assert.deepStrictEqual(s.mounts.map((m) => [m.mountPoint, m.device, m.fstype]), [[mnt, loop, 'ext4']]);
    assert.deepStrictEqual(s.usage, {
      source: 'statfs', totalBytes: df.blocks * df.bsize, usedBytes: (df.blocks - df.bfree) * df.bsize,
      availableBytes: df.bavail * df.bsize, inodes: df.files, inodesFree: df.ffree,
    });
    assert.ok(s.usage.usedBytes >= 3 * MiB);

    // A second image, mounted only inside another mount namespace (as runc containers do).
    const img2 = mkExt4(scratch, 'vol2.img', 16 * MiB);
    reg.add('/other', JSON.stringify({ 'volume-type': 'directvol', device: img2, fstype: 'ext4' }));
    const loop2 = loops.attach(img2);
    const pid = await loops.mountInOtherNamespace(loop2, path.join(scratch, 'ns-mnt'));
    const s2 = volumeStats(reg, '/other');
    assert.deepStrictEqual(s2.mounts, [{ pid, mountPoint: path.join(scratch, 'ns-mnt'), device: loop2, fstype: 'ext4' }]);
    assert.strictEqual(s2.usage?.source, 'statfs');
    assert.ok(s2.usage.totalBytes > 8 * MiB && s2.usage.totalBytes <= 16 * MiB);
  });

  it('reports the kind of vfio and spdk volumes and fails clearly for a vanished device', () => {
    reg.add('/vf', '{"volume-type":"vfiovol","device":"/dev/vfio/7","fstype":"ext4"}');
    const v = volumeStats(reg, '/vf');
    assert.deepStrictEqual([v.deviceKind, v.sizeBytes, v.usage], ['vfio', undefined, null]);
    fs.rmSync(img);
    assert.throws(() => volumeStats(reg, VOL), (e: unknown) => e instanceof VolumeError && /device .*vol\.img cannot be read/.test(e.problem));
    assert.throws(() => volumeStats(reg, '/nope'), (e: unknown) => e instanceof VolumeError && /is not registered/.test(e.problem));
  });
});

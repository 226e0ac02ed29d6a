import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import type { Registry } from '../../src/volumes/registry';
import { volumeStats } from '../../src/volumes/stats';
import { VolumeError } from '../../src/volumes/types';
import { closeServer, listeningSocket, useScratchRegistry } from '../support/volumes';
import { LoopFixture, ext4Bytes, mkExt4 } from '../support/disks';

const MiB = 1 << 20;
const VOL = '/kubelet/stats-vol';

// Each test's scratch registry, set by useScratchRegistry's hooks in both blocks below.
let scratch: string;
let reg: Registry;
const loops = new LoopFixture();

describe('volumes/stats', () => {
  let img: string;
  const fx = useScratchRegistry('stats', 'root', loops);

  beforeEach(() => {
    ({ scratch, reg } = fx);
    img = mkExt4(scratch, 'vol.img', 24 * MiB);
    reg.add(VOL, JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
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

  it('lists a mount once, from our namespace, however many other mount namespaces hold copies of it', async () => {
    const loop = loops.attach(img);
    const mnt = path.join(scratch, 'mnt');
    loops.mount(loop, mnt);
    await loops.holdMountNamespace(); // made while it is mounted: holds a copy, as a systemd service's or a container's does
    await loops.holdMountNamespace();
    assert.deepStrictEqual(volumeStats(reg, VOL).mounts, [{ pid: process.pid, mountPoint: mnt, device: loop, fstype: 'ext4' }]);
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

describe('volumes/stats: block devices, sockets and what cannot be read', () => {
  const fx = useScratchRegistry('stats', 'root', loops);
  beforeEach(() => {
    ({ scratch, reg } = fx);
  });

  it('a block device: its size from sysfs, its own mounts and usage; no loop devices or allocation', () => {
    const loop = loops.attach(mkExt4(scratch, 'vol.img', 20 * MiB));
    reg.add('/blk', JSON.stringify({ 'volume-type': 'directvol', device: loop, fstype: 'ext4' }));
    let s = volumeStats(reg, '/blk');
    assert.deepStrictEqual([s.deviceKind, s.sizeBytes, s.allocatedBytes, s.loopDevices, s.mounts], ['block', 20 * MiB, undefined, undefined, []]);
    assert.deepStrictEqual([s.usage?.source, s.usage?.totalBytes], ['dumpe2fs', ext4Bytes(loop)]);
    const mnt = path.join(scratch, 'mnt');
    loops.mount(loop, mnt);
    s = volumeStats(reg, '/blk');
    assert.deepStrictEqual(s.mounts.map((m) => [m.mountPoint, m.device, m.fstype]), [[mnt, loop, 'ext4']]);
    assert.strictEqual(s.usage?.source, 'statfs');
  });

  it('an spdk volume: a socket, found with or without spdk://; a missing socket is an error naming it and the fix', async () => {
    const sock = path.join(scratch, 'vhost.0');
    const server = await listeningSocket(sock);
    try {
      reg.add('/s1', JSON.stringify({ 'volume-type': 'spdkvol', device: sock, fstype: 'ext4' }));
      reg.add('/s2', JSON.stringify({ 'volume-type': 'spoolvol', device: `spdk://${sock}`, fstype: 'xfs' }));
      reg.recordSandbox('/s1', 'vm-1', 'runtime-rs');
      const s = volumeStats(reg, '/s1');
      assert.deepStrictEqual(s, {
        volumePath: '/s1', directory: reg.entryDir('/s1'), volumeType: 'spdkvol', device: sock, fstype: 'ext4',
        deviceKind: 'socket', mounts: [], usage: null, sandboxes: [{ id: 'vm-1', backend: 'runtime-rs', readOnly: false }],
      });
      assert.deepStrictEqual([volumeStats(reg, '/s2').deviceKind, volumeStats(reg, '/s2').volumeType], ['socket', 'spoolvol']);
    } finally {
      await closeServer(server);
    }
    assert.throws(() => volumeStats(reg, '/s2'), (e: unknown) => e instanceof VolumeError && e.volumePath === '/s2'
      && e.problem === `vhost-user socket ${sock} does not exist`
      && e.fix === 'start the SPDK vhost target or fix the registry entry with katavol direct-volume add');
  });

  it('a vanished device names the volume, the entry and the fix; an ext4 image without a superblock reports why there is no usage', () => {
    const img = path.join(scratch, 'blank.img');
    fs.writeFileSync(img, '');
    fs.truncateSync(img, 4 * MiB);
    reg.add('/blank', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
    const s = volumeStats(reg, '/blank');
    assert.deepStrictEqual([s.deviceKind, s.sizeBytes, s.usage], ['file', 4 * MiB, null]);
    assert.match(s.usageError ?? '', /^volume "\/blank": dumpe2fs -h .*blank\.img failed: .*; check that .*blank\.img holds an ext2\/3\/4 filesystem$/);
    // Not ext: no usage and no error (nothing to read it with).
    reg.add('/raw', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'xfs' }));
    const r = volumeStats(reg, '/raw');
    assert.deepStrictEqual([r.usage, r.usageError], [null, undefined]);

    fs.rmSync(img);
    assert.throws(() => volumeStats(reg, '/blank'), (e: unknown) => e instanceof VolumeError
      && e.problem === `device ${img} cannot be read: ENOENT: no such file or directory, stat '${img}'`
      && e.fix === 'restore the device or register the volume again with katavol direct-volume add'
      && e.file === reg.entryDir('/blank') && (e.cause as NodeJS.ErrnoException).code === 'ENOENT');
  });
});

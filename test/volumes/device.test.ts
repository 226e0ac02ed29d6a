// Host checks of a registered device by volume type (what `add` and the CSI plugin refuse before
// writing anything), with the exact problem and fix each refusal gives.
import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { isPciAddress, missingDeviceAdvice, normalizeDevice, spdkSocketPath, validateDevice } from '../../src/volumes/device';
import { type MountInfo, VolumeError } from '../../src/volumes/types';
import { mountInfo, useVhostSocket } from '../support/volumes';
import { imageFile } from '../support/disks';

const VOL = '/kubelet/dev';

describe('volumes/device', () => {
  let dir: string;
  let sock: string;
  const vhost = useVhostSocket('device');
  before(() => {
    ({ dir, sock } = vhost);
  });

  /** [problem, fix] of the refusal; fails when the device is accepted. */
  const refusal = (info: MountInfo): [string, string] => {
    try {
      validateDevice(info, VOL);
    } catch (e) {
      assert.ok(e instanceof VolumeError, String(e));
      assert.strictEqual(e.volumePath, VOL);
      return [e.problem, e.fix];
    }
    assert.fail(`accepted ${JSON.stringify(info)}`);
  };

  it('accepts an image file or block device (directvol), a live socket (spdkvol, spoolvol, with or without a scheme), a PCI address or VFIO group (vfiovol)', () => {
    for (const info of [
      mountInfo('directvol', imageFile(dir)),
      mountInfo('directvol', `/dev/${fs.readdirSync('/dev').find((n) => fs.statSync(`/dev/${n}`).isBlockDevice())!}`),
      mountInfo('spdkvol', sock), mountInfo('spdkvol', `spdk://${sock}`), mountInfo('spoolvol', `spool://${sock}`), mountInfo('spoolvol', sock),
      mountInfo('vfiovol', '0000:3b:00.1'), mountInfo('vfiovol', '3b:00.1'), mountInfo('vfiovol', '0000:3B:1f.7'), mountInfo('vfiovol', '/dev/vfio/12'),
    ]) {
      assert.doesNotThrow(() => validateDevice(info, VOL), JSON.stringify(info));
    }
  });

  it('refuses each bad device with the volume, what is wrong and what to give instead', () => {
    const fifo = path.join(dir, 'fifo');
    spawnSync('mkfifo', [fifo]);
    const file = imageFile(dir, 'plain.img');
    const cases: Array<[MountInfo, string, string]> = [
      [mountInfo('directvol', ''), '"device" is empty', 'set "device" to the host block device or image file (directvol), socket (spdkvol) or PCI address (vfiovol)'],
      [mountInfo('vfiovol', ''), '"device" is empty', 'set "device" to the host block device or image file (directvol), socket (spdkvol) or PCI address (vfiovol)'],
      [mountInfo('directvol', 'disk.img'), 'device "disk.img" is a relative path (the runtime resolves it from its own directory)', `give the absolute path, e.g. "${path.resolve('disk.img')}"`],
      [mountInfo('directvol', dir), `device "${dir}" is a directory; a directvol device must be a regular file (disk image) or a block device`, 'point "device" at an image file or a block device such as /dev/sdb'],
      [mountInfo('directvol', '/dev/null'), 'device "/dev/null" is a character device; a directvol device must be a regular file (disk image) or a block device', 'point "device" at an image file or a block device such as /dev/sdb'],
      [mountInfo('directvol', fifo), `device "${fifo}" is a FIFO; a directvol device must be a regular file (disk image) or a block device`, 'point "device" at an image file or a block device such as /dev/sdb'],
      [mountInfo('spdkvol', 'spdk://var/tmp/vhost.0'), 'device "spdk://var/tmp/vhost.0" is not an absolute socket path', 'give the vhost-user socket path, e.g. "/var/tmp/spdk/vhost.0" or "spdk:///var/tmp/spdk/vhost.0"'],
      [mountInfo('spoolvol', 'vhost.0'), 'device "vhost.0" is not an absolute socket path', 'give the vhost-user socket path, e.g. "/var/tmp/spdk/vhost.0" or "spdk:///var/tmp/spdk/vhost.0"'],
      [mountInfo('spdkvol', `spdk://${dir}/gone.sock`), `vhost-user socket "${dir}/gone.sock" does not exist`, 'start the SPDK vhost target first (it creates the socket) or correct "device"'],
      [mountInfo('spdkvol', `spdk://${file}`), `device "${file}" is a regular file, not a unix socket`, 'point "device" at the SPDK vhost-user socket'],
      [mountInfo('spoolvol', fifo), `device "${fifo}" is a FIFO, not a unix socket`, 'point "device" at the SPDK vhost-user socket'],
      [mountInfo('vfiovol', '0000:3b:00.8'), 'device "0000:3b:00.8" is not a PCI address (BB:DD.F or DDDD:BB:DD.F) or a VFIO group (/dev/vfio/N)', 'give e.g. "0000:3b:00.1" or "/dev/vfio/12"'],
      [mountInfo('vfiovol', '/dev/vfio/vfio'), 'device "/dev/vfio/vfio" is not a PCI address (BB:DD.F or DDDD:BB:DD.F) or a VFIO group (/dev/vfio/N)', 'give e.g. "0000:3b:00.1" or "/dev/vfio/12"'],
      [mountInfo('vfiovol', '/dev/vfio/12x'), 'device "/dev/vfio/12x" is not a PCI address (BB:DD.F or DDDD:BB:DD.F) or a VFIO group (/dev/vfio/N)', 'give e.g. "0000:3b:00.1" or "/dev/vfio/12"'],
      [mountInfo('nfsvol' as MountInfo['volumeType'], '/x'), 'volume-type "nfsvol" is unknown', 'use directvol, vfiovol, spdkvol or spoolvol'],
    ];
    for (const [info, problem, fix] of cases) assert.deepStrictEqual(refusal(info), [problem, fix], JSON.stringify(info));
  });

  it('advises a command only for a new image file in an ordinary directory, formatting it only with a mkfs Debian ships', () => {
    const img = path.join(dir, 'new.img');
    for (const fs of ['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'vfat', 'f2fs']) {
      assert.strictEqual(missingDeviceAdvice(img, fs), `correct "device", or create a new image file there: truncate -s 1G ${img} && mkfs.${fs} ${img}`, fs);
    }
    assert.strictEqual(missingDeviceAdvice(img, 'ntfs'), `correct "device", or create a new image file there: truncate -s 1G ${img}`);
    const deep = path.join(dir, 'a', 'b', 'n.img');
    assert.strictEqual(missingDeviceAdvice(deep, 'ext4'), `correct "device", or create a new image file there: mkdir -p ${path.dirname(deep)} && truncate -s 1G ${deep} && mkfs.ext4 ${deep}`);
    const system = 'attach the disk (check lsblk for its name) or correct "device"; katavol does not create device nodes';
    for (const dev of ['/dev', '/dev/sdz', '/proc/x', '/sys', '/run/udev/data/b8:0', '/dev/../dev/sdz']) assert.strictEqual(missingDeviceAdvice(dev, 'ext4'), system, dev);
    // Only those trees: a name that merely starts like one is an ordinary path.
    assert.match(missingDeviceAdvice('/devices/new.img', 'ext4'), /^correct "device", or create a new image file there: mkdir -p \/devices && truncate/);
    assert.match(missingDeviceAdvice('/run/udevx/n.img', 'ext4'), /truncate -s 1G/);
  });

  it('reads the socket path after an spdk:// or spool:// scheme, and nothing else as a scheme', () => {
    assert.strictEqual(spdkSocketPath('spdk:///var/tmp/vhost.0'), '/var/tmp/vhost.0');
    assert.strictEqual(spdkSocketPath('spool:///var/tmp/vhost.0'), '/var/tmp/vhost.0');
    assert.strictEqual(spdkSocketPath('/var/tmp/vhost.0'), '/var/tmp/vhost.0');
    assert.strictEqual(spdkSocketPath('/x/spdk:///var/tmp/vhost.0'), '/x/spdk:///var/tmp/vhost.0');
    assert.strictEqual(spdkSocketPath('spdk:///var/tmp/a\nb'), 'spdk:///var/tmp/a\nb', 'a path with a newline is not cut at it');
  });

  it('stores a vfiovol PCI address in lower case, and nothing else changed', () => {
    assert.strictEqual(normalizeDevice(mountInfo('vfiovol', '0000:3B:00.1')), '0000:3b:00.1');
    assert.strictEqual(normalizeDevice(mountInfo('vfiovol', '/dev/vfio/12')), '/dev/vfio/12');
    assert.strictEqual(normalizeDevice(mountInfo('directvol', 'AB:0D.1')), 'AB:0D.1', 'a PCI-address-like name of another type keeps its case');
    assert.strictEqual(normalizeDevice(mountInfo('spdkvol', '0000:AB:0D.1')), '0000:AB:0D.1');
    assert.ok(isPciAddress('0000:3b:00.1') && isPciAddress('3B:1F.7'));
    assert.ok(!isPciAddress('0000:3b:00.8') && !isPciAddress('3b:20.1') && !isPciAddress(' 3b:00.1') && !isPciAddress('3b:00.1 '));
  });
});

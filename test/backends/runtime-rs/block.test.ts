import * as assert from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { blockDeviceEntry, buildBlockDevice, checkBlockDevice, hostReadOnly } from '../../../src/backends/runtime-rs/block';
import { parseRuntimeRsConfig } from '../../../src/backends/runtime-rs/config';
import { VolumeError } from '../../../src/volumes/types';
import { mountInfo, recordingLog, volumeInput } from '../../support/volumes';
import { scratchDir } from '../../support/scratch';
import { LoopFixture } from '../../support/disks';

const DEFAULTS = parseRuntimeRsConfig(undefined, 'test');
const PLACE = { index: 1, driveId: '0123456789abcdef' };
const UNLIMITED = {
  bandwidth: { size: 0, one_time_burst: 0, refill_time: 1000 },
  ops: { size: 0, one_time_burst: 0, refill_time: 1000 },
};

describe('runtime-rs directvol (block.ts)', () => {
  let dir: string;
  let image: string;
  // Detaches only devices still over this suite's files (one a test's code freed may be another test's by now).
  const loops = new LoopFixture();

  before(() => {
    dir = scratchDir('block');
    image = path.join(dir, 'disk.img');
    fs.writeFileSync(image, Buffer.alloc(1024 * 1024));
  });
  /** A loop device over the test image (read-only with -r), detached after the suite. */
  const attach = (readOnly: boolean, file = image): string => loops.attach(file, readOnly);
  after(async () => {
    await loops.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('builds the virtio-blk-pci BlockDeviceConfigInfo with Kata defaults for a regular file', () => {
    const v = volumeInput(mountInfo('directvol', image, { fsType: 'xfs', options: ['bind', 'noatime'] }), { ociOptions: ['rbind'] });
    assert.deepStrictEqual(buildBlockDevice(v, DEFAULTS, PLACE), {
      destination: '/data',
      volumePath: '/kubelet/vol-1',
      volumeType: 'directvol',
      readOnly: false,
      spec: {
        drive_id: '0123456789abcdef',
        device_type: 'RawBlock',
        path_on_host: image,
        is_root_device: false,
        part_uuid: null,
        is_read_only: false,
        is_direct: false,
        no_drop: false,
        num_queues: 1,
        queue_size: 256,
        rate_limiter: UNLIMITED,
        use_shared_irq: null,
        use_generic_irq: null,
        use_pci_bus: true,
      },
      guest: { driver: 'blk', virtPath: '/dev/vdb' },
      // blk: the PCI path is known only after hot-plug, so no source.
      storage: { driver: 'blk', fs_type: 'xfs', options: ['noatime'] },
    });
  });

  it('follows the runtime settings: mmio driver, cache direct, rate limits, queues', () => {
    const cfg = parseRuntimeRsConfig({
      blockDeviceDriver: 'virtio-blk-mmio', blockDeviceCacheDirect: true,
      diskRateLimiterBwMaxRate: 1000000, diskRateLimiterBwOneTimeBurst: 500000,
      diskRateLimiterOpsMaxRate: 300, diskRateLimiterOpsOneTimeBurst: 30, numQueues: 2, queueSize: 128,
    }, 'test');
    const e = buildBlockDevice(volumeInput(mountInfo('directvol', image), { readOnly: true }), cfg, { index: 26, driveId: 'feedfacefeedface' });
    assert.deepStrictEqual(e.spec, {
      drive_id: 'feedfacefeedface',
      device_type: 'RawBlock',
      path_on_host: image,
      is_root_device: false,
      part_uuid: null,
      is_read_only: true,
      is_direct: true,
      no_drop: false,
      num_queues: 2,
      queue_size: 128,
      rate_limiter: {
        bandwidth: { size: 1000000, one_time_burst: 500000, refill_time: 1000 },
        ops: { size: 300, one_time_burst: 30, refill_time: 1000 },
      },
      use_shared_irq: null,
      use_generic_irq: null,
      use_pci_bus: null,
    });
    assert.deepStrictEqual(e.guest, { driver: 'mmioblk', virtPath: '/dev/vdaa' });
    assert.deepStrictEqual(e.storage, { driver: 'mmioblk', source: '/dev/vdaa', fs_type: 'ext4', options: ['ro'] });
  });

  it('uses the mountInfo options for storage even when empty, and binds the node for a /dev destination', () => {
    const v = volumeInput(mountInfo('directvol', image, { options: [] }), { destination: '/dev/xvdb', ociOptions: ['rbind', 'rw'], readOnly: true });
    const e = blockDeviceEntry(v, parseRuntimeRsConfig({ blockDeviceDriver: 'virtio-blk-mmio' }, 't'), PLACE, { kind: 'file', hostReadOnly: false });
    assert.deepStrictEqual(e.storage, { driver: 'mmioblk', source: '/dev/vdb', fs_type: 'bind', options: ['ro', 'rbind', 'ro'] });
  });

  const bad: Array<[string, () => string, RegExp]> = [
    ['a missing device', () => path.join(dir, 'nope.img'), /directvol device .*nope\.img does not exist.*create the image/],
    ['a directory', () => dir, /is a directory, not a regular file or block device/],
    ['a character device', () => '/dev/null', /\/dev\/null is a character device, not a regular file or block device/],
    ['a relative path', () => 'disk.img', /"disk.img" is not an absolute path/],
  ];
  for (const [what, device, re] of bad) {
    it(`refuses ${what}, naming the volume, mount, file and fix`, () => {
      assert.throws(() => buildBlockDevice(volumeInput(mountInfo('directvol', device())), DEFAULTS, PLACE), (e: Error) => {
        assert.ok(e instanceof VolumeError);
        assert.match(e.message, /^volume "\/kubelet\/vol-1": mount \/data: /);
        assert.match(e.message, re);
        assert.match(e.message, /mountInfo\.json\)/);
        assert.match(e.message, /katavol direct-volume add \/kubelet\/vol-1/);
        return true;
      });
    });
  }

  it('makes a block device the host reports read-only (BLKROGET) read-only, and logs it', function () {
    const loop = attach(true);
    assert.strictEqual(execFileSync('blockdev', ['--getro', loop], { encoding: 'utf8' }).trim(), '1');
    const log = recordingLog();
    const v = volumeInput(mountInfo('directvol', loop));
    assert.deepStrictEqual(checkBlockDevice(v, log), { kind: 'block', hostReadOnly: true });
    const e = buildBlockDevice(v, DEFAULTS, PLACE, log);
    assert.strictEqual(e.readOnly, true);
    assert.strictEqual(e.spec.path_on_host, loop);
    assert.strictEqual(e.spec.is_read_only, true);
    assert.deepStrictEqual(e.storage.options, ['ro']);
    const line = log.lines.find((l) => l.level === 'info' && /BLKROGET/.test(l.msg));
    assert.ok(line, JSON.stringify(log.lines));
    assert.strictEqual(line.meta?.device, loop);
  });

  it('keeps a writable block device writable', () => {
    const loop = attach(false);
    const e = buildBlockDevice(volumeInput(mountInfo('directvol', loop)), DEFAULTS, PLACE, recordingLog());
    assert.strictEqual(e.readOnly, false);
    assert.strictEqual(e.spec.is_read_only, false);
  });

  it('reads the read-only flag from /sys/dev/block/<major>:<minor>/ro, without running blockdev', () => {
    // Its own devices, so the case runs alone too (mocha -g) and in any order.
    const ro = attach(true);
    const rw = attach(false);
    for (const [dev, want] of [[ro, true], [rw, false]] as const) {
      const st = fs.statSync(dev);
      const savedPath = process.env.PATH;
      process.env.PATH = '/nonexistent'; // no blockdev to fall back on
      try {
        assert.strictEqual(hostReadOnly(dev, st.rdev), want, dev);
      } finally {
        process.env.PATH = savedPath;
      }
    }
  });

  it('asks blockdev when sysfs has no entry for the device number, and gives up quietly when that fails too', () => {
    // 0:0 is no block device's number: /sys/dev/block/0:0 does not exist.
    assert.strictEqual(hostReadOnly(attach(true), 0), true);
    assert.strictEqual(hostReadOnly(attach(false), 0), false);
    assert.strictEqual(hostReadOnly(path.join(dir, 'no-such-device'), 0), undefined);
  });

  it('says why a device cannot be looked at, and re-registers with the volume\'s filesystem (ext4 when it names none)', () => {
    const fail = (device: string, fsType: string): VolumeError => {
      try {
        checkBlockDevice(volumeInput(mountInfo('directvol', device, { fsType })));
      } catch (e) {
        return e as VolumeError;
      }
      throw new Error('accepted');
    };
    const e = fail(path.join(image, 'x'), 'xfs');
    assert.strictEqual(e.problem, `mount /data: cannot stat directvol device ${image}/x (ENOTDIR)`);
    assert.strictEqual(e.fix, 'fix the device and re-register the volume: katavol direct-volume add /kubelet/vol-1 \'{"volume-type":"directvol","device":"<image file or block device>","fstype":"xfs"}\'');
    assert.match(fail('disk.img', '').fix, /"fstype":"ext4"\}'$/);
  });

  it('refuses to write an image another process reads through a loop device', () => {
    const shared = path.join(dir, 'shared.img');
    fs.writeFileSync(shared, Buffer.alloc(1024 * 1024));
    attach(true, shared);
    assert.throws(() => checkBlockDevice(volumeInput(mountInfo('directvol', shared))), (e: Error) => e instanceof VolumeError && /loop/.test(e.message));
    assert.deepStrictEqual(checkBlockDevice(volumeInput(mountInfo('directvol', shared), { readOnly: true })), { kind: 'file', hostReadOnly: false });
  });

  it('warns and assumes writable when the read-only probe fails', () => {
    const log = recordingLog();
    const loop = attach(false);
    const facts = checkBlockDevice(volumeInput(mountInfo('directvol', loop)), log, () => undefined);
    assert.deepStrictEqual(facts, { kind: 'block', hostReadOnly: false });
    assert.ok(log.lines.some((l) => l.level === 'warn' && /BLKROGET/.test(l.msg)));
  });
});

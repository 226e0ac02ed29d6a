import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { parseRuntimeRsConfig } from '../../../src/backends/runtime-rs/config';
import { buildSpdkDevice, spdkPathOnHost } from '../../../src/backends/runtime-rs/spdk';
import { VolumeError } from '../../../src/volumes/types';
import { mountInfo, useVhostSocket, volumeInput } from '../../support/volumes';

const DEFAULTS = parseRuntimeRsConfig(undefined, 'test');
const PLACE = { index: 0, driveId: 'aaaaaaaaaaaaaaaa' };

describe('runtime-rs spdkvol (spdk.ts)', () => {
  let dir: string;
  let sock: string;
  const vhost = useVhostSocket('spdk');
  before(() => {
    ({ dir, sock } = vhost);
  });

  it('builds the vhost-user-blk config: spdk:// socket, device_type Spdk, MMIO, Kata defaults', () => {
    const v = volumeInput(mountInfo('spdkvol', sock, { fsType: 'ext4' }), { ociOptions: ['rbind', 'rw'] });
    assert.deepStrictEqual(buildSpdkDevice(v, DEFAULTS, PLACE), {
      destination: '/data',
      volumePath: '/kubelet/vol-1',
      volumeType: 'spdkvol',
      readOnly: false,
      spec: {
        drive_id: 'aaaaaaaaaaaaaaaa',
        device_type: 'Spdk',
        path_on_host: `spdk://${sock}`,
        is_root_device: false,
        part_uuid: null,
        is_read_only: false,
        is_direct: false,
        no_drop: false,
        num_queues: 1,
        queue_size: 256,
        rate_limiter: {
          bandwidth: { size: 0, one_time_burst: 0, refill_time: 1000 },
          ops: { size: 0, one_time_burst: 0, refill_time: 1000 },
        },
        use_shared_irq: null,
        use_generic_irq: null,
        use_pci_bus: null,
      },
      guest: { driver: 'blk', virtPath: '/dev/vda' },
      // SPDK storage always uses the virt path; empty mountInfo options fall back to the OCI ones.
      storage: { driver: 'blk', source: '/dev/vda', fs_type: 'ext4', options: ['rw'] },
    });
  });

  it('adds the spdk:// scheme exactly once', () => {
    assert.strictEqual(spdkPathOnHost('/var/tmp/vhost.0'), 'spdk:///var/tmp/vhost.0');
    assert.strictEqual(spdkPathOnHost('spdk:///var/tmp/vhost.0'), 'spdk:///var/tmp/vhost.0');
    const e = buildSpdkDevice(volumeInput(mountInfo('spdkvol', `spdk://${sock}`)), DEFAULTS, PLACE);
    assert.strictEqual(e.spec.path_on_host, `spdk://${sock}`);
  });

  it('carries num_queues / queue_size from metadata, and the read-only decision', () => {
    const info = mountInfo('spdkvol', sock, { metadata: { num_queues: '4', queue_size: '+128' }, options: ['noatime'] });
    const cfg = parseRuntimeRsConfig({ blockDeviceDriver: 'virtio-blk-mmio' }, 't');
    const e = buildSpdkDevice(volumeInput(info, { readOnly: true }), cfg, { index: 2, driveId: 'bbbbbbbbbbbbbbbb' });
    assert.strictEqual(e.spec.num_queues, 4);
    assert.strictEqual(e.spec.queue_size, 128);
    assert.strictEqual(e.spec.is_read_only, true);
    assert.deepStrictEqual(e.guest, { driver: 'mmioblk', virtPath: '/dev/vdc' });
    assert.deepStrictEqual(e.storage, { driver: 'mmioblk', source: '/dev/vdc', fs_type: 'ext4', options: ['noatime', 'ro'] });
  });

  it('uses the configured queue defaults when metadata has none', () => {
    const e = buildSpdkDevice(volumeInput(mountInfo('spdkvol', sock)), parseRuntimeRsConfig({ numQueues: 8, queueSize: 512 }, 't'), PLACE);
    assert.strictEqual(e.spec.num_queues, 8);
    assert.strictEqual(e.spec.queue_size, 512);
  });

  const badMeta: Array<[Record<string, string>, RegExp]> = [
    [{ num_queues: 'four' }, /metadata num_queues="four" is not a whole number from 1 to 65535/],
    [{ num_queues: '0' }, /metadata num_queues="0"/],
    [{ num_queues: '-1' }, /metadata num_queues="-1"/],
    [{ num_queues: '1.5' }, /metadata num_queues="1.5"/],
    [{ num_queues: ' 2' }, /metadata num_queues=" 2"/],
    [{ queue_size: '65536' }, /metadata queue_size="65536" is not a whole number from 1 to 65535/],
    [{ queue_size: '99999999999999999999' }, /metadata queue_size="99999999999999999999"/],
    [{ num_queues: '2 ' }, /metadata num_queues="2 "/],
  ];
  for (const [metadata, re] of badMeta) {
    it(`refuses metadata ${JSON.stringify(metadata)}`, () => {
      assert.throws(() => buildSpdkDevice(volumeInput(mountInfo('spdkvol', sock, { metadata })), DEFAULTS, PLACE), (e: Error) => {
        assert.ok(e instanceof VolumeError);
        assert.match(e.message, re);
        assert.match(e.message, /re-register the volume with a valid value/);
        return true;
      });
    });
  }

  it('takes the bounds themselves: 1 queue, and queues of 65535', () => {
    const e = buildSpdkDevice(volumeInput(mountInfo('spdkvol', sock, { metadata: { num_queues: '1', queue_size: '65535' } })), DEFAULTS, PLACE);
    assert.deepStrictEqual([e.spec.num_queues, e.spec.queue_size], [1, 65535]);
  });

  it('gives a valid example of the key it refuses', () => {
    for (const [key, example] of [['num_queues', '1'], ['queue_size', '256']]) {
      assert.throws(() => buildSpdkDevice(volumeInput(mountInfo('spdkvol', sock, { metadata: { [key]: 'x' } })), DEFAULTS, PLACE),
        (e: Error) => (e as VolumeError).fix === `re-register the volume with a valid value, e.g. "metadata":{"${key}":"${example}"}, or leave it out to use the configured default`);
    }
  });

  it('says what the path is when it is not a socket, and why it cannot be looked at', () => {
    const why = (device: string) => {
      try {
        buildSpdkDevice(volumeInput(mountInfo('spdkvol', device)), DEFAULTS, PLACE);
      } catch (e) {
        return (e as VolumeError).problem;
      }
      return 'accepted';
    };
    assert.strictEqual(why(dir), `mount /data: spdkvol socket ${dir} is a directory, not a unix socket`);
    assert.strictEqual(why('/dev/null'), 'mount /data: spdkvol socket /dev/null is not a socket, not a unix socket');
    const file = path.join(dir, 'plain');
    fs.writeFileSync(file, '');
    assert.strictEqual(why(path.join(file, 'vhost.0')), `mount /data: cannot stat spdkvol socket ${file}/vhost.0 (ENOTDIR)`);
  });

  it('suggests the spdkvol registration with the volume\'s own filesystem (ext4 when it names none)', () => {
    for (const [fsType, want] of [['xfs', 'xfs'], ['', 'ext4']]) {
      assert.throws(() => buildSpdkDevice(volumeInput(mountInfo('spoolvol', sock, { fsType })), DEFAULTS, PLACE),
        (e: Error) => (e as VolumeError).fix === `register the vhost-user socket as spdkvol instead: katavol direct-volume add /kubelet/vol-1 '{"volume-type":"spdkvol","device":"${sock}","fstype":"${want}"}'`);
    }
  });

  it('refuses a path that is a regular file, naming the socket and the fix', () => {
    const file = path.join(dir, 'not-a-socket');
    fs.writeFileSync(file, '');
    assert.throws(() => buildSpdkDevice(volumeInput(mountInfo('spdkvol', file)), DEFAULTS, PLACE), (e: Error) => {
      assert.ok(e instanceof VolumeError);
      assert.match(e.message, /^volume "\/kubelet\/vol-1": mount \/data: spdkvol socket .*not-a-socket is a regular file, not a unix socket/);
      assert.match(e.message, /start the SPDK vhost target/);
      return true;
    });
  });

  it('refuses a missing socket and a relative path', () => {
    assert.throws(() => buildSpdkDevice(volumeInput(mountInfo('spdkvol', path.join(dir, 'gone.sock'))), DEFAULTS, PLACE), /gone\.sock does not exist/);
    assert.throws(() => buildSpdkDevice(volumeInput(mountInfo('spdkvol', 'vhost.0')), DEFAULTS, PLACE), /"vhost.0" is not an absolute socket path/);
  });

  it('refuses spoolvol (Dragonball cannot open spool://) and says to register spdkvol', () => {
    assert.throws(() => buildSpdkDevice(volumeInput(mountInfo('spoolvol', sock)), DEFAULTS, PLACE), (e: Error) => {
      assert.ok(e instanceof VolumeError);
      assert.match(e.message, /spoolvol is not supported with Dragonball/);
      assert.match(e.message, /"volume-type":"spdkvol"/);
      return true;
    });
  });
});

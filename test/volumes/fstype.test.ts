import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { closest, detectFsType, fsTypeProblem, knownFilesystems, superblockMismatch } from '../../src/volumes/fstype';
import { Registry } from '../../src/volumes/registry';
import { VolumeError } from '../../src/volumes/types';
import { scratchDir, snapshot } from '../support/scratch';
import { imageFile, mkExt4, sh } from '../support/disks';

const MiB = 1 << 20;

describe('volumes/fstype', () => {
  let scratch: string;
  beforeEach(() => { scratch = scratchDir('fstype'); });
  afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('knows the kernel\'s block filesystems and tells nodev ones apart', () => {
    const k = knownFilesystems();
    for (const f of ['ext4', 'ext3', 'ext2', 'xfs', 'btrfs', 'vfat']) assert.ok(k.block.has(f), f);
    assert.ok(k.nodev.has('tmpfs') && k.nodev.has('proc'));
    assert.ok(!k.block.has('tmpfs'));
    assert.strictEqual(fsTypeProblem('ext4', k), undefined);
    assert.match(fsTypeProblem('ext5', k)!.problem, /fstype "ext5" is not a filesystem Linux knows/);
    assert.match(fsTypeProblem('ext5', k)!.fix, /did you mean "fstype":"ext[2-4]"\?/);
    assert.match(fsTypeProblem('xsf', k)!.fix, /did you mean "fstype":"xfs"\?/);
    assert.match(fsTypeProblem('tmpfs', k)!.problem, /never lives on a device/);
    assert.doesNotMatch(fsTypeProblem('zzzzzzzzz', k)!.fix, /did you mean/);
    assert.strictEqual(closest('lsit', ['list', 'inspect']), 'list');
  });

  it('reads ext2, ext3 and ext4 (by feature flags), xfs and btrfs magic from the superblock; a blank image holds none', () => {
    for (const t of ['ext2', 'ext3', 'ext4']) {
      const img = imageFile(scratch, `${t}.img`, 8 * MiB);
      sh(`mkfs.${t}`, ['-q', '-F', img]);
      assert.strictEqual(detectFsType(img), t);
    }
    // xfs and btrfs tools are not installed here: their superblocks' magic at the documented offsets.
    const xfs = imageFile(scratch, 'xfs.img', MiB);
    fs.writeFileSync(xfs, 'XFSB', { flag: 'r+' });
    assert.strictEqual(detectFsType(xfs), 'xfs');
    const btrfs = imageFile(scratch, 'btrfs.img', MiB);
    const fd = fs.openSync(btrfs, 'r+');
    fs.writeSync(fd, Buffer.from('_BHRfS_M'), 0, 8, 0x10040);
    fs.closeSync(fd);
    assert.strictEqual(detectFsType(btrfs), 'btrfs');
    assert.strictEqual(detectFsType(imageFile(scratch, 'blank.img', MiB)), undefined);
    assert.strictEqual(detectFsType(imageFile(scratch, 'tiny.img', 100)), undefined);
  });

  it('matches declared against found: ext4 mounts any ext, ext2 mounts ext3, nothing else crosses', () => {
    const e4 = mkExt4(scratch, 'e4.img', 8 * MiB);
    assert.strictEqual(superblockMismatch(e4, 'ext4'), undefined);
    const m = superblockMismatch(e4, 'xfs')!;
    assert.strictEqual(m.found, 'ext4');
    assert.match(m.problem, /declares fstype "xfs" but device .*e4\.img holds ext4/);
    assert.match(m.fix, /"fstype":"ext4"/);
    assert.ok(superblockMismatch(e4, 'ext3'));
    const e3 = imageFile(scratch, 'e3.img', 8 * MiB);
    sh('mkfs.ext3', ['-q', '-F', e3]);
    assert.strictEqual(superblockMismatch(e3, 'ext4'), undefined);
    assert.strictEqual(superblockMismatch(e3, 'ext2'), undefined);
    assert.strictEqual(superblockMismatch(e3, 'vfat'), undefined, 'a type katavol cannot recognise is not judged');
    assert.strictEqual(superblockMismatch(path.join(scratch, 'gone'), 'ext4'), undefined, 'a missing device is the device check\'s business');
    assert.strictEqual(superblockMismatch(imageFile(scratch, 'b.img'), 'ext4')!.found, 'none');
  });

  it('add refuses an unknown fstype and a device holding another filesystem, creating nothing; a blank device only gets a note', () => {
    const reg = new Registry(path.join(scratch, 'root'));
    const e4 = mkExt4(scratch, 'vol.img', 8 * MiB);
    const before = snapshot(scratch);
    const refused = (json: string, re: RegExp): void => {
      assert.throws(() => reg.add('/kubelet/fs', json), (e: unknown) => e instanceof VolumeError && re.test(e.message) && e.volumePath === '/kubelet/fs');
      assert.deepStrictEqual(snapshot(scratch), before);
    };
    refused(`{"volume-type":"directvol","device":"${e4}","fstype":"ext5"}`, /fstype "ext5" is not a filesystem Linux knows.*did you mean/);
    refused(`{"volume-type":"directvol","device":"${e4}","fstype":"xfs"}`, /declares fstype "xfs" but device .*vol\.img holds ext4/);
    const blank = imageFile(scratch, 'blank.img');
    const r = reg.addWithResult('/kubelet/blank', `{"volume-type":"directvol","device":"${blank}","fstype":"ext4"}`);
    assert.strictEqual(r.action, 'added');
    assert.ok(r.notes.some((n) => /holds no filesystem katavol recognises.*refused until it holds ext4/.test(n)), r.notes.join('\n'));
  });

  it('missing-device advice never creates or formats under /dev, and formats only a new file', () => {
    const reg = new Registry(path.join(scratch, 'root'));
    const err = (device: string, fstype = 'ext4'): VolumeError => {
      try {
        reg.add('/kubelet/x', JSON.stringify({ 'volume-type': 'directvol', device, fstype }));
      } catch (e) {
        return e as VolumeError;
      }
      assert.fail('expected a refusal');
    };
    for (const dev of ['/dev/sdz9', '/dev/disk/by-id/nope', '/sys/block/x', '/dev/../dev/sdz9']) {
      const e = err(dev);
      assert.doesNotMatch(e.fix, /truncate|mkfs/, dev);
      assert.match(e.fix, /lsblk/);
    }
    const img = path.join(scratch, 'new.img');
    assert.match(err(img).fix, new RegExp(`create a new image file there: truncate -s 1G ${img} && mkfs.ext4 ${img}`));
    assert.match(err(img, 'xfs').fix, /mkfs\.xfs/);
    assert.match(err(path.join(scratch, 'sub', 'n.img')).fix, /mkdir -p .*sub && truncate/);
  });
});

import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { closest, detectFsType, fsTypeCompatible, fsTypeProblem, knownFilesystems, superblockMismatch } from '../../src/volumes/fstype';
import { Registry } from '../../src/volumes/registry';
import { VolumeError } from '../../src/volumes/types';
import { scratchDir, snapshot } from '../support/scratch';
import { LoopFixture, imageFile, mkExt4, sh } from '../support/disks';

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
    assert.strictEqual(superblockMismatch(e3, 'xfs')!.found, 'ext3', 'only ext2 and ext4 take an ext3');
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

  it('reads every line of this host\'s /proc/filesystems, nodev ones apart', () => {
    const k = knownFilesystems();
    for (const line of fs.readFileSync('/proc/filesystems', 'utf8').split('\n').filter(Boolean)) {
      const [flag, name] = line.split('\t');
      if (flag === 'nodev') assert.ok(k.nodev.has(name) && !k.block.has(name), line);
      else assert.ok(k.block.has(name) && !k.nodev.has(name), line);
    }
  });

  it('knows mainline\'s block filesystems where this host has no module for them (a guest kernel may)', () => {
    const k = knownFilesystems({ procFilesystems: path.join(scratch, 'none'), modulesDir: path.join(scratch, 'none') });
    assert.deepStrictEqual([...k.block].sort(), ['bcachefs', 'btrfs', 'cramfs', 'erofs', 'exfat', 'ext2', 'ext3', 'ext4', 'f2fs', 'gfs2', 'hfs', 'hfsplus', 'iso9660',
      'jfs', 'minix', 'msdos', 'nilfs2', 'ntfs', 'ntfs3', 'ocfs2', 'reiserfs', 'romfs', 'squashfs', 'udf', 'ufs', 'vfat', 'xfs']);
    assert.strictEqual(k.nodev.size, 0);
  });

  it('adds the kernel\'s fs modules (plain or compressed, two directories deep), but not nodev ones', () => {
    const proc = path.join(scratch, 'filesystems');
    fs.writeFileSync(proc, 'nodev\tsysfs\nnodev\tnfs\n\text4\n\tfuseblk\n');
    const mods = path.join(scratch, 'fs');
    const files = ['zonefs.ko', 'my-fs2.ko.xz', 'nfs/nfs.ko.zst', 'a/b/deep_fs.ko.gz', 'a/b/c/deeper.ko', 'odd/foo.bar.ko', 'odd/x9.ko.bz2', 'odd/notes.txt', 'odd/.ko', 'ntfs3/ntfs3.ko'];
    for (const f of files) {
      fs.mkdirSync(path.dirname(path.join(mods, f)), { recursive: true });
      fs.writeFileSync(path.join(mods, f), '');
    }
    const k = knownFilesystems({ procFilesystems: proc, modulesDir: mods });
    for (const n of ['zonefs', 'my-fs2', 'deep_fs', 'fuseblk', 'ext4', 'ntfs3']) assert.ok(k.block.has(n), n);
    for (const n of ['nfs', 'sysfs', 'deeper', 'bar', 'foo.bar', 'x9', 'notes', '', 'odd', 'a']) assert.ok(!k.block.has(n), n);
    assert.deepStrictEqual([...k.nodev].sort(), ['nfs', 'sysfs']);
  });

  it('suggests a block filesystem within two edits, or one for a short word', () => {
    const k = knownFilesystems();
    const fix = (t: string): string => fsTypeProblem(t, k)!.fix;
    assert.strictEqual(fix('ext'), 'did you mean "fstype":"ext2"?');
    assert.strictEqual(fix('xt4'), 'did you mean "fstype":"ext4"?');
    assert.strictEqual(fix('Ext4x'), 'did you mean "fstype":"ext4"?');
    assert.strictEqual(fix('bterfs'), 'did you mean "fstype":"btrfs"?');
    assert.strictEqual(fix('brtfs'), 'did you mean "fstype":"btrfs"?', 'a swap of neighbours is one edit');
    assert.strictEqual(fix('rbtfs'), 'did you mean "fstype":"btrfs"?');
    assert.strictEqual(fix('btrsf'), 'did you mean "fstype":"btrfs"?');
    assert.strictEqual(fix('qz'), 'set "fstype" to the filesystem on the device, e.g. "ext4" (blkid -p <device> shows it)');
    assert.strictEqual(closest('e', ['abcde']), undefined);
    assert.strictEqual(closest('e', ['ef']), 'ef', 'one edit is allowed even for one letter');
    assert.strictEqual(closest('ab', ['abcd']), undefined);
    assert.strictEqual(closest('abcdef', ['abcdxy']), 'abcdxy');
    assert.strictEqual(closest('abcdef', ['abxyzf']), undefined);
    assert.strictEqual(closest('ba', ['ab']), 'ab');
    assert.strictEqual(closest('abc', ['abd', 'abc']), 'abc', 'the nearest wins');
    assert.strictEqual(closest('abc', ['abd', 'abe']), 'abd', 'the first of equals');
    assert.strictEqual(closest('abc', []), undefined);
    // A swap counts only when both characters cross, and as one edit.
    const names = ['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'vfat', 'f2fs'];
    assert.strictEqual(closest('tsrf', names), undefined);
    assert.strictEqual(closest('sert', names), undefined);
    assert.strictEqual(closest('sffs', names), 'xfs');
    assert.strictEqual(closest('fvr', names), undefined);
    assert.strictEqual(closest('rbtxy', ['btrfs']), undefined, 'a swap and two substitutions are three edits');
    assert.strictEqual(fsTypeProblem('tmpfs', k)!.problem, 'fstype "tmpfs" is a filesystem that never lives on a device (the kernel lists it as nodev)');
    assert.strictEqual(fix('tmpfs'), 'set "fstype" to the filesystem on the device, e.g. "ext4" (blkid -p <device> shows it)');
    assert.strictEqual(fsTypeProblem('ext5', k)!.problem, 'fstype "ext5" is not a filesystem Linux knows (not in /proc/filesystems, the kernel\'s fs modules or mainline\'s block filesystems)');
  });

  it('tells ext4 by its features alone: incompatible ones (extents) or read-only-compatible ones (huge_file)', () => {
    const inc = imageFile(scratch, 'inc.img', 8 * MiB);
    sh('mkfs.ext4', ['-q', '-F', '-O', '^huge_file,^dir_nlink,^extra_isize,^metadata_csum', inc]);
    assert.strictEqual(detectFsType(inc), 'ext4');
    const ro = imageFile(scratch, 'ro.img', 8 * MiB);
    sh('mkfs.ext2', ['-q', '-F', '-O', 'huge_file', ro]);
    assert.strictEqual(detectFsType(ro), 'ext4');
  });

  it('names squashfs, f2fs, iso9660 and swap by their magic, so a mismatch says what the device holds', () => {
    const magic = (name: string, at: number, bytes: Buffer): string => {
      const img = imageFile(scratch, name, MiB);
      const fd = fs.openSync(img, 'r+');
      fs.writeSync(fd, bytes, 0, bytes.length, at);
      fs.closeSync(fd);
      return img;
    };
    const f2 = Buffer.alloc(4);
    f2.writeUInt32LE(0xf2f52010);
    assert.strictEqual(detectFsType(magic('sq.img', 0, Buffer.from('hsqs'))), 'squashfs');
    assert.strictEqual(detectFsType(magic('f2.img', 1024, f2)), 'f2fs');
    assert.strictEqual(detectFsType(magic('iso.img', 32769, Buffer.from('CD001'))), 'iso9660');
    const swap = imageFile(scratch, 'swap.img', MiB);
    sh('mkswap', [swap]);
    assert.strictEqual(detectFsType(swap), 'swap');
    const m = superblockMismatch(swap, 'ext4')!;
    assert.deepStrictEqual(m, {
      found: 'swap',
      problem: `declares fstype "ext4" but device ${swap} holds swap`,
      fix: `point "device" at the ext4 image or disk, or correct "fstype" (blkid -p ${swap} shows what it holds)`,
    });
    const sq = magic('sq2.img', 0, Buffer.from('hsqs'));
    assert.strictEqual(superblockMismatch(sq, 'xfs')!.fix, 'register it with "fstype":"squashfs" (katavol direct-volume add), or point "device" at the xfs image');
  });

  it('leaves no file descriptor open however often it reads', () => {
    const img = mkExt4(scratch, 'fd.img', 8 * MiB);
    const open = (): number => fs.readdirSync('/proc/self/fd').length;
    const before = open();
    for (let i = 0; i < 20; i++) detectFsType(img);
    assert.strictEqual(open(), before);
  });

  it('which declared types mount which found ones', () => {
    for (const [declared, found, ok] of [
      ['ext4', 'ext4', true], ['ext4', 'ext3', true], ['ext4', 'ext2', true], ['ext3', 'ext3', true], ['ext2', 'ext3', true], ['xfs', 'xfs', true],
      ['ext3', 'ext2', false], ['ext3', 'ext4', false], ['ext2', 'ext4', false], ['ext4', 'xfs', false], ['xfs', 'ext4', false], ['ext2', 'xfs', false],
      ['xfs', 'ext3', false], ['btrfs', 'ext3', false],
    ] as const) {
      assert.strictEqual(fsTypeCompatible(declared, found), ok, `${declared} <- ${found}`);
    }
  });

  describe('on a block device', () => {
    const fx = new LoopFixture();
    afterEach(() => fx.cleanup());

    it('checks a block device\'s superblock like an image\'s; a character device or directory is not judged', () => {
      const dev = fx.attach(mkExt4(scratch, 'blk.img', 8 * MiB));
      assert.strictEqual(superblockMismatch(dev, 'ext4'), undefined);
      assert.strictEqual(superblockMismatch(dev, 'xfs')!.problem, `declares fstype "xfs" but device ${dev} holds ext4`);
      assert.strictEqual(superblockMismatch(dev, 'ext2')!.found, 'ext4', 'ext2 is checked too');
      assert.strictEqual(superblockMismatch(dev, 'btrfs')!.found, 'ext4', 'btrfs is checked too');
      assert.strictEqual(superblockMismatch('/dev/zero', 'ext4'), undefined);
      assert.strictEqual(superblockMismatch(scratch, 'ext4'), undefined);
    });
  });
});

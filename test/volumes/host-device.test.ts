import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import {
  LoopTable, blockDeviceSize, devNumber, devNumberOf, ext4Header, ext4Usage, findHostMounts, findTool, hasEffectiveCapability, hasExtSuperblock,
  isExtFs, loopDevicesOf, loopsBacking, mountedUsage, runTool, toolPath,
} from '../../src/volumes/host-device';
import { VolumeError, messageOf } from '../../src/volumes/types';
import { removeDir, scratchDir } from '../support/scratch';
import { LoopFixture, imageFile, mkExt4 } from '../support/disks';

describe('volumes/host-device tools', () => {
  let dir: string;
  beforeEach(() => { dir = scratchDir('tools'); });
  afterEach(() => removeDir(dir));

  it('finds a tool on the PATH of the environment it is given, read at the call, not at load', () => {
    const tool = path.join(dir, 'katavol-probe-tool');
    fs.writeFileSync(tool, '#!/bin/sh\necho probed\n', { mode: 0o755 });
    assert.strictEqual(findTool('katavol-probe-tool', { PATH: dir }), tool);
    assert.strictEqual(findTool('katavol-probe-tool', { PATH: '/nonexistent' }), undefined);
    // An empty PATH entry is not the current directory here.
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      assert.strictEqual(findTool('katavol-probe-tool', { PATH: '/nonexistent::/nonexistent2' }), undefined);
    } finally {
      process.chdir(cwd);
    }
    assert.strictEqual(runTool('/vol', 'katavol-probe-tool', [], 'probe', { PATH: dir }).stdout, 'probed\n');
  });

  it('looks in /usr/sbin and /sbin after the PATH, which a non-login shell may lack', () => {
    assert.strictEqual(toolPath({ PATH: '/opt/x' }), '/opt/x:/usr/sbin:/sbin:/usr/bin:/bin');
    assert.strictEqual(toolPath({}), '/usr/sbin:/sbin:/usr/bin:/bin', 'no PATH adds no empty entry (the current directory)');
    assert.strictEqual(runTool('/vol', 'sh', ['-c', 'echo ok'], 'dash', {}).stdout, 'ok\n');
    const found = findTool('losetup', { PATH: '' });
    assert.ok(found === '/usr/sbin/losetup' || found === '/sbin/losetup', `losetup found at ${found}`);
    const r = runTool('/vol', 'sh', ['-c', 'echo "$PATH"'], 'dash', { PATH: '/opt/x' });
    assert.strictEqual(r.stdout.trim(), '/opt/x:/usr/sbin:/sbin:/usr/bin:/bin');
  });

  it('a tool that is not installed is a VolumeError naming the package, with the spawn error as its cause', () => {
    let err: unknown;
    try {
      runTool('/kubelet/vol1', 'katavol-no-such-tool', [], 'katavol-pkg', { PATH: dir });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof VolumeError, `got ${messageOf(err)}`);
    assert.match(err.message, /^volume "\/kubelet\/vol1": cannot run katavol-no-such-tool: .*ENOENT.*; install katavol-pkg \(apt-get install katavol-pkg\)$/);
    assert.strictEqual((err.cause as NodeJS.ErrnoException).code, 'ENOENT');
  });
});

describe('volumes/host-device facts', () => {
  const MiB = 1 << 20;
  let dir: string;
  const fx = new LoopFixture();
  beforeEach(() => { dir = scratchDir('hostdev'); });
  afterEach(async () => {
    await fx.cleanup();
    removeDir(dir);
  });

  it('runs a tool with its status, output and trimmed error text; a tool killed by a signal has status 1', () => {
    const r = runTool('/vol', 'sh', ['-c', 'echo out; echo "  bad thing  " >&2; exit 3'], 'dash');
    assert.deepStrictEqual(r, { status: 3, stdout: 'out\n', stderr: 'bad thing', command: 'sh -c echo out; echo "  bad thing  " >&2; exit 3' });
    assert.strictEqual(runTool('/vol', 'sh', ['-c', 'kill -9 $$'], 'dash').status, 1);
  });

  it('reads major:minor of device nodes in glibc\'s encoding, large numbers included', () => {
    for (const [major, minor] of [[1, 3], [7, 0], [259, 256], [8, 255], [4095, 1048575], [300, 70000]]) {
      const node = path.join(dir, `n${major}-${minor}`);
      assert.strictEqual(spawnSync('mknod', [node, 'b', String(major), String(minor)]).status, 0);
      assert.strictEqual(devNumber(node), `${major}:${minor}`);
    }
    assert.strictEqual(devNumberOf(0n), '0:0');
  });

  it('a loop device: its size, and the loop devices over an image in number order with their read-only flag', () => {
    const img = mkExt4(dir, 'l.img', 16 * MiB);
    assert.deepStrictEqual(loopsBacking(img), []);
    const rw = fx.attach(img);
    const ro = fx.attach(img, true);
    assert.strictEqual(blockDeviceSize(rw), 16 * MiB);
    const num = (d: string): number => Number(/\d+$/.exec(d)![0]);
    const expected = [{ device: rw, readOnly: false }, { device: ro, readOnly: true }].sort((a, b) => num(a.device) - num(b.device));
    assert.deepStrictEqual(loopsBacking(img), expected);
    assert.deepStrictEqual(loopDevicesOf(img), expected.map((l) => l.device));
    assert.deepStrictEqual(LoopTable.lazy().backing(img), expected);
    assert.deepStrictEqual(loopsBacking(path.join(dir, 'none.img')), []);
  });

  it('a loop device over a deleted image is not taken for a new image at the same path', () => {
    const img = mkExt4(dir, 'd.img', 16 * MiB);
    fx.attach(img);
    fs.rmSync(img);
    mkExt4(dir, 'd.img', 16 * MiB);
    assert.deepStrictEqual(loopsBacking(img), []);
  });

  it('reads the loop table of a sysfs laid out as the kernel does: attached loopN only, sorted by number', () => {
    const sys = path.join(dir, 'sys');
    const img = imageFile(dir, 'x.img');
    const loop = (name: string, backing: string | undefined, ro = '0'): void => {
      fs.mkdirSync(path.join(sys, name, 'loop'), { recursive: true });
      if (backing !== undefined) fs.writeFileSync(path.join(sys, name, 'loop', 'backing_file'), `${backing}\n`);
      fs.writeFileSync(path.join(sys, name, 'ro'), `${ro}\n`);
    };
    loop('loop10', img, '1');
    loop('loop9', img);
    loop('loop2', img);
    loop('loop3', undefined); // being set up: no backing file yet
    loop('loop4', `${img} (deleted)`);
    loop('loopx', img);
    loop('xloop7', img);
    loop('sda', img);
    fs.mkdirSync(path.join(sys, 'loop5')); // detached: no loop/
    assert.deepStrictEqual(LoopTable.scan(sys).backing(img), [
      { device: '/dev/loop2', readOnly: false }, { device: '/dev/loop9', readOnly: false }, { device: '/dev/loop10', readOnly: true },
    ]);
    assert.deepStrictEqual(LoopTable.scan(path.join(dir, 'no-sysfs')).backing(img), []);
  });

  it('finds where a device is mounted, with the mount point unescaped, the source, fstype and a read-only superblock', () => {
    const dev = fx.attach(mkExt4(dir, 'm.img', 16 * MiB));
    const mnt = path.join(dir, 'with space\\and\ttab');
    fx.mount(dev, mnt, 'ro');
    const ns = fs.readlinkSync('/proc/self/ns/mnt');
    // Ours first; a namespace another suite made meanwhile may hold a copy too.
    const found = findHostMounts([dev]).filter((m) => m.ownNamespace);
    assert.deepStrictEqual(found, [{ pid: process.pid, ownNamespace: true, namespace: ns, mountPoint: mnt, fstype: 'ext4', source: dev, readOnly: true, device: dev }]);
    const usage = mountedUsage(found[0]);
    const s = fs.statfsSync(mnt);
    assert.deepStrictEqual(usage, { source: 'statfs', totalBytes: s.blocks * s.bsize, usedBytes: (s.blocks - s.bfree) * s.bsize, availableBytes: s.bavail * s.bsize, inodes: s.files, inodesFree: s.ffree });
    assert.ok(usage.usedBytes > 0 && usage.usedBytes < usage.totalBytes && usage.availableBytes < usage.totalBytes - usage.usedBytes, 'ext4 reserves blocks');
    assert.deepStrictEqual(findHostMounts([]), []);
  });

  it('reads an unmounted ext4\'s header and usage as df would; a device without one is refused naming it', () => {
    const img = mkExt4(dir, 'h.img', 16 * MiB);
    const h = ext4Header('/vol', img);
    assert.strictEqual(h.blockCount * h.blockSize, 16 * MiB);
    assert.ok(h.freeBlocks > h.reservedBlocks && h.reservedBlocks > 0 && h.freeBlocks < h.blockCount);
    assert.deepStrictEqual(ext4Usage({ blockSize: 4096, blockCount: 100, freeBlocks: 30, reservedBlocks: 5 }),
      { source: 'dumpe2fs', totalBytes: 409600, usedBytes: 286720, availableBytes: 102400 });
    assert.strictEqual(ext4Usage({ blockSize: 1024, blockCount: 100, freeBlocks: 3, reservedBlocks: 5 }).availableBytes, 0, 'reserved beyond free: none available');
    const blank = imageFile(dir, 'blank.img');
    assert.throws(() => ext4Header('/vol', blank), (e: unknown) => e instanceof VolumeError && e.volumePath === '/vol'
      && new RegExp(`^dumpe2fs -h ${blank} failed: dumpe2fs: Bad magic number in super-block while trying to open ${blank}$`).test(e.problem) && e.fix === `check that ${blank} holds an ext2/3/4 filesystem`);
  });

  it('tells an ext2/3/4 superblock by its magic, and ext filesystem names exactly', () => {
    assert.strictEqual(hasExtSuperblock(mkExt4(dir, 'e.img', 8 * MiB)), true);
    assert.strictEqual(hasExtSuperblock(imageFile(dir, 'z.img')), false);
    const half = imageFile(dir, 'half.img');
    fs.writeFileSync(half, Buffer.from([0x53, 0x00]), { flag: 'r+' });
    const fd = fs.openSync(half, 'r+');
    fs.writeSync(fd, Buffer.from([0x53, 0x00]), 0, 2, 1080);
    fs.closeSync(fd);
    assert.strictEqual(hasExtSuperblock(half), false);
    const other = imageFile(dir, 'other.img');
    const fd2 = fs.openSync(other, 'r+');
    fs.writeSync(fd2, Buffer.from([0x00, 0xef]), 0, 2, 1080);
    fs.closeSync(fd2);
    assert.strictEqual(hasExtSuperblock(other), false);
    assert.strictEqual(hasExtSuperblock(imageFile(dir, 'short.img', 1081)), false);
    const open = (): number => fs.readdirSync('/proc/self/fd').length;
    const before = open();
    for (let i = 0; i < 20; i++) hasExtSuperblock(half);
    assert.strictEqual(open(), before, 'no file descriptor left open');
    for (const t of ['ext2', 'ext3', 'ext4']) assert.strictEqual(isExtFs(t), true, t);
    for (const t of ['ext', 'ext5', 'xext4', 'ext44', 'xfs']) assert.strictEqual(isExtFs(t), false, t);
  });

  it('reads this process\'s effective capabilities', () => {
    // The tests run as root: they mount (CAP_SYS_ADMIN, 21) and make device nodes (CAP_MKNOD, 27); no capability has bit 63.
    assert.strictEqual(hasEffectiveCapability(21), true);
    assert.strictEqual(hasEffectiveCapability(27), true);
    assert.strictEqual(hasEffectiveCapability(0), true, 'CAP_CHOWN');
    assert.strictEqual(hasEffectiveCapability(63), false);
  });
});

describe('volumes/types messageOf', () => {
  it('renders any thrown value: an Error by its message, anything else by its string form', () => {
    assert.strictEqual(messageOf(new RangeError('out of range')), 'out of range');
    assert.strictEqual(messageOf('plain text'), 'plain text');
    assert.strictEqual(messageOf(42), '42');
    assert.strictEqual(messageOf(undefined), 'undefined');
    assert.strictEqual(messageOf(null), 'null');
    assert.strictEqual(messageOf({ message: 'an error from another realm' }), 'an error from another realm');
  });

  it('a VolumeError keeps what failed underneath as its cause, and has none when nothing did', () => {
    const under = new Error('EACCES: permission denied');
    const e = new VolumeError('/v', 'cannot read it', 'fix it', '/f', under);
    assert.strictEqual(e.cause, under);
    assert.strictEqual(e.message, 'volume "/v": cannot read it (/f); fix it');
    assert.ok(!('cause' in new VolumeError('/v', 'p', 'f')));
  });
});

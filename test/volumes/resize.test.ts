import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import type { Registry } from '../../src/volumes/registry';
import { formatSize, mountAndRun, parseSize, resizeVolume } from '../../src/volumes/resize';
import { findHostMounts, runTool } from '../../src/volumes/host-device';
import { VolumeError } from '../../src/volumes/types';
import { useScratchRegistry } from '../support/volumes';
import { LoopFixture, canResizeOnline, ext4Bytes, mkExt4, sh, withTmpfs } from '../support/disks';

const MiB = 1 << 20;
const VOL = '/kubelet/resize-me';

function refuses(fn: () => unknown, problem: RegExp): VolumeError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof VolumeError, String(e));
    assert.match(e.message, problem);
    assert.strictEqual(e.volumePath, VOL);
    return e;
  }
  assert.fail('expected a refusal');
}

// Each test's scratch registry and ext4 image, set by withImage's hooks in every block below.
let scratch: string;
let reg: Registry;
let img: string;
const loops = new LoopFixture();
const add = (device: string, fstype = 'ext4'): void => void reg.add(VOL, JSON.stringify({ 'volume-type': 'directvol', device, fstype }));

/** Before each test of the calling block: a scratch registry and an unregistered ext4 image of imageBytes. */
function withImage(imageBytes: number): void {
  const fx = useScratchRegistry('resize', 'root', loops);
  beforeEach(() => {
    ({ scratch, reg } = fx);
    img = mkExt4(scratch, 'vol.img', imageBytes);
  });
}

describe('volumes/resize', () => {
  withImage(32 * MiB);

  it('parses sizes as bytes or binary units and formats them back', () => {
    assert.deepStrictEqual(['1073741824', '10G', '512MiB', '4k', '1Ti'].map(parseSize), [2 ** 30, 10 * 2 ** 30, 512 * MiB, 4096, 2 ** 40]);
    assert.deepStrictEqual(['', '-1', '1.5G', 'G', '10X', '1iB'].map(parseSize), [undefined, undefined, undefined, undefined, undefined, undefined]);
    assert.strictEqual(formatSize(96 * MiB), '96 MiB');
    assert.strictEqual(formatSize(1000), '1000 bytes');
  });

  it('grows an unmounted ext4 image and its filesystem, keeping the data (checked with dumpe2fs, debugfs, e2fsck)', () => {
    fs.writeFileSync(path.join(scratch, 'payload'), 'hello katavol\n');
    sh('debugfs', ['-w', '-R', `write ${path.join(scratch, 'payload')} payload`, img]);
    add(img);
    assert.strictEqual(ext4Bytes(img), 32 * MiB);
    const r = resizeVolume(reg, VOL, 96 * MiB);
    assert.strictEqual(r.filesystem, 'grown-offline');
    assert.strictEqual(fs.statSync(img).size, 96 * MiB);
    assert.strictEqual(ext4Bytes(img), 96 * MiB);
    assert.strictEqual(sh('debugfs', ['-R', 'cat /payload', img]), 'hello katavol\n');
    sh('e2fsck', ['-f', '-n', img]); // throws on a non-zero exit
    assert.match(r.summary, /32 MiB -> 96 MiB; ext4 filesystem grown/);
  });

  it('resizing to the current size still grows a filesystem smaller than its file', () => {
    add(img);
    fs.truncateSync(img, 48 * MiB); // as after an earlier, interrupted resize
    resizeVolume(reg, VOL, 48 * MiB);
    assert.strictEqual(ext4Bytes(img), 48 * MiB);
  });

  it('never shrinks', () => {
    add(img);
    refuses(() => resizeVolume(reg, VOL, 16 * MiB), /smaller than the current 33554432 bytes.*never shrinks/);
    assert.strictEqual(fs.statSync(img).size, 32 * MiB);
    assert.strictEqual(ext4Bytes(img), 32 * MiB);
  });

  it('refuses while a VM sandbox uses the volume (recorded by a VM backend or by Kata itself), not for runc users', () => {
    add(img);
    reg.recordSandbox(VOL, 'pod-a', 'runtime-rs');
    refuses(() => resizeVolume(reg, VOL, 64 * MiB), /in use by VM sandbox pod-a \(runtime-rs\)/);
    reg.releaseSandbox(VOL, 'pod-a');
    fs.writeFileSync(path.join(reg.entryDir(VOL), 'kata-sandbox'), '');
    refuses(() => resizeVolume(reg, VOL, 64 * MiB), /kata-sandbox \(recorded by Kata\)/);
    assert.strictEqual(fs.statSync(img).size, 32 * MiB);
    fs.rmSync(path.join(reg.entryDir(VOL), 'kata-sandbox'));
    reg.recordSandbox(VOL, 'host-pod', 'runc');
    assert.strictEqual(resizeVolume(reg, VOL, 64 * MiB).newSize, 64 * MiB);
  });

  it('grows only the file for a non-ext filesystem and says so', () => {
    const raw = path.join(scratch, 'raw.img');
    fs.writeFileSync(raw, '');
    fs.truncateSync(raw, 8 * MiB);
    add(raw, 'xfs');
    const r = resizeVolume(reg, VOL, 16 * MiB);
    assert.strictEqual(r.filesystem, 'not-ext');
    assert.strictEqual(fs.statSync(raw).size, 16 * MiB);
    assert.match(r.summary, /xfs filesystem was not grown/);
  });

  it('refuses, before changing anything, an ext4 fstype without an ext4 superblock, a block device and other volume types', () => {
    const raw = path.join(scratch, 'raw.img');
    fs.writeFileSync(raw, '');
    fs.truncateSync(raw, 8 * MiB);
    add(raw);
    refuses(() => resizeVolume(reg, VOL, 16 * MiB), /no ext2\/3\/4 superblock/);
    assert.strictEqual(fs.statSync(raw).size, 8 * MiB);
    add('/dev/loop0');
    refuses(() => resizeVolume(reg, VOL, 16 * MiB), /is a block device, not an image file/);
    reg.add(VOL, '{"volume-type":"vfiovol","device":"0000:3b:00.1","fstype":"ext4"}');
    refuses(() => resizeVolume(reg, VOL, 16 * MiB), /is a vfiovol volume/);
  });

  // Which of the next cases runs depends on this host: online growth needs CAP_SYS_RESOURCE.
  const unchangedAt = (loop: string, bytes: number): void => {
    assert.strictEqual(fs.statSync(img).size, bytes, 'image file unchanged');
    assert.strictEqual(loops.loopSizeBytes(loop), bytes, 'loop device unchanged');
    assert.strictEqual(ext4Bytes(loop), bytes, 'filesystem unchanged');
  };

  it('without CAP_SYS_RESOURCE: refuses a mounted volume (here and in another mount namespace) before changing anything, saying what to do', async function () {
    if (canResizeOnline()) this.skip(); // this host has the capability: the growth cases below ran instead
    add(img);
    const loop = loops.attach(img);
    loops.mount(loop, path.join(scratch, 'mnt'));
    let e = refuses(() => resizeVolume(reg, VOL, 64 * MiB), /is mounted \(\/dev\/loop\d+ at .*\/mnt\) and growing a mounted ext4 needs CAP_SYS_RESOURCE/);
    assert.match(e.fix, /nothing was changed; run the resize as root where CAP_SYS_RESOURCE .* or stop the container using the volume and resize it offline/);
    assert.doesNotMatch(e.message, /nsenter|mkfs/);
    unchangedAt(loop, 32 * MiB);

    const loop2 = loops.attach(mkExt4(scratch, 'other.img', 32 * MiB));
    reg.add(VOL, JSON.stringify({ 'volume-type': 'directvol', device: path.join(scratch, 'other.img'), fstype: 'ext4' }));
    const pid = await loops.mountInOtherNamespace(loop2, path.join(scratch, 'ns-mnt'));
    e = refuses(() => resizeVolume(reg, VOL, 64 * MiB), new RegExp(`mount namespace of pid ${pid}\\) and growing a mounted ext4 needs CAP_SYS_RESOURCE`));
    assert.strictEqual(fs.statSync(path.join(scratch, 'other.img')).size, 32 * MiB);
    assert.strictEqual(loops.loopSizeBytes(loop2), 32 * MiB);
  });

  it('with CAP_SYS_RESOURCE: grows a mounted ext4 online through its loop device', function () {
    if (!canResizeOnline()) this.skip(); // this host lacks the capability: the refusal case above ran instead
    add(img);
    const loop = loops.attach(img);
    loops.mount(loop, path.join(scratch, 'mnt'));
    reg.recordSandbox(VOL, 'runc-pod', 'runc');
    const r = resizeVolume(reg, VOL, 64 * MiB);
    assert.strictEqual(r.filesystem, 'grown-online');
    const s = fs.statfsSync(path.join(scratch, 'mnt'));
    assert.ok(s.blocks * s.bsize > 48 * MiB, 'mounted filesystem grew');
    assert.strictEqual(fs.statSync(img).size, 64 * MiB);
    assert.strictEqual(loops.loopSizeBytes(loop), 64 * MiB, 'losetup -c made the loop device see the new size');
  });

  it('with CAP_SYS_RESOURCE: grows a mount that only exists in a container\'s mount namespace, leaving no mount or directory behind', async function () {
    if (!canResizeOnline()) this.skip(); // this host lacks the capability: the refusal case above ran instead
    add(img);
    const loop = loops.attach(img);
    const nsMnt = path.join(scratch, 'ns-mnt');
    const pid = await loops.mountInOtherNamespace(loop, nsMnt);
    assert.ok(!fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(nsMnt), 'not visible here');
    const tmpdir = path.join(scratch, 'tmp');
    fs.mkdirSync(tmpdir);
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = tmpdir;
    let summary: string;
    try {
      summary = resizeVolume(reg, VOL, 64 * MiB).summary;
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
    }
    assert.match(summary, new RegExp(`in the mount namespace of pid ${pid}`));
    const s = fs.statfsSync(path.join(`/proc/${pid}/root`, nsMnt));
    assert.ok(s.blocks * s.bsize > 48 * MiB, 'the container sees the filesystem grown');
    assert.ok(!fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(tmpdir), 'no temporary mount here');
    assert.deepStrictEqual(fs.readdirSync(tmpdir), [], 'temporary directory removed');
  });

  it('the online mechanism, on any host: in katavol\'s private namespace resize2fs finds the container\'s filesystem mounted and takes the online path; outside it cannot even open the device', async () => {
    add(img);
    const loop = loops.attach(img);
    await loops.mountInOtherNamespace(loop, path.join(scratch, 'ns-mnt'));
    fs.truncateSync(img, 64 * MiB);
    sh('losetup', ['-c', loop]);
    const outside = runTool(VOL, 'resize2fs', [loop], 'e2fsprogs');
    assert.notStrictEqual(outside.status, 0);
    assert.match(outside.stderr, /Device or resource busy/, 'offline resizing of a filesystem mounted elsewhere is impossible, not merely avoided');
    const tmpdir = path.join(scratch, 'tmp');
    fs.mkdirSync(tmpdir);
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = tmpdir;
    let inside;
    try {
      inside = mountAndRun(VOL, findHostMounts([loop])[0], ['resize2fs', loop]);
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
    }
    assert.match(inside.stdout + inside.stderr, new RegExp(`Filesystem at ${loop} is mounted on ${tmpdir}/katavol-resize-\\w+; on-line resizing required`));
    if (canResizeOnline()) assert.strictEqual(inside.status, 0, inside.stderr);
    else assert.match(inside.stderr, /Permission denied|Operation not permitted/, 'the kernel refuses EXT4_IOC_RESIZE_FS without CAP_SYS_RESOURCE');
    assert.deepStrictEqual(fs.readdirSync(tmpdir), [], 'temporary directory removed');
    assert.ok(!fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(tmpdir), 'the extra mount lived only in the private namespace');
  });

  it('refuses a volume mounted only read-only, and a growth its host file system has no room for, before changing anything', async () => {
    add(img);
    const loop = loops.attach(img);
    await loops.mountInOtherNamespace(loop, path.join(scratch, 'ro-mnt'), ['-o', 'ro']);
    const e = refuses(() => resizeVolume(reg, VOL, 64 * MiB), /is mounted read-only .*cannot be grown online/);
    assert.match(e.fix, /nothing was changed/);
    unchangedAt(loop, 32 * MiB);
    await loops.cleanup();

    refuses(() => resizeVolume(reg, VOL, 2 ** 50), /growing .*vol\.img by .* needs that much free space on its file system, which has .* available/);
    assert.strictEqual(fs.statSync(img).size, 32 * MiB);
    assert.strictEqual(ext4Bytes(img), 32 * MiB);
  });
});

describe('volumes/resize: every refusal as the user reads it, and what is left as it was', () => {
  withImage(16 * MiB);

  it('sizes: surrounding blanks allowed, binary units in either case, unsafe integers refused; formatted in the largest whole unit', () => {
    assert.deepStrictEqual([' 10G ', '2 k', '3MIB', '1kb', '5p', '0'].map(parseSize), [10 * 2 ** 30, 2048, 3 * MiB, 1024, 5 * 2 ** 50, 0]);
    assert.deepStrictEqual(['8P', '9007199254740993', '1 0G', '1GiBs'].map(parseSize), [undefined, undefined, undefined, undefined]);
    const cases: Array<[number, string]> = [
      [0, '0 bytes'], [1023, '1023 bytes'], [1024, '1 KiB'], [1536, '1536 bytes'], [3 * MiB, '3 MiB'], [1.5 * 2 ** 30, '1536 MiB'],
      [2 ** 30, '1 GiB'], [2 ** 40, '1 TiB'], [2 ** 50, '1024 TiB'], [2 ** 40 + 2 ** 30, '1025 GiB'],
    ];
    for (const [n, text] of cases) assert.strictEqual(formatSize(n), text, String(n));
  });

  it('reports what it did: sizes, loop devices and one summary line', () => {
    add(img);
    const loop = loops.attach(img);
    const r = resizeVolume(reg, VOL, 24 * MiB);
    assert.deepStrictEqual({ ...r, summary: undefined }, { volumePath: VOL, device: img, oldSize: 16 * MiB, newSize: 24 * MiB, loopDevices: [loop], filesystem: 'grown-offline', summary: undefined });
    assert.strictEqual(r.summary, `resized direct volume ${VOL}: ${img} 16 MiB -> 24 MiB; ext4 filesystem grown to fill it`);
    assert.strictEqual(loops.loopSizeBytes(loop), 24 * MiB, 'the loop device sees the new size');
    assert.strictEqual(ext4Bytes(loop), 24 * MiB, 'grown through the loop device');
  });

  it('refusals name the volume, the entry and the fix, and change nothing', () => {
    const expect = (problem: string, fix: string): void => {
      const before = fs.statSync(img).size;
      const e = refuses(() => resizeVolume(reg, VOL, 32 * MiB), /./);
      assert.deepStrictEqual([e.problem, e.fix, e.file], [problem, fix, reg.entryDir(VOL)]);
      assert.strictEqual(fs.statSync(img).size, before);
    };
    reg.add(VOL, '{"volume-type":"vfiovol","device":"0000:3b:00.1","fstype":"ext4"}');
    expect('is a vfiovol volume; katavol resizes directvol volumes backed by an image file', 'grow the device with its own tools');
    add('/dev/loop0');
    expect('device /dev/loop0 is a block device, not an image file', 'grow the block device with its own tools (e.g. lvextend), then resize2fs it');
    add(img);
    reg.recordSandbox(VOL, 'vm-a', 'runtime-rs');
    fs.writeFileSync(path.join(reg.entryDir(VOL), 'vm-b'), '');
    expect('is in use by VM sandbox vm-a (runtime-rs), vm-b (recorded by Kata); a running VM does not see its disk grow and Kata\'s agent cannot resize it', 'stop those sandboxes first, then resize');
    reg.releaseSandbox(VOL, 'vm-a');
    reg.releaseSandbox(VOL, 'vm-b');
    const e = refuses(() => resizeVolume(reg, VOL, 8 * MiB), /never shrinks/);
    assert.deepStrictEqual([e.problem, e.fix], [`new size 8388608 is smaller than the current 16777216 bytes of ${img}; katavol never shrinks a volume`, 'give a size of at least 16777216']);
    const raw = path.join(scratch, 'raw.img');
    fs.writeFileSync(raw, Buffer.alloc(MiB));
    add(raw);
    const s = refuses(() => resizeVolume(reg, VOL, 2 * MiB), /superblock/);
    assert.deepStrictEqual([s.problem, s.fix], [`fstype is ext4 but ${raw} has no ext2/3/4 superblock`, `correct "fstype" with katavol direct-volume add (blkid -p ${raw} shows what it holds)`]);
    assert.strictEqual(fs.statSync(raw).size, MiB);
    add(img);
    fs.rmSync(img);
    const m = refuses(() => resizeVolume(reg, VOL, 32 * MiB), /cannot be read/);
    assert.deepStrictEqual([m.problem, m.fix], [`device ${img} cannot be read: ENOENT: no such file or directory, stat '${img}'`, 'restore the image file or register the volume again']);
    assert.strictEqual((m.cause as NodeJS.ErrnoException).code, 'ENOENT');
  });

  it('refuses an image in use as a swap file, saying to swapoff first', function () {
    const swap = path.join(scratch, 'swap.img');
    fs.writeFileSync(swap, Buffer.alloc(16 * MiB), { mode: 0o600 });
    add(swap, 'xfs');
    sh('mkswap', [swap]);
    const on = spawnSync('swapon', [swap], { encoding: 'utf8' });
    if (on.status !== 0) return this.skip(); // swapon not permitted in this sandbox
    try {
      const e = refuses(() => resizeVolume(reg, VOL, 32 * MiB), /swap/);
      assert.strictEqual(e.problem, `image "${swap}" is in use on the host: it is in use as a swap file (/proc/swaps); a read-write volume needs the device to itself: two kernels mounting one filesystem corrupt it; katavol does not resize a device something else builds on`);
      assert.strictEqual(e.fix, `swapoff ${swap} first; then resize again`);
      assert.strictEqual(fs.statSync(swap).size, 16 * MiB);
    } finally {
      spawnSync('swapoff', [swap]);
    }
  });

  it('refuses an image that several things build on, giving every fix', function () {
    add(img);
    const a = loops.attach(img);
    const b = loops.attach(img);
    try {
      loops.swapOn(a);
      loops.swapOn(b);
    } catch {
      return this.skip(); // swapon not permitted in this sandbox
    }
    const e = refuses(() => resizeVolume(reg, VOL, 32 * MiB), /in use as swap/);
    const fixes = e.fix.split('; ');
    assert.strictEqual(fixes.pop(), 'then resize again');
    assert.deepStrictEqual(fixes.sort(), [a, b].sort().map((l) => `swapoff ${l} first, then detach it (losetup -d ${l})`));
    assert.strictEqual(fs.statSync(img).size, 16 * MiB);
  });

  it('refuses a filesystem that e2fsck cannot repair unattended (exit 4), checked through its loop device, before growing anything', () => {
    add(img);
    sh('debugfs', ['-w', '-R', 'clri <2>', img]); // the root directory's inode, zeroed
    const loop = loops.attach(img);
    const e = refuses(() => resizeVolume(reg, VOL, 32 * MiB), /e2fsck -f -p/);
    assert.match(e.problem, new RegExp(`^e2fsck -f -p ${loop} found errors it could not fix \\(exit 4\\): .*UNEXPECTED INCONSISTENCY`, 's'));
    assert.strictEqual(e.fix, `repair it with e2fsck -f ${loop}, then resize again`);
    assert.strictEqual(fs.statSync(img).size, 16 * MiB);
    assert.strictEqual(loops.loopSizeBytes(loop), 16 * MiB);
  });

  it('mounted: refuses read-only mounts and, without CAP_SYS_RESOURCE, read-write ones, in words that say nothing was changed', async function () {
    add(img);
    const loop = loops.attach(img);
    const pid = await loops.mountInOtherNamespace(loop, path.join(scratch, 'ro-mnt'), ['-o', 'ro']);
    const pid2 = await loops.mountInOtherNamespace(loop, path.join(scratch, 'ro-mnt2'), ['-o', 'ro']);
    const ro = refuses(() => resizeVolume(reg, VOL, 32 * MiB), /read-only/);
    const at = (dir: string, p: number): string => `${loop} at ${path.join(scratch, dir)} in the mount namespace of pid ${p}`;
    assert.strictEqual(ro.problem, `is mounted read-only (${[at('ro-mnt', pid), at('ro-mnt2', pid2)].sort().join(', ')}); a read-only filesystem cannot be grown online`);
    assert.strictEqual(ro.fix, 'nothing was changed; stop the containers using it and resize it offline');
    if (canResizeOnline()) return; // the refusal below is for hosts without the capability
    const rw = mkExt4(scratch, 'rw.img', 16 * MiB);
    add(rw);
    const loop2 = loops.attach(rw);
    loops.mount(loop2, path.join(scratch, 'rw-mnt'));
    const cap = refuses(() => resizeVolume(reg, VOL, 32 * MiB), /CAP_SYS_RESOURCE/);
    assert.strictEqual(cap.problem, `is mounted (${loop2} at ${path.join(scratch, 'rw-mnt')}) and growing a mounted ext4 needs CAP_SYS_RESOURCE, which this process does not have (CapEff in /proc/self/status)`);
    assert.strictEqual(cap.fix, 'nothing was changed; run the resize as root where CAP_SYS_RESOURCE is not dropped (on the host, not inside a restricted container), or stop the container using the volume and resize it offline');
    assert.strictEqual(fs.statSync(rw).size, 16 * MiB);
  });

  it('an entry without a filesystem type: only the file grows, and the summary says so', () => {
    const raw = path.join(scratch, 'raw.img');
    fs.writeFileSync(raw, Buffer.alloc(MiB));
    add(raw, 'xfs');
    fs.writeFileSync(reg.mountInfoFile(VOL), JSON.stringify({ 'volume-type': 'directvol', device: raw, fstype: '' }));
    const r = resizeVolume(reg, VOL, 2 * MiB);
    assert.deepStrictEqual([r.filesystem, r.summary], ['not-ext', `resized direct volume ${VOL}: ${raw} 1 MiB -> 2 MiB; no fstype, so no filesystem was grown`]);
    assert.strictEqual(fs.statSync(raw).size, 2 * MiB);
    const x = resizeVolume(reg, VOL, 2 * MiB);
    assert.strictEqual(x.summary, `resized direct volume ${VOL}: ${raw} 2 MiB -> 2 MiB; no fstype, so no filesystem was grown`);
  });

  it('needs free space on the image\'s file system for the growth only (not for the whole new size)', () => {
    const small = path.join(scratch, 'small');
    withTmpfs(small, () => {
      const vol = path.join(small, 'vol.img');
      fs.writeFileSync(vol, Buffer.alloc(12 * MiB));
      add(vol, 'xfs');
      // 12 MiB used of 24: growing by 8 fits, by 16 does not.
      const e = refuses(() => resizeVolume(reg, VOL, 28 * MiB), /free space/);
      assert.match(e.problem, new RegExp(`^growing ${vol} by 16 MiB needs that much free space on its file system, which has [0-9]+ (KiB|bytes|MiB) available$`));
      assert.strictEqual(e.fix, `nothing was changed; free space there (df ${small}) or choose a smaller size`);
      assert.strictEqual(fs.statSync(vol).size, 12 * MiB);
      assert.strictEqual(resizeVolume(reg, VOL, 20 * MiB).newSize, 20 * MiB);
    }, 'size=24m');
  });

  it('mountAndRun: mounts the device once more in a private namespace (gone afterwards), and reports a mount that fails', async () => {
    add(img);
    const loop = loops.attach(img);
    await loops.mountInOtherNamespace(loop, path.join(scratch, 'ns-mnt'));
    const [m] = findHostMounts([loop]);
    const tmpdir = path.join(scratch, 'tmp');
    fs.mkdirSync(tmpdir);
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = tmpdir;
    try {
      const probe = mountAndRun(VOL, m, []);
      assert.deepStrictEqual([probe.status, probe.stdout, probe.stderr], [0, '', '']);
      const inside = mountAndRun(VOL, m, ['cat', '/proc/self/mountinfo']);
      assert.strictEqual(inside.status, 0, inside.stderr);
      assert.match(inside.stdout, new RegExp(`^.* ${tmpdir}/katavol-resize-\\w+ .* - ext4 ${loop} .*$`, 'm'), 'the command ran where the device is mounted again');
      const bad = mountAndRun(VOL, { ...m, fstype: 'xfs' }, ['true']);
      assert.notStrictEqual(bad.status, 0);
      assert.match(bad.stderr, /mount/);
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
    }
    assert.deepStrictEqual(fs.readdirSync(tmpdir), [], 'temporary directories removed');
  });
});

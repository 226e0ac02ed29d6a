// Devices in use on the host are refused before Create (both backends), warned about by `add`, and
// refused by `resize` where growing them underneath their user would be wrong. Real loop devices,
// mounts (ours and another mount namespace's), swap and loop-over-loop; holders through a real
// device-mapper target where the kernel has one, else through a sysfs tree laid out as the kernel does.
import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync, spawnSync } from 'child_process';
import { describeUses, fixOf, hostUsesOf, refuseHostUse } from '../../src/volumes/in-use';
import { LoopTable } from '../../src/volumes/host-device';
import { Registry } from '../../src/volumes/registry';
import { resizeVolume } from '../../src/volumes/resize';
import { VolumeError } from '../../src/volumes/types';
import { RuncBackend } from '../../src/backends/runc';
import { checkBlockDevice } from '../../src/backends/runtime-rs/block';
import { volumeInput } from '../support/volumes';
import { mountInfo, quietLog as quiet } from '../support/volumes';
import { KATAVOL } from '../support/containerd';
import { scratchDir, snapshot } from '../support/scratch';
import { LoopFixture, mkExt4 } from '../support/disks';

const VOL = '/kubelet/in-use';
const MiB = 1 << 20;

/** A text without what copies of a mount in other mount namespaces add to it (see COPIES). */
const withoutCopies = (text: string): string => text
  .replace(/, and the same mount is in \d+ other mount namespaces? \(pids? [^)]*\)/g, '')
  .replace(/, and in the other namespaces? too \(nsenter -t <pid> -m umount [^)]*, or stop what runs there\)/g, '');
/** A regular expression matching `text` literally. */
const literal = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** What a mount's copies in other mount namespaces add to its description. */
const COPIES = '(, and the same mount is in \\d+ other mount namespaces? \\(pids? [^)]*\\))?';

function refusal(fn: () => unknown): VolumeError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof VolumeError, String(e));
    return e;
  }
  assert.fail('expected a refusal');
}

describe('volumes/in-use: devices the host uses are refused', function () {
  let scratch: string;
  let img: string;
  const fx = new LoopFixture();
  const check = (device: string, readOnly: boolean) => () => refuseHostUse({ volumePath: VOL, device, readOnly, file: '/x/mountInfo.json' });

  beforeEach(() => {
    scratch = scratchDir('in-use');
    img = mkExt4(scratch, 'vol.img', 16 * MiB);
  });
  afterEach(async () => {
    await fx.cleanup();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('refuses a block device mounted read-write on the host, naming volume, device, mount point and fix; read-only too', () => {
    const dev = fx.attach(img);
    const mnt = path.join(scratch, 'mnt');
    check(dev, false)(); // free: accepted
    fx.mount(dev, mnt);
    const e = refusal(check(dev, false));
    assert.strictEqual(e.volumePath, VOL);
    assert.strictEqual(e.file, '/x/mountInfo.json');
    // Exact, but for the copies that namespaces made meanwhile elsewhere on the host (a container starting) hold: said once, after it.
    assert.match(e.problem, new RegExp(`^${literal(`block device "${dev}" is in use on the host: it is mounted at ${mnt} (ext4, read-write)`)}${COPIES}${literal('; a read-write volume needs the device to itself: two kernels mounting one filesystem corrupt it')}$`));
    assert.match(e.fix, new RegExp(`^unmount it first \\(umount ${mnt}\\); or, if the other users only read it, mount the volume read-only`));
    assert.match(refusal(check(dev, true)).problem, /a read-only volume may share its device with read-only users only/);
  });

  it('lets a read-only volume share a device mounted read-only, and refuses a read-write one', () => {
    const dev = fx.attach(img);
    fx.mount(dev, path.join(scratch, 'ro'), 'ro');
    check(dev, true)();
    assert.match(refusal(check(dev, false)).problem, /is mounted at .*\/ro \(ext4, read-only\)/);
  });

  it('says a mount once, with the other mount namespaces that hold copies of it and how to unmount them there', async () => {
    const dev = fx.attach(img);
    const mnt = path.join(scratch, 'mnt');
    fx.mount(dev, mnt);
    const pids = [await fx.holdMountNamespace(), await fx.holdMountNamespace()];
    const e = refusal(check(dev, false));
    const m = new RegExp(`it is mounted at ${literal(mnt)} \\(ext4, read-write\\), and the same mount is in (\\d+) other mount namespaces \\(pids ([^)]*)\\); a read-write`).exec(e.problem);
    assert.ok(m, e.problem);
    assert.strictEqual(e.problem.split(`mounted at ${mnt}`).length, 2, `the mount is said once: ${e.problem}`);
    assert.ok(Number(m[1]) >= 2, e.problem);
    // The namespaces listed are the lowest pids that hold a copy (ours are the newest two unless it lists 3 or more).
    if (Number(m[1]) === 2) assert.strictEqual(m[2], `${pids[0]} and ${pids[1]}`);
    assert.match(e.fix, new RegExp(`^unmount it first \\(umount ${literal(mnt)}\\), and in the other namespaces too \\(nsenter -t <pid> -m umount ${literal(mnt)}, or stop what runs there\\)`));
  });

  it('finds a mount that only another mount namespace has, and says which', async () => {
    const dev = fx.attach(img);
    const pid = await fx.mountInOtherNamespace(dev, path.join(scratch, 'ns'));
    const e = refusal(check(dev, false));
    assert.match(e.problem, new RegExp(`is mounted at ${scratch}/ns \\(ext4, read-write, in the mount namespace of pid ${pid}\\)`));
    assert.match(e.fix, new RegExp(`nsenter -t ${pid} -m umount ${scratch}/ns`));
  });

  it('refuses a device in use as swap, even read-only', function () {
    const dev = fx.attach(img);
    try {
      fx.swapOn(dev);
    } catch (e) {
      return this.skip(); // swapon not permitted in this sandbox
    }
    const e = refusal(check(dev, true));
    assert.match(e.problem, /it is in use as swap \(\/proc\/swaps\)/);
    assert.match(e.fix, new RegExp(`swapoff ${dev} first`));
  });

  it('refuses an image attached read-write to a loop device that is not ours, with what uses that loop device', () => {
    const dev = fx.attach(img);
    fx.mount(dev, path.join(scratch, 'm'));
    const e = refusal(check(img, false));
    assert.strictEqual(e.problem.split(':')[0], `image "${img}" is in use on the host`);
    assert.match(e.problem, new RegExp(`it is attached read-write to loop device ${dev}, which is mounted at ${scratch}/m \\(ext4, read-write\\)`));
    assert.match(e.fix, new RegExp(`umount ${scratch}/m\\), then detach it \\(losetup -d ${dev}\\)`));
  });

  it('lets a read-only volume share an image with a read-only loop device; a read-write one is refused', () => {
    const dev = fx.attach(img, true);
    check(img, true)();
    assert.match(refusal(check(img, false)).problem, new RegExp(`attached read-only to loop device ${dev}`));
  });

  it('refuses a block device that backs another loop device (loop over loop)', () => {
    const lower = fx.attach(img);
    const upper = fx.attach(lower);
    assert.match(refusal(check(lower, false)).problem, new RegExp(`block device "${lower}" is in use on the host: it is attached read-write to loop device ${upper}`));
  });

  it('refuses a holder-backed device (device-mapper linear target, or the kernel\'s holders layout where dm is absent)', function () {
    const dev = fx.attach(img);
    const dm = spawnSync('dmsetup', ['create', `katavol-test-${process.pid}`, '--table', `0 ${(16 * MiB) / 512} linear ${dev} 0`], { encoding: 'utf8' });
    if (dm.status === 0) {
      try {
        assert.match(refusal(check(dev, true)).problem, new RegExp(`it is held by dm-\\d+ \\(device-mapper "katavol-test-${process.pid}"\\)`));
      } finally {
        execFileSync('dmsetup', ['remove', `katavol-test-${process.pid}`]);
      }
      return;
    }
    // No device-mapper in this kernel (dmsetup: "${dm.stderr.split('\n')[0]}"): a sysfs tree in the
    // kernel's layout for this loop device's number, with a dm holder, through the sysRoot option.
    const num = fs.readFileSync(`/sys/block/${path.basename(dev)}/dev`, 'utf8').trim();
    const sys = path.join(scratch, 'sys');
    fs.mkdirSync(path.join(sys, 'dev', 'block', num, 'holders', 'dm-3'), { recursive: true });
    fs.mkdirSync(path.join(sys, 'class', 'block', 'dm-3', 'dm'), { recursive: true });
    fs.writeFileSync(path.join(sys, 'class', 'block', 'dm-3', 'dm', 'name'), 'vg0-data\n');
    const uses = hostUsesOf(VOL, dev, { sysRoot: sys });
    assert.deepStrictEqual(uses.map((u) => [u.kind, u.readOnly]), [['holder', false]]);
    assert.strictEqual(uses[0].what, `is held by dm-3 (device-mapper "vg0-data") (${sys}/class/block/${path.basename(dev)}/holders)`);
    assert.match(uses[0].fix, /dmsetup remove, vgchange -an, mdadm --stop/);
  });

  /** A sysfs tree in the kernel's layout (through the sysRoot option) where `dev` has a partition `name` whose number is `partNum`. */
  const sysWithPartition = (dev: string, name: string, partNum: string): string => {
    const sys = path.join(scratch, 'sys');
    const own = fs.readFileSync(`/sys/block/${path.basename(dev)}/dev`, 'utf8').trim();
    fs.mkdirSync(path.join(sys, 'dev', 'block', own, name), { recursive: true });
    fs.writeFileSync(path.join(sys, 'dev', 'block', own, name, 'partition'), '1\n');
    fs.writeFileSync(path.join(sys, 'dev', 'block', own, name, 'dev'), `${partNum}\n`);
    fs.mkdirSync(path.join(sys, 'dev', 'block', own, 'queue'), { recursive: true }); // not a partition
    return sys;
  };
  /**
   * Without what other mount namespaces show: a namespace made while this test's mount existed (another
   * suite's container or unshare, running at the same time) holds a copy of it. Ours are listed first.
   */
  // Uses in our own namespace, without what copies of our mounts add (namespaces made meanwhile by anything else on the host).
  const here = <T extends { what: string; fix: string }>(uses: T[]): T[] => uses.filter((u) => !u.what.includes(', in the mount namespace of pid ')).map((u) => ({ ...u, what: withoutCopies(u.what), fix: withoutCopies(u.fix) }));
  const numberOf = (dev: string): string => fs.readFileSync(`/sys/block/${path.basename(dev)}/dev`, 'utf8').trim();

  it('finds the uses of a block device\'s partitions (mount, holder, swap) and names the partition', function () {
    // No partition scanning for loop devices here: the partition is another loop device's number, laid
    // out in sysfs the way the kernel lists a partition of the first.
    const dev = fx.attach(img);
    const part = fx.attach(mkExt4(scratch, 'part.img', 16 * MiB));
    const sys = sysWithPartition(dev, 'loopXp1', numberOf(part));
    const mnt = path.join(scratch, 'p');
    fx.mount(part, mnt);
    const uses = here(hostUsesOf(VOL, dev, { sysRoot: sys }));
    assert.deepStrictEqual(uses.map((u) => [u.kind, u.what, u.fix]), [['mount', `is mounted (its partition /dev/loopXp1) at ${mnt} (ext4, read-write)`, `unmount it first (umount ${mnt})`]]);
  });

  it('names a partition\'s holders (md arrays by name) and a partition used as swap', function () {
    const dev = fx.attach(img);
    const swapImg = path.join(scratch, 'swap.img');
    fs.writeFileSync(swapImg, Buffer.alloc(16 * MiB));
    const part = fx.attach(swapImg);
    const sys = sysWithPartition(dev, 'loopXp2', numberOf(part));
    fs.mkdirSync(path.join(sys, 'dev', 'block', numberOf(part), 'holders', 'md0'), { recursive: true });
    fs.mkdirSync(path.join(sys, 'dev', 'block', numberOf(part), 'holders', 'nvmd1'), { recursive: true });
    let uses = hostUsesOf(VOL, dev, { sysRoot: sys });
    assert.deepStrictEqual(uses.map((u) => [u.kind, u.readOnly, u.what]), [['holder', false, `is held (its partition /dev/loopXp2) by md0 (md RAID array), nvmd1 (${sys}/class/block/loopXp2/holders)`]]);
    fs.rmSync(path.join(sys, 'dev', 'block', numberOf(part), 'holders'), { recursive: true });
    try {
      fx.swapOn(part);
    } catch {
      return this.skip(); // swapon not permitted in this sandbox
    }
    uses = hostUsesOf(VOL, dev, { sysRoot: sys });
    assert.deepStrictEqual(uses.map((u) => [u.kind, u.readOnly, u.what, u.fix]), [['swap', false, 'is in use as swap (its partition /dev/loopXp2) (/proc/swaps)', `swapoff ${part} first`]]);
    assert.deepStrictEqual(hostUsesOf(VOL, dev), [], 'without the partition, the swap device is not this one');
  });

  it('refuses an image file in use as a swap file, even read-only; another swap file is no use of it', function () {
    const swapFile = path.join(scratch, 'swapfile');
    fs.writeFileSync(swapFile, Buffer.alloc(16 * MiB), { mode: 0o600 });
    execFileSync('mkswap', [swapFile], { stdio: 'ignore' });
    const copy = path.join(scratch, 'copy');
    fs.copyFileSync(swapFile, copy);
    const on = spawnSync('swapon', [swapFile], { encoding: 'utf8' });
    if (on.status !== 0) return this.skip(); // swapon not permitted in this sandbox
    try {
      assert.deepStrictEqual(hostUsesOf(VOL, swapFile).map((u) => [u.kind, u.readOnly]), [['swap', false]]);
      const e = refusal(check(swapFile, true));
      assert.strictEqual(e.problem, `image "${swapFile}" is in use on the host: it is in use as a swap file (/proc/swaps); a read-only volume may share its device with read-only users only: the other user writes it underneath`);
      assert.strictEqual(e.fix, `swapoff ${swapFile} first`);
      check(img, false)();
      check(copy, false)();
    } finally {
      execFileSync('swapoff', [swapFile]);
    }
  });

  it('a swap file on another filesystem is no use of the image, even with the same inode number', function () {
    // Two fresh ext4 filesystems: the first file made on each gets the same inode number.
    const mnt = (name: string): string => {
      const dir = path.join(scratch, name);
      fx.mount(fx.attach(mkExt4(scratch, `${name}.img`, 16 * MiB)), dir);
      return dir;
    };
    const swapFile = path.join(mnt('a'), 'swapfile');
    const image = path.join(mnt('b'), 'disk.img');
    fs.writeFileSync(swapFile, Buffer.alloc(4 * MiB), { mode: 0o600 });
    fs.writeFileSync(image, Buffer.alloc(MiB));
    assert.strictEqual(fs.statSync(image).ino, fs.statSync(swapFile).ino);
    execFileSync('mkswap', [swapFile], { stdio: 'ignore' });
    if (spawnSync('swapon', [swapFile]).status !== 0) return this.skip(); // swapon not permitted in this sandbox
    try {
      assert.deepStrictEqual(hostUsesOf(VOL, swapFile).map((u) => u.kind), ['swap']);
      assert.deepStrictEqual(hostUsesOf(VOL, image), []);
    } finally {
      execFileSync('swapoff', [swapFile]);
    }
  });

  it('a loop device over the image that is read-only but built on by a writer conflicts with a read-only volume too', () => {
    const ro = fx.attach(img, true);
    check(img, true)();
    const sys = path.join(scratch, 'sys');
    fs.mkdirSync(path.join(sys, 'dev', 'block', numberOf(ro), 'holders', 'dm-1'), { recursive: true });
    const uses = hostUsesOf(VOL, img, { sysRoot: sys });
    assert.deepStrictEqual(uses.map((u) => [u.kind, u.readOnly]), [['loop', false]]);
    assert.strictEqual(uses[0].what, `is attached read-only to loop device ${ro}, which is held by dm-1 (${sys}/class/block/${path.basename(ro)}/holders)`);
    assert.strictEqual(uses[0].fix, `give the container the device on top instead, or release it first (dmsetup remove, vgchange -an, mdadm --stop), then detach it (losetup -d ${ro})`);
    assert.deepStrictEqual(uses[0].beyond!.map((u) => u.kind), ['holder']);
    assert.throws(() => refuseHostUse({ volumePath: VOL, device: img, readOnly: true }, { sysRoot: sys }), /which is held by dm-1/);
  });

  it('two uses of a loop device are both named; the fixes are given once each', () => {
    const dev = fx.attach(img, true);
    fx.mount(dev, path.join(scratch, 'a'), 'ro');
    fx.mount(dev, path.join(scratch, 'b'), 'ro');
    const uses = hostUsesOf(VOL, img);
    assert.strictEqual(uses.length, 1);
    assert.strictEqual(uses[0].readOnly, true, 'a read-only loop device mounted read-only only reads');
    assert.deepStrictEqual(here(uses[0].beyond!).map((u) => u.what), [`is mounted at ${scratch}/a (ext4, read-only)`, `is mounted at ${scratch}/b (ext4, read-only)`]);
    assert.ok(withoutCopies(uses[0].what).startsWith(`is attached read-only to loop device ${dev}, which is mounted at ${scratch}/a (ext4, read-only) and is mounted at ${scratch}/b (ext4, read-only)`), uses[0].what);
    assert.ok(withoutCopies(uses[0].fix).startsWith(`unmount it first (umount ${scratch}/a), unmount it first (umount ${scratch}/b), `), uses[0].fix);
    assert.ok(uses[0].fix.endsWith(`, then detach it (losetup -d ${dev})`), uses[0].fix);
    const twice = [...uses, ...uses];
    assert.strictEqual(fixOf(twice, true), uses[0].fix);
    assert.strictEqual(fixOf(twice, false), `${uses[0].fix}; or, if the other users only read it, mount the volume read-only (options=rbind:ro)`);
    assert.strictEqual(describeUses(img, twice, false), `image "${img}" is in use on the host: it ${uses[0].what}; it ${uses[0].what}; a read-write volume needs the device to itself: two kernels mounting one filesystem corrupt it`);
    assert.match(describeUses(path.join(scratch, 'gone'), uses, true), /^device ".*gone" is in use on the host: it is attached/);
  });

  it('our own mount namespaces\' mounts and, when asked, loop devices over the device are not host uses', () => {
    const dev = fx.attach(img);
    fx.mount(dev, path.join(scratch, 'own'));
    const upper = fx.attach(dev); // loop over loop
    const own = new Set([fs.readlinkSync('/proc/self/ns/mnt')]);
    assert.deepStrictEqual(here(hostUsesOf(VOL, dev, { ownNamespaces: own })).map((u) => u.what), [`is attached read-write to loop device ${upper}`]);
    assert.deepStrictEqual(here(hostUsesOf(VOL, dev, { ownNamespaces: own, skipLoops: true })), []);
    assert.deepStrictEqual(here(hostUsesOf(VOL, dev, { skipLoops: true })).map((u) => u.kind), ['mount']);
    assert.deepStrictEqual(hostUsesOf(VOL, img, { skipLoops: true }), []);
    const viaTable = hostUsesOf(VOL, img, { loops: LoopTable.scan() });
    assert.strictEqual(viaTable.length, 1);
    assert.ok(viaTable[0].what.startsWith(`is attached read-write to loop device ${dev}, which is mounted at ${scratch}/own (ext4, read-write)`), viaTable[0].what);
  });

  it('a plain loop device over the image is detached by the fix; different fixes are all given', () => {
    const dev = fx.attach(img);
    const [loop] = hostUsesOf(VOL, img);
    assert.deepStrictEqual([loop.kind, loop.readOnly, loop.what, loop.fix, loop.beyond], ['loop', false, `is attached read-write to loop device ${dev}`, `detach it (losetup -d ${dev})`, []]);
    const mnt = path.join(scratch, 'fm');
    fx.mount(dev, mnt);
    const [mount] = here(hostUsesOf(VOL, dev, { skipLoops: true }));
    assert.strictEqual(fixOf([mount, loop], true), `unmount it first (umount ${mnt}); detach it (losetup -d ${dev})`);
    // A sysfs without this device's entry: its own number still finds the mount.
    assert.deepStrictEqual(here(hostUsesOf(VOL, dev, { sysRoot: path.join(scratch, 'no-sys'), skipLoops: true })).map((u) => u.what), [mount.what]);
  });

  it('a missing device, a directory or a socket has no host use', () => {
    assert.deepStrictEqual(hostUsesOf(VOL, path.join(scratch, 'none')), []);
    assert.deepStrictEqual(hostUsesOf(VOL, scratch), []);
    assert.deepStrictEqual(hostUsesOf(VOL, '/dev/null'), []);
  });

  it('runc backend: refuses a mounted block device before anything is attached or recorded', async () => {
    const dev = fx.attach(img);
    fx.mount(dev, path.join(scratch, 'host'));
    const reg = new Registry(path.join(scratch, 'root'));
    reg.add(VOL, JSON.stringify({ 'volume-type': 'directvol', device: dev, fstype: 'ext4' }));
    const bundle = path.join(scratch, 'bundles', 'c1');
    fs.mkdirSync(bundle, { recursive: true });
    const mount = { destination: '/disk', type: 'directvol', source: VOL, options: ['rw'] };
    const before = snapshot(reg.root);
    await assert.rejects(new RuncBackend(reg).prepare({ containerId: 'c1', sandboxId: 'c1', bundle, log: quiet }, { mounts: [mount] },
      [{ index: 0, mount, volumePath: VOL, entryDir: reg.entryDir(VOL), file: reg.mountInfoFile(VOL), info: reg.read(VOL).info, readOnly: false }]),
    (e: Error) => e instanceof VolumeError && e.problem.includes(`is mounted at ${scratch}/host`) && e.file === reg.mountInfoFile(VOL));
    assert.deepStrictEqual(snapshot(reg.root), before);
    assert.deepStrictEqual(fs.readdirSync(bundle), []);
  });

  it('runtime-rs backend: refuses a mounted device and an image on a foreign loop device, naming the mount', () => {
    const dev = fx.attach(img);
    fx.mount(dev, path.join(scratch, 'h'));
    for (const device of [dev, img]) {
      const e = refusal(() => checkBlockDevice(volumeInput(mountInfo('directvol', device)), quiet, () => false));
      assert.match(e.problem, new RegExp(`^mount /data: (block device|image) "${device}" is in use on the host: it (is mounted|is attached read-write to loop device ${dev}, which is mounted) at ${scratch}/h`));
    }
  });

  it('`direct-volume add` registers a mounted device but warns what Create will refuse', () => {
    const dev = fx.attach(img);
    fx.mount(dev, path.join(scratch, 'w'));
    const root = path.join(scratch, 'root');
    const r = spawnSync(KATAVOL, ['direct-volume', 'add', VOL, JSON.stringify({ 'volume-type': 'directvol', device: dev, fstype: 'ext4' })],
      { encoding: 'utf8', env: { ...process.env, KATAVOL_VOLUME_ROOT: root } });
    assert.strictEqual(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`^katavol: warning: block device "${dev}" is in use on the host: it is mounted at ${scratch}/w \\(ext4, read-write\\);.*containers will be refused this volume read-write until then: unmount it first`, 'm'));
    assert.ok(new Registry(root).isRegistered(VOL));
  });

  it('`direct-volume resize` refuses an image whose loop device is swap, changing nothing', function () {
    // Registered while it held ext4 (add refuses a device holding another filesystem), then made swap.
    const reg = new Registry(path.join(scratch, 'root'));
    reg.add(VOL, JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
    const dev = fx.attach(img);
    try {
      fx.swapOn(dev);
    } catch {
      return this.skip();
    }
    const e = refusal(() => resizeVolume(reg, VOL, 32 * MiB));
    assert.match(e.problem, new RegExp(`it is attached read-write to loop device ${dev}, which is in use as swap.*katavol does not resize a device something else builds on`));
    assert.match(e.fix, new RegExp(`swapoff ${dev} first, then detach it`));
    assert.strictEqual(fs.statSync(img).size, 16 * MiB);
  });
});

// The runc host backend's sharing rules: block devices are judged from the sandbox records, image files
// from their loop devices (one per pod, shared by the pod's containers), on real loop devices.
import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync } from 'child_process';
import type { PrepareContext } from '../../src/backends/backend';
import type { OciSpec, ResolvedVolume } from '../../src/volumes/types';
import { RuncBackend } from '../../src/backends/runc';
import * as loop from '../../src/backends/loop';
import { Registry } from '../../src/volumes/registry';
import { VolumeError } from '../../src/volumes/types';
import { scratchDir } from '../support/scratch';
import { LoopFixture, detachLoopsOf, detachOwnLoop, imageFile, mkExt4 } from '../support/disks';
import { quietLog as quiet, recordingLog, useScratchRegistry } from '../support/volumes';

const VOL = '/kubelet/block-vol';

describe('runc backend: block device sharing (runc.ts)', () => {
  let scratch: string;
  let reg: Registry;
  let device: string;
  const fx = useScratchRegistry('runc-blk');

  beforeEach(() => {
    ({ scratch, reg } = fx);
    // A block device node that is never opened: prepare only stats it and rewrites the mount.
    device = path.join(scratch, 'blk');
    execFileSync('mknod', [device, 'b', '7', '250']);
    reg.add(VOL, JSON.stringify({ 'volume-type': 'directvol', device, fstype: 'ext4' }));
  });

  const ctx = (containerId: string, sandboxId: string): PrepareContext => {
    const bundle = path.join(scratch, 'bundles', containerId);
    fs.mkdirSync(bundle, { recursive: true });
    return { containerId, sandboxId, bundle, log: quiet };
  };
  /** A container mounting the volume once per mode given. */
  const container = (...modes: Array<'ro' | 'rw'>): { spec: OciSpec; volumes: ResolvedVolume[] } => {
    const mounts = modes.map((m, i) => ({ destination: `/data${i}`, type: 'bind', source: VOL, options: ['rbind', m] }));
    const volumes = mounts.map((mount, index) => ({
      index, mount, volumePath: VOL, entryDir: reg.entryDir(VOL), file: reg.mountInfoFile(VOL), info: reg.read(VOL).info, readOnly: modes[index] === 'ro',
    }));
    return { spec: { mounts }, volumes };
  };
  const prepare = (c: PrepareContext, ...modes: Array<'ro' | 'rw'>) => {
    const { spec, volumes } = container(...modes);
    return new RuncBackend(reg).prepare(c, spec, volumes);
  };

  for (const [volumeType, dev] of [['vfiovol', '0000:01:00.0'], ['spdkvol', '/run/spdk/vhost.0'], ['spoolvol', '/run/spdk/vhost.1']] as const) {
    it(`refuses a ${volumeType} volume (it needs a VM), naming the volume, the file and the fix; nothing is recorded or attached`, async () => {
      const vp = `/kubelet/${volumeType}`;
      const mount = { destination: '/dev-data', type: volumeType, source: vp, options: ['rbind', 'rw'] };
      const info = { volumeType, device: dev, fsType: '', metadata: {}, options: [] };
      const file = path.join(scratch, 'root', 'x', 'mountInfo.json');
      const c = ctx('c-vm', 'pod-vm');
      await assert.rejects(new RuncBackend(reg).prepare(c, { mounts: [mount] }, [{ index: 0, mount, volumePath: vp, entryDir: path.dirname(file), file, info, readOnly: false }]), (e: Error) => {
        assert.ok(e instanceof VolumeError, String(e));
        assert.strictEqual(e.volumePath, vp);
        assert.strictEqual(e.file, file);
        assert.match(e.problem, new RegExp(`volume type "${volumeType}" needs a VM`));
        assert.match(e.fix, /runtime-rs backend/);
        return true;
      });
      assert.deepStrictEqual(fs.readdirSync(c.bundle), []);
      assert.deepStrictEqual(reg.sandboxesOf(VOL), []);
    });
  }

  it('refuses a read-only mount while another runc sandbox holds the device read-write, recording nothing', async () => {
    await prepare(ctx('c1', 'pod-w'), 'rw');
    assert.deepStrictEqual(reg.sandboxesOf(VOL), [{ id: 'pod-w', backend: 'runc', readOnly: false }]);
    await assert.rejects(prepare(ctx('c2', 'pod-r'), 'ro'), (e: Error) => {
      assert.ok(e instanceof VolumeError);
      assert.match(e.problem, new RegExp(`block device "${device}" is already used read-write by sandbox pod-w \\(read-write\\)`));
      assert.strictEqual(e.file, reg.mountInfoFile(VOL));
      assert.match(e.fix, new RegExp(`mount the volume read-only everywhere.*remove its stale record: rm ${path.join(reg.entryDir(VOL), 'pod-w')}$`));
      return true;
    });
    assert.deepStrictEqual(reg.sandboxesOf(VOL).map((s) => s.id), ['pod-w']);
  });

  it('lets read-only sandboxes share the device and records them read-only; a writer is refused', async () => {
    await prepare(ctx('c1', 'pod-a'), 'ro');
    await prepare(ctx('c2', 'pod-b'), 'ro');
    assert.strictEqual(fs.readFileSync(path.join(reg.entryDir(VOL), 'pod-a'), 'utf8'), '', 'Kata\'s form: an empty file');
    assert.strictEqual(fs.readFileSync(reg.sandboxModeFile(VOL, 'pod-a'), 'utf8'), 'runc ro');
    assert.deepStrictEqual(reg.sandboxesOf(VOL), [
      { id: 'pod-a', backend: 'runc', readOnly: true }, { id: 'pod-b', backend: 'runc', readOnly: true },
    ]);
    await assert.rejects(prepare(ctx('c3', 'pod-c'), 'rw'),
      /block device ".*" is already used by sandbox pod-a \(read-only\), pod-b \(read-only\); a read-write volume can be held by one sandbox at a time/);
    await new RuncBackend(reg).release(ctx('c1', 'pod-a'));
    await new RuncBackend(reg).release(ctx('c2', 'pod-b'));
    assert.deepStrictEqual(reg.sandboxesOf(VOL), []);
  });

  it('records the volume once, read-write when any of its mounts is, and keeps its own sandbox read-write', async () => {
    const out = await prepare(ctx('c1', 'pod-a'), 'ro', 'rw');
    assert.deepStrictEqual(out.spec.mounts!.map((m) => [m.source, m.options]), [[device, ['ro']], [device, ['rw']]]);
    assert.deepStrictEqual(reg.sandboxesOf(VOL), [{ id: 'pod-a', backend: 'runc', readOnly: false }]);
    // A read-only container of the same sandbox does not hide its sibling's writes from others.
    await prepare(ctx('c2', 'pod-a'), 'ro');
    assert.deepStrictEqual(reg.sandboxesOf(VOL), [{ id: 'pod-a', backend: 'runc', readOnly: false }]);
    await assert.rejects(prepare(ctx('c3', 'pod-b'), 'ro'), /already used read-write by sandbox pod-a/);
  });

  it('rewrites each mount to its own device and filesystem, keeping the other mounts and options, and records what it took in the bundle', async () => {
    const device2 = path.join(scratch, 'blk2');
    execFileSync('mknod', [device2, 'b', '7', '249']);
    reg.add('/kubelet/xfs-vol', JSON.stringify({ 'volume-type': 'directvol', device: device2, fstype: 'xfs', options: ['noatime'] }));
    // Written as kata-ctl would, with an empty fstype (katavol's own add refuses that).
    reg.add('/kubelet/plain-vol', JSON.stringify({ 'volume-type': 'directvol', device: device2, fstype: 'ext4' }));
    fs.writeFileSync(reg.mountInfoFile('/kubelet/plain-vol'), JSON.stringify({ 'volume-type': 'directvol', device: device2, fstype: '', metadata: {}, options: [] }));
    const proc = { destination: '/proc', type: 'proc', source: 'proc' };
    const mounts = [
      proc,
      { destination: '/a', type: 'bind', source: VOL, options: ['rbind', 'rw', 'nosuid'] },
      { destination: '/b', type: 'bind', source: '/kubelet/xfs-vol', options: ['bind', 'ro', 'nodev'] },
    ];
    const vol = (index: number, volumePath: string, readOnly: boolean): ResolvedVolume => ({
      index, mount: mounts[index], volumePath, entryDir: reg.entryDir(volumePath), file: reg.mountInfoFile(volumePath), info: reg.read(volumePath).info, readOnly,
    });
    const c = ctx('c1', 'pod-a');
    const out = await new RuncBackend(reg).prepare(c, { mounts, annotations: {} }, [vol(1, VOL, false), vol(2, '/kubelet/xfs-vol', true)]);
    assert.deepStrictEqual(out.spec.mounts, [
      proc,
      { destination: '/a', type: 'ext4', source: device, options: ['nosuid', 'rw'] },
      { destination: '/b', type: 'xfs', source: device2, options: ['nodev', 'noatime', 'ro'] },
    ]);
    assert.deepStrictEqual(out.summary, [
      { destination: '/a', volumePath: VOL, device, source: device, fstype: 'ext4', readOnly: false },
      { destination: '/b', volumePath: '/kubelet/xfs-vol', device: device2, source: device2, fstype: 'xfs', readOnly: true },
    ]);
    assert.deepStrictEqual(JSON.parse(fs.readFileSync(path.join(c.bundle, 'katavol-runc.json'), 'utf8')),
      { containerId: 'c1', sandboxId: 'pod-a', loops: [], volumes: [VOL, '/kubelet/xfs-vol'] });
    // No fstype registered: ext4, as kata-ctl defaults it.
    const plain = { destination: '/p', type: 'bind', source: '/kubelet/plain-vol', options: ['rbind'] };
    const info = reg.read('/kubelet/plain-vol').info;
    const p = await new RuncBackend(reg).prepare(ctx('c2', 'pod-p'), { mounts: [plain] }, [
      { index: 0, mount: plain, volumePath: '/kubelet/plain-vol', entryDir: reg.entryDir('/kubelet/plain-vol'), file: reg.mountInfoFile('/kubelet/plain-vol'), info, readOnly: true },
    ]);
    assert.deepStrictEqual(p.spec.mounts, [{ destination: '/p', type: 'ext4', source: device2, options: ['ro'] }]);
  });

  it('a spec without mounts and no volumes comes back with an empty mount list', async () => {
    const out = await new RuncBackend(reg).prepare(ctx('c0', 'pod-0'), { annotations: {} }, []);
    assert.deepStrictEqual(out, { spec: { annotations: {}, mounts: [] }, summary: [] });
  });

  for (const [what, spoil, problem, fix] of [
    ['gone', (dev: string) => fs.rmSync(dev), /^device ".*odd\.img" cannot be used \(ENOENT\)$/, /^create the image or block device, or re-register the volume with the right "device"$/],
    ['now a directory', (dev: string) => { fs.rmSync(dev); fs.mkdirSync(dev); }, /^device ".*odd\.img" is neither a regular file nor a block device$/, /^a directvol device must be a raw image file or a block device; re-register the volume with the right "device"$/],
  ] as Array<[string, (dev: string) => void, RegExp, RegExp]>) {
    it(`refuses a device that is ${what} since it was registered, naming the volume, the file and the fix`, async () => {
      const dev = imageFile(scratch, 'odd.img');
      reg.add('/kubelet/odd', JSON.stringify({ 'volume-type': 'directvol', device: dev, fstype: 'ext4' }));
      spoil(dev);
      const mount = { destination: '/d', type: 'bind', source: '/kubelet/odd', options: ['rbind'] };
      const c = ctx('c-odd', 'pod-odd');
      await assert.rejects(new RuncBackend(reg).prepare(c, { mounts: [mount] }, [
        { index: 0, mount, volumePath: '/kubelet/odd', entryDir: reg.entryDir('/kubelet/odd'), file: reg.mountInfoFile('/kubelet/odd'), info: reg.read('/kubelet/odd').info, readOnly: false },
      ]), (e: Error) => {
        assert.ok(e instanceof VolumeError);
        assert.strictEqual(e.volumePath, '/kubelet/odd');
        assert.strictEqual(e.file, reg.mountInfoFile('/kubelet/odd'));
        assert.match(e.problem, problem);
        assert.match(e.fix, fix);
        return true;
      });
      assert.deepStrictEqual(fs.readdirSync(c.bundle), []);
      assert.deepStrictEqual(reg.sandboxesOf('/kubelet/odd'), []);
    });
  }

  it('judges block devices by the runc records only, and names every sandbox and stale record in the way', async () => {
    // A runtime-rs pod's record of the same volume: that pod's device is in its VM, not on this host's mounts.
    reg.recordSandbox(VOL, 'pod-vm', 'runtime-rs', false);
    await prepare(ctx('c1', 'pod-a'), 'ro');
    assert.deepStrictEqual(reg.sandboxesOf(VOL).find((u) => u.id === 'pod-a'), { id: 'pod-a', backend: 'runc', readOnly: true }, 'recorded read-only, whatever the first record says');
    await prepare(ctx('c2', 'pod-b'), 'ro');
    await assert.rejects(prepare(ctx('c3', 'pod-c'), 'rw'), (e: Error) => {
      assert.ok(e instanceof VolumeError);
      assert.match(e.fix, new RegExp(`remove its stale record: rm ${path.join(reg.entryDir(VOL), 'pod-a')} ${path.join(reg.entryDir(VOL), 'pod-b')}$`));
      return true;
    });
  });

  it('a bundle whose state cannot be written fails the Create and leaves no record', async () => {
    const c: PrepareContext = { containerId: 'c9', sandboxId: 'pod-9', bundle: path.join(scratch, 'no-such-parent', 'c9'), log: quiet };
    await assert.rejects(prepare(c, 'rw'), /ENOENT: no such file or directory, open '.*\/no-such-parent\/c9\//);
    assert.deepStrictEqual(reg.sandboxesOf(VOL), []);
  });

  it('keeps a pod\'s record until its last container using the volume is released', async () => {
    await prepare(ctx('c1', 'pod-a'), 'ro');
    await prepare(ctx('c2', 'pod-a'), 'ro');
    await new RuncBackend(reg).release(ctx('c1', 'pod-a'));
    assert.deepStrictEqual(reg.sandboxesOf(VOL), [{ id: 'pod-a', backend: 'runc', readOnly: true }], 'c2 still uses it');
    // A failed Create of a third container of the pod does not drop the record either.
    await prepare(ctx('w1', 'pod-w'), 'ro');
    await assert.rejects(prepare(ctx('c3', 'pod-a'), 'rw'), /already used by sandbox pod-w/);
    assert.ok(reg.sandboxesOf(VOL).some((u) => u.id === 'pod-a'));
    await new RuncBackend(reg).release(ctx('c2', 'pod-a'));
    assert.deepStrictEqual(reg.sandboxesOf(VOL).map((u) => u.id), ['pod-w']);
  });
});

describe('runc backend: an image file belongs to one pod (one loop device per volume and sandbox)', () => {
  const IMG_VOL = '/kubelet/pod-vol';
  let scratch: string;
  let reg: Registry;
  let img: string;

  beforeEach(() => {
    scratch = scratchDir('runc-pod');
    reg = new Registry(path.join(scratch, 'root'));
    img = path.join(scratch, 'disk.img');
    fs.writeFileSync(img, Buffer.alloc(1 << 20));
    reg.add(IMG_VOL, JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
  });
  afterEach(async () => {
    // Release every bundle this test made, as containerd's `delete` would, then check nothing is attached.
    for (const b of fs.readdirSync(path.join(scratch, 'bundles'), { withFileTypes: true })) {
      await new RuncBackend(reg).releaseBundle(path.join(scratch, 'bundles', b.name), quiet);
    }
    const left = loops();
    // Whatever a failing test (or a mutant) left over this test's image goes, and only that.
    detachLoopsOf(img);
    fs.rmSync(scratch, { recursive: true, force: true });
    assert.deepStrictEqual(left, [], 'no loop device left on the image');
  });

  const loops = (): string[] => execFileSync('losetup', ['-j', img, '--noheadings', '-O', 'NAME,RO'], { encoding: 'utf8' })
    .split('\n').map((l) => l.trim().replace(/\s+/g, ' ')).filter(Boolean);
  const ctx = (containerId: string, sandboxId: string): PrepareContext => {
    const bundle = path.join(scratch, 'bundles', containerId);
    fs.mkdirSync(bundle, { recursive: true });
    return { containerId, sandboxId, bundle, log: quiet };
  };
  const prepare = async (c: PrepareContext, ...modes: Array<'ro' | 'rw'>): Promise<string[]> => prepareIn(c, {}, modes.map((m) => [IMG_VOL, m]));
  /** A container mounting each [volume, mode] given, with these spec annotations. */
  const prepareIn = async (c: PrepareContext, annotations: Record<string, string>, uses: Array<[string, 'ro' | 'rw']>): Promise<string[]> => {
    const mounts = uses.map(([vp, m], i) => ({ destination: `/data${i}`, type: 'bind', source: vp, options: ['rbind', m] }));
    const volumes = mounts.map((mount, index) => ({
      index, mount, volumePath: uses[index][0], entryDir: reg.entryDir(uses[index][0]), file: reg.mountInfoFile(uses[index][0]), info: reg.read(uses[index][0]).info, readOnly: uses[index][1] === 'ro',
    }));
    const out = await new RuncBackend(reg).prepare(c, { mounts, annotations }, volumes);
    return out.spec.mounts!.map((m) => `${m.source} ${m.options!.join(',')}`);
  };
  /** Whether the device is (still) attached to this file; another test may take a device number we free. */
  const backs = (dev: string, file: string): boolean => loop.backingFile(dev).replace(/ \(deleted\)$/, '') === fs.realpathSync(file);
  const cri = (ns: string | undefined, name: string) => ({ ...(ns ? { 'io.kubernetes.cri.sandbox-namespace': ns } : {}), 'io.kubernetes.cri.sandbox-name': name });
  /** A bundle state as another (perhaps crashed) container left it. */
  const fakeBundle = (id: string, state: object): void => {
    fs.mkdirSync(path.join(scratch, 'bundles', id), { recursive: true });
    fs.writeFileSync(path.join(scratch, 'bundles', id, 'katavol-runc.json'), JSON.stringify(state));
  };
  const release = (c: PrepareContext) => new RuncBackend(reg).release(c);
  const ids = () => reg.sandboxesOf(IMG_VOL).map((u) => `${u.id} ${u.readOnly ? 'ro' : 'rw'}`);

  it('lets every container of the pod mount it read-write through one loop device, detached after the last one', async () => {
    const [app] = await prepare(ctx('app', 'pod-a'), 'rw');
    const [sidecar] = await prepare(ctx('sidecar', 'pod-a'), 'rw');
    assert.match(app, /^\/dev\/loop\d+ rw$/);
    assert.strictEqual(sidecar, app, 'the sidecar mounts the pod\'s loop device');
    assert.deepStrictEqual(loops(), [`${app.split(' ')[0]} 0`]);
    assert.deepStrictEqual(ids(), ['pod-a rw']);
    // Either may stop first: the device and the pod's record stay until the last one goes.
    await release(ctx('app', 'pod-a'));
    assert.deepStrictEqual(loops(), [`${app.split(' ')[0]} 0`]);
    assert.deepStrictEqual(ids(), ['pod-a rw']);
    await release(ctx('sidecar', 'pod-a'));
    assert.deepStrictEqual(loops(), []);
    assert.deepStrictEqual(ids(), []);
  });

  it('refuses another pod, read-write or read-only, naming the volume, the pod holding it and the fix; nothing is attached for it', async () => {
    const [dev] = (await prepare(ctx('app', 'pod-a'), 'rw'))[0].split(' ');
    for (const mode of ['rw', 'ro'] as const) {
      await assert.rejects(prepare(ctx(`other-${mode}`, 'pod-b'), mode), (e: Error) => {
        assert.ok(e instanceof VolumeError);
        assert.strictEqual(e.volumePath, IMG_VOL);
        assert.strictEqual(e.file, reg.mountInfoFile(IMG_VOL));
        assert.match(e.problem, mode === 'rw'
          ? new RegExp(`^image "${img}" is already in use by pod pod-a \\(read-write, ${dev}\\); a read-write volume belongs to one pod at a time$`)
          : new RegExp(`^image "${img}" is already used read-write by pod pod-a \\(read-write, ${dev}\\); a read-only mount would see it change underneath$`));
        assert.match(e.fix, new RegExp(`^stop that pod first, or mount the volume read-only in every pod \\(options=rbind:ro\\); if that pod no longer exists, detach its loop device \\(losetup -d ${dev}\\) and remove its stale record: rm ${path.join(reg.entryDir(IMG_VOL), 'pod-a')}$`));
        return true;
      });
    }
    assert.deepStrictEqual(loops(), [`${dev} 0`]);
    assert.deepStrictEqual(ids(), ['pod-a rw']);
  });

  it('shares read-only across pods, one read-only loop device per pod; a writer pod is refused', async () => {
    const [a1] = await prepare(ctx('a1', 'pod-a'), 'ro');
    const [a2] = await prepare(ctx('a2', 'pod-a'), 'ro');
    const [b1] = await prepare(ctx('b1', 'pod-b'), 'ro');
    assert.strictEqual(a2, a1);
    assert.notStrictEqual(b1, a1);
    assert.deepStrictEqual(loops().sort(), [`${a1.split(' ')[0]} 1`, `${b1.split(' ')[0]} 1`].sort());
    assert.deepStrictEqual(ids(), ['pod-a ro', 'pod-b ro']);
    await assert.rejects(prepare(ctx('c1', 'pod-c'), 'rw'), /is already in use by pod pod-a \(read-only, \/dev\/loop\d+\), pod-b \(read-only, \/dev\/loop\d+\); a read-write volume belongs/);
  });

  it('a read-only container joins the pod\'s read-write device; a read-write one cannot join a read-only device', async () => {
    const [w] = await prepare(ctx('writer', 'pod-a'), 'rw');
    const [r] = await prepare(ctx('reader', 'pod-a'), 'ro');
    assert.strictEqual(r, `${w.split(' ')[0]} ro`, 'same device, mounted read-only');
    assert.deepStrictEqual(ids(), ['pod-a rw'], 'the pod still writes it');

    const [ro] = (await prepare(ctx('r1', 'pod-b'), 'ro').catch(() => ['refused']));
    assert.strictEqual(ro, 'refused', 'pod-b cannot read what pod-a writes');
    await release(ctx('writer', 'pod-a'));
    await release(ctx('reader', 'pod-a'));
    await prepare(ctx('r1', 'pod-b'), 'ro');
    await assert.rejects(prepare(ctx('w1', 'pod-b'), 'rw'), (e: Error) => {
      assert.match(e.message, /pod pod-b already mounts image ".*" read-only \(\/dev\/loop\d+\); its containers share that loop device, so a read-write mount cannot join them/);
      assert.match(e.message, /start the pod's writing container before its read-only ones, or mount the volume read-write in all of them/);
      return true;
    });
  });

  it('one container mounting the volume twice, ro and rw, gets one read-write device', async () => {
    const out = await prepare(ctx('c1', 'pod-a'), 'ro', 'rw');
    const dev = out[0].split(' ')[0];
    assert.deepStrictEqual(out, [`${dev} ro`, `${dev} rw`]);
    assert.deepStrictEqual(loops(), [`${dev} 0`]);
  });

  it('names the holding pod by its Kubernetes namespace and name, and only the bundles that really hold the image', async () => {
    const [dev] = (await prepareIn(ctx('app', 'pod-a'), cri('shop', 'web-0'), [[IMG_VOL, 'rw']]))[0].split(' ');
    // Stale states: another pod listing this device for a different image, and listing this image on a device it no longer has.
    fakeBundle('ghost', { containerId: 'ghost', sandboxId: 'pod-x', pod: 'old/x', loops: [{ device: dev, file: '/elsewhere.img', volume: '/kubelet/x' }], volumes: ['/kubelet/x'] });
    fakeBundle('ghost2', { containerId: 'ghost2', sandboxId: 'pod-y', pod: 'old/y', loops: [{ device: '/dev/loop99999', file: img, volume: IMG_VOL }], volumes: [IMG_VOL] });
    // A record of a pod that holds nothing through this host is not named as stale.
    reg.recordSandbox(IMG_VOL, 'pod-vm', 'runtime-rs', true);
    await assert.rejects(prepareIn(ctx('other', 'pod-b'), cri('shop', 'web-1'), [[IMG_VOL, 'rw']]), (e: Error) => {
      assert.ok(e instanceof VolumeError);
      assert.strictEqual(e.problem, `image "${img}" is already in use by pod shop/web-0 (sandbox pod-a, read-write, ${dev}); a read-write volume belongs to one pod at a time`);
      assert.match(e.fix, new RegExp(`detach its loop device \\(losetup -d ${dev}\\) and remove its stale record: rm ${path.join(reg.entryDir(IMG_VOL), 'pod-a')}$`));
      return true;
    });
    fs.rmSync(path.join(scratch, 'bundles', 'ghost'), { recursive: true });
    fs.rmSync(path.join(scratch, 'bundles', 'ghost2'), { recursive: true });
    // A pod name without a namespace is given as it is.
    await release(ctx('app', 'pod-a'));
    const [dev2] = (await prepareIn(ctx('app2', 'pod-c'), cri(undefined, 'solo'), [[IMG_VOL, 'rw']]))[0].split(' ');
    await assert.rejects(prepare(ctx('other2', 'pod-d'), 'ro'), new RegExp(`already used read-write by pod solo \\(sandbox pod-c, read-write, ${dev2}\\); a read-only mount`));
  });

  it('names the holders from the registry when their bundles are elsewhere, and says when no record names them', async () => {
    // pod-a's container lives in another containerd namespace: its bundle is not beside ours.
    fs.mkdirSync(path.join(scratch, 'elsewhere', 'app'), { recursive: true });
    const far: PrepareContext = { containerId: 'app', sandboxId: 'pod-a', bundle: path.join(scratch, 'elsewhere', 'app'), log: quiet };
    const [dev] = (await prepareIn(far, cri('shop', 'web-0'), [[IMG_VOL, 'rw']]))[0].split(' ');
    try {
      await assert.rejects(prepare(ctx('other', 'pod-b'), 'rw'), (e: Error) => {
        assert.strictEqual((e as VolumeError).problem, `image "${img}" is already in use by pod pod-a (read-write, ${dev}); a read-write volume belongs to one pod at a time`);
        assert.match((e as VolumeError).fix, new RegExp(`rm ${path.join(reg.entryDir(IMG_VOL), 'pod-a')}$`));
        return true;
      });
      // Without its record either, nobody is named: the message says so and how to find the user.
      reg.releaseSandbox(IMG_VOL, 'pod-a');
      await assert.rejects(prepare(ctx('other', 'pod-b'), 'ro'), (e: Error) => {
        assert.strictEqual((e as VolumeError).problem, `image "${img}" is already in use through ${dev} by something with no sandbox record (a container still being created, or a process outside katavol)`);
        assert.strictEqual((e as VolumeError).fix, `find the user with losetup -j ${img}; detach it, or mount the volume read-only everywhere (options=rbind:ro)`);
        return true;
      });
    } finally {
      await new RuncBackend(reg).releaseBundle(far.bundle, quiet);
    }
    assert.deepStrictEqual(loops(), []);
  });

  it('leaves out the stale-record part of the fix when the holder has no record', async () => {
    const [dev] = (await prepare(ctx('app', 'pod-a'), 'rw'))[0].split(' ');
    fs.rmSync(path.join(reg.entryDir(IMG_VOL), 'pod-a'));
    await assert.rejects(prepare(ctx('other', 'pod-b'), 'rw'),
      (e: Error) => (e as VolumeError).fix === `stop that pod first, or mount the volume read-only in every pod (options=rbind:ro); if that pod no longer exists, detach its loop device (losetup -d ${dev})`);
  });

  it('names every writer in the way of a reader', async () => {
    const lf = new LoopFixture();
    try {
      const [dev] = (await prepare(ctx('app', 'pod-a'), 'rw'))[0].split(' ');
      // Another pod's container (crashed, its device still attached read-write) lists a second device on the image.
      const other = lf.attach(img);
      fakeBundle('crashed', { containerId: 'crashed', sandboxId: 'pod-z', loops: [{ device: other, file: fs.realpathSync(img), volume: IMG_VOL }], volumes: [IMG_VOL] });
      await assert.rejects(prepare(ctx('reader', 'pod-b'), 'ro'), (e: Error) => {
        const pods = (e as VolumeError).problem.replace(/^image ".*" is already used read-write by pod /, '').replace(/; a read-only mount would see it change underneath$/, '');
        assert.deepStrictEqual(pods.split('), ').sort(), [`pod-a (read-write, ${dev}`, `pod-z (read-write, ${other})`].sort());
        assert.match((e as VolumeError).fix, new RegExp(`losetup -d (${dev} ${other}|${other} ${dev})\\)`));
        return true;
      });
      fs.rmSync(path.join(scratch, 'bundles', 'crashed'), { recursive: true });
    } finally {
      await lf.cleanup();
    }
  });

  it('joins the pod\'s device only while it is still backed by the image, whatever the pod\'s other containers use', async () => {
    // Another container of the pod uses only a block device; a stale one lists a device long gone.
    const blk = path.join(scratch, 'blk');
    execFileSync('mknod', [blk, 'b', '7', '248']);
    reg.add('/kubelet/blk', JSON.stringify({ 'volume-type': 'directvol', device: blk, fstype: 'ext4' }));
    await prepareIn(ctx('db', 'pod-a'), {}, [['/kubelet/blk', 'rw']]);
    fakeBundle('stale', { containerId: 'stale', sandboxId: 'pod-a', loops: [{ device: '/dev/loop99999', file: fs.realpathSync(img), volume: IMG_VOL }], volumes: [IMG_VOL] });
    const [app] = await prepare(ctx('app', 'pod-a'), 'rw');
    assert.match(app, /^\/dev\/loop\d+ rw$/);
    assert.notStrictEqual(app.split(' ')[0], '/dev/loop99999');
    fs.rmSync(path.join(scratch, 'bundles', 'stale'), { recursive: true });
  });

  it('a pod whose image was replaced keeps sharing the device of the old one', async () => {
    const [app] = await prepare(ctx('app', 'pod-a'), 'rw');
    const dev = app.split(' ')[0];
    // Replaced under the running container: the device reads "<image> (deleted)".
    fs.rmSync(img);
    fs.writeFileSync(img, Buffer.alloc(1 << 20));
    assert.strictEqual(loop.backingFile(dev), `${img} (deleted)`);
    const [sidecar] = await prepare(ctx('sidecar', 'pod-a'), 'rw');
    assert.strictEqual(sidecar, app);
    await release(ctx('app', 'pod-a'));
    await release(ctx('sidecar', 'pod-a'));
    assert.ok(!backs(dev, img), 'detached with the last container');
  });

  it('on release, detaches only what no other container of the pod lists, and drops the records of volumes no sibling uses', async () => {
    const img2 = path.join(scratch, 'disk2.img');
    fs.writeFileSync(img2, Buffer.alloc(1 << 20));
    reg.add('/kubelet/vol2', JSON.stringify({ 'volume-type': 'directvol', device: img2, fstype: 'ext4' }));
    const [a1] = await prepareIn(ctx('app', 'pod-a'), {}, [[IMG_VOL, 'rw']]);
    const [s1, s2] = await prepareIn(ctx('sidecar', 'pod-a'), {}, [[IMG_VOL, 'rw'], ['/kubelet/vol2', 'rw']]);
    assert.strictEqual(s1, a1);
    // Stale state of the pod: the app's device listed for another image, and this image on another device.
    fakeBundle('ghost', { containerId: 'ghost', sandboxId: 'pod-a', loops: [{ device: '/dev/loop99998', file: fs.realpathSync(img), volume: '/kubelet/gone' }], volumes: ['/kubelet/gone'] });
    const log = recordingLog();
    await new RuncBackend(reg).releaseBundle(path.join(scratch, 'bundles', 'sidecar'), log);
    // The app still uses the image: its device and the pod's record stay; vol2 goes.
    assert.ok(backs(a1.split(' ')[0], img));
    assert.ok(!backs(s2.split(' ')[0], img2));
    assert.deepStrictEqual(ids(), ['pod-a rw']);
    assert.deepStrictEqual(reg.sandboxesOf('/kubelet/vol2'), []);
    assert.deepStrictEqual(log.lines.filter((l) => l.level === 'warn'), []);
    fakeBundle('ghost', { containerId: 'ghost', sandboxId: 'pod-a', loops: [{ device: a1.split(' ')[0], file: '/elsewhere.img', volume: '/kubelet/gone' }], volumes: ['/kubelet/gone'] });
    await release(ctx('app', 'pod-a'));
    assert.ok(!backs(a1.split(' ')[0], img), 'a sibling listing the number for another image does not keep it');
    assert.deepStrictEqual(ids(), []);
    fs.rmSync(path.join(scratch, 'bundles', 'ghost'), { recursive: true });
  });

  it('releases every volume of a container, each pod on its own, and keeps a record a sibling is still taking', async () => {
    const img2 = path.join(scratch, 'disk2.img');
    fs.writeFileSync(img2, Buffer.alloc(1 << 20));
    reg.add('/kubelet/vol2', JSON.stringify({ 'volume-type': 'directvol', device: img2, fstype: 'ext4' }));
    const [a, b] = await prepareIn(ctx('app', 'pod-a'), {}, [[IMG_VOL, 'ro'], ['/kubelet/vol2', 'rw']]);
    const [r] = await prepare(ctx('reader', 'pod-b'), 'ro');
    await release(ctx('app', 'pod-a'));
    assert.ok(!backs(a.split(' ')[0], img));
    assert.ok(!backs(b.split(' ')[0], img2));
    assert.deepStrictEqual(ids(), ['pod-b ro'], 'pod-b reads on');
    assert.ok(backs(r.split(' ')[0], img));
    // A sibling caught between attaching and listing the volume (its state names the loop only) keeps the record.
    // (It lists a loop of another volume too: one loop of this volume is enough.)
    fakeBundle('starting', { containerId: 'starting', sandboxId: 'pod-b', loops: [{ device: '/dev/loop99997', file: '/elsewhere.img', volume: '/kubelet/other' }, { device: r.split(' ')[0], file: fs.realpathSync(img), volume: IMG_VOL }], volumes: [] });
    await release(ctx('reader', 'pod-b'));
    assert.deepStrictEqual(ids(), ['pod-b ro']);
    assert.ok(backs(r.split(' ')[0], img));
    await new RuncBackend(reg).releaseBundle(path.join(scratch, 'bundles', 'starting'), quiet);
    assert.deepStrictEqual(ids(), []);
  });

  it('detaches the loop devices of a state written before devices were shared per pod', async () => {
    const dev = execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim();
    fakeBundle('legacy', { containerId: 'legacy', sandboxId: 'pod-l', loops: [{ device: dev, file: fs.realpathSync(img) }], volumes: [] });
    const log = recordingLog();
    await new RuncBackend(reg).releaseBundle(path.join(scratch, 'bundles', 'legacy'), log);
    assert.ok(!backs(dev, img));
    assert.deepStrictEqual(log.lines.filter((l) => l.level === 'warn'), []);
    assert.ok(!fs.existsSync(path.join(scratch, 'bundles', 'legacy', 'katavol-runc.json')));
  });

  it('a record it cannot remove is logged; the device is still detached and the other volumes released', async () => {
    const [a] = await prepare(ctx('app', 'pod-a'), 'rw');
    const record = path.join(reg.entryDir(IMG_VOL), 'pod-a');
    fs.rmSync(record);
    fs.mkdirSync(path.join(record, 'in-the-way'), { recursive: true });
    const log = recordingLog();
    await new RuncBackend(reg).release({ ...ctx('app', 'pod-a'), log });
    assert.ok(!backs(a.split(' ')[0], img));
    const warns = log.lines.filter((l) => l.level === 'warn');
    assert.deepStrictEqual(warns.map((l) => [l.msg, l.meta?.volume]), [['releasing volume failed', IMG_VOL]]);
    assert.match(String(warns[0].meta?.error), /pod-a/);
    fs.rmSync(record, { recursive: true });
  });

  it('a Create that fails part-way gives back what it took: loop device, record and bundle state', async () => {
    const blk = path.join(scratch, 'blk');
    execFileSync('mknod', [blk, 'b', '7', '247']);
    reg.add('/kubelet/blk', JSON.stringify({ 'volume-type': 'directvol', device: blk, fstype: 'ext4' }));
    // Another pod takes the block device between our check and our record.
    const racer = new Registry(reg.root);
    const recordIf = reg.recordSandboxIf.bind(reg);
    reg.recordSandboxIf = (vp, id, backend, readOnly, check) => {
      if (vp === '/kubelet/blk') racer.recordSandbox(vp, 'pod-racer', 'runc', false);
      recordIf(vp, id, backend, readOnly, check);
    };
    const c = ctx('app', 'pod-a');
    await assert.rejects(prepareIn(c, {}, [[IMG_VOL, 'rw'], ['/kubelet/blk', 'rw']]), /already used by sandbox pod-racer \(read-write\)/);
    assert.deepStrictEqual(loops(), []);
    assert.deepStrictEqual(ids(), []);
    assert.deepStrictEqual(fs.readdirSync(c.bundle), []);
  });

  it('after a crash, `delete` of each bundle in any order detaches the device with the last one', async () => {
    const [dev] = (await prepare(ctx('app', 'pod-a'), 'rw'))[0].split(' ');
    await prepare(ctx('sidecar', 'pod-a'), 'rw');
    await new RuncBackend(reg).releaseBundle(path.join(scratch, 'bundles', 'sidecar'), quiet);
    assert.deepStrictEqual(loops(), [`${dev} 0`]);
    await new RuncBackend(reg).releaseBundle(path.join(scratch, 'bundles', 'app'), quiet);
    assert.deepStrictEqual(loops(), []);
    assert.deepStrictEqual(ids(), []);
  });

  // A release SIGKILLed at each of its steps (in a process of its own, killed by itself at that step), then
  // the next release from the bundle's state, as the crash-path `delete` does: nothing may be left.
  for (const step of ['after the detach', 'before the record is dropped', 'after the record is dropped'] as const) {
    it(`a release SIGKILLed ${step} is finished by the next one: device and record gone`, async () => {
      const { spawnSync } = await import('child_process');
      const [dev] = (await prepare(ctx('app', 'pod-a'), 'rw'))[0].split(' ');
      const record = path.join(reg.entryDir(IMG_VOL), 'pod-a');
      const dist = path.resolve(__dirname, '..', '..', 'src');
      const worker = `
        const fs = require('fs'); const cp = require('child_process');
        const die = () => process.kill(process.pid, 'SIGKILL');
        const step = process.argv[2];
        if (step === 'after the detach') {
          const exec = cp.execFileSync;
          cp.execFileSync = (...a) => { const r = exec(...a); if (a[1].includes('--detach')) die(); return r; };
        } else {
          const rm = fs.rmSync;
          fs.rmSync = (p, o) => { if (p === process.argv[3] && step === 'before the record is dropped') die(); rm(p, o); if (p === process.argv[3]) die(); };
        }
        const { RuncBackend } = require(${JSON.stringify(path.join(dist, 'backends', 'runc.js'))});
        const { Registry } = require(${JSON.stringify(path.join(dist, 'volumes', 'registry.js'))});
        const log = { debug() {}, info() {}, warn() {}, error() {} };
        new RuncBackend(new Registry(${JSON.stringify(reg.root)})).releaseBundle(process.argv[1], log).then(() => process.stdout.write('finished'));`;
      const r = spawnSync(process.execPath, ['-e', worker, path.join(scratch, 'bundles', 'app'), step, record], { encoding: 'utf8' });
      assert.strictEqual(r.signal, 'SIGKILL', `the release was killed ${step}: ${r.stdout}${r.stderr}`);
      assert.deepStrictEqual(loops(), [], 'the device went before the kill');
      assert.strictEqual(fs.existsSync(record), step !== 'after the record is dropped', 'the kill came where meant');
      await new RuncBackend(reg).releaseBundle(path.join(scratch, 'bundles', 'app'), quiet);
      assert.deepStrictEqual(loops(), [], `no loop device (${dev}) left`);
      assert.deepStrictEqual(ids(), [], 'no sandbox record left');
      assert.ok(!fs.existsSync(reg.sandboxModeFile(IMG_VOL, 'pod-a')), 'nor its mode file');
      assert.deepStrictEqual(fs.readdirSync(path.join(scratch, 'bundles', 'app')), [], 'the bundle\'s state is gone');
    });
  }

  it('containers of the pod released at the same moment in separate processes leave nothing', async () => {
    const { spawn } = await import('child_process');
    for (let i = 0; i < 3; i++) await prepare(ctx(`c${i}`, 'pod-a'), 'rw');
    const dist = path.resolve(__dirname, '..', '..', 'src');
    const worker = `
      const { RuncBackend } = require(${JSON.stringify(path.join(dist, 'backends', 'runc.js'))});
      const { Registry } = require(${JSON.stringify(path.join(dist, 'volumes', 'registry.js'))});
      const log = { debug() {}, info() {}, warn() {}, error() {} };
      setTimeout(() => new RuncBackend(new Registry(${JSON.stringify(reg.root)})).releaseBundle(process.argv[1], log)
        .then(() => process.stdout.write('OK'), (e) => process.stdout.write(String(e))), Number(process.argv[2]) - Date.now());`;
    const startAt = String(Date.now() + 1500);
    const runs = await Promise.all([0, 1, 2].map((i) => new Promise<string>((resolve) => {
      const p = spawn(process.execPath, ['-e', worker, path.join(scratch, 'bundles', `c${i}`), startAt]);
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.on('close', () => resolve(out));
    })));
    assert.deepStrictEqual(runs, ['OK', 'OK', 'OK']);
    assert.deepStrictEqual(loops(), []);
    assert.deepStrictEqual(ids(), []);
  });
});

for (const kind of ['image file', 'block device'] as const) describe(`runc backend: racing Creates for one read-write ${kind}`, () => {
  it('lets exactly one of several concurrent processes take it', async () => {
    const { spawn } = await import('child_process');
    const scratch = scratchDir('runc-race');
    const root = path.join(scratch, 'root');
    const img = path.join(scratch, 'disk.img');
    // A block device node is never opened by prepare: only its records decide.
    if (kind === 'image file') fs.writeFileSync(img, Buffer.alloc(1 << 20));
    else execFileSync('mknod', [img, 'b', '7', '251']);
    new Registry(root).add('/kubelet/race', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
    const dist = path.resolve(__dirname, '..', '..', 'src');
    // Each worker prepares its own container with the volume read-write and reports the outcome.
    const worker = `
      const path = require('path'); const fs = require('fs');
      const { RuncBackend } = require(${JSON.stringify(path.join(dist, 'backends', 'runc.js'))});
      const { Registry } = require(${JSON.stringify(path.join(dist, 'volumes', 'registry.js'))});
      const reg = new Registry(${JSON.stringify(root)});
      const id = process.argv[1]; const bundle = path.join(${JSON.stringify(scratch)}, 'b-' + id); fs.mkdirSync(bundle);
      const mount = { destination: '/d', type: 'directvol', source: '/kubelet/race', options: ['rw'] };
      const v = { index: 0, mount, volumePath: '/kubelet/race', entryDir: reg.entryDir('/kubelet/race'), file: reg.mountInfoFile('/kubelet/race'), info: reg.read('/kubelet/race').info, readOnly: false };
      const log = { debug() {}, info() {}, warn() {}, error() {} };
      // Start together (modules already loaded), so the check-then-attach windows overlap.
      setTimeout(() => new RuncBackend(reg).prepare({ containerId: id, sandboxId: id, bundle, log }, { mounts: [mount] }, [v])
        .then(() => process.stdout.write('OK'), (e) => process.stdout.write('REFUSED ' + e.message)), Number(process.argv[2]) - Date.now());`;
    const startAt = String(Date.now() + 2000);
    const runs = await Promise.all(['c1', 'c2', 'c3', 'c4'].map((id) => new Promise<string>((resolve) => {
      const p = spawn(process.execPath, ['-e', worker, id, startAt]);
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.on('close', () => resolve(out));
    })));
    try {
      assert.strictEqual(runs.filter((r) => r === 'OK').length, 1, runs.join('\n'));
      const refusal = kind === 'image file' ? /image ".*" is already in use by pod c\d \(read-write, \/dev\/loop\d+\); a read-write volume belongs to one pod at a time/ : /already used by sandbox c\d \(read-write\); a read-write volume can be held by one sandbox at a time/;
      for (const r of runs.filter((x) => x !== 'OK')) assert.match(r, refusal);
    } finally {
      const reg = new Registry(root);
      for (const id of ['c1', 'c2', 'c3', 'c4']) await new RuncBackend(reg).releaseBundle(path.join(scratch, `b-${id}`), quiet);
      const left = execFileSync('losetup', ['-j', img], { encoding: 'utf8' });
      if (kind === 'image file') detachLoopsOf(img);
      fs.rmSync(scratch, { recursive: true, force: true });
      assert.deepStrictEqual(left, '');
    }
  });
});

describe('loop devices of an image (loop.ts)', () => {
  let dir: string;
  const lf = new LoopFixture();
  before(() => { dir = scratchDir('loops'); });
  after(async () => {
    await lf.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('finds the loop devices backed by a file (through a symlink too) from sysfs, as losetup --associated does', () => {
    const img = imageFile(dir, 'img');
    const link = path.join(dir, 'link');
    fs.symlinkSync(img, link);
    assert.deepStrictEqual(loop.loopsOf(img), []);
    lf.attach(img);
    lf.attach(img, true);
    const fromLosetup = execFileSync('losetup', ['-j', img, '--noheadings', '-O', 'NAME,RO'], { encoding: 'utf8' })
      .split('\n').filter(Boolean).map((l) => { const [device, ro] = l.trim().split(/\s+/); return { device, readOnly: ro === '1' }; })
      .sort((a, b) => a.device.localeCompare(b.device, 'en', { numeric: true }));
    assert.deepStrictEqual(loop.loopsOf(img), fromLosetup);
    assert.deepStrictEqual(loop.loopsOf(link), fromLosetup);
    assert.deepStrictEqual(fromLosetup.map((l) => l.readOnly).sort(), [false, true]);
    assert.deepStrictEqual(loop.loopsOf(path.join(dir, 'missing')), []);
  });

  it('attaches read-write or read-only, naming the device before the attach; detaches only a device still backed by the file', () => {
    const img = imageFile(dir, 'img2');
    const named: string[] = [];
    const mine: string[] = [];
    try {
      const rw = loop.attach(img, false, (d) => { named.push(d); assert.strictEqual(loop.backingFile(d), '', 'named before it is attached'); });
      mine.push(rw);
      const ro = loop.attach(img, true, (d) => named.push(d));
      mine.push(ro);
      assert.deepStrictEqual(named, [rw, ro]);
      assert.deepStrictEqual([loop.isReadOnly(rw), loop.isReadOnly(ro), loop.isReadOnly('/dev/loop99999')], [false, true, false]);
      assert.strictEqual(loop.backingFile(rw), img);
      assert.strictEqual(loop.backingFile('/dev/loop99999'), '');
      assert.strictEqual(loop.detach(rw, path.join(dir, 'another.img')), false, 'not the file it is backed by');
      assert.strictEqual(loop.detach('/dev/loop99999', img), false);
      assert.strictEqual(loop.detach(rw, img), true);
      assert.strictEqual(loop.detach(ro, img), true);
      mine.length = 0;
    } finally {
      for (const d of mine) detachOwnLoop(d, img);
    }
  });

  /** Plays another process that takes each device named to beforeAttach before our attach (one decoy device at a time). */
  const thief = (decoy: string) => {
    let stolen: string | undefined;
    return {
      steal(d: string): void {
        if (stolen) detachOwnLoop(stolen, decoy);
        stolen = undefined;
        try {
          execFileSync('losetup', [d, decoy], { stdio: 'pipe' });
          stolen = d;
        } catch { /* a parallel test took it first: lost to another process all the same */ }
      },
      giveBack(): void {
        if (stolen) detachOwnLoop(stolen, decoy);
        stolen = undefined;
      },
    };
  };

  it('tries the next free device when another process takes the one it found, twenty-one times at most', () => {
    const img = imageFile(dir, 'img3');
    const t = thief(imageFile(dir, 'decoy3'));
    const named: string[] = [];
    try {
      // Two lost races, then the attach goes through.
      const dev = loop.attach(img, false, (d) => { named.push(d); if (named.length <= 2) t.steal(d); });
      // (Under load a parallel test may win a race of its own too.)
      assert.ok(named.length >= 3 && named.length < 10, `tried ${named.length} devices`);
      assert.strictEqual(loop.backingFile(dev), img);
      assert.ok(loop.detach(dev, img));
      // Losing every race: it gives up with what losetup said about the last one. (The thief stops after
      // thirty, so code that never gives up ends with an attach instead of a loop.)
      named.length = 0;
      assert.throws(() => loop.attach(img, false, (d) => { named.push(d); if (named.length <= 30) t.steal(d); }),
        (e: Error) => new RegExp(`^losetup ${named[named.length - 1]} ${img}: losetup: ${img}: failed to set up loop device: Device or resource busy$`).test(e.message));
      assert.strictEqual(named.length, 21);
    } finally {
      t.giveBack();
      detachLoopsOf(img);
    }
  });

  it('a device lost to another process is retried whatever losetup said about the attach', () => {
    // The image is missing, so losetup complains about it, not about the device; but the device was taken
    // meanwhile, so the next one is tried (there the missing image is what fails).
    const missing = path.join(dir, 'missing3.img');
    const t = thief(imageFile(dir, 'decoy4'));
    const named: string[] = [];
    try {
      assert.throws(() => loop.attach(missing, false, (d) => { named.push(d); if (named.length <= 2) t.steal(d); }), /No such file or directory$/);
      assert.ok(named.length >= 3 && named.length < 10, `tried ${named.length} devices`);
    } finally {
      t.giveBack();
    }
  });

  it('detaches a device over an image whose name holds " (deleted)"', () => {
    const img = imageFile(dir, 'x (deleted) y.img');
    const dev = loop.attach(img, false, () => undefined);
    try {
      assert.strictEqual(loop.backingFile(dev), img);
      assert.strictEqual(loop.detach(dev, img), true);
    } finally {
      detachOwnLoop(dev, img);
    }
  });

  it('a failing attach is not retried as a lost race and says what losetup said', () => {
    const named: string[] = [];
    assert.throws(() => loop.attach(path.join(dir, 'missing.img'), false, (d) => named.push(d)),
      (e: Error) => new RegExp(`^losetup /dev/loop\\d+ ${dir}/missing\\.img: losetup: ${dir}/missing\\.img: .*No such file or directory$`).test(e.message));
    // Only a device lost to another process is retried (twenty times at most); under load that can happen once or twice.
    assert.ok(named.length < 10, `tried ${named.length} devices`);
  });
});

describe('runc backend: a block device its own containers have mounted is not in use by the host', () => {
  const VOLNS = '/kubelet/ns-vol';
  let scratch: string;
  let reg: Registry;
  const fx = useScratchRegistry('runc-ns');
  const lf = fx.loops;
  beforeEach(() => {
    ({ scratch, reg } = fx);
  });

  it('skips the mounts in the namespaces of containers whose bundles list the volume, and only those', async () => {
    const dev = lf.attach(mkExt4(scratch, 'fs.img', 16 << 20));
    reg.add(VOLNS, JSON.stringify({ 'volume-type': 'directvol', device: dev, fstype: 'ext4' }));
    // A running container of ours with the volume: runc's shim wrote its init pid into the bundle.
    const pid = await lf.mountInOtherNamespace(dev, path.join(scratch, 'mnt'));
    const running = path.join(scratch, 'bundles', 'c0');
    fs.mkdirSync(running, { recursive: true });
    const ctx = (id: string): PrepareContext => {
      fs.mkdirSync(path.join(scratch, 'bundles', id), { recursive: true });
      return { containerId: id, sandboxId: 'pod-a', bundle: path.join(scratch, 'bundles', id), log: quiet };
    };
    const mount = { destination: '/d', type: 'bind', source: VOLNS, options: ['rbind', 'rw'] };
    const prepare = (c: PrepareContext) => new RuncBackend(reg).prepare(c, { mounts: [mount] }, [
      { index: 0, mount, volumePath: VOLNS, entryDir: reg.entryDir(VOLNS), file: reg.mountInfoFile(VOLNS), info: reg.read(VOLNS).info, readOnly: false },
    ]);
    const write = (volumes: string[], initPid?: string) => {
      fs.writeFileSync(path.join(running, 'katavol-runc.json'), JSON.stringify({ containerId: 'c0', sandboxId: 'pod-a', loops: [], volumes }));
      if (initPid !== undefined) fs.writeFileSync(path.join(running, 'init.pid'), initPid);
    };
    // Not started yet (no init.pid), or started with another volume: the mount is the host's.
    write([VOLNS]);
    await assert.rejects(prepare(ctx('c1')), /is mounted at .*mnt/);
    write(['/kubelet/other'], `${pid}\n`);
    await assert.rejects(prepare(ctx('c1')), /is mounted at .*mnt/);
    write([VOLNS], `${pid}\n`);
    const out = await prepare(ctx('c1'));
    assert.deepStrictEqual(out.spec.mounts, [{ destination: '/d', type: 'ext4', source: dev, options: ['rw'] }]);
    await new RuncBackend(reg).release(ctx('c1'));
  });
});

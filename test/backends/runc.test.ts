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
import { imageFile } from '../support/disks';
import { quietLog as quiet } from '../support/volumes';

const VOL = '/kubelet/block-vol';

describe('runc backend: block device sharing (runc.ts)', () => {
  let scratch: string;
  let reg: Registry;
  let device: string;

  beforeEach(() => {
    scratch = scratchDir('runc-blk');
    reg = new Registry(path.join(scratch, 'root'));
    // A block device node that is never opened: prepare only stats it and rewrites the mount.
    device = path.join(scratch, 'blk');
    execFileSync('mknod', [device, 'b', '7', '250']);
    reg.add(VOL, JSON.stringify({ 'volume-type': 'directvol', device, fstype: 'ext4' }));
  });
  afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

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
  const prepare = async (c: PrepareContext, ...modes: Array<'ro' | 'rw'>): Promise<string[]> => {
    const mounts = modes.map((m, i) => ({ destination: `/data${i}`, type: 'bind', source: IMG_VOL, options: ['rbind', m] }));
    const volumes = mounts.map((mount, index) => ({
      index, mount, volumePath: IMG_VOL, entryDir: reg.entryDir(IMG_VOL), file: reg.mountInfoFile(IMG_VOL), info: reg.read(IMG_VOL).info, readOnly: modes[index] === 'ro',
    }));
    const out = await new RuncBackend(reg).prepare(c, { mounts }, volumes);
    return out.spec.mounts!.map((m) => `${m.source} ${m.options!.join(',')}`);
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
      assert.deepStrictEqual(execFileSync('losetup', ['-j', img], { encoding: 'utf8' }), '');
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  });
});

describe('loop devices of an image (loop.ts)', () => {
  let dir: string;
  const attached: string[] = [];
  before(() => { dir = scratchDir('loops'); });
  after(() => {
    for (const d of attached) try { execFileSync('losetup', ['-d', d]); } catch { /* gone */ }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('finds the loop devices backed by a file (through a symlink too) from sysfs, as losetup --associated does', () => {
    const img = imageFile(dir, 'img');
    const link = path.join(dir, 'link');
    fs.symlinkSync(img, link);
    assert.deepStrictEqual(loop.loopsOf(img), []);
    attached.push(execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim());
    attached.push(execFileSync('losetup', ['-f', '--show', '--read-only', img], { encoding: 'utf8' }).trim());
    const fromLosetup = execFileSync('losetup', ['-j', img, '--noheadings', '-O', 'NAME,RO'], { encoding: 'utf8' })
      .split('\n').filter(Boolean).map((l) => { const [device, ro] = l.trim().split(/\s+/); return { device, readOnly: ro === '1' }; })
      .sort((a, b) => a.device.localeCompare(b.device, 'en', { numeric: true }));
    assert.deepStrictEqual(loop.loopsOf(img), fromLosetup);
    assert.deepStrictEqual(loop.loopsOf(link), fromLosetup);
    assert.deepStrictEqual(fromLosetup.map((l) => l.readOnly).sort(), [false, true]);
    assert.deepStrictEqual(loop.loopsOf(path.join(dir, 'missing')), []);
  });
});

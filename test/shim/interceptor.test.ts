// The Create interceptor against hostile or broken bundles: every outcome is "no volumes" or a
// CreateRefused (code 9) with a message; never another exception, never a half-rewritten bundle.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { Writable } from 'stream';
import { spawnSync } from 'child_process';
import { CreateInterceptor, CreateRefused } from '../../src/shim/interceptor';
import { createLogger } from '../../src/shim/logger';
import { createBackend } from '../../src/backends';
import { loadConfig } from '../../src/shim/config';
import { Registry } from '../../src/volumes/registry';
import { makeExt4Image, tmpDir } from '../support/containerd';
import { DaemonHolds, readDaemonHolds, readHeld } from '../../src/shim/held';
import { MountVolumeError } from '../../src/volumes/resolver';
import { VolumeError } from '../../src/volumes/types';
import { UnreadableFileError } from '../../src/volumes/files';
import { HELD_FILE } from '../../src/backends/backend';

describe('Create interceptor with broken bundles and registry entries', () => {
  let dir: string;
  let registry: Registry;
  let icp: CreateInterceptor;
  beforeEach(() => {
    dir = tmpDir('katavol-icp-');
    registry = new Registry(path.join(dir, 'volumes'));
    const cfgFile = path.join(dir, 'katavol.json');
    fs.writeFileSync(cfgFile, JSON.stringify({ backend: 'runc' }));
    const config = loadConfig({ KATAVOL_CONFIG: cfgFile, PATH: process.env.PATH });
    const log = createLogger({ level: 'error', stream: new Writable({ write: (_c, _e, cb) => cb() }) });
    icp = new CreateInterceptor({ volumeRoot: registry.root, log, makeBackend: () => createBackend('runc', { config, volumeRoot: registry.root }) });
  });
  afterEach(() => {
    // Whatever a failing Create (or a mutant of it) left attached over this test's images goes first.
    for (const img of fs.readdirSync(dir).filter((n) => n.endsWith('.img'))) {
      const r = spawnSync('losetup', ['-j', path.join(dir, img)], { encoding: 'utf8' });
      for (const l of r.stdout.split('\n').filter(Boolean)) spawnSync('losetup', ['-d', l.split(':')[0]]);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const bundleWith = (text: string): string => {
    const b = fs.mkdtempSync(path.join(dir, 'b-'));
    fs.writeFileSync(path.join(b, 'config.json'), text);
    return b;
  };

  // Each case says what it must do: pass through (no direct volume found: nothing to do) or be
  // refused with a message that says why; a case that did the other would fail.
  const PASS = 'passed through';
  const specs: Array<[string, string, RegExp | typeof PASS]> = [
    ['missing config.json', '', /cannot read OCI spec .*config\.json: ENOENT/],
    ['not JSON', '{"mounts": [', /cannot read OCI spec .*config\.json: /],
    ['JSON null', 'null', /OCI spec .*config\.json is not a JSON object/],
    ['a string', '"spec"', /OCI spec .*config\.json is not a JSON object/],
    ['mounts is an object', '{"mounts": {"a": 1}}', /"mounts" is not a list/],
    ['an empty object', '{}', PASS],
    ['mounts holds null and numbers', '{"mounts": [null, 3, "x"]}', PASS],
    ['directvol without source', '{"mounts": [{"destination": "/d", "type": "directvol"}]}', /mount "\/d": .*a directvol mount needs a source/],
    ['source is a number', '{"mounts": [{"destination": "/d", "type": "directvol", "source": 5}]}', /mount "\/d": .*a directvol mount needs a source/],
    ['options is a string', '{"mounts": [{"destination": "/d", "type": "directvol", "source": "/v", "options": "rw"}]}', /mount "\/d": volume "\/v": is not registered/],
    ['bind with options as object', '{"mounts": [{"destination": "/d", "type": "bind", "source": "/v", "options": {"rbind": true}}]}', PASS],
    ['volume path too long to be registered', `{"mounts": [{"destination": "/d", "type": "directvol", "source": "/${'a'.repeat(400)}"}]}`, /mount "\/d": volume "\/a{400}": /],
    ['annotations is a list', '{"annotations": [1], "mounts": [{"destination": "/d", "type": "directvol", "source": "/v"}]}', /"annotations" is not an object/],
    ['annotations is null', '{"annotations": null, "mounts": []}', /^katavol: container "c1": OCI spec .*config\.json "annotations" is not an object; containerd writes a valid runtime spec here, so the bundle was changed by something else$/],
    ['annotations is a string', '{"annotations": "x"}', /"annotations" is not an object/],
    ['annotations is an object', '{"annotations": {"a": "b"}, "mounts": [{"destination": "/d", "type": "tmpfs"}]}', PASS],
  ];
  for (const [name, text, expected] of specs) {
    it(`${name}: ${expected === PASS ? 'passed through' : 'refused cleanly'}, bundle untouched`, async () => {
      const b = bundleWith(text);
      if (name === 'missing config.json') fs.rmSync(path.join(b, 'config.json'));
      const before = fs.readdirSync(b).sort();
      let outcome: RegExp | typeof PASS = PASS;
      try {
        const r = await icp.create('c1', b);
        assert.equal(r, undefined, 'no volume found means nothing to do');
      } catch (e) {
        assert.ok(e instanceof CreateRefused, `${(e as Error).stack}`);
        assert.match((e as Error).message, /^katavol: container "c1": /);
        assert.doesNotMatch((e as Error).message, /is not a function|Cannot read|undefined/);
        assert.ok(expected !== PASS, `refused, but it should pass through: ${(e as Error).message}`);
        assert.match((e as Error).message, expected);
        outcome = expected;
      }
      assert.equal(outcome, expected, 'passed through, but it should be refused');
      assert.deepEqual(fs.readdirSync(b).sort(), before);
    });
  }

  it('a registry entry whose mountInfo.json is garbage, a directory, or huge is refused with its file named', async () => {
    const img = path.join(dir, 'd.img');
    makeExt4Image(img, 1);
    registry.add('/v/ok', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
    const file = registry.mountInfoFile('/v/ok');
    for (const bad of ['\u0000\u0001garbage', '{"volume-type":"directvol","device":"x","fstype":"ext4","metadata":{"a":1}}', '[]']) {
      fs.writeFileSync(file, bad);
      const b = bundleWith(JSON.stringify({ mounts: [{ destination: '/d', type: 'directvol', source: '/v/ok' }] }));
      await assert.rejects(icp.create('c2', b), (e: Error) => e instanceof CreateRefused && e.message.includes(file) && e.message.includes('container "c2": mount "/d"'));
      assert.deepEqual(fs.readdirSync(b), ['config.json']);
    }
    fs.rmSync(file);
    fs.mkdirSync(file);
    const b = bundleWith(JSON.stringify({ mounts: [{ destination: '/d', type: 'directvol', source: '/v/ok' }] }));
    await assert.rejects(icp.create('c3', b), (e: Error) => e instanceof CreateRefused && e.message.includes('mountInfo.json'));
  });

  it('a FIFO, socket, symbolic link or huge file as mountInfo.json or config.json is refused at once, never waited on or followed', async () => {
    // Before: readFileSync on a FIFO blocked Create (and the daemon) forever.
    const img = path.join(dir, 'f.img');
    makeExt4Image(img, 1);
    registry.add('/v/odd', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
    const file = registry.mountInfoFile('/v/odd');
    const spec = JSON.stringify({ mounts: [{ destination: '/d', type: 'directvol', source: '/v/odd' }] });
    const cases: Array<[string, () => void, RegExp]> = [
      ['FIFO', () => spawnSync('mkfifo', [file]), /mountInfo\.json is a FIFO, not a regular file/],
      ['symlink', () => fs.symlinkSync(img, file), /mountInfo\.json is a symbolic link; katavol does not follow links here/],
      ['socket', () => spawnSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(file)})`]), /mountInfo\.json is a unix socket, not a regular file/],
      ['huge', () => fs.writeFileSync(file, ' '.repeat((1 << 20) + 1)), /mountInfo\.json is 1048577 bytes, more than the 1048576 katavol reads/],
    ];
    for (const [name, make, expected] of cases) {
      fs.rmSync(file, { force: true });
      make();
      const b = bundleWith(spec);
      await assert.rejects(icp.create('c9', b), (e: Error) => e instanceof CreateRefused && expected.test(e.message) && e.message.includes('container "c9": mount "/d": volume "/v/odd"')
        && e.message.includes('katavol direct-volume remove --force /v/odd'), name);
      assert.deepEqual(fs.readdirSync(b), ['config.json'], name);
    }
    const b = bundleWith('');
    fs.rmSync(path.join(b, 'config.json'));
    spawnSync('mkfifo', [path.join(b, 'config.json')]);
    await assert.rejects(icp.create('c10', b), (e: Error) => e instanceof CreateRefused && /cannot read OCI spec: .*config\.json is a FIFO, not a regular file/.test(e.message));
  });

  it('near misses of our mount types (directvolume, spdk, vfio) are refused with "did you mean", not passed to runc', async () => {
    for (const [type, meant] of [['directvolume', 'directvol'], ['spdk', 'spdkvol'], ['vfio', 'vfiovol'], ['direct_vol', 'directvol'], ['SPDKVOL', 'spdkvol']]) {
      const b = bundleWith(JSON.stringify({ mounts: [{ destination: '/d', type, source: '/kubelet/v1', options: ['rbind'] }] }));
      await assert.rejects(icp.create('c4', b), (e: Error) => e instanceof CreateRefused && e.code === 9
        && e.message.includes(`container "c4": mount "/d": volume "/kubelet/v1": mount type "${type}" is not a direct-volume type`)
        && e.message.includes(`did you mean type=${meant}? e.g. --mount type=${meant},src=/kubelet/v1,dst=/d`), type);
      assert.deepEqual(fs.readdirSync(b), ['config.json']);
    }
    // Ordinary mounts are not judged.
    for (const type of ['proc', 'tmpfs', 'ext4', 'bind', 'overlay']) {
      assert.equal(await icp.create('c5', bundleWith(JSON.stringify({ mounts: [{ destination: '/d', type, source: '/x' }] }))), undefined, type);
    }
  });

  it('"not registered" names the registry root and where it came from', async () => {
    const origin = '"volumeRoot" in /etc/katavol/test.json';
    const log = createLogger({ level: 'error', stream: new Writable({ write: (_c, _e, cb) => cb() }) });
    const withOrigin = new CreateInterceptor({ volumeRoot: registry.root, volumeRootOrigin: origin, log, makeBackend: () => { throw new Error('not reached'); } });
    const b = bundleWith(JSON.stringify({ mounts: [{ destination: '/d', type: 'directvol', source: '/kubelet/none' }] }));
    await assert.rejects(withOrigin.create('c6', b), (e: Error) => e instanceof CreateRefused
      && e.message.includes(`volume "/kubelet/none": is not registered in the registry root ${registry.root} (from ${origin})`));
  });

  it('a refusal is a FailedPrecondition status for containerd, with the error underneath as its cause', async () => {
    const b = bundleWith('{"mounts": [');
    const e = await icp.create('c1', b).then(() => assert.fail('accepted'), (x: unknown) => x);
    assert.ok(e instanceof CreateRefused);
    assert.strictEqual(e.name, 'CreateRefused');
    assert.ok(e.cause instanceof SyntaxError, 'the JSON parse error');
    assert.deepEqual(e.toStatus(), { code: 9, message: e.message, details: [] });
    const fifo = bundleWith('');
    fs.rmSync(path.join(fifo, 'config.json'));
    spawnSync('mkfifo', [path.join(fifo, 'config.json')]);
    await assert.rejects(icp.create('c1', fifo), (x: Error) => x instanceof CreateRefused && x.cause instanceof UnreadableFileError);
    await assert.rejects(icp.create('c1', bundleWith('{"mounts": [{"destination": "/d", "type": "directvol", "source": "/v/none"}]}')),
      (x: Error) => x instanceof CreateRefused && x.cause instanceof MountVolumeError && x.message === `katavol: ${x.cause.message}`);
  });

  it('a config.json that is a symbolic link (as some tools lay out bundles) is read through it', async () => {
    const b = fs.mkdtempSync(path.join(dir, 'b-'));
    fs.writeFileSync(path.join(dir, 'real.json'), '{"mounts": [{"destination": "/d", "type": "tmpfs"}]}');
    fs.symlinkSync(path.join(dir, 'real.json'), path.join(b, 'config.json'));
    assert.equal(await icp.create('c1', b), undefined);
  });

  it('a missing config.json is refused with the path and what it means', async () => {
    const b = bundleWith('');
    fs.rmSync(path.join(b, 'config.json'));
    await assert.rejects(icp.create('c1', b), (e: Error) => e instanceof CreateRefused
      && e.message === `katavol: container "c1": cannot read OCI spec ${path.join(b, 'config.json')}: ENOENT: it does not exist; containerd writes a valid runtime spec here, so the bundle was changed by something else`);
    assert.deepEqual(fs.readdirSync(b), []);
  });

  it('a spec nested deeper than 512 levels is refused before anything is taken when it has a volume, passed through when not', async () => {
    const img = path.join(dir, 'deep.img');
    makeExt4Image(img, 1);
    registry.add('/v/deep', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
    // The innermost list holds values of every kind: only objects and lists count as levels.
    const deep = (levels: number): string => `${'['.repeat(levels)}0, null, "s", true${']'.repeat(levels)}`;
    const mounts = '[{"destination": "/d", "type": "directvol", "source": "/v/deep"}]';
    const b = bundleWith(`{"process": ${deep(600)}, "mounts": ${mounts}}`);
    await assert.rejects(icp.create('c1', b), (e: Error) => e instanceof CreateRefused
      && e.message === `katavol: container "c1": OCI spec ${path.join(b, 'config.json')} is nested deeper than 512 levels; containerd writes specs a few levels deep, so the bundle was changed by something else`);
    await assert.rejects(icp.create('c1', bundleWith(`{"process": {"a": ${deep(599)}}, "mounts": ${mounts}}`)), /nested deeper than 512 levels/);
    assert.deepEqual(fs.readdirSync(b), ['config.json']);
    assert.deepEqual(registry.sandboxesOf('/v/deep'), []);
    assert.equal(await icp.create('c1', bundleWith(`{"process": ${deep(600)}, "mounts": []}`)), undefined);
    // 511 arrays under the spec object: 512 levels, the most accepted (rolled back at once).
    const ok = await icp.create('c2', bundleWith(`{"process": ${deep(511)}, "mounts": ${mounts}}`));
    assert.ok(ok);
    await ok.rollback('test');
    await assert.rejects(icp.create('c3', bundleWith(`{"process": ${deep(512)}, "mounts": ${mounts}}`)), /nested deeper than 512 levels/);
  });

  describe('rollback on real loop devices (runc backend)', () => {
    /** Loop devices over this test's image (by backing file: other tests' devices do not count). */
    const loopsOf = (img: string): string[] => {
      const r = spawnSync('losetup', ['-j', img], { encoding: 'utf8' });
      return r.stdout.split('\n').filter(Boolean).map((l) => l.split(':')[0]);
    };
    afterEach(() => {
      for (const img of fs.readdirSync(dir).filter((n) => n.endsWith('.img'))) {
        for (const l of loopsOf(path.join(dir, img))) spawnSync('losetup', ['-d', l]);
      }
    });

    it('a Create rolled back (the downstream refused it) detaches its loop device and restores the bundle', async () => {
      const img = path.join(dir, 'r.img');
      makeExt4Image(img, 4);
      registry.add('/v/rb', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
      const text = JSON.stringify({ mounts: [{ destination: '/d', type: 'directvol', source: '/v/rb', options: ['rbind', 'rw'] }] });
      const b = bundleWith(text);
      const created = await icp.create('c7', b);
      assert.ok(created, 'the volume was found');
      const [loop] = loopsOf(img);
      assert.ok(loop, 'a loop device is attached over the image');
      const spec = JSON.parse(fs.readFileSync(path.join(b, 'config.json'), 'utf8'));
      assert.equal(spec.mounts[0].source, loop);
      assert.deepEqual(registry.sandboxesOf('/v/rb').map((u: { id: string }) => u.id), ['c7']);
      await created.rollback('downstream Create failed');
      assert.deepEqual(loopsOf(img), [], 'loop device detached');
      assert.equal(fs.readFileSync(path.join(b, 'config.json'), 'utf8'), text, 'config.json restored byte for byte');
      assert.deepEqual(fs.readdirSync(b), ['config.json'], 'no held record, state file or saved spec left');
      assert.deepEqual(registry.sandboxesOf('/v/rb'), [], 'the sandbox record is gone');
    });

    /** A registered ext4 image (its own file, so its loop devices are this test's). */
    const volume = (volumePath: string, name: string): string => {
      const img = path.join(dir, `${name}.img`);
      makeExt4Image(img, 4);
      registry.add(volumePath, JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
      return img;
    };
    const specWith = (source: string, annotations?: unknown): string =>
      JSON.stringify({ ...(annotations === undefined ? {} : { annotations }), mounts: [{ destination: '/d', type: 'directvol', source, options: ['rbind', 'rw'] }] });

    it('the sandbox is the CRI pod named by the io.kubernetes.cri.sandbox-id annotation, else the container itself', async () => {
      volume('/v/pod', 'pod');
      const cases: Array<[unknown, string]> = [
        [{ 'io.kubernetes.cri.sandbox-id': 'pod-a', other: 'x' }, 'pod-a'],
        [{ 'io.kubernetes.cri.sandbox-id': '' }, 'c1'],
        [{ 'io.kubernetes.cri.sandbox-id': 7 }, 'c1'],
        [{ 'io.kubernetes.cri.sandbox-id': ['pod-a'] }, 'c1'],
        [{ other: 'pod-a' }, 'c1'],
        [undefined, 'c1'],
      ];
      for (const [annotations, sandbox] of cases) {
        const b = bundleWith(specWith('/v/pod', annotations));
        const created = await icp.create('c1', b);
        assert.ok(created);
        assert.equal(created.ctx.sandboxId, sandbox, JSON.stringify(annotations));
        assert.equal(created.ctx.containerId, 'c1');
        assert.equal(created.ctx.bundle, b);
        assert.deepEqual(registry.sandboxesOf('/v/pod').map((u) => u.id), [sandbox], 'the registry records the sandbox as the volume\'s user');
        await created.rollback('test');
      }
    });

    it('two containers of one pod share a read-write volume; a container of another pod is refused', async () => {
      volume('/v/shared', 'shared');
      const pod = (id: string) => ({ 'io.kubernetes.cri.sandbox-id': id });
      const a = await icp.create('app', bundleWith(specWith('/v/shared', pod('pod-1'))));
      const s = await icp.create('sidecar', bundleWith(specWith('/v/shared', pod('pod-1'))));
      assert.ok(a && s);
      await assert.rejects(icp.create('intruder', bundleWith(specWith('/v/shared', pod('pod-2')))),
        (e: Error) => e instanceof CreateRefused && e.message.startsWith('katavol: container "intruder": mount "/d": volume "/v/shared": image ') && /already in use by pod pod-1/.test(e.message));
      await s.rollback('test');
      await a.rollback('test');
    });

    it('builds the backend once, on the first Create that needs it; a typeless bind counts where the backend mounts it as one', async () => {
      volume('/v/lazy', 'lazy');
      const log = createLogger({ level: 'error', stream: new Writable({ write: (_c, _e, cb) => cb() }) });
      const config = loadConfig({ KATAVOL_CONFIG: path.join(dir, 'katavol.json'), PATH: process.env.PATH });
      let built = 0;
      const counted = new CreateInterceptor({ volumeRoot: registry.root, log, makeBackend: () => { built++; return createBackend('runc', { config, volumeRoot: registry.root }); } });
      assert.equal(await counted.create('c0', bundleWith('{"mounts": [{"destination": "/d", "type": "tmpfs"}]}')), undefined);
      assert.equal(built, 0, 'no volume, no backend');
      const pod = { 'io.kubernetes.cri.sandbox-id': 'pod-l' };
      const typeless = JSON.stringify({ annotations: pod, mounts: [{ destination: '/d', source: '/v/lazy', options: ['rbind', 'rw'] }] });
      const a = await counted.create('c1', bundleWith(typeless));
      assert.ok(a, 'runc mounts a typeless bind as one: it is the volume');
      const b = await counted.create('c2', bundleWith(specWith('/v/lazy', pod)));
      assert.ok(b);
      assert.equal(built, 1);
      await b.rollback('test');
      await a.rollback('test');
      // runtime-rs passes a typeless mount through untouched.
      const cfgFile = path.join(dir, 'rr.json');
      fs.writeFileSync(cfgFile, JSON.stringify({ backend: 'runtime-rs' }));
      const rrConfig = loadConfig({ KATAVOL_CONFIG: cfgFile, PATH: process.env.PATH });
      const rr = new CreateInterceptor({ volumeRoot: registry.root, log, makeBackend: () => createBackend('runtime-rs', { config: rrConfig, volumeRoot: registry.root }) });
      assert.equal(await rr.create('c3', bundleWith(typeless)), undefined);
    });

    it('writes the rewritten spec and the kept original 0644, and a held record naming what a crashed daemon\'s delete must release', async () => {
      volume('/v/files', 'files');
      const text = specWith('/v/files', { 'io.kubernetes.cri.sandbox-id': 'pod-f' });
      const b = bundleWith(text);
      fs.chmodSync(path.join(b, 'config.json'), 0o600);
      const created = await icp.create('c1', b);
      assert.ok(created);
      for (const f of ['config.json', 'config.json.katavol-orig']) assert.equal(fs.statSync(path.join(b, f)).mode & 0o777, 0o644, f);
      assert.equal(fs.readFileSync(path.join(b, 'config.json.katavol-orig'), 'utf8'), text);
      assert.deepEqual(readHeld(b), { containerId: 'c1', sandboxId: 'pod-f', backend: 'runc', volumeRoot: registry.root });
      await created.rollback('test');
      assert.equal(readHeld(b), undefined);
    });

    it('a spec that cannot be rewritten is refused with the volumes released and config.json as it was', async () => {
      const img = volume('/v/rw', 'rw');
      const text = specWith('/v/rw');
      const b = bundleWith(text);
      fs.mkdirSync(path.join(b, 'config.json.katavol-orig')); // where the original is kept: a directory, by hand
      await assert.rejects(icp.create('c1', b), (e: Error) => e instanceof CreateRefused && e.cause instanceof Error
        && e.message === `katavol: container "c1": cannot rewrite ${path.join(b, 'config.json')}: ${e.cause.message}`);
      assert.equal(fs.readFileSync(path.join(b, 'config.json'), 'utf8'), text);
      assert.deepEqual(fs.readdirSync(b).sort(), ['config.json', 'config.json.katavol-orig']);
      assert.deepEqual(loopsOf(img), []);
      assert.deepEqual(registry.sandboxesOf('/v/rw'), []);
    });

    it('an unexpected failure inside the backend is a refusal with its text, never a crash', async () => {
      volume('/v/boom', 'boom');
      const log = createLogger({ level: 'error', stream: new Writable({ write: (_c, _e, cb) => cb() }) });
      const config = loadConfig({ KATAVOL_CONFIG: path.join(dir, 'katavol.json'), PATH: process.env.PATH });
      const broken = new TypeError('Cannot read the device table');
      const b = bundleWith(specWith('/v/boom'));
      const failing = new CreateInterceptor({ volumeRoot: registry.root, log, makeBackend: () => {
        const real = createBackend('runc', { config, volumeRoot: registry.root });
        return Object.assign(Object.create(real) as typeof real, { prepare: () => Promise.reject(broken) });
      } });
      await assert.rejects(failing.create('c1', b), (e: Error) => e instanceof CreateRefused && e.cause === broken && e.message === 'katavol: Cannot read the device table');
      assert.deepEqual(fs.readdirSync(b), ['config.json'], 'the held record is cleared');
    });

    it('a backend refusal names the container and the mount of the volume it is about, once', async () => {
      volume('/v/good', 'good');
      registry.add('/v/pci', JSON.stringify({ 'volume-type': 'vfiovol', device: '0000:3b:00.1', fstype: 'ext4' }));
      const file = registry.mountInfoFile('/v/pci');
      const b = bundleWith(JSON.stringify({ mounts: [
        { destination: '/a', type: 'directvol', source: '/v/good' },
        { destination: '/b', type: 'vfiovol', source: '/v/pci' },
      ] }));
      await assert.rejects(icp.create('c1', b), (e: Error) => e instanceof CreateRefused && e.code === 9
        && e.message === `katavol: container "c1": mount "/b": volume "/v/pci": volume type "vfiovol" needs a VM: the runc host backend realises only directvol volumes (${file}); run it with the runtime-rs backend (katavol config "backend": "runtime-rs"), or register a raw image or block device as directvol`);
      assert.deepEqual(fs.readdirSync(b), ['config.json']);
      // runtime-rs names the mount itself ("mount /d: ..."): the container is added, the mount not twice.
      const sys = path.join(dir, 'sys');
      fs.mkdirSync(sys);
      const cfgFile = path.join(dir, 'rr.json');
      fs.writeFileSync(cfgFile, JSON.stringify({ backend: 'runtime-rs', runtimeRs: { sysfsRoot: sys } }));
      const config = loadConfig({ KATAVOL_CONFIG: cfgFile, PATH: process.env.PATH });
      const log = createLogger({ level: 'error', stream: new Writable({ write: (_c, _e, cb) => cb() }) });
      const rr = new CreateInterceptor({ volumeRoot: registry.root, log, makeBackend: () => createBackend('runtime-rs', { config, volumeRoot: registry.root }) });
      const b2 = bundleWith(JSON.stringify({ mounts: [{ destination: '/d', type: 'vfiovol', source: '/v/pci' }] }));
      await assert.rejects(rr.create('c2', b2), (e: Error) => e instanceof CreateRefused && e.cause instanceof VolumeError
        && e.message === `katavol: container "c2": volume "/v/pci": mount /d: no PCI function 0000:3b:00.1 on this host (${sys}/bus/pci/devices/0000:3b:00.1); check the address with lspci -D and re-register the volume`);
      assert.deepEqual(fs.readdirSync(b2), ['config.json']);
    });

    it('a Create whose volumes cannot be recorded in the daemon\'s holds file is refused with nothing attached', async () => {
      const img = volume('/v/held', 'held');
      const holds = new DaemonHolds(path.join(dir, 'no-such-dir', 'd.holds.json'));
      const log = createLogger({ level: 'error', stream: new Writable({ write: (_c, _e, cb) => cb() }) });
      const cfgFile = path.join(dir, 'katavol.json');
      const config = loadConfig({ KATAVOL_CONFIG: cfgFile, PATH: process.env.PATH });
      const withHolds = new CreateInterceptor({ volumeRoot: registry.root, log, holds, makeBackend: () => createBackend('runc', { config, volumeRoot: registry.root }) });
      const b = bundleWith(specWith('/v/held'));
      await assert.rejects(withHolds.create('c1', b), (e: Error) => e instanceof CreateRefused && e.cause instanceof Error
        && e.message === `katavol: container "c1": cannot record its volumes in ${holds.file} (${e.cause.message}); nothing was attached: free space on that file system (socketDir)`);
      assert.deepEqual(fs.readdirSync(b), ['config.json'], 'the held record is cleared');
      assert.deepEqual(loopsOf(img), []);
      assert.deepEqual(registry.sandboxesOf('/v/held'), []);
    });

    it('the daemon\'s holds file lists a held bundle until its task is deleted; delete and releaseAll release the volumes', async () => {
      const img = volume('/v/rel', 'rel');
      const holds = new DaemonHolds(path.join(dir, 'd.holds.json'));
      const log = createLogger({ level: 'error', stream: new Writable({ write: (_c, _e, cb) => cb() }) });
      const config = loadConfig({ KATAVOL_CONFIG: path.join(dir, 'katavol.json'), PATH: process.env.PATH });
      const withHolds = new CreateInterceptor({ volumeRoot: registry.root, log, holds, makeBackend: () => createBackend('runc', { config, volumeRoot: registry.root }) });
      const b1 = bundleWith(specWith('/v/rel', { 'io.kubernetes.cri.sandbox-id': 'pod' }));
      const b2 = bundleWith(specWith('/v/rel', { 'io.kubernetes.cri.sandbox-id': 'pod' }));
      assert.ok(await withHolds.create('c1', b1));
      assert.ok(await withHolds.create('c2', b2));
      assert.deepEqual(readDaemonHolds(holds.file), [b1, b2]);
      assert.equal(loopsOf(img).length, 1, 'the pod\'s containers share one loop device');
      await withHolds.deleted('unknown');
      assert.deepEqual(readDaemonHolds(holds.file), [b1, b2], 'an unknown container releases nothing');
      await withHolds.deleted('c1');
      assert.deepEqual(readDaemonHolds(holds.file), [b2]);
      assert.ok(fs.existsSync(path.join(b2, HELD_FILE)) && !fs.existsSync(path.join(b1, HELD_FILE)), 'c1\'s held record is gone, c2\'s kept');
      assert.equal(loopsOf(img).length, 1, 'c2 still uses it');
      await withHolds.deleted('c1');
      await withHolds.releaseAll();
      assert.equal(fs.existsSync(holds.file), false);
      assert.deepEqual(loopsOf(img), []);
      assert.deepEqual(registry.sandboxesOf('/v/rel'), []);
    });

    it('a Create whose second volume is bad attaches nothing for the first', async () => {
      const other = path.join(dir, 'first.img');
      makeExt4Image(other, 4);
      registry.add('/v/first', JSON.stringify({ 'volume-type': 'directvol', device: other, fstype: 'ext4' }));
      const gone = path.join(dir, 'gone.img');
      makeExt4Image(gone, 4);
      registry.add('/v/second', JSON.stringify({ 'volume-type': 'directvol', device: gone, fstype: 'ext4' }));
      fs.rmSync(gone); // the device vanished after registration
      const b = bundleWith(JSON.stringify({ mounts: [
        { destination: '/a', type: 'directvol', source: '/v/first', options: ['rbind', 'rw'] },
        { destination: '/b', type: 'directvol', source: '/v/second', options: ['rbind', 'rw'] },
      ] }));
      await assert.rejects(icp.create('c8', b), (e: Error) => e instanceof CreateRefused && e.message.includes('/v/second'));
      assert.deepEqual(loopsOf(other), [], 'nothing attached for the good volume');
      assert.deepEqual(fs.readdirSync(b), ['config.json']);
      assert.deepEqual(registry.sandboxesOf('/v/first'), []);
    });
  });
});

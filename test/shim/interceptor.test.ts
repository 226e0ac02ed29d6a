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
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

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
    ['mounts holds null and numbers', '{"mounts": [null, 3, "x"]}', PASS],
    ['directvol without source', '{"mounts": [{"destination": "/d", "type": "directvol"}]}', /mount "\/d": .*a directvol mount needs a source/],
    ['source is a number', '{"mounts": [{"destination": "/d", "type": "directvol", "source": 5}]}', /mount "\/d": .*a directvol mount needs a source/],
    ['options is a string', '{"mounts": [{"destination": "/d", "type": "directvol", "source": "/v", "options": "rw"}]}', /mount "\/d": volume "\/v": is not registered/],
    ['bind with options as object', '{"mounts": [{"destination": "/d", "type": "bind", "source": "/v", "options": {"rbind": true}}]}', PASS],
    ['volume path too long to be registered', `{"mounts": [{"destination": "/d", "type": "directvol", "source": "/${'a'.repeat(400)}"}]}`, /mount "\/d": volume "\/a{400}": /],
    ['annotations is a list', '{"annotations": [1], "mounts": [{"destination": "/d", "type": "directvol", "source": "/v"}]}', /"annotations" is not an object/],
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

// The Create interceptor against hostile or broken bundles: every outcome is "no volumes" or a
// CreateRefused (code 9) with a message; never another exception, never a half-rewritten bundle.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { Writable } from 'stream';
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

  const specs: Array<[string, string]> = [
    ['missing config.json', ''],
    ['not JSON', '{"mounts": ['],
    ['JSON null', 'null'],
    ['a string', '"spec"'],
    ['mounts is an object', '{"mounts": {"a": 1}}'],
    ['mounts holds null and numbers', '{"mounts": [null, 3, "x"]}'],
    ['directvol without source', '{"mounts": [{"destination": "/d", "type": "directvol"}]}'],
    ['source is a number', '{"mounts": [{"destination": "/d", "type": "directvol", "source": 5}]}'],
    ['options is a string', '{"mounts": [{"destination": "/d", "type": "directvol", "source": "/v", "options": "rw"}]}'],
    ['bind with options as object', '{"mounts": [{"destination": "/d", "type": "bind", "source": "/v", "options": {"rbind": true}}]}'],
    ['volume path too long to be registered', `{"mounts": [{"destination": "/d", "type": "directvol", "source": "/${'a'.repeat(400)}"}]}`],
    ['annotations is a list', '{"annotations": [1], "mounts": [{"destination": "/d", "type": "directvol", "source": "/v"}]}'],
  ];
  for (const [name, text] of specs) {
    it(`${name}: refused cleanly or passed through, bundle untouched`, async () => {
      const b = bundleWith(text);
      if (name === 'missing config.json') fs.rmSync(path.join(b, 'config.json'));
      const before = fs.readdirSync(b).sort();
      try {
        const r = await icp.create('c1', b);
        assert.equal(r, undefined, 'no volume found means nothing to do');
      } catch (e) {
        assert.ok(e instanceof CreateRefused, `${(e as Error).stack}`);
        assert.match((e as Error).message, /^katavol: container "c1": /);
        assert.doesNotMatch((e as Error).message, /is not a function|Cannot read|undefined/);
      }
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
});

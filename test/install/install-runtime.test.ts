// `katavol install-runtime` / `uninstall-runtime` in process, on scratch prefixes: what is created,
// what is refused (with nothing changed), and that uninstall restores the tree byte for byte.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { runCli } from '../../src/cli/main';
import { OUR_SHIM, RECORD_NAME, pathNotes } from '../../src/cli/install';
import { scratchDir, snapshot } from '../support/scratch';

describe('katavol install-runtime / uninstall-runtime', () => {
  let root: string;
  let prefix: string;
  let kata: string;
  let config: string;

  /** Runs the CLI in process; returns status and what it printed. */
  async function cli(...argv: string[]): Promise<{ status: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const status = await runCli(argv, { out: (t) => { out += t; }, err: (t) => { err += t; }, env: { PATH: '/usr/bin:/bin' } });
    return { status, out, err };
  }

  beforeEach(() => {
    root = scratchDir('install');
    prefix = path.join(root, 'usr');
    fs.mkdirSync(path.join(prefix, 'bin'), { recursive: true });
    // A stand-in for Kata's shim binary.
    kata = path.join(root, 'opt/kata/bin/containerd-shim-kata-v2');
    fs.mkdirSync(path.dirname(kata), { recursive: true });
    fs.writeFileSync(kata, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    config = path.join(root, 'etc/katavol/config.json');
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  const link = () => path.join(prefix, 'bin', 'containerd-shim-kata-v2');

  it('links the Kata shim name to katavol, creates the config with the downstream, and uninstall removes all of it', async () => {
    const before = snapshot(root);
    const r = await cli('install-runtime', '--prefix', prefix, '--downstream', kata, '--config', config);
    assert.equal(r.status, 0, r.err);
    assert.equal(fs.readlinkSync(link()), OUR_SHIM, 'no katavol shim beside the link: absolute link to ours');
    assert.equal(fs.realpathSync(link()), fs.realpathSync(OUR_SHIM));
    assert.deepEqual(JSON.parse(fs.readFileSync(config, 'utf8')), { backend: 'runtime-rs', downstream: kata });
    assert.match(r.out, new RegExp(`created ${config}: "downstream": "${kata}"`));
    assert.match(r.out, new RegExp(`linked ${link()} -> ${OUR_SHIM}`));
    assert.match(r.out, /restart containerd/);
    assert.match(r.err, /is not on this shell's PATH/);
    assert.match(r.err, /give containerd KATAVOL_CONFIG=/);
    const rec = JSON.parse(fs.readFileSync(path.join(prefix, 'bin', RECORD_NAME), 'utf8'));
    assert.equal(rec.config.created, true);
    assert.deepEqual(rec.config.createdDirs, [path.dirname(config), path.dirname(path.dirname(config))]);

    const u = await cli('uninstall-runtime', '--prefix', prefix);
    assert.equal(u.status, 0, u.err);
    assert.deepEqual(snapshot(root), before, 'the tree is exactly as before');
    assert.match(u.out, /removed .*containerd-shim-kata-v2\n[\s\S]*removed .*config\.json\n[\s\S]*removed .*etc\/katavol\n/);
  });

  it('links relative to the katavol shim when make install put it beside the link', async () => {
    fs.symlinkSync(OUR_SHIM, path.join(prefix, 'bin', 'containerd-shim-katavol-v2'));
    assert.equal((await cli('install-runtime', '--prefix', prefix, '--downstream', kata, '--config', config)).status, 0);
    assert.equal(fs.readlinkSync(link()), 'containerd-shim-katavol-v2');
  });

  it('updates an existing config, keeping its other keys, and restores its exact bytes on uninstall', async () => {
    fs.mkdirSync(path.dirname(config), { recursive: true });
    const original = '{"backend":"runtime-rs",  "logLevel": "debug", "downstream": "/old/shim"}';
    fs.writeFileSync(config, original);
    const before = snapshot(root);
    assert.equal((await cli('install-runtime', '--prefix', prefix, '--downstream', kata, '--config', config)).status, 0);
    assert.deepEqual(JSON.parse(fs.readFileSync(config, 'utf8')), { backend: 'runtime-rs', logLevel: 'debug', downstream: kata });
    const u = await cli('uninstall-runtime', '--prefix', prefix);
    assert.equal(u.status, 0, u.err);
    assert.equal(fs.readFileSync(config, 'utf8'), original);
    assert.deepEqual(snapshot(root), before);
  });

  it('leaves a config edited after install alone on uninstall, and says so', async () => {
    assert.equal((await cli('install-runtime', '--prefix', prefix, '--downstream', kata, '--config', config)).status, 0);
    const edited = JSON.stringify({ backend: 'runtime-rs', downstream: kata, runtimeRs: { blockDeviceDriver: 'virtio-blk-mmio' } });
    fs.writeFileSync(config, edited);
    const u = await cli('uninstall-runtime', '--prefix', prefix);
    assert.equal(u.status, 0, u.err);
    assert.match(u.out, /left .*config\.json alone: it was edited after install-runtime/);
    assert.equal(fs.readFileSync(config, 'utf8'), edited);
    assert.equal(fs.existsSync(link()), false);
    assert.equal(fs.existsSync(path.join(prefix, 'bin', RECORD_NAME)), false);
  });

  it('replaces a link to the downstream itself (as kata-deploy makes) and restores it on uninstall', async () => {
    fs.symlinkSync(kata, link());
    const before = snapshot(root);
    const r = await cli('install-runtime', '--prefix', prefix, '--downstream', kata, '--config', config);
    assert.equal(r.status, 0, r.err);
    assert.equal(fs.readlinkSync(link()), OUR_SHIM);
    assert.match(r.out, /replacing the link to .*restored on uninstall/);
    assert.equal((await cli('uninstall-runtime', '--prefix', prefix)).status, 0);
    assert.deepEqual(snapshot(root), before);
  });

  describe('refusals change nothing', () => {
    const cases: Array<{ name: string; setup?: () => void; args: () => string[]; expect: RegExp }> = [
      { name: 'downstream is katavol\'s own shim', args: () => ['--downstream', OUR_SHIM], expect: /resolves to katavol's own shim .*katavol would be its own downstream/ },
      {
        name: 'downstream is a link to katavol\'s shim',
        setup: () => fs.symlinkSync(OUR_SHIM, path.join(root, 'sneaky')),
        args: () => ['--downstream', path.join(root, 'sneaky')],
        expect: /resolves to katavol's own shim/,
      },
      {
        name: 'downstream is a copy of katavol\'s launcher',
        setup: () => fs.copyFileSync(OUR_SHIM, path.join(root, 'copy')),
        args: () => ['--downstream', path.join(root, 'copy')],
        expect: /resolves to katavol's own shim/,
      },
      {
        name: 'the link would shadow the downstream itself',
        setup: () => fs.copyFileSync(kata, link()),
        args: () => ['--downstream', link()],
        expect: /is the link install-runtime would create: katavol would be its own downstream/,
      },
      { name: 'downstream missing', args: () => ['--downstream', path.join(root, 'nope')], expect: /is not an executable file; install Kata Containers first/ },
      { name: 'downstream relative', args: () => ['--downstream', 'containerd-shim-kata-v2'], expect: /--downstream must be an absolute path/ },
      {
        name: 'a foreign file at the link path',
        setup: () => fs.writeFileSync(link(), 'someone else\'s'),
        args: () => ['--downstream', kata],
        expect: /already exists and is not a link to .*never overwrites/,
      },
      {
        name: 'invalid existing config',
        setup: () => { fs.mkdirSync(path.dirname(config), { recursive: true }); fs.writeFileSync(config, '{"backend":'); },
        args: () => ['--downstream', kata],
        expect: /config .* is not valid JSON .*fix it first/,
      },
      {
        name: 'prefix without bin/',
        setup: () => fs.rmSync(path.join(prefix, 'bin'), { recursive: true }),
        args: () => ['--downstream', kata],
        expect: /bin does not exist; run make install PREFIX=/,
      },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        c.setup?.();
        const before = snapshot(root);
        const r = await cli('install-runtime', '--prefix', prefix, '--config', config, ...c.args());
        assert.equal(r.status, 1);
        assert.match(r.err, c.expect);
        assert.deepEqual(snapshot(root), before);
      });
    }

    it('a second install before uninstall', async () => {
      assert.equal((await cli('install-runtime', '--prefix', prefix, '--downstream', kata, '--config', config)).status, 0);
      const before = snapshot(root);
      const r = await cli('install-runtime', '--prefix', prefix, '--downstream', kata, '--config', config);
      assert.equal(r.status, 1);
      assert.match(r.err, /already installed as io\.containerd\.kata\.v2 .*run katavol uninstall-runtime --prefix/);
      assert.deepEqual(snapshot(root), before);
    });

    it('uninstall without an install record', async () => {
      const r = await cli('uninstall-runtime', '--prefix', prefix);
      assert.equal(r.status, 1);
      assert.match(r.err, /no install-runtime record at .*katavol is not installed as io\.containerd\.kata\.v2/);
    });
  });

  it('warns when another containerd-shim-kata-v2 comes first on PATH', () => {
    const kataDir = path.dirname(kata);
    const bin = path.join(prefix, 'bin');
    assert.deepEqual(pathNotes(bin, `${bin}:${kataDir}`), []);
    assert.deepEqual(pathNotes(bin, `${kataDir}:${bin}`), [`${kata} comes before ${bin} on PATH: containerd would run that one; put ${bin} first on containerd's PATH`]);
    assert.match(pathNotes(bin, kataDir)[0], /is not on this shell's PATH; containerd must have it on its PATH, ahead of Kata's directory/);
  });
});

// `make install` + `katavol install-runtime` end to end: install into a scratch prefix, register
// katavol as io.containerd.kata.v2 in front of the runc shim, and let a private containerd whose PATH
// starts with that prefix resolve the name and run a container with a direct volume; then uninstall
// and check the prefix is exactly as it was.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { PrivateContainerd, REPO, debugfsCat, loopDevicesOf, makeExt4Image, makeRootfs, sleep, tmpDir } from '../support/containerd';
import { snapshot, socketDir } from '../support/scratch';
import { listPool, procStart } from '../../src/shim/pool';

const INSTALL = path.join(REPO, 'scripts', 'install.sh');
const RUNC_SHIM = '/usr/bin/containerd-shim-runc-v2';

describe('make install + katavol install-runtime (io.containerd.kata.v2 through a private containerd)', function () {
  let work: string;
  let prefix: string;
  let sockDir: string;
  let ctd: PrivateContainerd | undefined;

  const sh = (cmd: string, args: string[], env: Record<string, string> = {}) =>
    spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env } });

  before(() => {
    work = tmpDir('katavol-install-e2e-');
    prefix = path.join(work, 'prefix');
    // Something already in the prefix that install must not touch.
    fs.mkdirSync(path.join(prefix, 'bin'), { recursive: true });
    fs.writeFileSync(path.join(prefix, 'bin', 'other-tool'), '#!/bin/sh\n', { mode: 0o755 });
    sockDir = socketDir();
  });

  after(async () => {
    await ctd?.stop();
    sh(INSTALL, ['--uninstall', prefix]);
    fs.rmSync(sockDir, { recursive: true, force: true });
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('resolves io.containerd.kata.v2 to katavol, runs a container that writes into its volume, and uninstalls to the original prefix', async function () {
    const pristine = snapshot(prefix);
    let r = sh(INSTALL, [prefix]);
    assert.equal(r.status, 0, r.stderr);
    const katavol = path.join(prefix, 'bin', 'katavol');
    const config = path.join(work, 'katavol.json');
    fs.writeFileSync(config, JSON.stringify({ backend: 'runc', socketDir: sockDir }));

    r = sh(katavol, ['install-runtime', '--prefix', prefix, '--downstream', RUNC_SHIM, '--config', config]);
    assert.equal(r.status, 0, r.stderr);
    const link = path.join(prefix, 'bin', 'containerd-shim-kata-v2');
    assert.equal(fs.readlinkSync(link), 'containerd-shim-katavol-v2');
    assert.deepEqual(JSON.parse(fs.readFileSync(config, 'utf8')), { backend: 'runc', socketDir: sockDir, downstream: RUNC_SHIM });

    const volRoot = path.join(work, 'volumes');
    const img = path.join(work, 'disk.img');
    makeExt4Image(img, 16);
    r = sh(katavol, ['direct-volume', 'add', '/kubelet/install/vol', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' })], { KATAVOL_VOLUME_ROOT: volRoot });
    assert.equal(r.status, 0, r.stderr);

    ctd = await PrivateContainerd.start({
      env: { PATH: `${path.join(prefix, 'bin')}:${process.env.PATH}`, KATAVOL_CONFIG: config, KATAVOL_VOLUME_ROOT: volRoot },
    });
    const rootfs = makeRootfs(work);
    const id = 'kata-name';
    r = ctd.ctr(['run', '-d', '--runtime', 'io.containerd.kata.v2', '--mount', 'type=directvol,src=/kubelet/install/vol,dst=/disk,options=rbind:rw',
      '--rootfs', rootfs, id, '/bin/sh', '-c', 'echo via-kata-name > /disk/f; sync; sleep 600']);
    assert.equal(r.status, 0, r.stderr);
    // containerd resolved the name to our link, and katavol (not the runc shim directly) started it.
    const bundle = ctd.bundleOf(id);
    assert.equal(fs.readFileSync(path.join(bundle, 'shim-binary-path'), 'utf8'), link);
    const state = JSON.parse(fs.readFileSync(path.join(bundle, 'katavol.json'), 'utf8'));
    assert.equal(state.downstream, RUNC_SHIM);
    assert.equal(state.backend, 'runc');
    assert.ok(fs.readFileSync(path.join(bundle, 'address'), 'utf8').startsWith(`unix://${sockDir}/`), 'containerd talks to katavol');
    for (let i = 0; i < 50 && debugfsCat(img, '/f') === ''; i++) {
      // The container writes asynchronously after start; debugfs reads the image from the host.
      await sleep(100);
    }
    assert.equal(ctd.ctr(['task', 'kill', '-s', 'SIGKILL', id]).status, 0);
    for (let i = 0; i < 50 && ctd.ctr(['task', 'delete', id]).status !== 0; i++) await sleep(100);
    assert.equal(ctd.ctr(['container', 'delete', id]).status, 0);
    assert.equal(debugfsCat(img, '/f'), 'via-kata-name\n');
    for (let i = 0; i < 50 && loopDevicesOf(img).length; i++) await sleep(100);
    assert.deepEqual(loopDevicesOf(img), []);
    // That (cold) start filled the warm pool with a daemon of the installed build.
    for (let i = 0; i < 200 && !listPool(sockDir).some((e) => e.kind === 'warm' && e.alive); i++) await sleep(50);
    const warm = listPool(sockDir).filter((e) => e.kind === 'warm' && e.alive).map((e) => e.pid);
    assert.equal(warm.length, 1, 'one warm daemon');
    assert.ok(fs.readFileSync(`/proc/${warm[0]}/cmdline`, 'utf8').includes(path.join(prefix, 'lib', 'katavol')), 'of the installed build');
    await ctd.stop();
    ctd = undefined;

    // make uninstall also undoes install-runtime (its record is in the prefix) and stops the warm daemons.
    r = sh(INSTALL, ['--uninstall', prefix]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /removed .*containerd-shim-kata-v2\n/);
    assert.match(r.stdout, /stopped 1 warm shim daemon\(s\)/);
    assert.equal(procStart(warm[0]), undefined, 'the warm daemon is gone');
    assert.deepEqual(listPool(sockDir), []);
    assert.deepEqual(snapshot(prefix), pristine, 'the prefix is exactly as before install');
    assert.deepEqual(JSON.parse(fs.readFileSync(config, 'utf8')), { backend: 'runc', socketDir: sockDir }, 'config restored');
  });

  it('refuses to make katavol its own downstream, and leaves the prefix untouched', async function () {
    let r = sh(INSTALL, [prefix]);
    assert.equal(r.status, 0, r.stderr);
    const installed = snapshot(prefix);
    const katavol = path.join(prefix, 'bin', 'katavol');
    const config = path.join(work, 'self.json');
    for (const downstream of [path.join(prefix, 'bin', 'containerd-shim-katavol-v2'), path.join(prefix, 'bin', 'containerd-shim-kata-v2')]) {
      r = sh(katavol, ['install-runtime', '--prefix', prefix, '--downstream', downstream, '--config', config]);
      assert.equal(r.status, 1, r.stdout);
      assert.match(r.stderr, /katavol would be its own downstream/);
      assert.deepEqual(snapshot(prefix), installed);
      assert.equal(fs.existsSync(config), false);
    }
    r = sh(INSTALL, ['--uninstall', prefix]);
    assert.equal(r.status, 0, r.stderr);
  });

  it('refuses to install over files that are not its own', function () {
    const foreign = path.join(prefix, 'bin', 'katavol');
    fs.writeFileSync(foreign, 'not ours');
    try {
      const before = snapshot(prefix);
      const r = sh(INSTALL, [prefix]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /bin\/katavol exists and is not katavol's link; move it away first/);
      assert.deepEqual(snapshot(prefix), before);
    } finally {
      fs.rmSync(foreign);
    }
  });
});

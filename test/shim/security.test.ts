// The claims of docs/security.md that a test can make: a local non-root user (nobody, through setpriv)
// cannot reach a daemon's socket or the registry, and a registry entry pointing at the disk the host's
// root filesystem lives on is refused before any Create.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { refuseHostUse } from '../../src/volumes/in-use';
import { VolumeError } from '../../src/volumes/types';
import { pidAlive } from '../../src/shim/state';
import { RECORDER, RECORDER_DIR_ENV } from '../peers/recorder/record';
import { KATAVOL, SHIM, tmpDir } from '../support/containerd';
import { snapshot } from '../support/scratch';

/** Runs node code as nobody:nogroup with no capabilities; undefined when setpriv cannot do that here. */
function asNobody(script: string, env: NodeJS.ProcessEnv = {}): { status: number; stdout: string; stderr: string } | undefined {
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', process.execPath, '-e', script], { encoding: 'utf8', env: { ...process.env, ...env } });
  if (r.error || /setpriv:/.test(r.stderr ?? '')) return undefined;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('security claims (docs/security.md)', function () {
  let dir: string;
  beforeEach(() => {
    dir = tmpDir('katavol-sec-');
    fs.chmodSync(dir, 0o755); // nobody may look in, as in /run
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a non-root user cannot connect to a katavol daemon socket (0600, root\'s)', function () {
    const sockDir = path.join(dir, 'sock');
    const bundle = path.join(dir, 'b');
    fs.mkdirSync(bundle);
    fs.writeFileSync(path.join(bundle, 'config.json'), '{"ociVersion":"1.0.2"}');
    fs.writeFileSync(path.join(dir, 'k.json'), JSON.stringify({ backend: 'runtime-rs', downstream: RECORDER, socketDir: sockDir }));
    const env = { ...process.env, KATAVOL_CONFIG: path.join(dir, 'k.json'), [RECORDER_DIR_ENV]: path.join(dir, 'rec'), KATAVOL_VOLUME_ROOT: path.join(dir, 'v') };
    const r = spawnSync(SHIM, ['-namespace', 'ns', '-address', '/run/fake.sock', '-id', 'c1', 'start'], { cwd: bundle, env, input: '', encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const st = JSON.parse(fs.readFileSync(path.join(bundle, 'katavol.json'), 'utf8'));
    try {
      const sock = r.stdout.replace('unix://', '');
      assert.equal(fs.statSync(sock).mode & 0o777, 0o600);
      assert.equal(fs.statSync(sock).uid, 0);
      const out = asNobody(`require('net').connect(${JSON.stringify(sock)}).on('connect', () => { console.log('connected'); process.exit(0); }).on('error', (e) => { console.log(e.code); process.exit(0); });`);
      if (!out) return this.skip();
      assert.equal(out.stdout.trim(), 'EACCES');
    } finally {
      for (const p of [st.daemonPid, st.downstreamPid]) if (pidAlive(p)) process.kill(p, 'SIGKILL');
    }
  });

  it('a non-root user cannot register, replace or remove a volume: the registry stays byte-identical', function () {
    const root = path.join(dir, 'volumes');
    const img = path.join(dir, 'disk.img');
    fs.writeFileSync(img, Buffer.alloc(1 << 20));
    const add = (json: string, env: NodeJS.ProcessEnv) => spawnSync(KATAVOL, ['direct-volume', 'add', '/kubelet/sec', json], { encoding: 'utf8', env: { ...process.env, ...env } });
    const json = JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' });
    assert.equal(add(json, { KATAVOL_VOLUME_ROOT: root }).status, 0);
    const before = snapshot(root);
    const script = (args: string[]) => `const r = require('child_process').spawnSync(${JSON.stringify(KATAVOL)}, ${JSON.stringify(args)}, { encoding: 'utf8' }); process.stdout.write(JSON.stringify(r));`;
    for (const args of [['direct-volume', 'add', '/kubelet/sec', json.replace('ext4', 'xfs')], ['direct-volume', 'add', '/kubelet/other', json], ['direct-volume', 'remove', '/kubelet/sec']]) {
      const out = asNobody(script(args), { KATAVOL_VOLUME_ROOT: root });
      if (!out) return this.skip();
      const r = JSON.parse(out.stdout) as { status: number; stderr: string };
      assert.notEqual(r.status, 0, `${args.join(' ')} as nobody`);
      assert.match(r.stderr, /EACCES|permission denied/i);
      assert.match(r.stderr, /run as root \(sudo\)/);
    }
    assert.deepEqual(snapshot(root), before);
  });

  it('a registry entry pointing at the disk of the host\'s root filesystem is refused read-write and read-only', function () {
    const dev = fs.statSync('/').dev;
    // The device node whose number the root filesystem's superblock has.
    const disk = fs.readdirSync('/dev').map((n) => `/dev/${n}`).find((p) => {
      try {
        const st = fs.statSync(p);
        return st.isBlockDevice() && st.rdev === dev;
      } catch {
        return false;
      }
    });
    if (!disk) return this.skip(); // root on an overlay or tmpfs: no block device to point at
    for (const readOnly of [false, true]) {
      assert.throws(() => refuseHostUse({ volumePath: '/kubelet/rootdisk', device: disk, readOnly }), (e: Error) =>
        e instanceof VolumeError && new RegExp(`block device "${disk}" is in use on the host: it is mounted at / \\(`).test(e.problem));
    }
  });
});

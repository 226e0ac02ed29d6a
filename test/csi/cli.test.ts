// `katavol csi` as a command: its flags, the usage errors, and how it takes and gives back its socket.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { KATAVOL, tmpDir } from '../support/containerd';
import * as grpc from '@grpc/grpc-js';
import { CsiPlugin, csiDirs, expectCode } from '../support/csi';

const run = (args: string[]): { status: number | null; stdout: string; stderr: string } => spawnSync(KATAVOL, args, { encoding: 'utf8', timeout: 30000 });

describe('katavol csi (command line)', () => {
  let root: string;
  before(() => { root = tmpDir('katavol-csi-cli-'); });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('is listed by katavol help, and --help documents every flag', () => {
    assert.match(run(['help']).stdout, /^\s+csi\s+run the CSI plugin/m);
    const h = run(['csi', '--help']);
    assert.equal(h.status, 0);
    for (const f of ['--endpoint', '--node-id', '--storage', '--state', '--kubelet-dir', '--driver-name', '--max-volume-size']) assert.ok(h.stdout.includes(f), f);
    assert.match(h.stdout, /default \/var\/lib\/kubelet/);
    assert.match(h.stdout, /default directvolume\.katavol\.io/);
  });

  // Parsing fails before anything is created, so these paths are never touched.
  const base = (): string[] => ['csi', '--node-id', 'n', '--storage', '/nonexistent/s', '--state', '/nonexistent/t'];
  for (const [what, args, message] of [
    ['without --node-id', ['csi', '--storage', '/a', '--state', '/b'], /missing --node-id/],
    ['without --storage', ['csi', '--node-id', 'n', '--state', '/b'], /missing --storage/],
    ['with a relative --state', ['csi', '--node-id', 'n', '--storage', '/a', '--state', 'b'], /--state must be an absolute path/],
    ['with a tcp endpoint', [...base(), '--endpoint', 'tcp://127.0.0.1:1'], /--endpoint "tcp:\/\/127.0.0.1:1" is not unix/],
    ['with a bad driver name', [...base(), '--driver-name', 'Not_A_Name'], /--driver-name "Not_A_Name" is not a DNS-style name/],
    ['with a bad size', [...base(), '--max-volume-size', 'lots'], /--max-volume-size "lots" is not a positive size/],
    ['with an unknown flag', [...base(), '--nodeid', 'n'], /unknown option --nodeid/],
  ] as const) {
    it(`refuses to start ${what} (exit 2, usage)`, () => {
      const r = run([...args]);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /usage: katavol csi/);
    });
  }

  it('replaces a stale socket, refuses one another process serves, and removes its own on SIGTERM', async () => {
    const dirs = csiDirs(path.join(root, 'p'));
    fs.mkdirSync(dirs.root, { recursive: true });
    // Stale: the socket file a plugin killed with SIGKILL leaves behind, nobody listening.
    spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(dirs.socket)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    assert.ok(fs.lstatSync(dirs.socket).isSocket());
    const plugin = new CsiPlugin(dirs);
    try {
      await plugin.start();
      const second = spawnSync(KATAVOL, plugin.args, { encoding: 'utf8', timeout: 30000, env: { ...process.env, KATAVOL_VOLUME_ROOT: dirs.volumeRoot } });
      assert.equal(second.status, 1);
      assert.match(second.stderr, /another process serves .*csi\.sock; stop it or choose another --endpoint/);
    } finally {
      await plugin.stop();
    }
    assert.equal(fs.existsSync(dirs.socket), false);
  });

  it('Probe fails (FAILED_PRECONDITION, naming the flag) once its storage directory is gone', async () => {
    const dirs = csiDirs(path.join(root, 'q'));
    const plugin = new CsiPlugin(dirs);
    try {
      const c = await plugin.start();
      assert.deepEqual((await c.identity.Probe({})).ready, { value: true });
      fs.rmSync(dirs.storage, { recursive: true });
      const e = await expectCode(c.identity.Probe({}), grpc.status.FAILED_PRECONDITION);
      assert.match(e.details, /the --storage directory .* is not writable.*mount it into the plugin container/);
    } finally {
      await plugin.stop();
    }
  });
});

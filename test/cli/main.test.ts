// runCli is the one place a failed command becomes text: "katavol: " and the error's own text for the
// errors written for users (volume, config, install), "katavol: unexpected error: <stack>" for anything else.
import * as assert from 'assert';
import * as path from 'path';
import { runCli } from '../../src/cli/main';
import { removeDir, scratchDir } from '../support/scratch';

async function cli(argv: string[], env: NodeJS.ProcessEnv): Promise<{ status: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const status = await runCli(argv, { out: (t) => { out += t; }, err: (t) => { err += t; }, env });
  return { status, out, err };
}

describe('katavol CLI: how a failed command is printed (runCli)', () => {
  let dir: string;
  beforeEach(() => {
    dir = scratchDir('cli-main');
  });
  afterEach(() => removeDir(dir));

  it('a config error from a command: "katavol: " and its text, exit 1, no stack', async () => {
    const file = path.join(dir, 'missing.json');
    const r = await cli(['daemons'], { PATH: '/usr/bin:/bin', KATAVOL_CONFIG: file });
    assert.strictEqual(r.status, 1);
    assert.strictEqual(r.out, '');
    assert.match(r.err, new RegExp(`^katavol: katavol config ${file}: cannot read: ENOENT.*; create it or fix KATAVOL_CONFIG\\n$`));
  });

  it('an install error: "katavol: " and its text (what is wrong, what to do), exit 1, no stack', async () => {
    const r = await cli(['uninstall-runtime', '--prefix', dir], { PATH: '/usr/bin:/bin' });
    assert.strictEqual(r.status, 1);
    assert.strictEqual(r.err, `katavol: no install-runtime record at ${path.join(dir, 'bin', '.containerd-shim-kata-v2.katavol.json')}: katavol is not installed as io.containerd.kata.v2 with --prefix ${dir}\n`);
  });

  it('a volume error: "katavol: " and its text, exit 1', async () => {
    const r = await cli(['direct-volume', 'remove', '/kubelet/none'], { PATH: '/usr/bin:/bin', KATAVOL_VOLUME_ROOT: path.join(dir, 'root') });
    assert.strictEqual(r.status, 1);
    assert.match(r.err, /^katavol: volume "\/kubelet\/none": is not registered .*; register it with: katavol direct-volume add \/kubelet\/none '.*'\n$/);
    assert.doesNotMatch(r.err, /unexpected error|\n {4}at /);
  });
});

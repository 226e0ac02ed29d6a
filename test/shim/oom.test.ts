// The daemon's OOM score follows containerd's like containerd's own shims (containerd's + 1), in both
// start modes; without CAP_SYS_RESOURCE a score that would have to go down is kept, and that is logged.
// Scores are only ever raised here: lowering one needs CAP_SYS_RESOURCE, which some hosts' root lacks.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { pidAlive } from '../../src/shim/state';
import { DAEMON_NODE_FLAGS } from '../../src/shim/oom';
import { RECORDER, RECORDER_DIR_ENV } from '../peers/recorder/record';
import { REPO, SHIM, sleep, tmpDir } from '../support/containerd';
import { socketDir } from '../support/scratch';

const score = (pid: number | 'self') => Number(fs.readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8').trim());

describe('shim daemon: oom_score_adj = containerd\'s + 1', function () {
  let dir: string;
  let sockDir: string;
  beforeEach(() => {
    dir = tmpDir('katavol-oom-');
    sockDir = socketDir();
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(sockDir, { recursive: true, force: true });
  });

  for (const mode of ['launcher', 'node'] as const) {
    it(`${mode} start: the daemon takes its starter's score + 1 (a shell with score 321 plays containerd)`, async () => {
      const bundle = path.join(dir, 'b');
      fs.mkdirSync(bundle);
      fs.writeFileSync(path.join(bundle, 'config.json'), '{"ociVersion":"1.0.2"}');
      const cfg = path.join(dir, 'k.json');
      fs.writeFileSync(cfg, JSON.stringify({ backend: 'runtime-rs', downstream: RECORDER, socketDir: sockDir }));
      const env = { ...process.env, KATAVOL_CONFIG: cfg, [RECORDER_DIR_ENV]: path.join(dir, 'rec'), KATAVOL_VOLUME_ROOT: path.join(dir, 'v'), KATAVOL_ORPHAN_TIMEOUT_MS: '60000' };
      const argv = ['-namespace', 'ns', '-address', '/run/fake.sock', '-id', 'c1', 'start'];
      // The shell stays the parent of the start it runs (no exec), as containerd is.
      const cmd = mode === 'launcher' ? [SHIM, ...argv] : [process.execPath, path.join(REPO, 'dist', 'src', 'shim', 'bin.js'), ...argv];
      const r = spawnSync('sh', ['-c', 'echo 321 > /proc/$$/oom_score_adj && "$@"; exit $?', 'sh', ...cmd], { cwd: bundle, env, input: '', encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const st = JSON.parse(fs.readFileSync(path.join(bundle, 'katavol.json'), 'utf8'));
      try {
        for (let i = 0; i < 50 && score(st.daemonPid) !== 322; i++) await sleep(100);
        assert.equal(score(st.daemonPid), 322);
        assert.match(fs.readFileSync(`/proc/${st.daemonPid}/cmdline`, 'utf8'), /--max-old-space-size=96/, 'heap capped');
        const argv = fs.readFileSync(`/proc/${st.daemonPid}/cmdline`, 'utf8').split('\0');
        for (const flag of DAEMON_NODE_FLAGS) assert.ok(argv.includes(flag), `${mode}: the daemon runs with ${flag} (${argv.join(' ')})`);
      } finally {
        for (const p of [st.daemonPid, st.downstreamPid]) if (pidAlive(p)) process.kill(p, 'SIGKILL');
      }
    });
  }

  it('a score it may not lower to is kept, and said once', function () {
    // Unprivileged, a score may not go below the floor a privileged process set (0 here); our code runs
    // without CAP_SYS_RESOURCE and is told containerd's score is -500.
    const script = `const { adjustOomScore } = require(${JSON.stringify(path.join(REPO, 'dist', 'src', 'shim', 'oom.js'))});
      const lines = []; const log = { debug() {}, info: (m, x) => lines.push(['info', m, x]), warn: (m, x) => lines.push(['warn', m, x]), error() {} };
      const got = adjustOomScore('-500', log); process.stdout.write(JSON.stringify({ got, lines }));`;
    const r = spawnSync('sh', ['-c', 'echo 600 > /proc/$$/oom_score_adj && exec setpriv --inh-caps=-sys_resource --bounding-set=-sys_resource "$@"', 'sh', process.execPath, '-e', script], { encoding: 'utf8' });
    if (r.status !== 0 && /setpriv/.test(r.stderr)) return this.skip();
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.got, 600, 'kept its own score');
    assert.equal(out.lines.length, 1);
    assert.equal(out.lines[0][0], 'warn');
    assert.match(out.lines[0][1], /cannot lower oom_score_adj to containerd's \+ 1 \(needs CAP_SYS_RESOURCE\); keeping the current score/);
    assert.deepEqual({ ...out.lines[0][2], error: undefined }, { containerd: -500, wanted: -499, kept: 600, error: undefined });
  });
});

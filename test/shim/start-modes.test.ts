// `start` in both of its modes, without containerd: through the launcher (the Node process that ran the
// downstream start becomes the daemon), and Node started directly (a detached daemon gets the socket as
// fd 3). Downstream: the recording shim from test/peers/recorder.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { Client } from '../../src/ttrpc';
import { decodeConnectResponse, encodeConnectRequest, encodeShutdownRequest } from '../../src/shim/messages';
import { pidAlive } from '../../src/shim/state';
import { RECORDER, RECORDER_DIR_ENV, rpcCalls } from '../peers/recorder/record';
import { REPO, SHIM, sleep, tmpDir } from '../support/containerd';

const TASK = 'containerd.task.v2.Task';

for (const mode of ['launcher (inline daemon)', 'node directly (spawned daemon)'] as const) {
  describe(`shim start: ${mode}`, () => {
    let dir: string;
    let sockDir: string;
    let bundle: string;
    let env: NodeJS.ProcessEnv;
    beforeEach(() => {
      dir = tmpDir('katavol-start-');
      sockDir = fs.mkdtempSync('/tmp/kvs-');
      bundle = path.join(dir, 'bundle');
      fs.mkdirSync(bundle);
      fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', mounts: [] }));
      const cfg = path.join(dir, 'katavol.json');
      fs.writeFileSync(cfg, JSON.stringify({ backend: 'runtime-rs', downstream: RECORDER, socketDir: sockDir }));
      env = { ...process.env, KATAVOL_CONFIG: cfg, [RECORDER_DIR_ENV]: path.join(dir, 'rec'), KATAVOL_VOLUME_ROOT: path.join(dir, 'vol') };
    });
    afterEach(() => {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(sockDir, { recursive: true, force: true });
    });

    it('prints only our address, points ./address at it, and the daemon forwards to the downstream until Shutdown', async () => {
      const argv = ['-namespace', 'ns1', '-address', '/run/fake-containerd.sock', '-publish-binary', '/usr/bin/containerd', '-id', 'c1', 'start'];
      const cmd = mode.startsWith('launcher') ? [SHIM, argv] as const : [process.execPath, [path.join(REPO, 'dist', 'src', 'shim', 'bin.js'), ...argv]] as const;
      const r = spawnSync(cmd[0], cmd[1], { cwd: bundle, env, input: '', encoding: 'utf8', timeout: 30000 });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^unix://${sockDir}/[0-9a-f]{64}\\.sock$`));
      assert.equal(r.stderr, '');
      assert.equal(fs.readFileSync(path.join(bundle, 'address'), 'utf8'), r.stdout);
      const state = JSON.parse(fs.readFileSync(path.join(bundle, 'katavol.json'), 'utf8'));
      assert.notEqual(state.downstreamAddress, state.address);
      assert.ok(pidAlive(state.daemonPid), 'daemon running');
      assert.match(fs.readFileSync(`/proc/${state.daemonPid}/cmdline`, 'utf8'), /dist\/src\/shim\/bin\.js/);
      assert.deepEqual(fs.readlinkSync(`/proc/${state.daemonPid}/fd/1`), '/dev/null', 'the daemon holds none of containerd\'s pipes');

      const c = await Client.connect(r.stdout.replace('unix://', ''));
      const got = decodeConnectResponse(await c.call(TASK, 'Connect', encodeConnectRequest('c1')));
      assert.equal(got.version, 'recorder');
      assert.deepEqual(rpcCalls(env[RECORDER_DIR_ENV]!).map((x) => x.method), ['Connect']);
      await c.call(TASK, 'Shutdown', encodeShutdownRequest('c1', false));
      c.close();
      for (let i = 0; i < 100 && pidAlive(state.daemonPid); i++) await sleep(50);
      assert.equal(pidAlive(state.daemonPid), false, 'daemon exits with the downstream');
      assert.deepEqual(fs.readdirSync(sockDir), [], 'socket and pid file removed');
    });

    it('a downstream start failure is reported on stderr with exit 1 and leaves no daemon', () => {
      const argv = ['-namespace', 'ns1', '-address', '/x', '-id', 'c2', 'start'];
      const cmd = mode.startsWith('launcher') ? [SHIM, argv] as const : [process.execPath, [path.join(REPO, 'dist', 'src', 'shim', 'bin.js'), ...argv]] as const;
      delete env[RECORDER_DIR_ENV]; // the recorder refuses to start without its record directory
      const r = spawnSync(cmd[0], cmd[1], { cwd: bundle, env, input: '', encoding: 'utf8', timeout: 30000 });
      assert.equal(r.status, 1);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /downstream shim .*recorder-v2 start failed \(exit 1\): .*KATAVOL_RECORDER_DIR/);
      assert.equal(fs.existsSync(path.join(bundle, 'katavol.json')), false);
      assert.deepEqual(fs.readdirSync(sockDir), []);
    });
  });
}

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
import { listPool, refillPool, stopPool } from '../../src/shim/pool';
import { loadConfig } from '../../src/shim/config';
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
      fs.writeFileSync(cfg, JSON.stringify({ backend: 'runtime-rs', downstream: RECORDER, socketDir: sockDir, warmDaemons: 0 }));
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

describe('shim start: launcher (warm daemon)', () => {
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
    // A downstream that notes exactly what its `start` got, then is the recorder.
    const wrapper = path.join(dir, 'downstream');
    fs.writeFileSync(wrapper, `#!/bin/sh\nprintf '%s\\n' "$@" > ${dir}/argv; pwd -P > ${dir}/cwd; printf %s "$CUSTOM_VAR" > ${dir}/env; cat > ${dir}/stdin\nexec ${RECORDER} "$@" < /dev/null\n`, { mode: 0o755 });
    const cfg = path.join(dir, 'katavol.json');
    fs.writeFileSync(cfg, JSON.stringify({ backend: 'runtime-rs', downstream: wrapper, socketDir: sockDir, warmDaemons: 1 }));
    env = { ...process.env, KATAVOL_CONFIG: cfg, [RECORDER_DIR_ENV]: path.join(dir, 'rec'), KATAVOL_VOLUME_ROOT: path.join(dir, 'vol') };
  });
  afterEach(async () => {
    await stopPool(sockDir);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(sockDir, { recursive: true, force: true });
  });

  it('hands argv, environment, cwd and stdin bytes to the downstream start exactly, and serves the container', async () => {
    refillPool(loadConfig(env), env);
    const warm = async () => listPool(sockDir).filter((e) => e.kind === 'warm' && e.alive && !e.claimed).map((e) => e.pid);
    for (let i = 0; i < 400 && (await warm()).length === 0; i++) await sleep(50);
    const [pid] = await warm();
    assert.ok(pid, 'a warm daemon');
    const argv = ['-namespace', 'ns1', '-address', '/run/fake containerd.sock', '-publish-binary', '/usr/bin/containerd', '-id', 'c1', 'start'];
    const input = Buffer.from([0x0a, 0x00, 0xff, 0x41, 0x0a, 0x00]);
    const r = spawnSync(SHIM, argv, { cwd: bundle, env: { ...env, CUSTOM_VAR: 'a b\nc' }, input, timeout: 30000 });
    assert.equal(r.status, 0, r.stderr.toString());
    assert.match(r.stdout.toString(), new RegExp(`^unix://${sockDir}/[0-9a-f]{64}\\.sock$`));
    assert.equal(r.stderr.toString(), '');
    assert.equal(fs.readFileSync(path.join(dir, 'argv'), 'utf8'), argv.join('\n') + '\n');
    assert.equal(fs.readFileSync(path.join(dir, 'cwd'), 'utf8'), fs.realpathSync(bundle) + '\n');
    assert.equal(fs.readFileSync(path.join(dir, 'env'), 'utf8'), 'a b\nc');
    assert.deepEqual(fs.readFileSync(path.join(dir, 'stdin')), input);
    const state = JSON.parse(fs.readFileSync(path.join(bundle, 'katavol.json'), 'utf8'));
    assert.equal(state.daemonPid, pid, 'served by the warm daemon');
    assert.equal(fs.readlinkSync(`/proc/${pid}/cwd`), fs.realpathSync(bundle));
    const c = await Client.connect(r.stdout.toString().replace('unix://', ''));
    assert.equal(decodeConnectResponse(await c.call(TASK, 'Connect', encodeConnectRequest('c1'))).version, 'recorder');
    await c.call(TASK, 'Shutdown', encodeShutdownRequest('c1', false));
    c.close();
    for (let i = 0; i < 100 && pidAlive(pid); i++) await sleep(50);
    assert.equal(pidAlive(pid), false, 'the daemon exits with its downstream');
  });

  it('a start failure is answered through the hand-off: stderr and exit 1, no daemon left', async () => {
    refillPool(loadConfig(env), env);
    for (let i = 0; i < 400 && !listPool(sockDir).some((e) => e.kind === 'warm' && e.alive); i++) await sleep(50);
    const [pid] = listPool(sockDir).filter((e) => e.kind === 'warm').map((e) => e.pid);
    delete env[RECORDER_DIR_ENV]; // the recorder refuses to start without its record directory
    const r = spawnSync(SHIM, ['-namespace', 'ns1', '-address', '/x', '-id', 'c2', 'start'], { cwd: bundle, env, input: '', encoding: 'utf8', timeout: 30000 });
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^containerd-shim-katavol-v2: downstream shim .*downstream start failed \(exit 1\): .*KATAVOL_RECORDER_DIR/);
    for (let i = 0; i < 100 && pidAlive(pid); i++) await sleep(50);
    assert.equal(pidAlive(pid), false, 'the claimed daemon exited');
    assert.equal(fs.existsSync(path.join(bundle, 'katavol.json')), false);
    assert.deepEqual(fs.readdirSync(sockDir).filter((f) => f !== '.warm'), []);
  });
});

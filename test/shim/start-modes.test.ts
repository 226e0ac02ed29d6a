// `start` in both of its modes, without containerd: through the launcher (the Node process that ran the
// downstream start becomes the daemon), and Node started directly (a detached daemon gets the socket as
// fd 3). Downstreams: the recording shim from test/peers/recorder, as Kata and as each runc shim
// generation, so every bootstrap form (plain, JSON, protobuf) is answered in kind.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { Client, type TtrpcError } from '../../src/ttrpc';
import { decodeConnectResponse, encodeConnectRequest, encodeShutdownRequest } from '../../src/shim/messages';
import { pidAlive, socketPath } from '../../src/shim/state';
import { listPool, refillPool, stopPool } from '../../src/shim/pool';
import { loadConfig } from '../../src/shim/config';
import { RECORDER, RECORDER_DIR_ENV, readRecords, rpcCalls, type ActionRecord } from '../peers/recorder/record';
import { KIND_ENV, KINDS, type Kind } from '../peers/recorder/main';
import { decodeBootstrapResult, printBootstrap } from '../peers/bootstrap-forms';
import { REPO, SHIM, sleep, tmpDir } from '../support/containerd';
import { socketDir } from '../support/scratch';

const OTHER = { 'containerd.task.v2.Task': 'containerd.task.v3.Task', 'containerd.task.v3.Task': 'containerd.task.v2.Task' } as const;

for (const mode of ['launcher (inline daemon)', 'node directly (spawned daemon)', 'launcher (warm daemon)'] as const) {
  describe(`shim start: ${mode}`, () => {
    let dir: string;
    let sockDir: string;
    let bundle: string;
    let env: NodeJS.ProcessEnv;
    const warm = mode === 'launcher (warm daemon)';
    const command = (argv: string[]) => mode.startsWith('launcher') ? [SHIM, argv] as const : [process.execPath, [path.join(REPO, 'dist', 'src', 'shim', 'bin.js'), ...argv]] as const;
    /** Warm mode: the pool's booted daemon (the start must be handed to it); else undefined. */
    const warmDaemon = async (): Promise<number | undefined> => {
      if (!warm) return undefined;
      refillPool(loadConfig(env), env);
      const ready = () => listPool(sockDir).filter((e) => e.kind === 'warm' && e.alive && !e.claimed).map((e) => e.pid);
      for (let i = 0; i < 400 && ready().length === 0; i++) await sleep(50);
      assert.equal(ready().length, 1, 'a warm daemon waits');
      return ready()[0];
    };
    /** What a start leaves in socketDir besides the pool (stopped after each test). */
    const sockets = () => fs.readdirSync(sockDir).filter((f) => f !== '.warm');
    beforeEach(() => {
      dir = tmpDir('katavol-start-');
      sockDir = socketDir();
      bundle = path.join(dir, 'bundle');
      fs.mkdirSync(bundle);
      fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', mounts: [] }));
      const cfg = path.join(dir, 'katavol.json');
      fs.writeFileSync(cfg, JSON.stringify({ backend: 'runtime-rs', downstream: RECORDER, socketDir: sockDir, warmDaemons: warm ? 1 : 0 }));
      env = { ...process.env, KATAVOL_CONFIG: cfg, [RECORDER_DIR_ENV]: path.join(dir, 'rec'), KATAVOL_VOLUME_ROOT: path.join(dir, 'vol') };
    });
    afterEach(async () => {
      await stopPool(sockDir);
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(sockDir, { recursive: true, force: true });
    });

    for (const kind of ['kata', 'runc-1.7', 'runc-2.0', 'runc-2.3'] as Kind[]) {
      const { form, service } = KINDS[kind];
      it(`${kind}: answers in the downstream's form (${form}) with our address; the daemon serves its API (${service.split('.')[2]}) until Shutdown`, async () => {
        env[KIND_ENV] = kind;
        const argv = ['-namespace', 'ns1', '-address', '/run/fake-containerd.sock', '-publish-binary', '/usr/bin/containerd', '-id', 'c1', 'start'];
        const stdin = Buffer.from([0x0a, 0x02, 0x63, 0x31, 0x00, 0x0a]); // arbitrary bytes: must arrive unchanged
        const cmd = command(argv);
        const pooled = await warmDaemon();
        const r = spawnSync(cmd[0], cmd[1], { cwd: bundle, env, input: stdin, timeout: 30000 });
        assert.equal(r.status, 0, r.stderr.toString());
        assert.equal(r.stderr.toString(), '');
        const state = JSON.parse(fs.readFileSync(path.join(bundle, 'katavol.json'), 'utf8'));
        const ours = fs.readFileSync(path.join(bundle, 'address'), 'utf8');
        assert.match(ours, new RegExp(`^unix://${sockDir}/[0-9a-f]{64}\\.sock$`));
        assert.equal(state.address, ours);
        // Byte for byte what the downstream would have said, only with our address.
        assert.ok(r.stdout.equals(printBootstrap(form, ours)), `answer ${r.stdout.toString('hex')}`);
        if (form === 'protobuf') assert.equal(decodeBootstrapResult(r.stdout).metadata['fake.bytes'], 'a\nb\0c');
        // katavol.json records exactly what the downstream printed, and how it read it.
        assert.ok(Buffer.from(state.bootstrap.output, 'base64').equals(printBootstrap(form, state.downstreamAddress)));
        assert.deepEqual([state.bootstrap.form, state.bootstrap.version], [form === 'plain' ? 'plain' : form === 'protobuf' ? 'protobuf' : 'json', form === 'plain' ? 2 : 3]);
        // The downstream start got containerd's argv, environment and stdin bytes, nothing of ours.
        const starts = readRecords(env[RECORDER_DIR_ENV]!).filter((x): x is ActionRecord => x.kind === 'action' && x.action === 'start');
        assert.equal(starts.length, 1);
        assert.deepEqual(starts[0].argv, argv);
        assert.equal(starts[0].stdin, stdin.toString('hex'));
        assert.equal(starts[0].cwd, bundle);
        const { _: _u, ...want } = env as Record<string, string>;
        const { _: _g, ...got } = starts[0].env!;
        // The one variable a POSIX shell sets itself: PWD, to the directory it runs in (the bundle). A warm
        // daemon reads the launcher's environment as containerd gave it, before the shell set anything.
        if (mode === 'launcher (inline daemon)') want.PWD = bundle;
        assert.deepEqual(got, want);
        assert.ok(pidAlive(state.daemonPid), 'daemon running');
        if (warm) assert.equal(state.daemonPid, pooled, 'the warm daemon serves it');
        assert.match(fs.readFileSync(`/proc/${state.daemonPid}/cmdline`, 'utf8'), /dist\/src\/shim\/bin\.js/);
        assert.deepEqual(fs.readlinkSync(`/proc/${state.daemonPid}/fd/1`), '/dev/null', 'the daemon holds none of containerd\'s pipes');

        const c = await Client.connect(ours.replace('unix://', ''));
        const got2 = decodeConnectResponse(await c.call(service, 'Connect', encodeConnectRequest('c1')));
        assert.equal(got2.version, 'recorder');
        // The other API version is not served: we announced only what the downstream did.
        await assert.rejects(c.call(OTHER[service], 'Connect', encodeConnectRequest('c1')), (e: TtrpcError) => e.code === 12);
        assert.deepEqual(rpcCalls(env[RECORDER_DIR_ENV]!).map((x) => x.method), ['Connect']);
        await c.call(service, 'Shutdown', encodeShutdownRequest('c1', false));
        c.close();
        for (let i = 0; i < 100 && pidAlive(state.daemonPid); i++) await sleep(50);
        assert.equal(pidAlive(state.daemonPid), false, 'daemon exits with the downstream');
        assert.deepEqual(sockets(), [], 'socket and pid file removed');
      });
    }

    for (const kind of ['kata', 'runc-1.7', 'runc-2.0', 'runc-2.3'] as Kind[]) {
      const { service } = KINDS[kind];
      // The harness (containerd-versions.test.ts) runs this with the version katavol.json records; here the
      // record is taken away, as in a bundle of an older katavol, so the Unimplemented fallback does it.
      it(`${kind}: after our daemon is SIGKILLed, delete stops the orphaned downstream in its own API version, even with no version recorded`, async () => {
        env[KIND_ENV] = kind;
        const cmd = command(['-namespace', 'ns1', '-address', '/x', '-id', 'c4', 'start']);
        await warmDaemon();
        const r = spawnSync(cmd[0], cmd[1], { cwd: bundle, env, input: '', timeout: 30000 });
        assert.equal(r.status, 0, r.stderr.toString());
        const state = JSON.parse(fs.readFileSync(path.join(bundle, 'katavol.json'), 'utf8'));
        const down = await Client.connect(state.downstreamAddress.replace('unix://', ''));
        const downPid = decodeConnectResponse(await down.call(service, 'Connect', encodeConnectRequest('c4'))).shimPid;
        down.close();
        assert.ok(pidAlive(downPid));
        process.kill(state.daemonPid, 'SIGKILL');
        for (let i = 0; i < 100 && pidAlive(state.daemonPid); i++) await sleep(20);
        delete state.bootstrap;
        fs.writeFileSync(path.join(bundle, 'katavol.json'), JSON.stringify(state));
        const d = command(['-namespace', 'ns1', '-address', '/x', '-id', 'c4', '-bundle', bundle, 'delete']);
        const dr = spawnSync(d[0], d[1], { cwd: bundle, env, encoding: 'utf8', timeout: 30000 });
        assert.equal(dr.status, 0, dr.stderr);
        assert.match(dr.stderr, /shim daemon \d+ is gone: sent Shutdown to downstream shim/);
        for (let i = 0; i < 100 && pidAlive(downPid); i++) await sleep(20);
        assert.equal(pidAlive(downPid), false, 'the downstream daemon was stopped');
        // Only calls the downstream serves reach its records: Connect (for the pid) and Shutdown, in its API.
        assert.deepEqual(rpcCalls(env[RECORDER_DIR_ENV]!).filter((x) => x.method === 'Shutdown').map((x) => x.service), [service]);
        assert.deepEqual(sockets(), [], 'our socket and pid file removed');
      });
    }

    if (!warm) {
      it('a start after our daemon crashed rebinds the socket it left behind and serves again', async () => {
        env[KIND_ENV] = 'kata';
        const argv = ['-namespace', 'ns1', '-address', '/run/fake-containerd.sock', '-id', 'c1', 'start'];
        const cmd = command(argv);
        const first = spawnSync(cmd[0], cmd[1], { cwd: bundle, env, input: '', timeout: 30000 });
        assert.equal(first.status, 0, first.stderr.toString());
        const before = JSON.parse(fs.readFileSync(path.join(bundle, 'katavol.json'), 'utf8'));
        const ours = socketPath(before.address);
        process.kill(before.daemonPid, 'SIGKILL'); // the crash: nothing unlinks the socket
        for (let i = 0; i < 100 && pidAlive(before.daemonPid); i++) await sleep(50);
        assert.ok(fs.existsSync(ours), 'the dead daemon\'s socket file is still there');
        // containerd starts the task again; the downstream is still up, so its start answers the same address.
        const again = spawnSync(cmd[0], cmd[1], { cwd: bundle, env, input: '', timeout: 30000 });
        assert.equal(again.status, 0, again.stderr.toString());
        const after = JSON.parse(fs.readFileSync(path.join(bundle, 'katavol.json'), 'utf8'));
        assert.equal(after.address, before.address, 'same address: the socket file was reused');
        assert.notEqual(after.daemonPid, before.daemonPid);
        assert.ok(pidAlive(after.daemonPid), 'a new daemon serves it');
        const c = await Client.connect(ours);
        assert.equal(decodeConnectResponse(await c.call('containerd.task.v2.Task', 'Connect', encodeConnectRequest('c1'))).version, 'recorder');
        await c.call('containerd.task.v2.Task', 'Shutdown', encodeShutdownRequest('c1', false));
        c.close();
        for (let i = 0; i < 100 && pidAlive(after.daemonPid); i++) await sleep(50);
        assert.equal(pidAlive(after.daemonPid), false, 'daemon exits with the downstream');
      });
    }

    it('a downstream start failure is reported on stderr with exit 1 and leaves no daemon', async () => {
      const cmd = command(['-namespace', 'ns1', '-address', '/x', '-id', 'c2', 'start']);
      delete env[RECORDER_DIR_ENV]; // the recorder refuses to start without its record directory
      const pooled = await warmDaemon();
      const r = spawnSync(cmd[0], cmd[1], { cwd: bundle, env, input: '', encoding: 'utf8', timeout: 30000 });
      assert.equal(r.status, 1);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /downstream shim .*recorder-v2 start failed \(exit 1\): .*KATAVOL_RECORDER_DIR/);
      assert.equal(fs.existsSync(path.join(bundle, 'katavol.json')), false);
      assert.deepEqual(sockets(), []);
      if (pooled) {
        // The claimed daemon answered the failure and exited (a fresh one replaces it).
        for (let i = 0; i < 100 && pidAlive(pooled); i++) await sleep(50);
        assert.equal(pidAlive(pooled), false);
      }
    });

    it('refuses a downstream that announces gRPC, naming it and the fix', async () => {
      env[KIND_ENV] = 'grpc';
      const cmd = command(['-namespace', 'ns1', '-address', '/x', '-id', 'c3', 'start']);
      const pooled = await warmDaemon();
      const r = spawnSync(cmd[0], cmd[1], { cwd: bundle, env, input: '', encoding: 'utf8', timeout: 30000 });
      assert.equal(r.status, 1);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^containerd-shim-katavol-v2: downstream shim .*recorder-v2 announced protocol "grpc" at unix:\/\/.* katavol proxies TTRPC only; configure the downstream to serve TTRPC/);
      assert.equal(fs.existsSync(path.join(bundle, 'katavol.json')), false);
      assert.deepEqual(sockets(), []);
      if (pooled) {
        // The claimed daemon answered the failure and exited (a fresh one replaces it).
        for (let i = 0; i < 100 && pidAlive(pooled); i++) await sleep(50);
        assert.equal(pidAlive(pooled), false);
      }
    });
  });
}

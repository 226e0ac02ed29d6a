// A katavol daemon that containerd will never use again exits, stopping its downstream shim: one that
// containerd never connected to (containerd was stopped while the start was in flight), and one whose
// bundles containerd removed while no connection remained. One that containerd merely left (a restart)
// keeps serving. Driven by hand as containerd would, against the recording downstream.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { Client } from '../../src/ttrpc';
import { encodeConnectRequest } from '../../src/shim/messages';
import { pidAlive } from '../../src/shim/state';
import { RECORDER, RECORDER_DIR_ENV, rpcCalls } from '../peers/recorder/record';
import { KIND_ENV } from '../peers/recorder/main';
import { SHIM, sleep, tmpDir } from '../support/containerd';
import { socketDir } from '../support/scratch';

const TASK = 'containerd.task.v2.Task';
const TASK_V3 = 'containerd.task.v3.Task';
const TIMEOUT_MS = 1500;

describe('shim daemon: orphaned daemons exit (KATAVOL_ORPHAN_TIMEOUT_MS)', function () {
  let dir: string;
  let sockDir: string;
  let bundle: string;
  let env: NodeJS.ProcessEnv;
  beforeEach(() => {
    dir = tmpDir('katavol-orphan-');
    sockDir = socketDir();
    bundle = path.join(dir, 'ns', 'c1');
    fs.mkdirSync(bundle, { recursive: true });
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', mounts: [] }));
    fs.writeFileSync(path.join(bundle, 'log'), ''); // containerd's is a fifo; the daemon only appends
    const cfg = path.join(dir, 'katavol.json');
    fs.writeFileSync(cfg, JSON.stringify({ backend: 'runtime-rs', downstream: RECORDER, socketDir: sockDir }));
    env = { ...process.env, KATAVOL_CONFIG: cfg, [RECORDER_DIR_ENV]: path.join(dir, 'rec'), KATAVOL_VOLUME_ROOT: path.join(dir, 'vol'), KATAVOL_ORPHAN_TIMEOUT_MS: String(TIMEOUT_MS) };
  });
  afterEach(() => {
    for (const pid of pids()) if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(sockDir, { recursive: true, force: true });
  });

  let started: { daemonPid: number; downstreamPid: number; address: string } | undefined;
  const pids = () => (started ? [started.daemonPid, started.downstreamPid] : []);
  /** `kind`: which downstream the recorder plays (a containerd 2.x runc shim writes no shim.pid). */
  function start(kind = 'kata'): string {
    const r = spawnSync(SHIM, ['-namespace', 'ns', '-address', '/run/fake-containerd.sock', '-id', 'c1', 'start'], { cwd: bundle, env: { ...env, [KIND_ENV]: kind }, input: '', encoding: 'utf8', timeout: 30000 });
    assert.equal(r.status, 0, r.stderr);
    started = JSON.parse(fs.readFileSync(path.join(bundle, 'katavol.json'), 'utf8'));
    assert.ok(pidAlive(started!.daemonPid));
    if (kind === 'kata') assert.ok(pidAlive(started!.downstreamPid));
    // JSON (2.0-2.2) and protobuf (2.3) answers keep their form: the address is inside.
    return /unix:\/\/([^"\s]+\.sock)/.exec(r.stdout)![1];
  }
  async function gone(pid: number, withinMs: number): Promise<boolean> {
    for (let t = 0; t < withinMs && pidAlive(pid); t += 100) await sleep(100);
    return !pidAlive(pid);
  }

  it('containerd never connects: after the timeout the daemon shuts its downstream down, exits and says why', async () => {
    start();
    assert.ok(await gone(started!.daemonPid, TIMEOUT_MS + 15000), 'daemon exited');
    assert.ok(await gone(started!.downstreamPid, 5000), 'downstream exited');
    assert.deepEqual(rpcCalls(env[RECORDER_DIR_ENV]!).map((c) => c.method), ['Shutdown']);
    assert.deepEqual(fs.readdirSync(sockDir).filter((f) => !f.startsWith('.')), [], 'socket and pid file removed');
    const log = fs.readFileSync(path.join(bundle, 'log'), 'utf8');
    assert.match(log, new RegExp(`katavol shim daemon is orphaned.*containerd never connected within ${TIMEOUT_MS} ms of start`));
  });

  /** CreateTaskRequest{id=1, bundle=2}. */
  const createRequest = (id: string, b: string) => Buffer.concat([id, b].map((v, i) => Buffer.concat([Buffer.from([((i + 1) << 3) | 2, Buffer.byteLength(v)]), Buffer.from(v)])));

  it('bundle removed while no connection remains: exits; with the bundle in place and the task alive it keeps serving past the timeout', async () => {
    const sock = start();
    const c = await Client.connect(sock);
    await c.call(TASK, 'Connect', encodeConnectRequest('c1'));
    await c.call(TASK, 'Create', createRequest('c1', bundle));
    c.close(); // containerd went away (a restart): the bundle and the task stay, so the daemon stays
    await sleep(TIMEOUT_MS * 3);
    assert.ok(pidAlive(started!.daemonPid), 'a daemon whose task lives keeps serving');
    fs.rmSync(bundle, { recursive: true, force: true }); // containerd's clean-up of a task it does not know
    assert.ok(await gone(started!.daemonPid, 15000), 'daemon exited');
    assert.ok(await gone(started!.downstreamPid, 5000), 'downstream exited');
    const calls = rpcCalls(env[RECORDER_DIR_ENV]!).map((x) => x.method);
    assert.deepEqual(calls.slice(0, 2), ['Connect', 'Create']);
    assert.equal(calls[calls.length - 1], 'Shutdown');
    assert.deepEqual(fs.readdirSync(sockDir).filter((f) => !f.startsWith('.')), []);
  });

  it('containerd connected but the downstream has no task (containerd restarted mid-create): exits after the timeout', async () => {
    const sock = start();
    const c = await Client.connect(sock);
    await c.call(TASK, 'Connect', encodeConnectRequest('c1')); // what a restarted containerd sends, and nothing else
    assert.ok(await gone(started!.daemonPid, TIMEOUT_MS + 15000), 'daemon exited although containerd keeps its connection');
    assert.ok(await gone(started!.downstreamPid, 5000), 'downstream exited');
    c.close();
    assert.deepEqual(rpcCalls(env[RECORDER_DIR_ENV]!).map((x) => x.method), ['Connect', 'State', 'Shutdown']);
    assert.deepEqual(fs.readdirSync(sockDir).filter((f) => !f.startsWith('.')), []);
    assert.match(fs.readFileSync(path.join(bundle, 'log'), 'utf8'), /the downstream shim has none of the tasks c1 1500 ms after start/);
  });

  it('the same against a task-v3-only downstream (containerd 2.x runc shim): the check asks v3, and the daemon exits', async () => {
    const sock = start('runc-2.0');
    const c = await Client.connect(sock);
    await c.call(TASK_V3, 'Connect', encodeConnectRequest('c1')); // containerd 2.x speaks v3 to us as well
    const downstreamPid = rpcCalls(env[RECORDER_DIR_ENV]!)[0].pid;
    started!.downstreamPid = downstreamPid; // for afterEach: this downstream writes no shim.pid
    assert.ok(await gone(started!.daemonPid, TIMEOUT_MS + 15000), 'daemon exited (a v2 State gets Unimplemented from this downstream, which proves nothing)');
    assert.ok(await gone(downstreamPid, 5000), 'downstream exited');
    c.close();
    const calls = rpcCalls(env[RECORDER_DIR_ENV]!);
    assert.deepEqual(calls.map((x) => `${x.service} ${x.method}`), ['Connect', 'State', 'Connect', 'Shutdown'].map((m) => `${TASK_V3} ${m}`),
      'State asked in v3; the stop finds the pid with Connect and shuts down in v3');
    assert.deepEqual(fs.readdirSync(sockDir).filter((f) => !f.startsWith('.')), []);
    assert.match(fs.readFileSync(path.join(bundle, 'log'), 'utf8'), /the downstream shim has none of the tasks c1 1500 ms after start/);
  });
});

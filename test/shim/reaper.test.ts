// Downstreams whose katavol daemon died where containerd runs no `delete` (src/shim/reaper.ts): our
// start killed during or right after the downstream start (containerd sees a failed start and removes
// the bundle), and a serving daemon killed whose bundle containerd removed before any delete. The next
// start's daemon, or a waiting warm daemon when no start comes, stops the downstream and removes what
// the dead one left. Driven by hand as containerd would, against the recording downstream. And a
// release killed mid-way is finished by the next.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { pidAlive, readPidFile } from '../../src/shim/state';
import { listPool, stopPool } from '../../src/shim/pool';
import { STARTS_DIR } from '../../src/shim/reaper';
import { heldPending, releaseHeld } from '../../src/shim/held';
import { HELD_FILE } from '../../src/backends/backend';
import { RUNC_STATE_FILE } from '../../src/backends/runc';
import { Registry } from '../../src/volumes/registry';
import { RECORDER, RECORDER_DIR_ENV, rpcCalls } from '../peers/recorder/record';
import { SHIM, loopDevicesOf, sleep, tmpDir } from '../support/containerd';
import { detachOwnLoop } from '../support/disks';
import { socketDir } from '../support/scratch';

describe('shim: downstreams of dead katavol daemons are reaped', function () {
  this.timeout(120000);
  let dir: string;
  let sockDir: string;
  let rec: string;
  let env: NodeJS.ProcessEnv;
  const pids: number[] = [];

  /** The downstream as configured: the recorder behind a script that kills our start at one point, once. */
  function setUp(warmDaemons: number): void {
    dir = tmpDir('katavol-reaper-');
    sockDir = socketDir();
    rec = path.join(dir, 'rec');
    const wrapper = path.join(dir, 'downstream');
    fs.writeFileSync(wrapper, [
      '#!/bin/sh',
      '# $PPID is the katavol start that runs this downstream start.',
      `d=${dir}`,
      'case "$*" in *" start")',
      `  if rm "$d/kill-before" 2>/dev/null; then kill -9 $PPID; ${RECORDER} "$@"; rc=$?; touch "$d/start-done"; exit $rc; fi`,
      `  if rm "$d/kill-after" 2>/dev/null; then ${RECORDER} "$@"; rc=$?; kill -9 $PPID; touch "$d/start-done"; exit $rc; fi ;;`,
      'esac',
      `exec ${RECORDER} "$@"`,
      '',
    ].join('\n'), { mode: 0o755 });
    const cfg = path.join(dir, 'katavol.json');
    fs.writeFileSync(cfg, JSON.stringify({ backend: 'runtime-rs', downstream: wrapper, socketDir: sockDir, warmDaemons }));
    env = { ...process.env, KATAVOL_CONFIG: cfg, [RECORDER_DIR_ENV]: rec, KATAVOL_VOLUME_ROOT: path.join(dir, 'vol') };
  }
  afterEach(async () => {
    for (const pid of pids.splice(0)) if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
    await stopPool(sockDir);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(sockDir, { recursive: true, force: true });
  });

  function bundleOf(id: string): string {
    const b = path.join(dir, 'ns', id);
    fs.mkdirSync(b, { recursive: true });
    fs.writeFileSync(path.join(b, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', mounts: [] }));
    fs.writeFileSync(path.join(b, 'log'), '');
    return b;
  }
  function start(id: string) {
    const r = spawnSync(SHIM, ['-namespace', 'ns', '-address', '/run/fake-containerd.sock', '-id', id, 'start'], { cwd: bundleOf(id), env, input: '', encoding: 'utf8', timeout: 60000 });
    const b = path.join(dir, 'ns', id);
    const downstreamPid = readPidFile(path.join(b, 'shim.pid')); // the recorder, as Kata, writes it
    if (downstreamPid) pids.push(downstreamPid);
    let daemonPid: number | undefined;
    try { daemonPid = (JSON.parse(fs.readFileSync(path.join(b, 'katavol.json'), 'utf8')) as { daemonPid: number }).daemonPid; } catch { /* failed start */ }
    if (daemonPid) pids.push(daemonPid);
    return { ...r, bundle: b, downstreamPid, daemonPid };
  }
  async function until(what: () => boolean, ms: number): Promise<boolean> {
    for (let t = 0; t < ms && !what(); t += 100) await sleep(100);
    return what();
  }
  /** The daemon writes its log once idle: wait for the line. */
  async function logSays(bundle: string, re: RegExp): Promise<void> {
    const text = () => fs.readFileSync(path.join(bundle, 'log'), 'utf8');
    await until(() => re.test(text()), 15000);
    assert.match(text(), re);
  }
  const ours = () => fs.readdirSync(sockDir).filter((f) => !f.startsWith('.'));
  const downstreamSockets = () => fs.readdirSync(rec).filter((f) => f.endsWith('.sock'));

  for (const when of ['before', 'after'] as const) {
    it(`our start killed ${when === 'before' ? 'while' : 'right after'} the downstream start ran: containerd gets a failed start; the next start's daemon stops that downstream and nothing is left`, async () => {
      setUp(0);
      fs.writeFileSync(path.join(dir, `kill-${when}`), '');
      const first = start('c1');
      assert.equal(first.status, 1);
      assert.equal(first.stderr, 'containerd-shim-katavol-v2: start ended without printing an address');
      assert.ok(await until(() => fs.existsSync(path.join(dir, 'start-done')), 30000), 'the downstream start finished');
      const downstreamPid = readPidFile(path.join(first.bundle, 'shim.pid'))!;
      pids.push(downstreamPid);
      assert.ok(pidAlive(downstreamPid), 'the downstream daemon that start made runs, with nobody to stop it');
      assert.equal(fs.readdirSync(path.join(sockDir, STARTS_DIR)).length, 1, 'the start record holds its answer');
      fs.rmSync(first.bundle, { recursive: true, force: true }); // containerd removes the bundle of a failed start
      await sleep(1500);
      assert.ok(pidAlive(downstreamPid), 'still there: only a sweep stops it');

      const second = start('c2');
      assert.equal(second.status, 0, second.stderr);
      assert.ok(await until(() => !pidAlive(downstreamPid), 30000), 'the next start\'s daemon stopped the orphaned downstream');
      assert.ok(await until(() => !fs.existsSync(path.join(sockDir, STARTS_DIR)), 10000), 'no start record left');
      assert.deepEqual(rpcCalls(rec, 'c1').map((c) => c.method), ['Connect', 'Shutdown'], 'its pid asked for (the start died before recording it), asked to shut down, then killed');
      assert.deepEqual(downstreamSockets().length, 1, 'only c2\'s downstream socket');
      assert.equal(ours().filter((f) => f.endsWith('.sock')).length, 1, 'only c2\'s katavol socket');
      await logSays(second.bundle, /reaped the downstream of a dead katavol daemon.*start of c1 .*died before its daemon served the downstream/);
    });
  }

  it('a serving daemon SIGKILLed whose bundle containerd removed before any delete: the next start\'s daemon stops its downstream and removes its socket, pid file and record', async () => {
    setUp(0);
    const first = start('c1');
    assert.equal(first.status, 0, first.stderr);
    const sock = first.stdout.replace('unix://', '');
    assert.ok(fs.existsSync(sock.replace(/\.sock$/, '.owner.json')), 'the daemon\'s owner record');
    process.kill(first.daemonPid!, 'SIGKILL');
    fs.rmSync(first.bundle, { recursive: true, force: true });
    await sleep(1500);
    assert.ok(pidAlive(first.downstreamPid), 'the downstream outlives our daemon');

    const second = start('c2');
    assert.equal(second.status, 0, second.stderr);
    assert.ok(await until(() => !pidAlive(first.downstreamPid), 30000), 'stopped');
    // The sweep removes the socket first, then the pid file and the record it claimed (after an await).
    const base = path.basename(sock, '.sock');
    const left = () => ours().filter((f) => f.startsWith(base));
    assert.ok(await until(() => left().length === 0, 5000), `no socket, pid file or owner record of the dead daemon: ${left().join(', ')}`);
    assert.equal(downstreamSockets().length, 1);
    await logSays(second.bundle, new RegExp(`reaped the downstream of a dead katavol daemon.*katavol daemon ${first.daemonPid} of c1 is gone`));
  });

  it('with no start after the crash, a waiting warm daemon reaps it', async () => {
    setUp(1);
    const first = start('c1');
    assert.equal(first.status, 0, first.stderr);
    const warm = () => listPool(sockDir).filter((e) => e.kind === 'warm' && e.alive && !e.claimed).map((e) => e.pid);
    assert.ok(await until(() => warm().length === 1, 30000), 'the pool refilled after the start');
    pids.push(...warm());
    process.kill(first.daemonPid!, 'SIGKILL');
    fs.rmSync(first.bundle, { recursive: true, force: true });
    assert.ok(await until(() => !pidAlive(first.downstreamPid), 30000), 'stopped by the warm daemon');
    assert.ok(await until(() => ours().length === 0, 5000), `nothing of the dead daemon left: ${ours().join(', ')}`);
    assert.deepEqual(downstreamSockets(), []);
  });

  it('an owner record\'s temp file left by a start killed before its rename goes at the next sweep; a live writer\'s stays', async () => {
    setUp(0);
    const { sweepDeadDaemons } = await import('../../src/shim/reaper');
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    const dead = path.join(sockDir, `${'a'.repeat(64)}.owner.json.${gone}.tmp`);
    const live = path.join(sockDir, `${'b'.repeat(64)}.owner.json.${process.pid}.tmp`);
    fs.writeFileSync(dead, '');
    fs.writeFileSync(live, '');
    await sweepDeadDaemons(sockDir);
    assert.ok(!fs.existsSync(dead), 'the dead writer\'s temp file is gone');
    assert.ok(fs.existsSync(live), 'a live writer\'s stays (it is about to rename it)');
    fs.rmSync(live);
  });

  it('writeOwner writes the record through <record>.<pid>.tmp (the name the sweep knows), also over one an earlier process with our pid left', async () => {
    setUp(0);
    const { ownerFile, writeOwner } = await import('../../src/shim/reaper');
    const sock = path.join(sockDir, `${'c'.repeat(64)}.sock`);
    const tmp = `${ownerFile(sock)}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, 'left by a killed writer');
    writeOwner(sock, { id: 'c1', downstreamAddress: 'unix:///d.sock', version: 2, daemonPid: process.pid });
    const rec = JSON.parse(fs.readFileSync(ownerFile(sock), 'utf8'));
    assert.deepEqual([rec.id, rec.downstreamAddress, rec.version, rec.daemonPid], ['c1', 'unix:///d.sock', 2, process.pid]);
    assert.equal(typeof rec.daemonStart, 'string');
    assert.ok(rec.daemonStart.length > 0, 'our own start time');
    assert.equal((fs.statSync(ownerFile(sock)).mode & 0o777).toString(8), '600');
    assert.ok(!fs.existsSync(tmp), 'renamed into place');
    fs.rmSync(ownerFile(sock));
  });

  it('delete does not answer while another live process releases its bundle (containerd removes the bundle right after), and finishes that release if the other dies', async () => {
    setUp(0);
    // A downstream whose `delete` only leaves a mark, so we know when our delete is past it.
    const marker = path.join(dir, 'downstream-deleted');
    const downstream = path.join(dir, 'downstream-delete');
    fs.writeFileSync(downstream, `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
    fs.writeFileSync(env.KATAVOL_CONFIG!, JSON.stringify({ backend: 'runc', downstream, socketDir: sockDir, warmDaemons: 0 }));
    const volRoot = env.KATAVOL_VOLUME_ROOT!;
    const bundle = bundleOf('c1');
    const img = path.join(dir, 'img');
    fs.writeFileSync(img, '');
    fs.truncateSync(img, 1 << 20);
    const reg = new Registry(volRoot);
    reg.add('/kubelet/v', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
    reg.recordSandbox('/kubelet/v', 'c1', 'runc', false);
    const device = spawnSync('losetup', ['--find', '--show', img], { encoding: 'utf8' }).stdout.trim();
    // Another releaser at work: a live process (here one that does nothing) holds the claim.
    const other = spawn('sleep', ['600'], { stdio: 'ignore' });
    pids.push(other.pid!);
    try {
      assert.match(device, /^\/dev\/loop\d+$/);
      fs.writeFileSync(path.join(bundle, RUNC_STATE_FILE), JSON.stringify({ containerId: 'c1', sandboxId: 'c1', loops: [{ device, file: fs.realpathSync(img), volume: '/kubelet/v' }], volumes: ['/kubelet/v'] }));
      const held = { containerId: 'c1', sandboxId: 'c1', backend: 'runc', volumeRoot: volRoot };
      fs.writeFileSync(path.join(bundle, `${HELD_FILE}.releasing.${other.pid}`), JSON.stringify(held));

      const del = spawn(SHIM, ['-namespace', 'ns', '-address', '/run/fake-containerd.sock', '-id', 'c1', '-bundle', bundle, 'delete'], { cwd: bundle, env, stdio: 'ignore' });
      const exited = new Promise<number | null>((r) => del.on('exit', (code) => r(code)));
      let answered = false;
      void exited.then(() => (answered = true));
      assert.ok(await until(() => fs.existsSync(marker) || answered, 60000), 'the downstream delete ran');
      await until(() => answered, 1000);
      assert.ok(!answered, 'delete answered while another process was releasing its bundle');
      process.kill(other.pid!, 'SIGKILL'); // that releaser dies half-way
      assert.equal(await exited, 0);
      fs.rmSync(bundle, { recursive: true, force: true }); // what containerd does once delete answered
      assert.deepEqual(loopDevicesOf(img), [], 'the delete finished the dead releaser\'s work: loop device detached');
      assert.deepEqual(reg.sandboxesOf('/kubelet/v'), [], 'and the sandbox record dropped');
    } finally {
      detachOwnLoop(device, img);
    }
  });

  it('a release killed mid-way (its claim of the held record left behind) is finished by the next delete\'s release', async () => {
    setUp(0);
    const bundle = bundleOf('c1');
    const img = path.join(dir, 'img');
    fs.writeFileSync(img, '');
    fs.truncateSync(img, 1 << 20);
    const device = spawnSync('losetup', ['--find', '--show', img], { encoding: 'utf8' }).stdout.trim();
    try {
      assert.match(device, /^\/dev\/loop\d+$/);
      fs.writeFileSync(path.join(bundle, RUNC_STATE_FILE), JSON.stringify({ containerId: 'c1', sandboxId: 'c1', loops: [{ device, file: fs.realpathSync(img) }], volumes: [] }));
      // What a delete SIGKILLed right after claiming the record leaves (pid 999999: no such process).
      const held = { containerId: 'c1', sandboxId: 'c1', backend: 'runc', volumeRoot: path.join(dir, 'vol') };
      fs.writeFileSync(path.join(bundle, `${HELD_FILE}.releasing.999999`), JSON.stringify(held));
      assert.ok(heldPending(bundle), 'the launcher and delete see something to release');
      await releaseHeld(bundle);
      assert.deepEqual(loopDevicesOf(img), [], 'its loop device detached');
      assert.deepEqual(fs.readdirSync(bundle).filter((f) => f.startsWith('katavol-')), [], 'no record or claim left');
    } finally {
      detachOwnLoop(device, img);
    }
  });
});

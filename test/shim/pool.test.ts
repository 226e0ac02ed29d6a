// The pool's file rules without containerd: which hand-off directories a sweep removes, and how one is
// removed without ever being claimable half-way (the launcher's side is bin/containerd-shim-katavol-v2).
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawn, type ChildProcess } from 'child_process';
import { listPool, poolDir, procStart, sweepPool } from '../../src/shim/pool';
import { goneName, removeHandoffDir } from '../../src/shim/handoff';
import { sweepPodChannels } from '../../src/shim/pod-channel';
import { removeDir, scratchDir } from '../support/scratch';

describe('warm pool files: sweeping and removal', () => {
  let sockDir: string;
  const procs: ChildProcess[] = [];

  beforeEach(() => {
    sockDir = scratchDir('pool');
    fs.mkdirSync(poolDir(sockDir), { mode: 0o700 });
  });
  afterEach(() => {
    for (const p of procs.splice(0)) p.kill('SIGKILL');
    removeDir(sockDir);
  });

  /** A live process (standing in for a launcher or a daemon) and its start time. */
  function live(): { pid: number; start: string } {
    const p = spawn('sleep', ['60'], { stdio: 'ignore' });
    procs.push(p);
    return { pid: p.pid!, start: procStart(p.pid!)! };
  }
  /** A pid that is surely not running (a child that has exited and been reaped). */
  async function dead(): Promise<number> {
    const p = spawn('true', { stdio: 'ignore' });
    await new Promise((r) => p.on('close', r));
    return p.pid!;
  }
  function handoffDir(name: string, claimedBy?: number): string {
    const d = path.join(poolDir(sockDir), name);
    fs.mkdirSync(d, { mode: 0o700 });
    fs.writeFileSync(path.join(d, 'stdin'), 'the start\'s stdin');
    if (claimedBy !== undefined) fs.writeFileSync(path.join(d, 'claim'), `${claimedBy}\n`);
    return d;
  }
  const names = () => fs.readdirSync(poolDir(sockDir)).sort();

  it('a dead daemon\'s directory claimed by a live launcher stays for it (it replays the stdin copy in it); unclaimed or claimed by a dead one, it goes', async () => {
    const deadDaemon = await dead();
    const launcher = live();
    const kept = handoffDir(`w.${deadDaemon}.123.0`, launcher.pid);
    handoffDir(`w.${deadDaemon}.123.1`);
    handoffDir(`w.${deadDaemon}.123.2`, await dead());
    sweepPool(sockDir);
    assert.deepEqual(names(), [path.basename(kept)]);
    assert.equal(fs.readFileSync(path.join(kept, 'stdin'), 'utf8'), 'the start\'s stdin');
  });

  it('directories being removed (.gone) are not pool members, and are swept once their remover is dead', async () => {
    const daemon = live();
    const remover = live();
    const removing = `.w.${daemon.pid}.${daemon.start}.0.${remover.pid}.gone`;
    const orphan = `.w.${daemon.pid}.${daemon.start}.1.${await dead()}.gone`;
    for (const n of [removing, orphan]) handoffDir(n);
    assert.deepEqual(listPool(sockDir).map((e) => [e.name, e.kind, e.alive]).sort(), [[removing, 'gone', true], [orphan, 'gone', false]].sort());
    sweepPool(sockDir);
    assert.deepEqual(names(), [removing]);
  });

  it('removing a claimed directory takes it out of sight with its claim in one rename, then removes it', () => {
    const d = handoffDir('w.1.2.0', 4242);
    fs.mkdirSync(path.join(d, 'sub'));
    removeHandoffDir(d);
    assert.deepEqual(names(), []);
    // The name it passes through is one no launcher globs for (w.*) and a sweep judges by the remover.
    assert.equal(path.basename(goneName(d, 77)), '.w.1.2.0.77.gone');
    removeHandoffDir(d); // already gone: nothing to do, no throw
  });

  it('pod channels: a dead daemon\'s channel claimed by a live launcher stays; dead removers\' leftovers go', async () => {
    const pods = path.join(sockDir, '.pods');
    fs.mkdirSync(pods);
    const deadPid = await dead();
    const launcher = live();
    const mk = (name: string, owner: string | undefined, claim?: number) => {
      const d = path.join(pods, name);
      fs.mkdirSync(d);
      if (owner) fs.writeFileSync(path.join(d, 'owner'), owner);
      if (claim) fs.writeFileSync(path.join(d, 'claim'), `${claim}\n`);
    };
    mk('podA', `${deadPid} 1`, launcher.pid);
    mk('podB', `${deadPid} 1`);
    mk(`.podC.${deadPid}.gone`, `${deadPid} 1`);
    mk(`.podD.${launcher.pid}.gone`, `${deadPid} 1`);
    sweepPodChannels(sockDir);
    assert.deepEqual(fs.readdirSync(pods).sort(), [`.podD.${launcher.pid}.gone`, 'podA']);
  });
});

// Warm daemons end to end: a private containerd, the real runc shim, the launcher claiming pre-booted
// daemons from a pool under a scratch socketDir. Every test stops the pool it used and checks that no
// process carrying its config is left.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { KATAVOL, PrivateContainerd, SHIM, makeRootfs, pidsWithEnv, sleep, tmpDir } from '../support/containerd';
import { socketDir } from '../support/scratch';
import { listPool, poolDir, procStart, refillPool, stopPool } from '../../src/shim/pool';
import { loadConfig } from '../../src/shim/config';
import { STALE_CLAIM_ENV } from '../../src/shim/warm';
import { katavolLogLines } from '../support/logrus';

const RUNC_SHIM = '/usr/bin/containerd-shim-runc-v2';

describe('warm daemons (private containerd, runc shim)', function () {
  let work: string;
  let rootfs: string;
  let sockDir: string;
  let config: string;
  let nodeMarker: string;
  let ctd: PrivateContainerd;
  let env: NodeJS.ProcessEnv;
  let n = 0;
  const ids: string[] = [];

  function writeConfig(extra: Record<string, unknown> = {}): void {
    fs.writeFileSync(config, JSON.stringify({ backend: 'runc', downstream: RUNC_SHIM, socketDir: sockDir, ...extra }));
  }
  const cfg = () => loadConfig(env);
  const warmPids = () => listPool(sockDir).filter((e) => e.kind === 'warm' && e.alive && !e.claimed).map((e) => e.pid).sort();
  const nodeRuns = () => (fs.existsSync(nodeMarker) ? fs.readFileSync(nodeMarker, 'utf8').split('\n').filter(Boolean) : []);
  /** A pid listed a moment ago may have exited since (a replacement warm daemon's helpers): it has no command line. */
  const cmdline = (pid: number) => {
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0$/, '').split('\0').join(' ');
    } catch {
      return '';
    }
  };
  const state = (id: string) => JSON.parse(fs.readFileSync(path.join(ctd.bundleOf(id), 'katavol.json'), 'utf8'));
  /** Our processes: every daemon and shim inherits the config path through its environment. */
  const ours = () => pidsWithEnv(`KATAVOL_CONFIG=${config}`).filter((p) => p !== ctd.pid);

  async function waitFor(what: string, cond: () => boolean, ms = 20000): Promise<void> {
    for (let t = 0; t < ms; t += 50) {
      if (cond()) return;
      await sleep(50);
    }
    assert.fail(`timed out waiting for ${what}`);
  }

  async function fill(count: number): Promise<number[]> {
    writeConfig({ warmDaemons: count });
    refillPool(cfg(), env);
    await waitFor(`${count} warm daemons`, () => warmPids().length === count);
    return warmPids();
  }

  function runDetached(id: string, extra: string[] = []): Promise<{ status: number | null; stderr: string }> {
    ids.push(id);
    return new Promise((resolve) => {
      const p = spawn('ctr', ['-a', ctd.sock, '-n', ctd.namespace, 'run', '-d', '--runtime', SHIM, ...extra, '--rootfs', rootfs, id, '/bin/sh', '-c', 'sleep 600'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      p.stderr.on('data', (d) => { stderr += d; });
      p.on('close', (status) => resolve({ status, stderr }));
    });
  }

  before(async function () {
    work = tmpDir('katavol-warm-');
    rootfs = makeRootfs(work);
    sockDir = socketDir('w');
    config = path.join(work, 'katavol.json');
    writeConfig();
    // A `node` first on containerd's PATH that notes each run: the warm path must not start one.
    const fakeBin = path.join(work, 'bin');
    fs.mkdirSync(fakeBin);
    nodeMarker = path.join(work, 'node-runs');
    fs.writeFileSync(path.join(fakeBin, 'node'), `#!/bin/sh\necho "$*" >> ${nodeMarker}\nexec ${process.execPath} "$@"\n`, { mode: 0o755 });
    env = { ...process.env, KATAVOL_CONFIG: config, KATAVOL_VOLUME_ROOT: path.join(work, 'volumes'), PATH: `${fakeBin}:${process.env.PATH}` };
    ctd = await PrivateContainerd.start({ env: { KATAVOL_CONFIG: config, KATAVOL_VOLUME_ROOT: env.KATAVOL_VOLUME_ROOT!, PATH: env.PATH! } });
  });

  after(async function () {
    await ctd?.stop();
    if (sockDir) await stopPool(sockDir);
    fs.rmSync(sockDir, { recursive: true, force: true });
    fs.rmSync(work, { recursive: true, force: true });
  });

  beforeEach(() => {
    n++;
    fs.rmSync(nodeMarker, { force: true });
  });

  afterEach(async function () {
    this.timeout(120000);
    for (const id of ids.splice(0)) {
      ctd.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
      for (let i = 0; i < 50 && ctd.ctr(['task', 'delete', id]).status !== 0 && ctd.ctr(['task', 'ls', '-q']).stdout.includes(id); i++) await sleep(100);
      ctd.ctr(['container', 'delete', id]);
    }
    await stopPool(sockDir);
    // Serving daemons exit once their downstream is gone; the pool is stopped: nothing of ours stays.
    for (let i = 0; i < 100 && ours().length > 0; i++) await sleep(100);
    assert.deepEqual(ours().map((p) => cmdline(p)), [], 'no daemon or shim of this test left');
    assert.deepEqual(fs.readdirSync(sockDir), [], 'no socket, pid file, pool entry or claim left');
  });

  it('a start is handed to a warm daemon without starting Node, and a replacement warms up', async function () {
    const [warm] = await fill(1);
    const r = await runDetached(`w${n}`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(state(`w${n}`).daemonPid, warm, 'the warm daemon serves the container');
    assert.deepEqual(nodeRuns(), [], 'the launcher started no Node process');
    assert.equal(ctd.ctr(['task', 'ls']).stdout.includes('RUNNING'), true);
    await waitFor('a replacement warm daemon', () => warmPids().length === 1 && warmPids()[0] !== warm);
    // The replacement boots niced (a refill must not take CPU from a container start); serving is not.
    const nice = (pid: number) => Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[16]);
    assert.equal(nice(warmPids()[0]), 10);
    assert.equal(nice(warm), 0);
  });

  it('8 concurrent starts against a pool of 2: all succeed, each on its own daemon, pool refilled to 2', async function () {
    const pool = await fill(2);
    const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => runDetached(`c${n}-${i}`)));
    const shimLog = () => katavolLogLines(ctd.logFile).filter((l) => /^c\d+-\d$/.test(l.id ?? '')).map((l) => JSON.stringify(l)).join('\n');
    rs.forEach((r, i) => assert.equal(r.status, 0, `start ${i}: ${r.stderr}\nshim log:\n${shimLog()}`));
    const daemons = rs.map((_, i) => state(`c${n}-${i}`).daemonPid as number);
    assert.equal(new Set(daemons).size, 8, 'eight distinct serving daemons');
    assert.deepEqual(daemons.filter((p) => pool.includes(p)).sort(), pool, 'both warm daemons were used');
    // The others went cold, unless a replacement had booted by the time a slow one looked.
    const fromPool = daemons.filter((p) => cmdline(p).includes('-katavol-warm'));
    assert.equal(fromPool.length + nodeRuns().length, 8, 'each start either claimed a warm daemon or booted Node once');
    await waitFor('the pool back at exactly 2', () => warmPids().length === 2 && listPool(sockDir).every((e) => e.kind === 'warm' && e.alive), 30000);
  });

  it('8 concurrent ctr run --rm against a pool of 8, three rounds: all succeed, the pool is refilled, nothing left', async function () {
    // The race this guards: a daemon removing its claimed directory after answering, while the next
    // launcher claimed the remains (the claim file went first) and took the first start's stdin copy.
    for (let round = 0; round < 3; round++) {
      await fill(8);
      const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => new Promise<{ status: number | null; stderr: string }>((resolve) => {
        const p = spawn('ctr', ['-a', ctd.sock, '-n', ctd.namespace, 'run', '--rm', '--runtime', SHIM, '--rootfs', rootfs, `rm${n}-${round}-${i}`, '/bin/true'], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        p.stderr.on('data', (d) => { stderr += d; });
        p.on('close', (status) => resolve({ status, stderr }));
      })));
      rs.forEach((r, i) => assert.equal(r.status, 0, `round ${round}, start ${i}: ${r.stderr}`));
      assert.equal(ctd.ctr(['container', 'ls', '-q']).stdout.trim(), '', 'every container removed');
    }
    await waitFor('the pool back at exactly 8', () => warmPids().length === 8 && listPool(sockDir).every((e) => e.kind === 'warm' && e.alive), 60000);
  });

  it('warmDaemons 0: no warm daemon ever exists, every start is cold', async function () {
    writeConfig({ warmDaemons: 0 });
    for (const i of [0, 1]) {
      const r = await runDetached(`z${n}-${i}`);
      assert.equal(r.status, 0, r.stderr);
      assert.match(cmdline(state(`z${n}-${i}`).daemonPid), / start$/);
    }
    await sleep(1500); // a refill would have started by now
    assert.equal(fs.existsSync(poolDir(sockDir)), false, 'no pool directory');
    assert.equal(nodeRuns().length, 2);
  });

  it('an empty pool goes cold, and that start fills the pool', async function () {
    writeConfig({ warmDaemons: 1 });
    const r = await runDetached(`e${n}`);
    assert.equal(r.status, 0, r.stderr);
    assert.match(cmdline(state(`e${n}`).daemonPid), / start$/);
    await waitFor('a warm daemon', () => warmPids().length === 1);
  });

  it('a warm daemon SIGKILLed while idle costs a cold start and leaves nothing', async function () {
    const [warm] = await fill(1);
    process.kill(warm, 'SIGKILL');
    await waitFor('the killed daemon gone', () => procStart(warm) === undefined);
    const r = await runDetached(`k${n}`);
    assert.equal(r.status, 0, r.stderr);
    assert.match(cmdline(state(`k${n}`).daemonPid), / start$/, 'served by a cold daemon');
    assert.equal(listPool(sockDir).some((e) => e.pid === warm), false, 'its directory was removed');
  });

  it('a warm daemon killed in the middle of a claim: the start goes cold on the same downstream, nothing left', async function () {
    // A downstream that kills its parent (the warm daemon running its `start`) once, then starts for real.
    const trigger = path.join(work, 'kill-parent');
    const wrapper = path.join(work, 'runc-shim-wrapper');
    fs.writeFileSync(wrapper, `#!/bin/sh\nfor a in "$@"; do last=$a; done\nif [ "$last" = start ] && rm "${trigger}" 2>/dev/null; then kill -9 $PPID; fi\nexec ${RUNC_SHIM} "$@"\n`, { mode: 0o755 });
    writeConfig({ warmDaemons: 1, downstream: wrapper });
    refillPool(cfg(), env);
    await waitFor('a warm daemon', () => warmPids().length === 1);
    const [warm] = warmPids();
    fs.writeFileSync(trigger, '');
    const r = await runDetached(`m${n}`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(fs.existsSync(trigger), false, 'the warm daemon was killed mid-claim');
    assert.equal(procStart(warm), undefined);
    const st = state(`m${n}`);
    assert.match(cmdline(st.daemonPid), / start$/, 'a cold daemon serves it');
    assert.equal(ctd.ctr(['task', 'ls']).stdout.includes('RUNNING'), true);
    const runcShims = ours().filter((p) => cmdline(p).startsWith(RUNC_SHIM));
    assert.equal(runcShims.length, 1, 'the cold start reused the downstream the killed one had started');
    assert.deepEqual(fs.readdirSync(poolDir(sockDir)).filter((f) => f.includes(`.${warm}.`)), [], 'no claim, fifo or stdin copy left');
  });

  it('a claim abandoned before its request (the launcher was killed) is dropped: the daemon re-arms, nothing left, and serves the next start', async function () {
    writeConfig({ warmDaemons: 1 });
    refillPool(cfg(), { ...env, [STALE_CLAIM_ENV]: '1000' });
    await waitFor('a warm daemon', () => warmPids().length === 1);
    const [entry] = listPool(sockDir);
    // What a launcher killed between its claim and its request leaves: the claim file with its pid.
    const gone = spawnSync('true');
    fs.writeFileSync(path.join(entry.path, 'claim'), `${gone.pid}\n`);
    assert.deepEqual(warmPids(), [], 'claimed: not available');
    await waitFor('the daemon back in the pool', () => warmPids().length === 1);
    const after = listPool(sockDir);
    assert.deepEqual(after.map((e) => [e.pid, e.kind, e.claimed]), [[entry.pid, 'warm', false]], 'the same daemon, one entry, unclaimed');
    assert.notEqual(after[0].name, entry.name, 'in a new directory');
    assert.equal(fs.existsSync(entry.path), false, 'the abandoned directory (and its claim) removed');
    const r = await runDetached(`s${n}`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(state(`s${n}`).daemonPid, entry.pid, 'it serves the next start');
  });

  it('warm daemons of another build or config retire on their own', async function () {
    const [a] = await fill(1);
    const daemonJs = path.join(__dirname, '..', '..', 'src', 'shim', 'daemon.js');
    const now = new Date();
    fs.utimesSync(daemonJs, now, now); // what a rebuild or reinstall does to the build id
    await waitFor('the old build\'s daemon to exit', () => procStart(a) === undefined);
    const [b] = await fill(1);
    fs.appendFileSync(config, '\n'); // a changed config file
    await waitFor('the old config\'s daemon to exit', () => procStart(b) === undefined);
    assert.deepEqual(listPool(sockDir), []);
  });

  it('the pool survives a containerd restart and serves the next start', async function () {
    // Filled the way it is in production: by a (cold) start under containerd.
    writeConfig({ warmDaemons: 1 });
    const first = await runDetached(`r${n}-0`);
    assert.equal(first.status, 0, first.stderr);
    await waitFor('a warm daemon', () => warmPids().length === 1);
    const [warm] = warmPids();
    await ctd.restart();
    assert.notEqual(procStart(warm), undefined, 'still alive');
    const r = await runDetached(`r${n}-1`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(state(`r${n}-1`).daemonPid, warm);
  });

  it('a pod\'s later containers start through the pod\'s own daemon: no Node, no warm daemon consumed', async function () {
    const pod = ['--annotation', `io.kubernetes.cri.sandbox-id=pod${n}`];
    await fill(1);
    const first = await runDetached(`p${n}-0`, pod);
    assert.equal(first.status, 0, first.stderr);
    const serving = state(`p${n}-0`).daemonPid;
    await waitFor('a replacement warm daemon', () => warmPids().length === 1 && !warmPids().includes(serving));
    await waitFor('the pod\'s start channel', () => fs.existsSync(path.join(sockDir, '.pods', `pod${n}`, 'req')));
    const warmDir = () => listPool(sockDir).filter((e) => e.kind === 'warm').map((e) => e.name);
    const [warm] = warmPids();
    const before = warmDir();
    for (const i of [1, 2]) {
      const r = await runDetached(`p${n}-${i}`, pod);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(state(`p${n}-${i}`).daemonPid, serving, 'the pod\'s daemon serves it');
      const logged = () => katavolLogLines(ctd.logFile).some((l) => l.msg === 'pod container started through its daemon' && l.container === `p${n}-${i}`);
      await waitFor('the pod daemon\'s log line', logged);
    }
    assert.deepEqual(warmDir(), before, 'the warm daemon was not even claimed');
    assert.deepEqual(nodeRuns(), []);
    assert.equal(fs.readdirSync(sockDir).filter((f) => f.endsWith('.sock')).length, 1, 'one katavol socket for the pod');

    // Without the channel (say the pod's daemon has not opened it yet), a warm daemon is claimed, finds
    // the pod served and goes back to the pool: same process, a new directory.
    fs.rmSync(path.join(sockDir, '.pods', `pod${n}`), { recursive: true });
    const r = await runDetached(`p${n}-3`, pod);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(state(`p${n}-3`).daemonPid, serving);
    await waitFor('the claimed daemon back in the pool', () => warmPids().length === 1 && !before.includes(warmDir()[0] ?? before[0]));
    assert.deepEqual(warmPids(), [warm], 'the same warm daemon, not consumed');
    assert.deepEqual(nodeRuns(), []);
  });

  it('katavol daemons lists warm and serving daemons (pid, state, pod, RSS, uptime); --stop-warm stops the pool', async function () {
    const [warmBefore] = await fill(1);
    const pod = ['--annotation', `io.kubernetes.cri.sandbox-id=lpod${n}`];
    for (const i of [0, 1]) {
      const r = await runDetached(`l${n}-${i}`, pod);
      assert.equal(r.status, 0, r.stderr);
    }
    const st = state(`l${n}-0`);
    assert.equal(st.daemonPid, warmBefore);
    await waitFor('a replacement warm daemon', () => warmPids().length === 1 && !warmPids().includes(warmBefore));
    const katavol = (...args: string[]) => spawnSync(KATAVOL, args, { encoding: 'utf8', env });
    let r = katavol('daemons', '--json');
    assert.equal(r.status, 0, r.stderr);
    const list = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
    assert.deepEqual(list.map((d) => [d.pid, d.state]), [[warmPids()[0], 'warm'], [st.daemonPid, 'serving']]);
    for (const d of list) {
      assert.ok((d.rssBytes as number) > 10 << 20, `rssBytes of ${String(d.pid)}`);
      assert.ok(Number.isInteger(d.uptimeSeconds) && (d.uptimeSeconds as number) >= 0);
    }
    assert.equal(list[1].address, st.address);
    assert.deepEqual(list[1].pod, { downstreamAddress: st.downstreamAddress, containers: [`l${n}-0`, `l${n}-1`] });
    r = katavol('daemons');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^PID +STATE +RSS +UPTIME +POD/);
    assert.match(r.stdout, new RegExp(`\\n${st.daemonPid} +serving +[\\d.]+ MiB +\\d+s +${st.downstreamAddress}: l${n}-0,l${n}-1\\n`));
    const bad = spawnSync(KATAVOL, ['daemons'], { encoding: 'utf8', env: { ...env, KATAVOL_CONFIG: path.join(work, 'missing.json') } });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /^katavol: katavol config .*missing\.json: cannot read: ENOENT.*; create it or fix KATAVOL_CONFIG\n$/);
    r = katavol('daemons', '--stop-warm');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `stopped 1 warm daemon(s): ${String(list[0].pid)}\n`);
    assert.deepEqual(listPool(sockDir), []);
    assert.deepEqual(JSON.parse(katavol('daemons', '--json').stdout).map((d: { state: string }) => d.state), ['serving']);
  });

  // Last: it raises this containerd's OOM score (lowering one back needs CAP_SYS_RESOURCE, see oom.test.ts).
  it('a warm daemon has the serving daemon\'s heap cap and OOM score (containerd\'s + 1) from its boot, and takes its claimer\'s containerd\'s at the claim', async function () {
    const score = (pid: number) => Number(fs.readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8').trim());
    fs.writeFileSync(`/proc/${ctd.pid}/oom_score_adj`, '321');
    writeConfig({ warmDaemons: 1 });
    const first = await runDetached(`o${n}-0`); // the pool filled as in production: by a (cold) start
    assert.equal(first.status, 0, first.stderr);
    assert.equal(score(state(`o${n}-0`).daemonPid), 322, 'the cold-started daemon, for reference');
    await waitFor('a warm daemon', () => warmPids().length === 1);
    const [warm] = warmPids();
    assert.match(cmdline(warm), /--max-old-space-size=96 .*-katavol-warm/, 'heap capped like a serving daemon');
    await waitFor('the warm daemon at containerd\'s score + 1', () => score(warm) === 322);
    fs.writeFileSync(`/proc/${ctd.pid}/oom_score_adj`, '400');
    const r = await runDetached(`o${n}-1`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(state(`o${n}-1`).daemonPid, warm);
    await waitFor('the claimed daemon at its containerd\'s score + 1', () => score(warm) === 401);
  });
});

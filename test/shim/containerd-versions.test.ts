// katavol in front of every downstream generation, driven the way each containerd release drives a shim
// (test/support/shim-manager.ts plays 1.6-2.3; the live containerd 1.6 runs in e2e.test.ts). Downstreams:
// the recording shim as Kata (plain, task v2, shim.pid) and as the runc shims of 1.7 (plain, v2), 2.0-2.2
// (JSON v3, v3 only) and 2.3 (protobuf v3, v3 only). Each cell runs a pod (sandbox + an app container with a
// direct volume) through start, Create, Start, Kill, Delete, Shutdown and delete, with the runtime-rs and
// the runc backend; the crash variant: our daemon SIGKILLed, then that release's dead-shim clean-up; and a
// containerd restart: it reloads the pod's shims through what it stored (bootstrap.json or ./address).
// Cells the release itself cannot use (e.g. 1.7 refuses a version-3 shim) must fail the same way with
// and without katavol.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { KATAVOL, SHIM, loopDevicesOf, makeExt4Image, sleep, tmpDir } from '../support/containerd';
import { socketDir } from '../support/scratch';
import { ShimManager, VERSIONS, type ShimTask, type Version } from '../support/shim-manager';
import { RECORDER, RECORDER_DIR_ENV, readRecords, createdSpecs, type ActionRecord } from '../peers/recorder/record';
import { KIND_ENV, KINDS, type Kind } from '../peers/recorder/main';
import { encodeVolumePath } from '../../src/volumes/registry';
import { pidAlive } from '../../src/shim/state';
import { spawnSync } from 'child_process';

const SANDBOX_ID = 'io.kubernetes.cri.sandbox-id';
const CONTAINER_TYPE = 'io.kubernetes.cri.container-type';
const DOWNSTREAMS: Kind[] = ['kata', 'runc-1.7', 'runc-2.0', 'runc-2.3'];

/**
 * Whether the release can use that downstream at all, with or without katavol (CV §1.2, SP §1): 1.6
 * reads any output as a plain address; 1.7 refuses version 3; 2.0-2.2 cannot read protobuf (containerd
 * #13763); 2.3 reads every form.
 */
function usable(v: Version, k: Kind): boolean {
  const form = KINDS[k].form;
  if (form === 'plain') return true;
  if (v === '1.6' || v === '1.7') return false;
  return form !== 'protobuf' || v === '2.3';
}

describe('containerd 1.6-2.3 x downstream bootstrap forms (shim-manager harness)', function () {
  let work: string;
  let volRoot: string;
  let sockDir: string;
  let n = 0;
  /** One volume (and image) per backend x downstream x variant: the cells of a release run concurrently. */
  const images: string[] = [];
  const volumeOf = (backend: string, kind: Kind, variant: string) => `/kubelet/pods/${backend}/${kind}/${variant}`;

  const katavol = (...args: string[]) => spawnSync(KATAVOL, args, { encoding: 'utf8', env: { ...process.env, KATAVOL_VOLUME_ROOT: volRoot } });

  /** Sandbox records in the volume's directory (what a Create took in the registry). */
  function records(c: Cell): string[] {
    const dir = path.join(volRoot, encodeVolumePath(c.volume));
    return fs.readdirSync(dir).filter((f) => f !== 'mountInfo.json' && !f.startsWith('.'));
  }

  before(function () {
    work = tmpDir('katavol-versions-');
    volRoot = path.join(work, 'volumes');
    sockDir = socketDir('v');
    for (const backend of ['runtime-rs', 'runc']) {
      for (const kind of DOWNSTREAMS) {
        for (const variant of ['normal', 'crash', 'restart']) {
          const img = path.join(work, `${backend}-${kind}-${variant}.img`);
          makeExt4Image(img, 4);
          images.push(img);
          const r = katavol('direct-volume', 'add', volumeOf(backend, kind, variant), JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
          assert.equal(r.status, 0, r.stderr);
        }
      }
    }
  });

  // A failed cell leaves its daemons behind: stop every process this suite started (they all run in a
  // bundle under `work`), so nothing outlives the test.
  afterEach(async function () {
    const mine = pidsUnder(work);
    for (const p of mine) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
    for (let i = 0; i < 100 && mine.some(pidAlive); i++) await sleep(20);
  });

  after(function () {
    for (const img of images) for (const dev of loopDevicesOf(img)) spawnSync('losetup', ['-d', dev]);
    fs.rmSync(sockDir, { recursive: true, force: true });
    fs.rmSync(work, { recursive: true, force: true });
  });

  interface Cell { mgr: ShimManager; rec: string; env: NodeJS.ProcessEnv; pod: string; app: string; volume: string; image: string }

  function cell(version: Version, kind: Kind, backend: string, variant: string, runtime = SHIM): Cell {
    const id = `${++n}`;
    const dir = path.join(work, `cell${id}`);
    const rec = path.join(dir, 'rec');
    fs.mkdirSync(rec, { recursive: true });
    const cfg = path.join(dir, 'katavol.json');
    // warmDaemons 1 (the default): the sandbox start claims a warm daemon and the pod's later starts go
    // through its daemon's start channel (pod-channel.ts). This harness's socket stdin once reached that
    // downstream start empty; the launcher's keep_stdin is what makes these cells pass.
    fs.writeFileSync(cfg, JSON.stringify({ backend, downstream: RECORDER, socketDir: sockDir, warmDaemons: 1 }));
    const env = { ...process.env, KATAVOL_CONFIG: cfg, KATAVOL_VOLUME_ROOT: volRoot, [RECORDER_DIR_ENV]: rec, [KIND_ENV]: kind };
    const mgr = new ShimManager({ version, runtime, namespace: 'k8s.io', taskRoot: path.join(dir, 'task'), grpcAddress: path.join(dir, 'c.sock'), env });
    const pod = `pod${id}`;
    const app = `app${id}`;
    bundle(mgr, pod, pod, []);
    const volume = volumeOf(backend, kind, variant);
    bundle(mgr, app, pod, [{ destination: '/data', type: 'bind', source: volume, options: ['rbind', 'rprivate', 'rw'] }]);
    return { mgr, rec, env, pod, app, volume, image: path.join(work, `${backend}-${kind}-${variant}.img`) };
  }

  /** A CRI-style bundle: the sandbox annotations kubelet's containers carry. */
  function bundle(mgr: ShimManager, id: string, pod: string, mounts: unknown[]): void {
    const b = mgr.bundleOf(id);
    fs.mkdirSync(b, { recursive: true });
    fs.writeFileSync(path.join(b, 'config.json'), JSON.stringify({
      ociVersion: '1.0.2', process: { args: ['/pause'] }, root: { path: 'rootfs' }, mounts,
      annotations: { [SANDBOX_ID]: pod, [CONTAINER_TYPE]: id === pod ? 'sandbox' : 'container' },
    }));
  }

  /** The pod up: sandbox and app container created and started; returns both tasks and the downstream daemon's pid. */
  async function podUp(c: Cell, backend: string): Promise<{ sandbox: ShimTask; app: ShimTask; downstreamPid: number; daemonPid: number }> {
    const sandbox = await c.mgr.start(c.pod);
    await c.mgr.create(sandbox);
    await c.mgr.startTask(sandbox);
    const app = await c.mgr.start(c.app, c.pod);
    await c.mgr.create(app);
    await c.mgr.startTask(app);
    // The Create reached the downstream rewritten by the backend, and the volume is held.
    const spec = createdSpecs(c.rec, c.app)[0] as { mounts: Array<{ destination: string; type: string; source: string }>; annotations: Record<string, string> };
    const data = spec.mounts.find((m) => m.destination === '/data')!;
    if (backend === 'runc') {
      assert.deepEqual([data.type, loopDevicesOf(c.image)], ['ext4', [data.source]], 'runc backend: the volume is a loop device');
    } else {
      assert.ok(spec.annotations['io.katacontainers.katavol.devices'], 'runtime-rs backend: device annotation');
    }
    assert.deepEqual(records(c), [c.pod], 'the pod holds the volume');
    const state = JSON.parse(fs.readFileSync(path.join(sandbox.bundle, 'katavol.json'), 'utf8'));
    return { sandbox, app, downstreamPid: await c.mgr.shimPid(sandbox), daemonPid: state.daemonPid };
  }

  /** Nothing of the pod left: volume released, no daemons, sockets, held records. */
  async function assertReleased(c: Cell, pids: number[]): Promise<void> {
    for (let i = 0; i < 100 && pids.some(pidAlive); i++) await sleep(20);
    assert.deepEqual(pids.filter(pidAlive), [], 'katavol daemon and downstream daemon gone');
    assert.deepEqual(records(c), [], 'sandbox record released');
    assert.deepEqual(loopDevicesOf(c.image), [], 'no loop device left');
    const st = JSON.parse(fs.readFileSync(path.join(c.mgr.bundleOf(c.pod), 'katavol.json'), 'utf8'));
    const base = path.basename(st.address, '.sock');
    assert.deepEqual(fs.readdirSync(sockDir).filter((f) => f.startsWith(base)), [], 'no katavol socket, pid or holds file left');
    assert.deepEqual(fs.readdirSync(c.rec).filter((f) => f.endsWith('.sock')), [], 'no downstream socket left');
    for (const id of [c.pod, c.app]) {
      assert.deepEqual(fs.readdirSync(c.mgr.bundleOf(id)).filter((f) => f.startsWith('katavol-held')), [], `no held record in ${id}`);
    }
  }

  /** The downstream got exactly containerd's argv, environment and stdin for every start it ran. */
  function assertPassedThrough(c: Cell, expectedStarts: number): void {
    const got = readRecords(c.rec).filter((r): r is ActionRecord => r.kind === 'action' && r.action === 'start');
    const want = c.mgr.starts();
    assert.equal(want.length, expectedStarts, 'starts containerd ran');
    assert.equal(got.length, want.length, 'the downstream ran one start per containerd start');
    for (let i = 0; i < want.length; i++) {
      assert.deepEqual(got[i].argv, want[i].argv);
      assert.equal(got[i].stdin, want[i].stdin.toString('hex'));
      assert.equal(got[i].cwd, want[i].cwd);
      const { _: _a, PWD: gotPwd, ...env } = got[i].env!;
      const { _: _b, PWD: wantPwd, ...wanted } = want[i].env;
      assert.deepEqual(env, wanted);
      // PWD: containerd's, or the bundle where the launcher's POSIX shell set it to the directory it runs in.
      assert.ok(gotPwd === wantPwd || gotPwd === want[i].cwd, `PWD ${gotPwd}`);
    }
  }

  /** The pod's normal life: everything released as containerd deletes the tasks. */
  async function normal(version: Version, kind: Kind, backend: string): Promise<void> {
    const c = cell(version, kind, backend, 'normal');
    const { sandbox, app, downstreamPid, daemonPid } = await podUp(c, backend);
    assert.equal(sandbox.version, KINDS[kind].form === 'plain' ? 2 : 3, 'containerd speaks the API the downstream announced');
    await c.mgr.kill(app);
    await c.mgr.deleteTask(app);
    assert.deepEqual(records(c), [], 'released at the app task Delete');
    await c.mgr.kill(sandbox);
    await c.mgr.deleteTask(sandbox);
    await assertReleased(c, [daemonPid, downstreamPid]);
    assertPassedThrough(c, startsFor(version, kind));
    assert.equal(c.mgr.invocations.filter((i) => i.action === 'delete').length, startsFor(version, kind), 'a delete for each start');
  }

  /** Our daemon SIGKILLed with the pod running: the release's dead-shim clean-up must release it all. */
  async function crash(version: Version, kind: Kind, backend: string): Promise<void> {
    const c = cell(version, kind, backend, 'crash');
    const { sandbox, app, downstreamPid, daemonPid } = await podUp(c, backend);
    process.kill(daemonPid, 'SIGKILL');
    const deletes = await c.mgr.shimDied([sandbox, app]);
    assert.equal(deletes.length, startsFor(version, kind), 'containerd runs delete only for shims it started');
    for (const d of deletes) assert.equal(d.status, 0, `${d.id} delete: ${d.out.toString()}`);
    await assertReleased(c, [daemonPid, downstreamPid]);
    assertPassedThrough(c, startsFor(version, kind));
  }

  /** containerd restarts with the pod running: it reloads the shims through what it stored (our address), then deletes as usual. */
  async function restart(version: Version, kind: Kind, backend: string): Promise<void> {
    const c = cell(version, kind, backend, 'restart');
    const up = await podUp(c, backend);
    const [sandbox, app] = await c.mgr.restart([up.sandbox, up.app]);
    assert.ok(pidAlive(up.daemonPid), 'our daemon outlived containerd\'s connections');
    await c.mgr.kill(app);
    await c.mgr.deleteTask(app);
    await c.mgr.kill(sandbox);
    await c.mgr.deleteTask(sandbox);
    await assertReleased(c, [up.daemonPid, up.downstreamPid]);
  }

  /** A release that cannot use the downstream fails identically without katavol; then clean up as an operator would. */
  async function refused(version: Version, kind: Kind): Promise<void> {
    const direct = cell(version, kind, 'runc', 'normal', RECORDER);
    const viaUs = cell(version, kind, 'runc', 'normal');
    const errs: string[] = [];
    for (const c of [direct, viaUs]) {
      const e = await c.mgr.start(c.pod).then(() => undefined, (err: Error) => err.message);
      assert.ok(e, 'start must fail');
      errs.push(e.replace(/[\s\S]*(unsupported shim version \(\d\)).*/, '$1').replace(/^ttrpc: cannot connect [\s\S]*/, 'cannot connect'));
    }
    assert.equal(errs[1], errs[0]);
    // containerd removes the bundle and leaves the shim running (SP §6), with or without katavol.
    const st = JSON.parse(fs.readFileSync(path.join(viaUs.mgr.bundleOf(viaUs.pod), 'katavol.json'), 'utf8'));
    process.kill(st.daemonPid, 'SIGKILL');
    for (let i = 0; i < 100 && pidAlive(st.daemonPid); i++) await sleep(20);
    const d = spawnSync(SHIM, viaUs.mgr.argv(viaUs.pod, 'delete'), { cwd: viaUs.mgr.bundleOf(viaUs.pod), env: viaUs.mgr.shimEnv() });
    assert.equal(d.status, 0, d.stderr.toString());
    assert.deepEqual(fs.readdirSync(viaUs.rec).filter((f) => f.endsWith('.sock')), [], 'katavol\'s delete stopped its downstream');
    await stopRecorder(direct.rec);
  }

  /** Runs cells concurrently (they share nothing) and reports every failure with its cell. */
  async function all(cells: Array<[string, () => Promise<void>]>): Promise<void> {
    const results = await Promise.allSettled(cells.map(([, f]) => f()));
    const failed = results.map((r, i) => (r.status === 'rejected' ? `${cells[i][0]}: ${(r.reason as Error)?.stack ?? r.reason}` : '')).filter(Boolean);
    assert.deepEqual(failed, [], failed.join('\n\n'));
  }

  for (const version of VERSIONS) {
    for (const backend of ['runtime-rs', 'runc']) {
      const kinds = DOWNSTREAMS.filter((k) => usable(version, k));
      it(`${version} x {${kinds.join(', ')}} x ${backend} backend: pod start, Create with a direct volume, Start, Delete, Shutdown, delete; after a daemon crash; across a containerd restart`, async () => {
        await all(kinds.flatMap((k) => [
          [`${k} normal`, () => normal(version, k, backend)],
          [`${k} crash`, () => crash(version, k, backend)],
          [`${k} containerd restart`, () => restart(version, k, backend)],
        ] as Array<[string, () => Promise<void>]>));
      });
    }
    const unusable = DOWNSTREAMS.filter((k) => !usable(version, k));
    if (unusable.length) {
      it(`${version} x {${unusable.join(', ')}}: fails at start exactly as without katavol`, async () => {
        await all(unusable.map((k) => [k, () => refused(version, k)] as [string, () => Promise<void>]));
      });
    }
  }
});

/** Starts containerd runs for a pod: 2.0 never starts app containers; 2.1+ not on a version-3 shim (CV §3.4). */
function startsFor(version: Version, kind: Kind): number {
  const v3 = KINDS[kind].form !== 'plain';
  return version === '2.0' || (v3 && version >= '2.1') ? 1 : 2;
}

function pidsUnder(dir: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readlinkSync(`/proc/${d}/cwd`).startsWith(dir + '/')) out.push(Number(d));
    } catch { /* exited, or not ours to read */ }
  }
  return out;
}

/** Stops a recorder started directly (no katavol in front): Shutdown in the API it serves. */
async function stopRecorder(rec: string): Promise<void> {
  const { Client } = await import('../../src/ttrpc');
  for (const f of fs.readdirSync(rec).filter((x) => x.endsWith('.sock'))) {
    const c = await Client.connect(path.join(rec, f));
    for (const svc of ['containerd.task.v3.Task', 'containerd.task.v2.Task']) await c.call(svc, 'Shutdown', Buffer.alloc(0)).catch(() => undefined);
    c.close();
    for (let i = 0; i < 100 && fs.existsSync(path.join(rec, f)); i++) await sleep(20);
  }
}

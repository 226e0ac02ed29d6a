// End to end through real containerd 1.6, the katavol shim, the real containerd-shim-runc-v2 and runc,
// with real ext4 images on loop devices. Each case runs ctr as a user would.
import { strict as assert } from 'assert';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { spawnSync } from 'child_process';
import {
  KATAVOL, PrivateContainerd, SHIM, debugfsCat, loopDevicesOf, makeExt4Image, makeRootfs, pidsWithEnv, sleep, tmpDir,
} from '../support/containerd';
import { socketDir } from '../support/scratch';
import { detachOwnLoop } from '../support/disks';
import { listPool, stopPool } from '../../src/shim/pool';
import { ourAddress } from '../../src/shim/start';
import { socketPath } from '../../src/shim/state';
import { STARTS_DIR } from '../../src/shim/reaper';
import { katavolLogLines } from '../support/logrus';

// The whole suite runs cold (every start boots Node) and with a warm daemon pool (starts claim one).
for (const warmDaemons of [0, 1]) describe(`shim end to end (private containerd, runc backend, warmDaemons ${warmDaemons})`, function () {
  let work: string;
  let rootfs: string;
  let volRoot: string;
  let sockDir: string;
  let config: string;
  let ctd: PrivateContainerd;
  let n = 0;

  const katavol = (...args: string[]) =>
    spawnSync(KATAVOL, args, { encoding: 'utf8', env: { ...process.env, KATAVOL_VOLUME_ROOT: volRoot } });

  function image(name: string, mib = 16): string {
    const f = path.join(work, name);
    makeExt4Image(f, mib);
    return f;
  }

  function register(vol: string, device: string, extra: Record<string, unknown> = {}): void {
    const r = katavol('direct-volume', 'add', vol, JSON.stringify({ 'volume-type': 'directvol', device, fstype: 'ext4', ...extra }));
    assert.equal(r.status, 0, r.stderr);
  }

  function run(id: string, mount: string, cmd: string, extra: string[] = []) {
    return ctd.ctr(['run', '--rm', '--runtime', SHIM, '--mount', mount, ...extra, '--rootfs', rootfs, id, '/bin/sh', '-c', cmd]);
  }

  /** ctr run -d through the shim with one direct-volume mount (and optional extra ctr flags). */
  function runDetached(id: string, volume: string, opts = 'rw', cmd = 'sleep 600', extra: string[] = []) {
    return ctd.ctr(['run', '-d', '--runtime', SHIM, ...extra, '--mount', `type=directvol,src=${volume},dst=/disk,options=rbind:${opts}`, '--rootfs', rootfs, id, '/bin/sh', '-c', cmd]);
  }

  /** SIGKILL the task, delete it once it has stopped, delete the container: as a user would. */
  async function stopAndDelete(id: string): Promise<void> {
    assert.equal(ctd.ctr(['task', 'kill', '-s', 'SIGKILL', id]).status, 0);
    for (let i = 0; i < 50 && ctd.ctr(['task', 'delete', id]).status !== 0; i++) await sleep(100);
    assert.equal(ctd.ctr(['container', 'delete', id]).status, 0);
  }

  function bundleOf(id: string): string {
    return ctd.bundleOf(id);
  }

  /** The runc shim's socket for a container (sha256 of address/ns/id, under /run/containerd/s). */
  function runcSocket(id: string): string {
    return '/run/containerd/s/' + crypto.createHash('sha256').update(path.join(ctd.sock, ctd.namespace, id)).digest('hex');
  }

  /** Every daemon and shim of this suite inherits its config path; the warm pool's daemons are expected. */
  const leftovers = (): number[] => {
    const warm = new Set(listPool(sockDir).map((e) => e.pid));
    return [...new Set([...ctd.shimPids(), ...pidsWithEnv(`KATAVOL_CONFIG=${config}`)])].filter((p) => p !== ctd.pid && !warm.has(p));
  };

  async function assertNoLeftovers(ids: string[], images: string[]): Promise<void> {
    // A daemon exits once its downstream is gone and no connection remains; on a loaded machine that took over 4 s once.
    for (let i = 0; i < 150 && leftovers().length > 0; i++) await sleep(100);
    assert.deepEqual(leftovers(), [], 'no shim or katavol daemon process left');
    for (const img of images) assert.deepEqual(loopDevicesOf(img), [], `no loop device left on ${img}`);
    assert.deepEqual(fs.readdirSync(sockDir).filter((f) => !f.startsWith('.')), [], 'no katavol socket left');
    for (const id of ids) {
      // containerd removes the bundle after our `delete` returned, which is after the shims are gone.
      for (let i = 0; i < 50 && fs.existsSync(bundleOf(id)); i++) await sleep(100);
      assert.equal(fs.existsSync(bundleOf(id)), false, `bundle of ${id} removed`);
      if (fs.existsSync(runcSocket(id))) {
        const cleanup = fs.readFileSync(ctd.logFile, 'utf8').split('\n').filter((l) => l.includes(id) || l.includes('katavol:')).slice(-15).join('\n');
        assert.fail(`runc shim socket of ${id} left behind; containerd log:\n${cleanup}`);
      }
    }
  }

  before(async function () {
    work = tmpDir('katavol-e2e-');
    rootfs = makeRootfs(work);
    volRoot = path.join(work, 'volumes');
    sockDir = socketDir();
    config = path.join(work, 'katavol.json');
    fs.writeFileSync(config, JSON.stringify({ backend: 'runc', downstream: '/usr/bin/containerd-shim-runc-v2', socketDir: sockDir, warmDaemons }));
    ctd = await PrivateContainerd.start({ env: { KATAVOL_CONFIG: config, KATAVOL_VOLUME_ROOT: volRoot } });
  });

  after(async function () {
    await ctd?.stop();
    if (warmDaemons === 0) assert.equal(fs.existsSync(path.join(sockDir, '.warm')), false, 'warmDaemons 0: no pool');
    await stopPool(sockDir);
    fs.rmSync(sockDir, { recursive: true, force: true });
    fs.rmSync(work, { recursive: true, force: true });
  });

  beforeEach(() => { n++; });

  it('writes through a directvol volume into the ext4 image and leaves nothing behind', async function () {
    const img = image(`rw${n}.img`);
    register('/kubelet/e2e/rw', img);
    const id = `rw${n}`;
    const r = run(id, 'type=directvol,src=/kubelet/e2e/rw,dst=/disk,options=rbind:rw', 'echo hello-from-katavol > /disk/f && grep " /disk " /proc/self/mountinfo');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, / \/disk .* - ext4 \/dev\/loop\d+ rw/);
    assert.equal(debugfsCat(img, '/f'), 'hello-from-katavol\n');
    await assertNoLeftovers([id], [img]);
    // The shim logs logrus text lines (as containerd's own) into the bundle's log fifo, which containerd copies into its log.
    const lines = katavolLogLines(ctd.logFile);
    const created = lines.find((l) => l.msg === 'create intercepted' && l.container === id);
    assert.ok(created, 'containerd log has the intercepted Create');
    assert.equal(created.level, 'info');
    assert.equal(created.backend, 'runc');
    assert.equal(created.namespace, ctd.namespace);
    assert.equal(created.runtime, 'io.containerd.katavol.v2');
    assert.equal(created.id, id);
    assert.deepEqual(JSON.parse(created.volumes).map((v: { volumePath: string; destination: string; device: string }) => [v.volumePath, v.destination, v.device]), [['/kubelet/e2e/rw', '/disk', img]]);
    // The registry no longer lists the container as a user.
    const dir = fs.readdirSync(path.join(volRoot, Buffer.from('/kubelet/e2e/rw').toString('base64').replace(/\+/g, '-').replace(/\//g, '_')));
    assert.deepEqual(dir.filter((f) => !f.startsWith('.')), ['mountInfo.json']);
  });

  it('mounts a ro volume read-only: writes fail and the image is byte-identical', async function () {
    const img = image(`ro${n}.img`);
    register('/kubelet/e2e/ro', img);
    const before = crypto.createHash('sha256').update(fs.readFileSync(img)).digest('hex');
    const id = `ro${n}`;
    const r = run(id, 'type=directvol,src=/kubelet/e2e/ro,dst=/disk,options=rbind:ro', 'if echo x > /disk/f; then echo WROTE; else echo REFUSED; fi; grep " /disk " /proc/self/mountinfo');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /REFUSED/);
    assert.match(r.stdout, / \/disk .* - ext4 \/dev\/loop\d+ ro/);
    const after = crypto.createHash('sha256').update(fs.readFileSync(img)).digest('hex');
    assert.equal(after, before);
    await assertNoLeftovers([id], [img]);
  });

  it('forwards exec, ps, kill and delete of a detached container', async function () {
    const img = image(`d${n}.img`);
    register('/kubelet/e2e/detached', img);
    const id = `det${n}`;
    let r = runDetached(id, '/kubelet/e2e/detached', 'rw', 'echo started > /disk/s; sleep 600');
    assert.equal(r.status, 0, r.stderr);
    r = ctd.ctr(['task', 'exec', '--exec-id', 'e1', id, '/bin/cat', '/disk/s']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'started\n');
    r = ctd.ctr(['task', 'ps', id]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^PID\s+INFO\n\d+/);
    r = ctd.ctr(['task', 'ls']);
    assert.match(r.stdout, new RegExp(`${id}\\s+\\d+\\s+RUNNING`));
    assert.equal(ctd.ctr(['task', 'kill', '-s', 'SIGKILL', id]).status, 0);
    for (let i = 0; i < 50 && !/STOPPED/.test(ctd.ctr(['task', 'ls']).stdout); i++) await sleep(100);
    assert.match(ctd.ctr(['task', 'ls']).stdout, new RegExp(`${id}\\s+\\d+\\s+STOPPED`));
    assert.equal(ctd.ctr(['task', 'delete', id]).status, 0);
    assert.equal(ctd.ctr(['container', 'delete', id]).status, 0);
    assert.equal(debugfsCat(img, '/s'), 'started\n');
    await assertNoLeftovers([id], [img]);
  });

  it('resizes a volume a running container uses online, or (without CAP_SYS_RESOURCE) refuses and changes nothing', async function () {
    const img = image(`rs${n}.img`);
    register('/kubelet/e2e/resize', img);
    const id = `rs${n}`;
    const r = runDetached(id, '/kubelet/e2e/resize', 'rw');
    assert.equal(r.status, 0, r.stderr);
    const before = fs.statSync(img).size;
    const df = () => ctd.ctr(['task', 'exec', '--exec-id', `df${n}-${Date.now()}`, id, '/bin/df', '-k', '/disk']).stdout;
    const dfBefore = df();
    const resize = katavol('direct-volume', 'resize', '/kubelet/e2e/resize', '32M');
    const capable = /^CapEff:\s+([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (capable && (BigInt('0x' + capable[1]) & (1n << 24n)) !== 0n) {
      // This host's root has CAP_SYS_RESOURCE: the container sees its filesystem grow.
      assert.equal(resize.status, 0, resize.stderr);
      assert.match(resize.stdout, /grown online through \/dev\/loop\d+ \(mounted at \/disk in the mount namespace of pid \d+\)/);
      assert.notEqual(df(), dfBefore);
    } else {
      // No CAP_SYS_RESOURCE here: refused before anything changed, saying what to do.
      assert.equal(resize.status, 1, resize.stdout);
      assert.match(resize.stderr, /is mounted \(\/dev\/loop\d+ at \/disk in the mount namespace of pid \d+\) and growing a mounted ext4 needs CAP_SYS_RESOURCE.*nothing was changed/);
      assert.doesNotMatch(resize.stderr, /nsenter|mkfs/);
      assert.equal(fs.statSync(img).size, before);
      assert.equal(df(), dfBefore);
    }
    await stopAndDelete(id);
    await assertNoLeftovers([id], [img]);
  });

  it('refuses unregistered volumes, bad mountInfo and missing images with a clear error and no leftovers', async function () {
    const cases: Array<{ vol: string; setup?: () => void; expect: RegExp }> = [
      { vol: '/kubelet/e2e/unregistered', expect: /volume "\/kubelet\/e2e\/unregistered": is not registered in the registry root .*\/volumes \(from \$KATAVOL_VOLUME_ROOT\) .*katavol direct-volume add/ },
      {
        // Differs from a registered path only by a trailing slash.
        vol: '/kubelet/e2e/slash/',
        setup: () => register('/kubelet/e2e/slash', image('slash.img')),
        expect: /volume "\/kubelet\/e2e\/slash\/": is not registered, but \/kubelet\/e2e\/slash is .*did you mean src=\/kubelet\/e2e\/slash\?/,
      },
      {
        vol: '/kubelet/e2e/badjson',
        setup: () => {
          const dir = path.join(volRoot, Buffer.from('/kubelet/e2e/badjson').toString('base64').replace(/\+/g, '-').replace(/\//g, '_'));
          fs.mkdirSync(dir, { recursive: true });
          fs.writeFileSync(path.join(dir, 'mountInfo.json'), '{"volume-type":"directvol",');
        },
        expect: /volume "\/kubelet\/e2e\/badjson".*mountInfo\.json/,
      },
      {
        // Registered while the image existed, then the image was removed.
        vol: '/kubelet/e2e/missing',
        setup: () => { const f = image('gone.img'); register('/kubelet/e2e/missing', f); fs.rmSync(f); },
        expect: /volume "\/kubelet\/e2e\/missing": device ".*gone\.img" cannot be used \(ENOENT\)/,
      },
      {
        // fstype checked against the superblock before anything is attached (add refuses this one, so it is written by hand).
        vol: '/kubelet/e2e/wrongfs',
        setup: () => {
          const dir = path.join(volRoot, Buffer.from('/kubelet/e2e/wrongfs').toString('base64').replace(/\+/g, '-').replace(/\//g, '_'));
          fs.mkdirSync(dir, { recursive: true });
          fs.writeFileSync(path.join(dir, 'mountInfo.json'), JSON.stringify({ 'volume-type': 'directvol', device: image('wrongfs.img'), fstype: 'xfs' }));
        },
        expect: /volume "\/kubelet\/e2e\/wrongfs": declares fstype "xfs" but device .*wrongfs\.img holds ext4 .*register it with "fstype":"ext4"/,
      },
    ];
    for (const c of cases) {
      c.setup?.();
      const id = `bad${n}-${path.basename(c.vol)}`;
      const r = run(id, `type=directvol,src=${c.vol},dst=/disk,options=rbind:rw`, 'true');
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /failed precondition/);
      assert.match(r.stderr, new RegExp(`container "${id}": mount "/disk": `));
      assert.match(r.stderr, c.expect);
      await assertNoLeftovers([id], []);
      const refused = katavolLogLines(ctd.logFile).find((l) => l.msg === 'create refused' && l.container === id);
      assert.ok(refused && refused.level === 'error', `containerd log has the refusal of ${id} (grep level=error finds it)`);
    }
  });

  it('shares one katavol daemon between two containers of one pod', async function () {
    const a = image(`pa${n}.img`);
    const b = image(`pb${n}.img`);
    register('/kubelet/e2e/pod-a', a);
    register('/kubelet/e2e/pod-b', b);
    const ids = [`poda${n}`, `podb${n}`];
    for (const [i, id] of ids.entries()) {
      const r = runDetached(id, `/kubelet/e2e/pod-${'ab'[i]}`, 'rw', `echo ${id} > /disk/who; sleep 600`, ['--annotation', `io.kubernetes.cri.sandbox-id=pod${n}`]);
      assert.equal(r.status, 0, r.stderr);
    }
    const addrs = ids.map((id) => fs.readFileSync(path.join(bundleOf(id), 'address'), 'utf8'));
    assert.equal(addrs[0], addrs[1], 'both bundles name one katavol address');
    assert.ok(addrs[0].startsWith(`unix://${sockDir}/`));
    const daemons = ids.map((id) => JSON.parse(fs.readFileSync(path.join(bundleOf(id), 'katavol.json'), 'utf8')).daemonPid);
    assert.equal(daemons[0], daemons[1], 'one katavol daemon');
    assert.equal(fs.readdirSync(sockDir).filter((f) => f.endsWith('.sock')).length, 1, 'one katavol socket');
    assert.match(ctd.ctr(['task', 'ls']).stdout, new RegExp(`${ids[0]}\\s+\\d+\\s+RUNNING[\\s\\S]*${ids[1]}\\s+\\d+\\s+RUNNING|${ids[1]}\\s+\\d+\\s+RUNNING[\\s\\S]*${ids[0]}\\s+\\d+\\s+RUNNING`));
    for (const id of ids) await stopAndDelete(id);
    assert.equal(debugfsCat(a, '/who'), `${ids[0]}\n`);
    assert.equal(debugfsCat(b, '/who'), `${ids[1]}\n`);
    await assertNoLeftovers(ids, [a, b]);
  });

  it('keeps a task RUNNING across a containerd restart; it can then be exec\'d and deleted', async function () {
    const img = image(`rs${n}.img`);
    register('/kubelet/e2e/restart', img);
    const id = `restart${n}`;
    let r = runDetached(id, '/kubelet/e2e/restart');
    assert.equal(r.status, 0, r.stderr);
    await ctd.restart();
    r = ctd.ctr(['task', 'ls']);
    assert.match(r.stdout, new RegExp(`${id}\\s+\\d+\\s+RUNNING`));
    r = ctd.ctr(['task', 'exec', '--exec-id', 'after', id, '/bin/sh', '-c', 'echo after-restart > /disk/r; cat /disk/r']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'after-restart\n');
    await stopAndDelete(id);
    assert.equal(debugfsCat(img, '/r'), 'after-restart\n');
    await assertNoLeftovers([id], [img]);
  });

  it('cleans up through `delete` after the katavol daemon is SIGKILLed: no shim, loop device or socket leaks', async function () {
    const img = image(`k${n}.img`);
    register('/kubelet/e2e/killed', img);
    const id = `killed${n}`;
    const r = runDetached(id, '/kubelet/e2e/killed');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(loopDevicesOf(img).length, 1);
    const state = JSON.parse(fs.readFileSync(path.join(bundleOf(id), 'katavol.json'), 'utf8'));
    process.kill(state.daemonPid, 'SIGKILL');
    // containerd notices the dropped connection, runs our `delete` and removes the task.
    for (let i = 0; i < 100 && new RegExp(id).test(ctd.ctr(['task', 'ls']).stdout); i++) await sleep(100);
    assert.doesNotMatch(ctd.ctr(['task', 'ls']).stdout, new RegExp(id));
    assert.equal(ctd.ctr(['container', 'delete', id]).status, 0);
    for (let i = 0; i < 50 && loopDevicesOf(img).length; i++) await sleep(100);
    await assertNoLeftovers([id], [img]);
  });

  it('lets one sandbox at a time hold a rw volume, and any number share it read-only', async function () {
    const img = image(`sh${n}.img`);
    register('/kubelet/e2e/shared', img);
    const runD = (id: string, opt: string) => runDetached(id, '/kubelet/e2e/shared', opt);
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((x) => `${x}sh${n}`);
    assert.equal(runD(a, 'rw').status, 0);
    let r = runD(b, 'rw');
    assert.notEqual(r.status, 0);
    // Without a pod annotation each container is its own sandbox.
    assert.match(r.stderr, new RegExp(`volume "/kubelet/e2e/shared": image ".*" is already in use by pod ${a} \\(read-write, /dev/loop\\d+\\); a read-write volume belongs to one pod at a time`));
    r = runD(c, 'ro');
    assert.notEqual(r.status, 0, 'no read-only user while a writer holds it');
    await stopAndDelete(a);
    ctd.ctr(['container', 'delete', b]);
    ctd.ctr(['container', 'delete', c]);
    assert.equal(runD(c, 'ro').status, 0);
    assert.equal(runD(d, 'ro').status, 0);
    assert.equal(loopDevicesOf(img).length, 2);
    await stopAndDelete(c);
    await stopAndDelete(d);
    await assertNoLeftovers([a, b, c, d], [img]);
  });

  it('refuses a block device the host has mounted; once unmounted, one pod\'s containers share it read-write and other pods are refused', async function () {
    const img = image(`hm${n}.img`);
    const dev = spawnSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).stdout.trim();
    const mnt = path.join(work, `hostmnt${n}`);
    fs.mkdirSync(mnt);
    const ids = [`hma${n}`, `hmb${n}`, `hmc${n}`, `hmd${n}`];
    try {
      assert.equal(spawnSync('mount', [dev, mnt]).status, 0);
      const add = katavol('direct-volume', 'add', '/kubelet/e2e/hostmounted', JSON.stringify({ 'volume-type': 'directvol', device: dev, fstype: 'ext4' }));
      assert.equal(add.status, 0, add.stderr);
      assert.match(add.stderr, /katavol: warning: block device .* is mounted at /);
      const pod = (id: string, sandbox: string) => runDetached(id, '/kubelet/e2e/hostmounted', 'rw', `echo ${id} > /disk/${id}; sync; sleep 600`, ['--annotation', `io.kubernetes.cri.sandbox-id=${sandbox}`]);
      let r = pod(ids[0], `hmpod${n}`);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /failed precondition/);
      assert.match(r.stderr, new RegExp(`container "${ids[0]}": mount "/disk": volume "/kubelet/e2e/hostmounted": block device "${dev}" is in use on the host: it is mounted at ${mnt} \\(ext4, read-write\\); a read-write volume needs the device to itself.*unmount it first \\(umount ${mnt}\\)`));
      assert.equal(ctd.ctr(['container', 'delete', ids[0]]).status, 0);
      assert.equal(spawnSync('umount', [mnt]).status, 0);
      // Our own containers' mounts are not host mounts: a sibling of the pod shares the device.
      assert.equal(pod(ids[1], `hmpod${n}`).status, 0);
      r = pod(ids[2], `hmpod${n}`);
      assert.equal(r.status, 0, r.stderr);
      r = pod(ids[3], `other${n}`);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /is already used by sandbox hmpod\d+ \(read-write\)/);
      ctd.ctr(['container', 'delete', ids[3]]);
      await stopAndDelete(ids[1]);
      await stopAndDelete(ids[2]);
      for (const id of ids.slice(1, 3)) assert.equal(debugfsCat(dev, `/${id}`), `${id}\n`);
      await assertNoLeftovers(ids, []);
    } finally {
      spawnSync('umount', [mnt]);
      detachOwnLoop(dev, img);
    }
  });

  it('a start that fails after the downstream started leaves no downstream daemon behind', async function () {
    const id = `startfail${n}`;
    // A directory where our socket goes: our bind fails after the downstream start succeeded.
    const ours = socketPath(ourAddress(sockDir, `unix://${runcSocket(id)}`));
    fs.mkdirSync(ours);
    try {
      const r = ctd.ctr(['run', '--rm', '--runtime', SHIM, '--rootfs', rootfs, id, '/bin/true']);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, new RegExp(`katavol start after downstream start: .*${path.basename(ours)}`));
    } finally {
      fs.rmdirSync(ours);
    }
    await assertNoLeftovers([id], []);
    assert.equal(fs.existsSync(path.join(sockDir, STARTS_DIR)), false, 'no start record left');
  });

  it('a socketDir it cannot write to fails the start before anything runs, saying so', async function () {
    const good = fs.readFileSync(config, 'utf8');
    const blocker = path.join(work, 'not-a-dir');
    fs.writeFileSync(blocker, '');
    fs.writeFileSync(config, JSON.stringify({ ...JSON.parse(good), socketDir: path.join(blocker, 's') }));
    const id = `nodir${n}`;
    try {
      const r = ctd.ctr(['run', '--rm', '--runtime', SHIM, '--rootfs', rootfs, id, '/bin/true']);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /cannot write the start record in socketDir .*not-a-dir\/s \(config .*\): ENOTDIR: not a directory.*; nothing was started/);
    } finally {
      fs.writeFileSync(config, good);
    }
    await assertNoLeftovers([id], []);
  });

  it('keeps a running container unaffected when garbage is written to the katavol socket', async function () {
    const img = image(`g${n}.img`);
    register('/kubelet/e2e/garbage', img);
    const id = `garbage${n}`;
    let r = runDetached(id, '/kubelet/e2e/garbage');
    assert.equal(r.status, 0, r.stderr);
    const sock = fs.readFileSync(path.join(bundleOf(id), 'address'), 'utf8').replace('unix://', '');
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve) => {
        const s = net.connect(sock, () => {
          const junk = Buffer.alloc(64 + (rand() % 4096));
          for (let j = 0; j < junk.length; j++) junk[j] = rand() & 0xff;
          if (i % 3 === 0) junk.writeUInt32BE(0xffffffff, 0); // absurd length
          if (i % 3 === 1) { junk.writeUInt32BE(junk.length - 10, 0); junk[8] = 1; } // well-framed garbage request
          s.end(junk);
        });
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.setTimeout(2000, () => s.destroy());
      });
    }
    r = ctd.ctr(['task', 'exec', '--exec-id', 'probe', id, '/bin/sh', '-c', 'echo still-here > /disk/ok; cat /disk/ok']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'still-here\n');
    assert.match(ctd.ctr(['task', 'ls']).stdout, new RegExp(`${id}\\s+\\d+\\s+RUNNING`));
    await stopAndDelete(id);
    await assertNoLeftovers([id], [img]);
  });
});

describe('shim log level (containerd at debug level passes -debug)', function () {
  it('logs debug lines only when containerd asked for them', async function () {
    const work = tmpDir('katavol-e2e-debug-');
    const rootfs = makeRootfs(work);
    const sockDir = socketDir();
    const config = path.join(work, 'katavol.json');
    fs.writeFileSync(config, JSON.stringify({ backend: 'runc', downstream: '/usr/bin/containerd-shim-runc-v2', socketDir: sockDir }));
    const debugLines = async (debug: boolean): Promise<number> => {
      const ctd = await PrivateContainerd.start({ debug, env: { KATAVOL_CONFIG: config, KATAVOL_VOLUME_ROOT: path.join(work, 'volumes') } });
      try {
        const r = ctd.ctr(['run', '--rm', '--runtime', SHIM, '--rootfs', rootfs, 'dbg', '/bin/true']);
        assert.equal(r.status, 0, r.stderr);
        return katavolLogLines(ctd.logFile).filter((l) => l.level === 'debug').length;
      } finally {
        await ctd.stop();
        await stopPool(sockDir);
      }
    };
    try {
      assert.ok((await debugLines(true)) > 0, 'debug lines at debug level');
      assert.equal(await debugLines(false), 0, 'no debug lines at info level');
    } finally {
      fs.rmSync(sockDir, { recursive: true, force: true });
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
});

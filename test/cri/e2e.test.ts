// katavol as a Kubernetes runtime handler, end to end: a client speaking CRI v1 as kubelet does drives a
// private containerd 1.6 whose CRI plugin runs pods with handler `katavol` (runc backend: real runc, real
// ext4 images on loop devices). Volumes are registered the way a CSI node plugin registers them: the pod's
// per-pod target path, passed to CRI as the mount's host_path.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { KATAVOL, debugfsCat, loopDevicesOf, makeExt4Image, sleep } from '../support/containerd';
import { CriContainerd, type Pod } from '../support/cri';
import { isCriError } from '../support/cri-client';
import { encodeVolumePath } from '../../src/volumes/registry';

const FAILED_PRECONDITION = 9;

interface Volume {
  /** The registered volume path: a CSI target path, per pod. */
  target: string;
  image: string;
}

describe('CRI end to end: katavol as runtime handler (containerd 1.6 CRI plugin, runc backend)', function () {
  let cri: CriContainerd;
  let n = 0;
  /** Everything each test made, so that its leftovers check covers exactly that. */
  let made: { pods: string[]; containers: string[]; images: string[] };

  before(async function () {
    cri = await CriContainerd.start();
  });

  after(async function () {
    await cri?.stop();
  });

  beforeEach(() => {
    n++;
    made = { pods: [], containers: [], images: [] };
  });

  // A failed test must not leave its pods to the next one's leftovers check.
  afterEach(async () => {
    for (const id of made.pods) await cri.removePod(id).catch(() => undefined);
  });

  const katavol = (...args: string[]) =>
    spawnSync(KATAVOL, args, { encoding: 'utf8', env: { ...process.env, KATAVOL_VOLUME_ROOT: cri.volumeRoot } });

  function image(name: string): string {
    const f = path.join(cri.dir, `${name}.img`);
    makeExt4Image(f, 16);
    made.images.push(f);
    return f;
  }

  /** What a CSI node plugin does at NodePublishVolume: a per-pod target directory, registered as a direct volume. */
  function publish(img: string, pvc: string, opts: { readOnly?: boolean } = {}): Volume {
    const target = path.join(cri.dir, 'kubelet', 'pods', `uid-${pvc}-${n}`, 'volumes', 'kubernetes.io~csi', pvc, 'mount');
    fs.mkdirSync(target, { recursive: true });
    const r = katavol('direct-volume', 'add', target, JSON.stringify({
      'volume-type': 'directvol', device: img, fstype: 'ext4',
      metadata: { 'csi.storage.k8s.io/pvc/name': pvc }, options: ['bind', opts.readOnly ? 'ro' : 'rw'],
    }));
    assert.equal(r.status, 0, r.stderr);
    return { target, image: img };
  }

  async function pod(name: string): Promise<Pod> {
    const p = await cri.runPod(`${name}-${n}`);
    made.pods.push(p.id);
    return p;
  }

  async function container(p: Pod, name: string, vol?: Volume, readonly = false): Promise<string> {
    const id = await cri.createContainer(p, name, vol ? { mounts: [{ container_path: '/disk', host_path: vol.target, readonly }] } : {});
    made.containers.push(id);
    await cri.client.startContainer(id);
    return id;
  }

  async function sh(id: string, script: string): Promise<string> {
    const r = await cri.client.execSync(id, ['/bin/sh', '-c', script]);
    assert.equal(r.exit_code, 0, `exec in ${id}: ${script}\n${r.stdout}${r.stderr}`);
    return r.stdout;
  }

  /** /disk as the container sees it: "ext4 /dev/loopN rw". */
  async function diskMount(id: string): Promise<string> {
    const line = await sh(id, 'grep " /disk " /proc/self/mountinfo');
    const m = / - (\S+) (\S+) (r[ow])\b/.exec(line);
    assert.ok(m, line);
    return `${m[1]} ${m[2]} ${m[3]}`;
  }

  async function assertNothingLeft(): Promise<void> {
    assert.deepEqual(await cri.leftovers(made, made.images), [], 'nothing left behind');
  }

  async function removeAll(...pods: Pod[]): Promise<void> {
    for (const p of pods) await cri.removePod(p);
  }

  it('runs a pod whose container writes into its volume; one katavol daemon serves the pod; Stop/Remove leave nothing', async () => {
    const vol = publish(image(`one${n}`), 'data');
    const p = await pod('one');
    const c = await container(p, 'app', vol);
    assert.match(await diskMount(c), /^ext4 \/dev\/loop\d+ rw$/);
    await sh(c, 'echo hello-from-cri > /disk/hello && sync');
    // The pod's sandbox and its container are served by one katavol daemon in front of one runc shim.
    const address = (id: string) => fs.readFileSync(path.join(cri.bundleOf(id), 'address'), 'utf8');
    assert.ok(address(c).startsWith(`unix://${cri.socketDir}/`), address(c));
    assert.equal(address(p.id), address(c));
    // The registry records the pod (not the container) as the volume's user.
    const entry = katavol('direct-volume', 'inspect', vol.target);
    assert.equal(entry.status, 0, entry.stderr);
    assert.deepEqual(JSON.parse(entry.stdout).sandboxes.map((s: { id: string }) => s.id), [p.id]);
    await cri.stopAndRemoveContainer(c);
    await removeAll(p);
    assert.equal(debugfsCat(vol.image, '/hello'), 'hello-from-cri\n');
    await assertNothingLeft();
  });

  it('ExecSync returns stdout, stderr and the exit code', async () => {
    const p = await pod('exec');
    const c = await container(p, 'app');
    const r = await cri.client.execSync(c, ['/bin/sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.deepEqual(r, { exit_code: 3, stdout: 'out\n', stderr: 'err\n' });
    await removeAll(p);
    await assertNothingLeft();
  });

  for (const first of ['sidecar', 'app'] as const) {
    it(`app and sidecar share the pod's read-write volume and see each other's writes; the ${first} stops first`, async () => {
      const vol = publish(image(`side${first}${n}`), 'shared');
      const p = await pod(`side-${first}`);
      const app = await container(p, 'app', vol);
      const sidecar = await container(p, 'sidecar', vol);
      const [appMount, sideMount] = [await diskMount(app), await diskMount(sidecar)];
      assert.match(appMount, /^ext4 \/dev\/loop\d+ rw$/);
      assert.equal(sideMount, appMount, 'one loop device for the pod');
      assert.deepEqual(loopDevicesOf(vol.image), [appMount.split(' ')[1]]);
      await sh(app, 'echo from-app > /disk/app && sync');
      await sh(sidecar, 'echo from-sidecar > /disk/sidecar && sync');
      assert.equal(await sh(sidecar, 'cat /disk/app'), 'from-app\n');
      assert.equal(await sh(app, 'cat /disk/sidecar'), 'from-sidecar\n');

      const [stopFirst, stays] = first === 'sidecar' ? [sidecar, app] : [app, sidecar];
      await cri.stopAndRemoveContainer(stopFirst);
      // The other container keeps the volume: same device, still writable, the pod still recorded.
      assert.deepEqual(loopDevicesOf(vol.image), [appMount.split(' ')[1]]);
      await sh(stays, `echo after-${first}-stopped > /disk/last && sync`);
      await cri.stopAndRemoveContainer(stays);
      assert.deepEqual(loopDevicesOf(vol.image), [], 'detached once the last container of the pod stopped');
      await removeAll(p);
      for (const [f, want] of [['/app', 'from-app'], ['/sidecar', 'from-sidecar'], ['/last', `after-${first}-stopped`]]) {
        assert.equal(debugfsCat(vol.image, f), `${want}\n`);
      }
      await assertNothingLeft();
    });
  }

  it('refuses a second pod the read-write volume: StartContainer fails with code 9 naming the volume, the pod holding it and the fix', async () => {
    const img = image(`excl${n}`);
    const volA = publish(img, 'excl-a');
    const volB = publish(img, 'excl-b'); // the same image published for another pod, as CSI would
    const a = await pod('holder');
    const ca = await container(a, 'app', volA);
    const b = await pod('second');
    const cb = await cri.createContainer(b, 'app', { mounts: [{ container_path: '/disk', host_path: volB.target }] });
    made.containers.push(cb);
    await assert.rejects(cri.client.startContainer(cb), (e: unknown) => {
      assert.ok(isCriError(e), String(e));
      assert.equal(e.code, FAILED_PRECONDITION);
      assert.match(e.details, new RegExp(`volume "${volB.target}": image "${img}" is already in use by pod default/${a.name} \\(sandbox ${a.id}, read-write, /dev/loop\\d+\\); a read-write volume belongs to one pod at a time`));
      assert.match(e.details, /stop that pod first, or mount the volume read-only in every pod/);
      return true;
    });
    const status = await cri.client.containerStatus(cb);
    assert.notEqual(status.state, 'CONTAINER_RUNNING');
    // The holder is unaffected.
    await sh(ca, 'echo still-mine > /disk/f && sync');
    await removeAll(b, a);
    assert.equal(debugfsCat(img, '/f'), 'still-mine\n');
    await assertNothingLeft();
  });

  it('shares a volume read-only across pods: both read, neither can write, each through its own read-only loop device', async () => {
    const img = image(`ro${n}`);
    fs.writeFileSync(path.join(cri.dir, `seed${n}`), 'seeded\n');
    const w = spawnSync('debugfs', ['-w', '-R', `write ${path.join(cri.dir, `seed${n}`)} seed`, img], { encoding: 'utf8' });
    assert.equal(w.status, 0, w.stderr);
    const pods = [await pod('reader-a'), await pod('reader-b')];
    const cs: string[] = [];
    for (const [i, p] of pods.entries()) cs.push(await container(p, 'reader', publish(img, `ro-${i}`, { readOnly: true }), true));
    const mounts = [await diskMount(cs[0]), await diskMount(cs[1])];
    for (const m of mounts) assert.match(m, /^ext4 \/dev\/loop\d+ ro$/);
    assert.notEqual(mounts[0], mounts[1], 'one loop device per pod');
    for (const c of cs) {
      assert.equal(await sh(c, 'cat /disk/seed'), 'seeded\n');
      const r = await cri.client.execSync(c, ['/bin/sh', '-c', 'echo x > /disk/x']);
      assert.notEqual(r.exit_code, 0);
      assert.match(r.stderr, /Read-only file system/);
    }
    await removeAll(...pods);
    await assertNothingLeft();
  });

  it('a bad volume fails StartContainer with code 9 and a readable message; nothing is left', async () => {
    const unregistered = path.join(cri.dir, 'kubelet', 'pods', `uid-none-${n}`, 'volumes', 'kubernetes.io~csi', 'none', 'mount');
    fs.mkdirSync(unregistered, { recursive: true });
    const gone = publish(image(`gone${n}`), 'gone');
    fs.rmSync(gone.image);
    made.images.pop();
    const broken = publish(image(`broken${n}`), 'broken');
    fs.writeFileSync(path.join(cri.volumeRoot, encodeVolumePath(broken.target), 'mountInfo.json'), '{"volume-type":"directvol",');
    // An unregistered host_path is an ordinary bind mount for katavol (checked below); a registered one is a
    // direct volume, and a bad one is refused before anything is created.
    const cases: Array<{ target: string; expect: RegExp }> = [
      { target: gone.target, expect: new RegExp(`volume "${gone.target}": device "${gone.image}" cannot be used \\(ENOENT\\).*create the image or block device, or re-register the volume`) },
      { target: broken.target, expect: new RegExp(`volume "${broken.target}": stored .*mountInfo\\.json.*katavol direct-volume add`) },
    ];
    const p = await pod('bad');
    for (const c of cases) {
      const id = await cri.createContainer(p, 'bad', { mounts: [{ container_path: '/disk', host_path: c.target }] });
      made.containers.push(id);
      await assert.rejects(cri.client.startContainer(id), (e: unknown) => {
        assert.ok(isCriError(e), String(e));
        assert.equal(e.code, FAILED_PRECONDITION);
        assert.match(e.details, /katavol: container "[0-9a-f]+": mount "\/disk": /);
        assert.match(e.details, c.expect);
        return true;
      });
      await cri.client.removeContainer(id);
    }
    // A plain host directory (not a direct volume) passes through untouched.
    const plain = await container(p, 'plain', { target: unregistered, image: '' });
    assert.match(await sh(plain, 'grep " /disk " /proc/self/mountinfo'), / \/disk /);
    await removeAll(p);
    await assertNothingLeft();
  });

  it('keeps a pod running across a containerd restart: it can be listed, exec\'d and removed', async () => {
    const vol = publish(image(`restart${n}`), 'restart');
    const p = await pod('restart');
    const c = await container(p, 'app', vol);
    await cri.restart();
    const listed = await cri.client.listContainers(p.id);
    assert.deepEqual(listed.map((x) => [x.id, x.state]), [[c, 'CONTAINER_RUNNING']]);
    await sh(c, 'echo after-restart > /disk/r && sync');
    await removeAll(p);
    assert.equal(debugfsCat(vol.image, '/r'), 'after-restart\n');
    await assertNothingLeft();
  });

  it('a katavol daemon SIGKILLed mid-pod (app + sidecar sharing a volume) leaves nothing once the pod is removed', async () => {
    const vol = publish(image(`crash${n}`), 'crash');
    const p = await pod('crash');
    const cs = [await container(p, 'app', vol), await container(p, 'sidecar', vol)];
    await sh(cs[0], 'echo before-crash > /disk/c && sync');
    const state = JSON.parse(fs.readFileSync(path.join(cri.bundleOf(cs[0]), 'katavol.json'), 'utf8'));
    process.kill(state.daemonPid, 'SIGKILL');
    // containerd sees the shim connection drop and runs our `delete` for the sandbox and each container.
    for (let i = 0; i < 150; i++) {
      const states = (await cri.client.listContainers(p.id)).map((x) => x.state);
      if (states.every((s) => s === 'CONTAINER_EXITED')) break;
      await sleep(200);
    }
    assert.deepEqual((await cri.client.listContainers(p.id)).map((x) => x.state), ['CONTAINER_EXITED', 'CONTAINER_EXITED']);
    // Our `delete` (run by containerd for each dead task) already released the pod's loop device and record.
    for (let i = 0; i < 100 && loopDevicesOf(vol.image).length; i++) await sleep(100);
    assert.deepEqual(loopDevicesOf(vol.image), []);
    const entry = JSON.parse(katavol('direct-volume', 'inspect', vol.target).stdout);
    assert.deepEqual(entry.sandboxes, []);
    await removeAll(p);
    assert.equal(debugfsCat(vol.image, '/c'), 'before-crash\n');
    await assertNothingLeft();
  });
});

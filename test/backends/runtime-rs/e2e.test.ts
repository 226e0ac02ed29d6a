// The runtime-rs backend end to end: a private containerd 1.6 -> `ctr run --runtime <katavol shim>`
// with backend runtime-rs -> our Create interception -> the recording downstream shim (a stand-in for
// Kata's containerd-shim-kata-v2, which needs KVM). Every assertion reads what the downstream really
// received: the config.json copy the recorder took at Create.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { KATAVOL, PrivateContainerd, SHIM, makeExt4Image, makeRootfs, sleep, tmpDir } from '../../support/containerd';
import { detachOwnLoop } from '../../support/disks';
import { socketDir } from '../../support/scratch';
import { RECORDER, RECORDER_DIR_ENV, createdSpecs, readRecords, rpcCalls } from '../../peers/recorder/record';
import { Registry, encodeVolumePath } from '../../../src/volumes/registry';
import type { OciMount } from '../../../src/volumes/types';
import { GROUP_7, NOT_LISTED, NO_IOMMU, NVME_BOUND, buildSysfs } from '../../support/sysfs';

const DEVICES = 'io.katacontainers.katavol.devices';
const SANDBOX = 'io.kubernetes.cri.sandbox-id';
/** Kata's defaults: rate limiter attached with size 0 (unlimited), refilled every 1000 ms. */
const UNLIMITED = { bandwidth: { size: 0, one_time_burst: 0, refill_time: 1000 }, ops: { size: 0, one_time_burst: 0, refill_time: 1000 } };

type Json = Record<string, unknown>;
interface DeviceEntry { destination: string; volumePath: string; volumeType: string; readOnly: boolean; spec: Json; guest: Json; storage: Json }

describe('runtime-rs backend end to end (private containerd -> katavol -> recording downstream)', function () {
  let work: string;
  let rootfs: string;
  let volRoot: string;
  let sockDir: string;
  let recDir: string;
  let sysfs: string;
  let configFile: string;
  let ctd: PrivateContainerd;
  let n = 0;
  const servers: net.Server[] = [];

  // Cold starts (warmDaemons 0): this suite is about the backend; test/shim covers both start paths.
  function writeConfig(runtimeRs: Json = {}): void {
    fs.writeFileSync(configFile, JSON.stringify({ backend: 'runtime-rs', downstream: RECORDER, socketDir: sockDir, warmDaemons: 0, runtimeRs: { sysfsRoot: sysfs, ...runtimeRs } }));
  }

  const katavol = (...args: string[]) =>
    spawnSync(KATAVOL, args, { encoding: 'utf8', env: { ...process.env, KATAVOL_VOLUME_ROOT: volRoot } });

  function register(vol: string, info: Json): void {
    const r = katavol('direct-volume', 'add', vol, JSON.stringify({ fstype: 'ext4', ...info }));
    assert.equal(r.status, 0, r.stderr);
  }

  /** A 1 MiB ext4 image (Create checks the superblock against the declared fstype). */
  function rawImage(name: string): string {
    const f = path.join(work, name);
    makeExt4Image(f, 1);
    return f;
  }

  function entryDir(vol: string): string {
    return path.join(volRoot, encodeVolumePath(vol));
  }

  /**
   * Sandbox records of the volume: each `<sandbox id>` file in the volume's directory is empty, exactly as
   * Kata writes it; katavol's part (backend, then " ro" for read-only) is read from its own directory.
   */
  function sandboxFiles(vol: string): Record<string, string> {
    const out: Record<string, string> = {};
    const reg = new Registry(volRoot);
    for (const f of fs.readdirSync(entryDir(vol))) {
      if (f === 'mountInfo.json') continue;
      assert.equal(fs.readFileSync(path.join(entryDir(vol), f), 'utf8'), '', `${f}: Kata's form of the record`);
      out[f] = fs.readFileSync(reg.sandboxModeFile(vol, f), 'utf8');
    }
    return out;
  }

  function runArgs(id: string, mounts: string[], extra: string[]): string[] {
    return [...extra, '--runtime', SHIM, ...mounts.flatMap((m) => ['--mount', m]), '--rootfs', rootfs, id, '/bin/sh'];
  }

  function runDetached(id: string, mounts: string[], extra: string[] = []): void {
    const r = ctd.ctr(['run', '-d', ...runArgs(id, mounts, extra)]);
    assert.equal(r.status, 0, `ctr run ${id}: ${r.stderr}`);
  }

  async function stop(id: string): Promise<void> {
    assert.equal(ctd.ctr(['task', 'kill', '-s', 'SIGKILL', id]).status, 0);
    for (let i = 0; i < 50 && ctd.ctr(['task', 'delete', id]).status !== 0; i++) await sleep(100);
    assert.equal(ctd.ctr(['container', 'delete', id]).status, 0);
  }

  /** What the downstream received at its (single) Create of this task. */
  function received(id: string): { mounts: OciMount[]; devices: DeviceEntry[]; annotations: Record<string, string> } {
    const specs = createdSpecs(recDir, id);
    assert.equal(specs.length, 1, `the recorder saw exactly one Create of ${id}`);
    const annotations = (specs[0].annotations ?? {}) as Record<string, string>;
    assert.ok(annotations[DEVICES], `annotation ${DEVICES} present`);
    return { mounts: specs[0].mounts as OciMount[], devices: JSON.parse(annotations[DEVICES]) as DeviceEntry[], annotations };
  }

  function mountAt(mounts: OciMount[], destination: string): OciMount {
    const found = mounts.filter((m) => m.destination === destination);
    assert.equal(found.length, 1, `one mount at ${destination}`);
    return found[0];
  }

  /** drive_id is derived from the device (16 hex digits); checked here, then compared like the rest. */
  function driveId(e: DeviceEntry): string {
    const id = e.spec.drive_id as string;
    assert.match(id, /^[0-9a-f]{16}$/);
    return id;
  }

  function blockSpec(e: DeviceEntry, over: Json): Json {
    return {
      drive_id: driveId(e), device_type: 'RawBlock', path_on_host: '', is_root_device: false, part_uuid: null,
      is_read_only: false, is_direct: false, no_drop: false, num_queues: 1, queue_size: 256, rate_limiter: UNLIMITED,
      use_shared_irq: null, use_generic_irq: null, use_pci_bus: true, ...over,
    };
  }

  async function noLeftovers(): Promise<void> {
    for (let i = 0; i < 50 && ctd.shimPids().length > 0; i++) await sleep(100);
    assert.deepEqual(ctd.shimPids(), [], 'no katavol or recorder process left');
    assert.deepEqual(fs.readdirSync(sockDir), [], 'no katavol socket left');
    assert.deepEqual(fs.readdirSync(recDir).filter((f) => f.endsWith('.sock')), [], 'no recorder socket left');
  }

  /** Create must fail with code 9 (ctr: "failed precondition"), name the volume and the fix, and never reach the downstream. */
  async function expectRefused(id: string, mounts: string[], expect: RegExp[], extra: string[] = [], othersRunning = false): Promise<string> {
    const r = ctd.ctr(['run', '--rm', ...runArgs(id, mounts, extra)]);
    assert.notEqual(r.status, 0, `ctr run ${id} should fail`);
    assert.match(r.stderr, /^ctr: failed to create shim task: katavol: container "[^"]+": .*: failed precondition\n$/);
    for (const re of expect) assert.match(r.stderr, re);
    assert.deepEqual(rpcCalls(recDir, id).filter((c) => c.method === 'Create'), [], 'the downstream never saw Create');
    // containerd cleaned up through the chain: Delete + Shutdown reached the recorder, then `delete`.
    assert.deepEqual(rpcCalls(recDir, id).map((c) => c.method), ['Delete', 'Shutdown']);
    if (!othersRunning) await noLeftovers();
    return r.stderr;
  }

  async function unixSocket(p: string): Promise<string> {
    const s = net.createServer();
    await new Promise<void>((resolve) => s.listen(p, resolve));
    servers.push(s);
    return p;
  }

  async function closeSocket(p: string): Promise<void> {
    const i = servers.findIndex((s) => s.address() === p);
    await new Promise((resolve) => servers.splice(i, 1)[0].close(resolve));
  }

  before(async function () {
    work = tmpDir('katavol-rr-e2e-');
    rootfs = makeRootfs(work);
    volRoot = path.join(work, 'volumes');
    sockDir = socketDir();
    recDir = socketDir('r');
    sysfs = path.join(work, 'sys');
    configFile = path.join(work, 'katavol.json');
    buildSysfs(sysfs, [...GROUP_7, NVME_BOUND, NO_IOMMU, NOT_LISTED]);
    writeConfig();
    ctd = await PrivateContainerd.start({ env: { KATAVOL_CONFIG: configFile, KATAVOL_VOLUME_ROOT: volRoot, [RECORDER_DIR_ENV]: recDir } });
  });

  after(async function () {
    await ctd?.stop();
    for (const s of servers) s.close();
    for (const d of [sockDir, recDir, work]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  beforeEach(() => { n++; });

  it('directvol on a raw file: exact mount and device annotation reach the downstream; the sandbox is recorded while the container lives', async function () {
    const img = rawImage(`raw${n}.img`);
    const vol = `/kubelet/rr/raw${n}`;
    register(vol, { 'volume-type': 'directvol', device: img });
    const id = `raw${n}`;
    runDetached(id, [`type=directvol,src=${vol},dst=/data,options=rbind:rw`]);

    const got = received(id);
    assert.deepEqual(mountAt(got.mounts, '/data'), { destination: '/data', type: 'directvol', source: vol, options: ['rbind', 'rw'] });
    assert.deepEqual(got.devices, [{
      destination: '/data', volumePath: vol, volumeType: 'directvol', readOnly: false,
      spec: blockSpec(got.devices[0], { path_on_host: img }),
      guest: { driver: 'blk', virtPath: '/dev/vda' },
      storage: { driver: 'blk', fs_type: 'ext4', options: [] },
    }]);
    // Recorded in the volume directory as Kata's Go runtime does (file named by the sandbox id).
    assert.deepEqual(sandboxFiles(vol), { [id]: 'runtime-rs' });
    assert.match(ctd.ctr(['task', 'ls']).stdout, new RegExp(`${id}\\s+\\d+\\s+RUNNING`));

    await stop(id);
    assert.deepEqual(rpcCalls(recDir, id).map((c) => c.method).filter((m) => m !== 'State'), ['Create', 'Connect', 'Start', 'Kill', 'Delete', 'Shutdown']);
    assert.deepEqual(readRecords(recDir).filter((r) => r.kind === 'action' && r.id === id).map((r) => (r as { action: string }).action), ['start', 'delete']);
    assert.deepEqual(sandboxFiles(vol), {}, 'sandbox record removed after delete');
    await noLeftovers();
  });

  it('read-only: OCI ro, mountInfo ro (drops the OCI rw) and a host read-only loop device (BLKROGET) all give read-only specs and ro mounts', async function () {
    const a = rawImage(`roa${n}.img`);
    const b = rawImage(`rob${n}.img`);
    const c = rawImage(`roc${n}.img`);
    const loop = spawnSync('losetup', ['-r', '-f', '--show', c], { encoding: 'utf8' });
    assert.equal(loop.status, 0, loop.stderr);
    const dev = loop.stdout.trim();
    try {
      register(`/kubelet/rr/ro-oci${n}`, { 'volume-type': 'directvol', device: a });
      register(`/kubelet/rr/ro-info${n}`, { 'volume-type': 'directvol', device: b, options: ['ro'] });
      register(`/kubelet/rr/ro-host${n}`, { 'volume-type': 'directvol', device: dev });
      const id = `ro${n}`;
      runDetached(id, [
        `type=directvol,src=/kubelet/rr/ro-oci${n},dst=/a,options=rbind:ro`,
        `type=directvol,src=/kubelet/rr/ro-info${n},dst=/b,options=rbind:rw`,
        `type=directvol,src=/kubelet/rr/ro-host${n},dst=/c,options=rbind:rw`,
      ]);
      const got = received(id);
      assert.deepEqual(mountAt(got.mounts, '/a'), { destination: '/a', type: 'directvol', source: `/kubelet/rr/ro-oci${n}`, options: ['rbind', 'ro'] });
      assert.deepEqual(mountAt(got.mounts, '/b'), { destination: '/b', type: 'directvol', source: `/kubelet/rr/ro-info${n}`, options: ['rbind', 'ro'] });
      assert.deepEqual(mountAt(got.mounts, '/c'), { destination: '/c', type: 'directvol', source: `/kubelet/rr/ro-host${n}`, options: ['rbind', 'ro'] });
      assert.deepEqual(got.devices, [
        {
          destination: '/a', volumePath: `/kubelet/rr/ro-oci${n}`, volumeType: 'directvol', readOnly: true,
          spec: blockSpec(got.devices[0], { path_on_host: a, is_read_only: true }),
          guest: { driver: 'blk', virtPath: '/dev/vda' },
          storage: { driver: 'blk', fs_type: 'ext4', options: ['ro'] },
        },
        {
          destination: '/b', volumePath: `/kubelet/rr/ro-info${n}`, volumeType: 'directvol', readOnly: true,
          spec: blockSpec(got.devices[1], { path_on_host: b, is_read_only: true }),
          guest: { driver: 'blk', virtPath: '/dev/vdb' },
          storage: { driver: 'blk', fs_type: 'ext4', options: ['ro'] },
        },
        {
          destination: '/c', volumePath: `/kubelet/rr/ro-host${n}`, volumeType: 'directvol', readOnly: true,
          spec: blockSpec(got.devices[2], { path_on_host: dev, is_read_only: true }),
          guest: { driver: 'blk', virtPath: '/dev/vdc' },
          storage: { driver: 'blk', fs_type: 'ext4', options: ['ro'] },
        },
      ]);
      assert.equal(new Set(got.devices.map((d) => d.spec.drive_id)).size, 3, 'one drive id per device');
      await stop(id);
      await noLeftovers();
    } finally {
      detachOwnLoop(dev, c);
    }
  });

  it('takes the runtimeRs settings (MMIO driver, cache direct, rate limits, queues) from the katavol config', async function () {
    writeConfig({
      blockDeviceDriver: 'virtio-blk-mmio', blockDeviceCacheDirect: true,
      diskRateLimiterBwMaxRate: 104857600, diskRateLimiterBwOneTimeBurst: 1048576,
      diskRateLimiterOpsMaxRate: 1000, diskRateLimiterOpsOneTimeBurst: 100, numQueues: 2, queueSize: 512,
    });
    try {
      const img = rawImage(`cfg${n}.img`);
      makeExt4Image(img, 8); // room for an ext3 journal
      assert.equal(spawnSync('mkfs.ext3', ['-q', '-F', img], { env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } }).status, 0);
      register(`/kubelet/rr/cfg${n}`, { 'volume-type': 'directvol', device: img, fstype: 'ext3' });
      const id = `cfg${n}`;
      runDetached(id, [`type=directvol,src=/kubelet/rr/cfg${n},dst=/data,options=rbind`]);
      const got = received(id);
      assert.deepEqual(got.devices, [{
        destination: '/data', volumePath: `/kubelet/rr/cfg${n}`, volumeType: 'directvol', readOnly: false,
        spec: blockSpec(got.devices[0], {
          path_on_host: img, is_direct: true, num_queues: 2, queue_size: 512, use_pci_bus: null,
          rate_limiter: { bandwidth: { size: 104857600, one_time_burst: 1048576, refill_time: 1000 }, ops: { size: 1000, one_time_burst: 100, refill_time: 1000 } },
        }),
        guest: { driver: 'mmioblk', virtPath: '/dev/vda' },
        storage: { driver: 'mmioblk', source: '/dev/vda', fs_type: 'ext3', options: [] },
      }]);
      await stop(id);
    } finally {
      writeConfig();
    }
    await noLeftovers();
  });

  it('spdkvol: real vhost-user sockets, spdk:// added once, queue settings from metadata carried into the spec', async function () {
    const s1 = await unixSocket(path.join(work, `vhost${n}.0`));
    const s2 = await unixSocket(path.join(work, `vhost${n}.1`));
    register(`/kubelet/rr/spdk-a${n}`, { 'volume-type': 'spdkvol', device: s1, metadata: { num_queues: '4', queue_size: '128' } });
    register(`/kubelet/rr/spdk-b${n}`, { 'volume-type': 'spdkvol', device: `spdk://${s2}` });
    const id = `spdk${n}`;
    runDetached(id, [
      `type=spdkvol,src=/kubelet/rr/spdk-a${n},dst=/fast,options=rbind:rw`,
      `type=spdkvol,src=/kubelet/rr/spdk-b${n},dst=/slow,options=rbind:ro`,
    ]);
    const got = received(id);
    assert.deepEqual(mountAt(got.mounts, '/fast'), { destination: '/fast', type: 'spdkvol', source: `/kubelet/rr/spdk-a${n}`, options: ['rbind', 'rw'] });
    assert.deepEqual(mountAt(got.mounts, '/slow'), { destination: '/slow', type: 'spdkvol', source: `/kubelet/rr/spdk-b${n}`, options: ['rbind', 'ro'] });
    assert.deepEqual(got.devices, [
      {
        destination: '/fast', volumePath: `/kubelet/rr/spdk-a${n}`, volumeType: 'spdkvol', readOnly: false,
        spec: blockSpec(got.devices[0], { device_type: 'Spdk', path_on_host: `spdk://${s1}`, num_queues: 4, queue_size: 128, use_pci_bus: null }),
        guest: { driver: 'blk', virtPath: '/dev/vda' },
        // No mountInfo options: the OCI ones, without the bind flags.
        storage: { driver: 'blk', source: '/dev/vda', fs_type: 'ext4', options: ['rw'] },
      },
      {
        destination: '/slow', volumePath: `/kubelet/rr/spdk-b${n}`, volumeType: 'spdkvol', readOnly: true,
        spec: blockSpec(got.devices[1], { device_type: 'Spdk', path_on_host: `spdk://${s2}`, is_read_only: true, use_pci_bus: null }),
        guest: { driver: 'blk', virtPath: '/dev/vdb' },
        storage: { driver: 'blk', source: '/dev/vdb', fs_type: 'ext4', options: ['ro'] },
      },
    ]);
    await stop(id);
    await noLeftovers();
  });

  it('vfiovol from the sysfs fixture: DDDD:BB:DD.F (upper case), BB:DD.F and /dev/vfio/N; the bridge and the audio function stay on the host', async function () {
    const hostDev = (dbdf: string, i: number, vendorDevice: number) => ({
      hostdev_id: `vfio_vol_7_${i}`, sysfs_path: `/sys/bus/pci/devices/${dbdf}`,
      dev_config: { bus_slot_func: dbdf.slice(5), vendor_device_id: vendorDevice, guest_dev_id: null, clique_id: null },
    });
    const NVME = 0xa808144d; // device 0xa808 << 16 | vendor 0x144d
    const VIRTIO = 0x10421af4; // device 0x1042 << 16 | vendor 0x1af4
    const forms: Array<{ device: string; devices: unknown[] }> = [
      { device: '0000:3B:00.2', devices: [hostDev('0000:3b:00.2', 0, NVME), hostDev('0000:3b:00.0', 1, VIRTIO)] },
      { device: '3b:00.0', devices: [hostDev('0000:3b:00.0', 0, VIRTIO), hostDev('0000:3b:00.2', 1, NVME)] },
      { device: '/dev/vfio/7', devices: [hostDev('0000:3b:00.0', 0, VIRTIO), hostDev('0000:3b:00.2', 1, NVME)] },
    ];
    for (const [i, f] of forms.entries()) {
      const vol = `/kubelet/rr/vfio${n}-${i}`;
      register(vol, { 'volume-type': 'vfiovol', device: f.device });
      const id = `vfio${n}-${i}`;
      runDetached(id, [`type=vfiovol,src=${vol},dst=/gpu,options=rbind:rw`]);
      const got = received(id);
      assert.deepEqual(mountAt(got.mounts, '/gpu'), { destination: '/gpu', type: 'vfiovol', source: vol, options: ['rbind', 'rw'] }, f.device);
      assert.deepEqual(got.devices, [{
        destination: '/gpu', volumePath: vol, volumeType: 'vfiovol', readOnly: false,
        spec: { host_devices: f.devices },
        guest: { driver: 'mmioblk', virtPath: '/dev/vda' },
        storage: { driver: 'mmioblk', source: '/dev/vda', fs_type: 'ext4', options: ['rw'] },
      }], f.device);
      await stop(id);
    }
    await noLeftovers();
  });

  it('legacy registry entry: runtime-rs receives it canonical; `katavol direct-volume inspect` shows the same volume before and after', async function () {
    const img = rawImage(`legacy${n}.img`);
    const vol = `/kubelet/rr/legacy${n}`;
    fs.mkdirSync(entryDir(vol), { recursive: true });
    fs.writeFileSync(path.join(entryDir(vol), 'mountInfo.json'), `{"volume_type":"directvol","device":"${img}","fs_type":"ext4","metadata":"{}"}`);
    const inspect = () => {
      const r = katavol('direct-volume', 'inspect', vol);
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as Json;
    };
    const before = inspect();
    assert.equal(before.canonical, false);
    assert.deepEqual(before.mountInfo, { 'volume-type': 'directvol', device: img, fstype: 'ext4' });

    const id = `legacy${n}`;
    runDetached(id, [`type=directvol,src=${vol},dst=/data,options=rbind:rw`]);
    assert.equal(fs.readFileSync(path.join(entryDir(vol), 'mountInfo.json'), 'utf8'), `{"volume-type":"directvol","device":"${img}","fstype":"ext4"}`);
    const during = inspect();
    assert.deepEqual(during, { volumePath: vol, directory: before.directory, file: before.file, mountInfo: before.mountInfo, canonical: true, sandboxes: [{ id, backend: 'runtime-rs', readOnly: false }] });
    assert.equal(received(id).devices[0].spec.path_on_host, img);
    await stop(id);
    const after = inspect();
    assert.deepEqual(after, { volumePath: vol, directory: before.directory, file: before.file, mountInfo: before.mountInfo, canonical: true, sandboxes: [] });
    await noLeftovers();
  });

  it('refuses a volume another sandbox uses (rw after anything, ro after rw); same-sandbox and read-only sharing work; the volume is free again after delete', async function () {
    const img = rawImage(`shared${n}.img`);
    const vol = `/kubelet/rr/shared${n}`;
    register(vol, { 'volume-type': 'directvol', device: img });
    const rw = `type=directvol,src=${vol},dst=/data,options=rbind:rw`;
    const a1 = `pa1-${n}`;
    const a2 = `pa2-${n}`;
    runDetached(a1, [rw], ['--annotation', `${SANDBOX}=podA${n}`]);
    runDetached(a2, [rw], ['--annotation', `${SANDBOX}=podA${n}`]); // a second container of the same pod
    assert.deepEqual(sandboxFiles(vol), { [`podA${n}`]: 'runtime-rs' });

    const msg = await expectRefused(`pb-${n}`, [rw], [
      new RegExp(`volume "${vol}": mount /data: the volume is read-write and already in use by sandbox podA${n} \\(runtime-rs, read-write\\)`),
      /stop the pod that uses it, or mount it read-only in every pod/,
      new RegExp(`rm ${entryDir(vol)}/podA${n}`),
    ], ['--annotation', `${SANDBOX}=podB${n}`], true);
    assert.ok(msg.includes(`container "pb-${n}"`));
    assert.deepEqual(sandboxFiles(vol), { [`podA${n}`]: 'runtime-rs' }, 'the refused sandbox left no record');

    // Read-only is no way around it: podA writes the device from its own VM.
    const ro = `type=directvol,src=${vol},dst=/data,options=rbind:ro`;
    await expectRefused(`pe-${n}`, [ro], [
      new RegExp(`volume "${vol}": mount /data: the volume is read-only here but sandbox podA${n} \\(runtime-rs, read-write\\) holds it read-write`),
      /stop the pod that writes it, or mount it read-only there too/,
      new RegExp(`rm ${entryDir(vol)}/podA${n}`),
    ], ['--annotation', `${SANDBOX}=podE${n}`], true);
    assert.deepEqual(sandboxFiles(vol), { [`podA${n}`]: 'runtime-rs' }, 'the refused read-only sandbox left no record');

    // One container of the pod gone: the other still holds the volume.
    await stop(a1);
    assert.deepEqual(sandboxFiles(vol), { [`podA${n}`]: 'runtime-rs' });
    await stop(a2);
    assert.deepEqual(sandboxFiles(vol), {});

    // Read-only in two pods at once is fine, and recorded as such; a writer is then kept out.
    runDetached(`rc-${n}`, [ro], ['--annotation', `${SANDBOX}=podC${n}`]);
    runDetached(`rd-${n}`, [ro], ['--annotation', `${SANDBOX}=podD${n}`]);
    assert.deepEqual(sandboxFiles(vol), { [`podC${n}`]: 'runtime-rs ro', [`podD${n}`]: 'runtime-rs ro' });
    await expectRefused(`pf-${n}`, [rw], [
      new RegExp(`the volume is read-write and already in use by sandbox podC${n} \\(runtime-rs, read-only\\), podD${n} \\(runtime-rs, read-only\\)`),
    ], ['--annotation', `${SANDBOX}=podF${n}`], true);
    await stop(`rc-${n}`);
    await stop(`rd-${n}`);
    assert.deepEqual(sandboxFiles(vol), {});
    await noLeftovers();
  });

  it('refuses bad directvol, spdkvol and vfiovol volumes with code 9, naming the volume and the fix; the downstream never sees Create', async function () {
    const dir = path.join(work, `adir${n}`);
    const notSocket = path.join(work, `notsock${n}`);
    const sock = await unixSocket(path.join(work, `vhostbad${n}`));
    const file = (p: string) => () => fs.writeFileSync(p, '');
    // katavol checks devices at `add` too: `before` makes the device valid for registration, `after`
    // breaks it on the host the way it happens in real life (image deleted, target stopped...).
    const cases: Array<{ name: string; info: Json; before?: () => unknown; after?: () => unknown; expect: RegExp[] }> = [
      {
        name: 'missing', info: { 'volume-type': 'directvol', device: path.join(work, `gone${n}.img`) },
        before: file(path.join(work, `gone${n}.img`)), after: () => fs.rmSync(path.join(work, `gone${n}.img`)),
        expect: [/directvol device .*gone\d+\.img does not exist/, /create the image or attach the disk/],
      },
      {
        name: 'directory', info: { 'volume-type': 'directvol', device: dir },
        before: file(dir), after: () => { fs.rmSync(dir); fs.mkdirSync(dir); },
        expect: [/is a directory, not a regular file or block device/, /katavol direct-volume add/],
      },
      {
        name: 'notsock', info: { 'volume-type': 'spdkvol', device: notSocket },
        before: () => unixSocket(notSocket), after: async () => { await closeSocket(notSocket); fs.writeFileSync(notSocket, ''); },
        expect: [/spdkvol socket .* is a regular file, not a unix socket/, /start the SPDK vhost target/],
      },
      { name: 'badqueues', info: { 'volume-type': 'spdkvol', device: sock, metadata: { num_queues: '0' } }, expect: [/metadata num_queues="0" is not a whole number from 1 to 65535/, /re-register the volume with a valid value/] },
      { name: 'badsize', info: { 'volume-type': 'spdkvol', device: sock, metadata: { queue_size: 'lots' } }, expect: [/metadata queue_size="lots"/] },
      { name: 'spool', info: { 'volume-type': 'spoolvol', device: sock }, expect: [/spoolvol is not supported with Dragonball/, /register the vhost-user socket as spdkvol instead/] },
      { name: 'unbound', info: { 'volume-type': 'vfiovol', device: '5e:00.0' }, expect: [/PCI function 0000:5e:00\.0 is bound to nvme, not vfio-pci/, /echo vfio-pci > .*0000:5e:00\.0\/driver_override/, /drivers\/vfio-pci\/bind/] },
      { name: 'nogroup', info: { 'volume-type': 'vfiovol', device: '0000:60:00.0' }, expect: [/PCI function 0000:60:00\.0 has no IOMMU group/, /intel_iommu=on or amd_iommu=on/] },
      { name: 'notingroup', info: { 'volume-type': 'vfiovol', device: '0000:61:00.0' }, expect: [/PCI function 0000:61:00\.0 is not listed in its IOMMU group 10/, /rescan/] },
      { name: 'nosuchgroup', info: { 'volume-type': 'vfiovol', device: '/dev/vfio/99' }, expect: [/VFIO group 99 does not exist/] },
    ];
    for (const c of cases) {
      const vol = `/kubelet/rr/bad-${c.name}${n}`;
      await c.before?.();
      register(vol, c.info);
      await c.after?.();
      const type = c.info['volume-type'] as string;
      const id = `bad-${c.name}${n}`;
      await expectRefused(id, [`type=${type},src=${vol},dst=/data,options=rbind:rw`], [new RegExp(`volume "${vol}": mount /data: `), ...c.expect]);
      assert.deepEqual(sandboxFiles(vol), {}, `${c.name}: nothing recorded`);
    }
    // fstype against the device's superblock: an ext4 image declared xfs (written by hand: add refuses
    // it) and a blank image declared ext4 (add only notes it: it may be formatted later).
    const ext4img = rawImage(`fsx${n}.img`);
    const xfsVol = `/kubelet/rr/fsxfs${n}`;
    fs.mkdirSync(entryDir(xfsVol), { recursive: true });
    fs.writeFileSync(path.join(entryDir(xfsVol), 'mountInfo.json'), JSON.stringify({ 'volume-type': 'directvol', device: ext4img, fstype: 'xfs' }));
    await expectRefused(`bad-fsxfs${n}`, [`type=directvol,src=${xfsVol},dst=/data`], [new RegExp(`volume "${xfsVol}": declares fstype "xfs" but device .*fsx${n}\\.img holds ext4`), /register it with "fstype":"ext4"/]);
    const blank = path.join(work, `blank${n}.img`);
    file(blank)();
    fs.truncateSync(blank, 1 << 20);
    register(`/kubelet/rr/blank${n}`, { 'volume-type': 'directvol', device: blank });
    await expectRefused(`bad-blank${n}`, [`type=directvol,src=/kubelet/rr/blank${n},dst=/data`], [/declares fstype "ext4" but device .*blank\d+\.img holds no filesystem katavol recognises/]);
    // Not registered at all (the resolver refuses before the backend runs).
    await expectRefused(`bad-unreg${n}`, [`type=directvol,src=/kubelet/rr/nowhere${n},dst=/data`], [/is not registered/, /register it first: katavol direct-volume add/]);
  });

  it('all or nothing: one bad volume leaves the good one unrecorded and its legacy entry unrewritten', async function () {
    const img = rawImage(`good${n}.img`);
    const good = `/kubelet/rr/good${n}`;
    const legacy = `{"volume_type":"directvol","device":"${img}","fs_type":"ext4"}`;
    fs.mkdirSync(entryDir(good), { recursive: true });
    fs.writeFileSync(path.join(entryDir(good), 'mountInfo.json'), legacy);
    const bad = `/kubelet/rr/unbound${n}`;
    register(bad, { 'volume-type': 'vfiovol', device: '0000:5e:00.0' });
    await expectRefused(`mixed${n}`, [
      `type=directvol,src=${good},dst=/data,options=rbind:rw`,
      `type=vfiovol,src=${bad},dst=/dev-b,options=rbind:rw`,
    ], [new RegExp(`volume "${bad}": mount /dev-b: PCI function 0000:5e:00\\.0 is bound to nvme`)]);
    assert.equal(fs.readFileSync(path.join(entryDir(good), 'mountInfo.json'), 'utf8'), legacy);
    assert.deepEqual(sandboxFiles(good), {});
    assert.deepEqual(sandboxFiles(bad), {});
  });
});

// The whole life of a volume through `katavol csi`, driven over gRPC on the unmodified csi.proto the way
// csi-provisioner, csi-resizer and kubelet drive it, with the plugin process restarted before every step:
// whatever a step relies on must come from disk, never from the previous process's memory. The published
// target is used the way kubelet uses it: as a CRI mount's host_path of a pod with runtime handler katavol,
// on a private containerd 1.6 whose katavol shims share the plugin's registry.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as grpc from '@grpc/grpc-js';
import { type CsiClient, CsiPlugin, csiDirs, expectCode } from '../support/csi';
import { debugfsCat, tmpDir } from '../support/containerd';
import { CriContainerd } from '../support/cri';
import { Registry } from '../../src/volumes/registry';
import { hasExtSuperblock } from '../../src/volumes/host-device';

const MiB = 2 ** 20;
const SINGLE_WRITER = { mount: { fs_type: 'ext4' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
const STORAGE_CLASS = { 'katacontainers.direct.volume/volumetype': 'directvol', 'katacontainers.direct.volume/fstype': 'ext4' };

/** ext4 block count of an unmounted image (dumpe2fs -h). */
function ext4Blocks(image: string): number {
  const r = spawnSync('dumpe2fs', ['-h', image], { encoding: 'utf8' });
  return Number(/^Block count:\s+(\d+)/m.exec(r.stdout)?.[1]);
}

describe('katavol csi: the life of a volume, with a plugin restart before every step', function () {
  const name = `pvc-${process.pid}-life`;
  let plugin: CsiPlugin;
  let c: CsiClient;
  let reg: Registry;
  let staging: string;
  let target: string;
  let volumeId = '';
  let image = '';
  let cri: CriContainerd;

  before(async function () {
    cri = await CriContainerd.start();
    // The plugin registers targets where the shims look them up.
    const dirs = { ...csiDirs(tmpDir('katavol-csi-life-')), volumeRoot: cri.volumeRoot };
    plugin = new CsiPlugin(dirs);
    reg = new Registry(dirs.volumeRoot);
    staging = path.join(dirs.kubelet, 'plugins/kubernetes.io/csi/directvolume.katavol.io/0a1b2c/globalmount');
    target = path.join(dirs.kubelet, `pods/${process.pid}-uid/volumes/kubernetes.io~csi/${name}/mount`);
    await plugin.start();
  });

  beforeEach(async function () {
    c = await plugin.restart();
  });

  after(async function () {
    await plugin?.stop();
    await cri?.stop();
    if (plugin) fs.rmSync(plugin.dirs.root, { recursive: true, force: true });
  });

  /** Runs `script` in a busybox container of a new katavol pod with the target at /disk; removes the pod. */
  async function inPod(podName: string, script: string, whileRunning?: (sandboxId: string) => Promise<void>): Promise<string> {
    const pod = await cri.runPod(podName);
    const ctr = await cri.runContainer(pod, 'c', { mounts: [{ container_path: '/disk', host_path: target }] });
    try {
      const r = await cri.client.execSync(ctr, ['sh', '-c', script]);
      assert.equal(r.exit_code, 0, r.stderr);
      await whileRunning?.(pod.id);
      return r.stdout;
    } finally {
      await cri.stopAndRemoveContainer(ctr);
      await cri.removePod(pod);
      assert.deepEqual(await cri.leftovers({ pods: [pod.id], containers: [ctr] }, [image]), []);
    }
  }

  const stage = { staging_target_path: '', volume_capability: SINGLE_WRITER };
  const publishReq = (): object => ({ volume_id: volumeId, staging_target_path: staging, target_path: target, volume_capability: SINGLE_WRITER, readonly: false, volume_context: {} });

  it('Identity and capabilities: driver name, controller service, topology, stage/stats/expand', async () => {
    const info = await c.identity.GetPluginInfo({});
    assert.equal(info.name, 'directvolume.katavol.io');
    assert.match(info.vendor_version, /^\d+\.\d+\.\d+/);
    const caps = (await c.identity.GetPluginCapabilities({})).capabilities.map((x: { service?: { type: string }; volume_expansion?: { type: string } }) => x.service?.type ?? `expansion ${x.volume_expansion?.type}`);
    assert.deepEqual(caps, ['CONTROLLER_SERVICE', 'VOLUME_ACCESSIBILITY_CONSTRAINTS', 'expansion ONLINE']);
    assert.deepEqual((await c.controller.ControllerGetCapabilities({})).capabilities.map((x: { rpc: { type: string } }) => x.rpc.type), ['CREATE_DELETE_VOLUME', 'EXPAND_VOLUME', 'GET_CAPACITY']);
    assert.deepEqual((await c.node.NodeGetCapabilities({})).capabilities.map((x: { rpc: { type: string } }) => x.rpc.type), ['STAGE_UNSTAGE_VOLUME', 'GET_VOLUME_STATS', 'EXPAND_VOLUME']);
    const node = await c.node.NodeGetInfo({});
    assert.equal(node.node_id, 'node-a');
    assert.deepEqual(node.accessible_topology.segments, { 'directvolume.katavol.io/node': 'node-a' });
  });

  it('CreateVolume: exact size, Kata\'s volume_context keys, this node\'s topology; no image until staged', async () => {
    const r = await c.controller.CreateVolume({ name, capacity_range: { required_bytes: String(64 * MiB + 1) }, volume_capabilities: [SINGLE_WRITER], parameters: STORAGE_CLASS });
    volumeId = r.volume.volume_id;
    assert.equal(volumeId, `${name}@node-a`, 'the name, tagged with the node that owns the volume');
    assert.equal(r.volume.capacity_bytes, String(64 * MiB + 512), 'rounded up to a whole sector, never down');
    assert.deepEqual(r.volume.volume_context, {
      is_directvolume: 'True', 'katacontainers.direct.volume/volumetype': 'directvol', 'katacontainers.direct.volume/fstype': 'ext4',
      direct_volume_name: name, capacity_in_bytes: String(64 * MiB + 512),
    });
    assert.deepEqual(r.volume.accessible_topology.map((t: { segments: object }) => t.segments), [{ 'directvolume.katavol.io/node': 'node-a' }]);
    image = path.join(plugin.dirs.storage, `${volumeId}.img`);
    assert.equal(fs.existsSync(image), false);
  });

  it('CreateVolume again is idempotent by name; a larger size under that name is ALREADY_EXISTS', async () => {
    const again = await c.controller.CreateVolume({ name, capacity_range: { required_bytes: String(64 * MiB) }, volume_capabilities: [SINGLE_WRITER], parameters: STORAGE_CLASS });
    assert.equal(again.volume.volume_id, volumeId);
    assert.equal(again.volume.capacity_bytes, String(64 * MiB + 512));
    const e = await expectCode(c.controller.CreateVolume({ name, capacity_range: { required_bytes: String(128 * MiB) }, volume_capabilities: [SINGLE_WRITER], parameters: STORAGE_CLASS }), grpc.status.ALREADY_EXISTS);
    assert.match(e.details, new RegExp(`volume "${name}".*use another name`));
  });

  it('NodeStageVolume: a sparse image of the exact size with a fresh ext4', async () => {
    await c.node.NodeStageVolume({ ...stage, volume_id: volumeId, staging_target_path: staging });
    const st = fs.statSync(image);
    assert.equal(st.size, 64 * MiB + 512);
    assert.ok(st.blocks * 512 < st.size / 2, `image is not sparse: ${st.blocks * 512} bytes allocated`);
    assert.ok(hasExtSuperblock(image));
    assert.ok(fs.statSync(staging).isDirectory());
    await c.node.NodeStageVolume({ ...stage, volume_id: volumeId, staging_target_path: staging }); // idempotent
  });

  it('NodePublishVolume: registers the target as a direct volume (canonical, [bind, rw]); again is a no-op', async () => {
    await c.node.NodePublishVolume(publishReq());
    assert.ok(fs.statSync(target).isDirectory());
    const entry = reg.read(target);
    assert.ok(entry.canonical);
    assert.equal(entry.info.device, image);
    assert.equal(entry.info.volumeType, 'directvol');
    assert.equal(entry.info.fsType, 'ext4');
    assert.deepEqual(entry.info.options, ['bind', 'rw']);
    assert.equal(entry.info.metadata.direct_volume_name, name);
    const before = fs.readFileSync(entry.file, 'utf8');
    await c.node.NodePublishVolume(publishReq());
    assert.equal(fs.readFileSync(entry.file, 'utf8'), before);
  });

  it('a CRI pod (runtime handler katavol) writes into the volume; unpublish is refused while it runs', async () => {
    const mounts = await inPod('csi-writer', 'echo hello from the volume > /disk/hello && sync && grep " /disk " /proc/mounts', async (sandboxId) => {
      const during = await plugin.restart();
      const e = await expectCode(during.node.NodeUnpublishVolume({ volume_id: volumeId, target_path: target }), grpc.status.FAILED_PRECONDITION);
      assert.match(e.details, new RegExp(`sandbox ${sandboxId} still holds the volume at ${target}`));
      assert.ok(reg.isRegistered(target));
      const stats = await during.node.NodeGetVolumeStats({ volume_id: volumeId, volume_path: target });
      const bytes = stats.usage.find((u: { unit: string }) => u.unit === 'BYTES');
      assert.ok(Number(bytes.used) > 0 && Number(bytes.total) > 48 * MiB, JSON.stringify(stats.usage));
      assert.ok(stats.usage.some((u: { unit: string }) => u.unit === 'INODES'), 'a mounted volume reports inodes (statfs)');
    });
    // The pod saw the image itself (through a loop device), not the empty target directory.
    assert.match(mounts, /^\/dev\/loop\d+ \/disk ext4 rw/m);
    assert.equal(debugfsCat(image, '/hello'), 'hello from the volume\n');
  });

  it('NodeUnpublishVolume: unregisters and removes the target (again: no-op)', async () => {
    await c.node.NodeUnpublishVolume({ volume_id: volumeId, target_path: target });
    assert.equal(reg.isRegistered(target), false);
    assert.equal(fs.existsSync(target), false);
    await c.node.NodeUnpublishVolume({ volume_id: volumeId, target_path: target });
  });

  it('NodeUnstageVolume: keeps the image and its data', async () => {
    await c.node.NodeUnstageVolume({ volume_id: volumeId, staging_target_path: staging });
    assert.equal(debugfsCat(image, '/hello'), 'hello from the volume\n');
    await c.node.NodeUnstageVolume({ volume_id: volumeId, staging_target_path: staging });
  });

  it('stage and publish again: the same image, not reformatted, the data still there', async () => {
    await c.node.NodeStageVolume({ ...stage, volume_id: volumeId, staging_target_path: staging });
    c = await plugin.restart();
    await c.node.NodePublishVolume(publishReq());
    assert.equal(reg.read(target).info.device, image);
    assert.equal(debugfsCat(image, '/hello'), 'hello from the volume\n');
  });

  it('ControllerExpandVolume records the new size and asks for the node step', async () => {
    const r = await c.controller.ControllerExpandVolume({ volume_id: volumeId, capacity_range: { required_bytes: String(96 * MiB) } });
    assert.equal(r.capacity_bytes, String(96 * MiB));
    assert.equal(r.node_expansion_required, true);
    assert.equal(fs.statSync(image).size, 64 * MiB + 512, 'the image grows on the node, not here');
  });

  it('NodeExpandVolume grows the image and its ext4 (offline: no pod holds it)', async () => {
    const blocks = ext4Blocks(image);
    const r = await c.node.NodeExpandVolume({ volume_id: volumeId, volume_path: target, capacity_range: { required_bytes: String(96 * MiB) } });
    assert.equal(r.capacity_bytes, String(96 * MiB));
    assert.equal(fs.statSync(image).size, 96 * MiB);
    assert.ok(ext4Blocks(image) > blocks, `ext4 not grown: ${blocks} -> ${ext4Blocks(image)} blocks`);
    assert.equal(debugfsCat(image, '/hello'), 'hello from the volume\n');
  });

  it('a second pod reads the data back from the grown volume', async () => {
    const out = await inPod('csi-reader', 'cat /disk/hello; df -k /disk | tail -1');
    assert.match(out, /^hello from the volume\n/);
    const kib = Number(out.split('\n')[1].trim().split(/\s+/)[1]);
    assert.ok(kib * 1024 > 64 * MiB, `df sees ${kib} KiB`);
  });

  it('NodeGetVolumeStats: bytes of the grown filesystem, some of them used', async () => {
    const r = await c.node.NodeGetVolumeStats({ volume_id: volumeId, volume_path: target });
    const bytes = r.usage.find((u: { unit: string }) => u.unit === 'BYTES');
    assert.ok(Number(bytes.total) > 64 * MiB && Number(bytes.total) <= 96 * MiB, `total ${bytes.total}`);
    assert.ok(Number(bytes.used) > 0 && Number(bytes.available) > 0 && Number(bytes.used) + Number(bytes.available) <= Number(bytes.total));
  });

  it('unpublish, unstage, DeleteVolume: image and record gone; DeleteVolume again is OK', async () => {
    await c.node.NodeUnpublishVolume({ volume_id: volumeId, target_path: target });
    await expectCode(c.controller.DeleteVolume({ volume_id: volumeId }), grpc.status.FAILED_PRECONDITION); // still staged
    await c.node.NodeUnstageVolume({ volume_id: volumeId, staging_target_path: staging });
    c = await plugin.restart();
    await c.controller.DeleteVolume({ volume_id: volumeId });
    assert.equal(fs.existsSync(image), false);
    assert.deepEqual(fs.readdirSync(path.join(plugin.dirs.state, 'volumes')).filter((f) => !f.startsWith('.')), []);
    assert.deepEqual(reg.list(), []);
    await c.controller.DeleteVolume({ volume_id: volumeId });
    await expectCode(c.node.NodeStageVolume({ ...stage, volume_id: volumeId, staging_target_path: staging }), grpc.status.NOT_FOUND);
  });

  it('ran every step in a fresh plugin process', () => {
    assert.ok(plugin.starts >= 14, `only ${plugin.starts} starts`);
  });
});

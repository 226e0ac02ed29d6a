// Volume kinds and modes besides the read-write directvol of the lifecycle test: read-only publishing,
// spdkvol and vfiovol volumes (device from the StorageClass), capability validation and capacity.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import { type CsiClient, CsiPlugin, csiDirs, expectCode } from '../support/csi';
import { tmpDir } from '../support/containerd';
import { Registry } from '../../src/volumes/registry';

const MiB = 2 ** 20;
const RWO = { mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
const ROX = { mount: {}, access_mode: { mode: 'SINGLE_NODE_READER_ONLY' } };
/** The id this plugin (node-a) gives a volume name. */
const v = (name: string): string => `${name}@node-a`;

describe('katavol csi: volume kinds and modes', function () {
  let plugin: CsiPlugin;
  let c: CsiClient;
  let reg: Registry;
  let k: string;
  let spdkServer: net.Server;
  let spdkSock: string;

  before(async function () {
    const dirs = csiDirs(tmpDir('katavol-csi-kinds-'));
    plugin = new CsiPlugin(dirs);
    reg = new Registry(dirs.volumeRoot);
    k = dirs.kubelet;
    spdkSock = path.join(dirs.root, 'vhost.0');
    spdkServer = net.createServer().listen(spdkSock);
    await new Promise((r) => spdkServer.once('listening', r));
    c = await plugin.start();
  });

  after(async function () {
    await plugin?.stop();
    spdkServer?.close();
    if (plugin) fs.rmSync(plugin.dirs.root, { recursive: true, force: true });
  });

  async function stageAndPublish(id: string, target: string, cap: object, readonly = false): Promise<void> {
    const staging = path.join(k, `plugins/${id.split('@')[0]}/globalmount`);
    await c.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: cap });
    await c.node.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: cap, readonly });
  }

  it('publishes read-only as [bind, ro], from the readonly flag or the READER_ONLY access mode', async () => {
    await c.controller.CreateVolume({ name: 'pvc-ro', capacity_range: { required_bytes: String(16 * MiB) }, volume_capabilities: [RWO] });
    const t1 = path.join(k, 'pods/u1/volumes/kubernetes.io~csi/pvc-ro/mount');
    await stageAndPublish(v('pvc-ro'), t1, RWO, true);
    assert.deepEqual(reg.read(t1).info.options, ['bind', 'ro']);
    const t2 = path.join(k, 'pods/u2/volumes/kubernetes.io~csi/pvc-ro/mount');
    await c.node.NodePublishVolume({ volume_id: v('pvc-ro'), staging_target_path: path.join(k, 'plugins/pvc-ro/globalmount'), target_path: t2, volume_capability: ROX });
    assert.deepEqual(reg.read(t2).info.options, ['bind', 'ro']);
    assert.equal(reg.read(t1).info.device, reg.read(t2).info.device);
  });

  it('spdkvol: the vhost-user socket from the StorageClass is registered; no image is made; expansion is refused', async () => {
    const r = await c.controller.CreateVolume({ name: 'pvc-spdk', capacity_range: { required_bytes: String(MiB) }, volume_capabilities: [RWO],
      parameters: { 'katacontainers.direct.volume/volumetype': 'spdkvol', 'katacontainers.direct.volume/device': spdkSock } });
    assert.equal(r.volume.volume_context['katacontainers.direct.volume/volumetype'], 'spdkvol');
    assert.equal(r.volume.volume_context['katacontainers.direct.volume/device'], spdkSock);
    const t = path.join(k, 'pods/u3/volumes/kubernetes.io~csi/pvc-spdk/mount');
    await stageAndPublish(v('pvc-spdk'), t, RWO);
    const info = reg.read(t).info;
    assert.equal(info.volumeType, 'spdkvol');
    assert.equal(info.device, spdkSock);
    assert.equal(fs.existsSync(path.join(plugin.dirs.storage, `${v('pvc-spdk')}.img`)), false);
    const e = await expectCode(c.controller.ControllerExpandVolume({ volume_id: v('pvc-spdk'), capacity_range: { required_bytes: String(32 * MiB) } }), grpc.status.INVALID_ARGUMENT);
    assert.match(e.details, /is a spdkvol volume; katavol grows directvol image volumes only/);
  });

  it('spdkvol whose socket is gone: NodeStageVolume is FAILED_PRECONDITION naming the socket', async () => {
    await c.controller.CreateVolume({ name: 'pvc-spdk-gone', capacity_range: { required_bytes: String(MiB) }, volume_capabilities: [RWO],
      parameters: { 'katacontainers.direct.volume/volumetype': 'spdkvol', 'katacontainers.direct.volume/device': path.join(plugin.dirs.root, 'vhost.gone') } });
    const e = await expectCode(c.node.NodeStageVolume({ volume_id: v('pvc-spdk-gone'), staging_target_path: path.join(k, 'plugins/g/globalmount'), volume_capability: RWO }), grpc.status.FAILED_PRECONDITION);
    assert.match(e.details, /vhost-user socket .*vhost\.gone" does not exist; start the SPDK vhost target/);
  });

  it('vfiovol: the PCI address from the StorageClass, stored in lower case', async () => {
    await c.controller.CreateVolume({ name: 'pvc-vfio', capacity_range: { required_bytes: String(MiB) }, volume_capabilities: [RWO],
      parameters: { 'katacontainers.direct.volume/volumetype': 'vfiovol', 'katacontainers.direct.volume/device': '0000:3B:00.1' } });
    const t = path.join(k, 'pods/u4/volumes/kubernetes.io~csi/pvc-vfio/mount');
    await stageAndPublish(v('pvc-vfio'), t, RWO);
    assert.equal(reg.read(t).info.volumeType, 'vfiovol');
    assert.equal(reg.read(t).info.device, '0000:3b:00.1');
    // The plugin recognises its own entry: publishing again is a no-op, unpublishing removes it.
    await c.node.NodePublishVolume({ volume_id: v('pvc-vfio'), staging_target_path: path.join(k, 'plugins/pvc-vfio/globalmount'), target_path: t, volume_capability: RWO });
    await c.node.NodeUnpublishVolume({ volume_id: v('pvc-vfio'), target_path: t });
    assert.equal(reg.isRegistered(t), false);
  });

  it('ControllerExpandVolume of another node\'s volume: accepted for that node\'s NodeExpandVolume, nothing changed here', async () => {
    const before = fs.readdirSync(path.join(plugin.dirs.state, 'volumes')).sort();
    const r = await c.controller.ControllerExpandVolume({ volume_id: 'pvc-elsewhere@node-b', capacity_range: { required_bytes: String(64 * MiB) } });
    assert.equal(r.capacity_bytes, String(64 * MiB));
    assert.equal(r.node_expansion_required, true);
    assert.deepEqual(fs.readdirSync(path.join(plugin.dirs.state, 'volumes')).sort(), before);
    await expectCode(c.controller.ControllerExpandVolume({ volume_id: 'pvc-elsewhere@node-b', capacity_range: { required_bytes: String(2n ** 62n) } }), grpc.status.OUT_OF_RANGE);
  });

  it('xfs volumes start at 300 MiB (mkfs.xfs refuses smaller ones)', async () => {
    const e = await expectCode(c.controller.CreateVolume({ name: 'pvc-xfs', capacity_range: { required_bytes: String(64 * MiB) }, volume_capabilities: [RWO],
      parameters: { 'katacontainers.direct.volume/fstype': 'xfs' } }), grpc.status.OUT_OF_RANGE);
    assert.match(e.details, /less than the minimum volume size of 314572800 bytes/);
  });

  it('ValidateVolumeCapabilities confirms single-node filesystem access and explains the rest', async () => {
    const ok = await c.controller.ValidateVolumeCapabilities({ volume_id: v('pvc-ro'), volume_capabilities: [RWO, ROX] });
    assert.equal(ok.confirmed.volume_capabilities.length, 2);
    const no = await c.controller.ValidateVolumeCapabilities({ volume_id: v('pvc-ro'), volume_capabilities: [{ mount: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } }] });
    assert.equal(no.confirmed, null);
    assert.match(no.message, /MULTI_NODE_READER_ONLY is not supported: a katavol volume lives on one node/);
  });

  it('GetCapacity: the storage directory\'s free space, capped at --max-volume-size', async () => {
    const r = await c.controller.GetCapacity({ parameters: {} });
    const s = fs.statfsSync(plugin.dirs.storage);
    const free = s.bavail * s.bsize;
    assert.ok(Math.abs(Number(r.available_capacity) - free) < 64 * MiB, `${r.available_capacity} vs ${free}`);
    assert.equal(Number(r.maximum_volume_size.value), Math.min(Number(r.available_capacity), 2 ** 40));
    assert.equal(r.minimum_volume_size.value, String(16 * MiB));
  });
});

describe('katavol csi: two plugin processes on one state directory', function () {
  it('racing CreateVolume, NodeStageVolume and NodePublishVolume of one volume: one record, one image, every target recorded', async () => {
    const root = tmpDir('katavol-csi-race-');
    const a = new CsiPlugin(csiDirs(root));
    const b = new CsiPlugin({ ...a.dirs, socket: path.join(root, 'csi-b.sock') }, [], {});
    try {
      const [ca, cb] = [await a.start(), await b.start()];
      const create = { name: 'pvc-race', capacity_range: { required_bytes: String(16 * MiB) }, volume_capabilities: [RWO] };
      const made = await Promise.all([ca, cb, ca, cb].map((c) => c.controller.CreateVolume(create)));
      assert.deepEqual(new Set(made.map((r) => r.volume.volume_id)), new Set([v('pvc-race')]));
      assert.deepEqual(fs.readdirSync(path.join(root, 'state', 'volumes')), [`${v('pvc-race')}.json`]);
      const staging = path.join(a.dirs.kubelet, 'plugins/race/globalmount');
      await Promise.all([ca, cb].map((c) => c.node.NodeStageVolume({ volume_id: v('pvc-race'), staging_target_path: staging, volume_capability: RWO })));
      // Each publish is a read-modify-write of the volume's record: without the lock, targets get lost.
      const targets = Array.from({ length: 8 }, (_, i) => path.join(a.dirs.kubelet, `pods/r${i}/volumes/kubernetes.io~csi/pvc-race/mount`));
      await Promise.all(targets.map((target, i) => [ca, cb][i % 2].node.NodePublishVolume({ volume_id: v('pvc-race'), staging_target_path: staging, target_path: target, volume_capability: RWO })));
      const reg = new Registry(a.dirs.volumeRoot);
      for (const target of targets) assert.equal(reg.read(target).info.device, path.join(a.dirs.storage, `${v('pvc-race')}.img`));
      assert.deepEqual(fs.readdirSync(a.dirs.storage), [`${v('pvc-race')}.img`]);
      const rec = JSON.parse(fs.readFileSync(path.join(root, 'state', 'volumes', `${v('pvc-race')}.json`), 'utf8'));
      assert.deepEqual(rec.staged, [staging]);
      assert.deepEqual(Object.keys(rec.published).sort(), [...targets].sort());
    } finally {
      await a.stop();
      await b.stop();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

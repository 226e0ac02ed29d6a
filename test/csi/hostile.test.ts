// Requests kubelet or csi-provisioner would never send, or that conflict with what is on disk: each gets
// the CSI spec's error code and a message naming the volume and the fix, and leaves every file the
// plugin owns (state, images, registry, kubelet dir) exactly as it was.
import { strict as assert } from 'assert';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as grpc from '@grpc/grpc-js';
import { type CsiClient, CsiPlugin, csiDirs, expectCode } from '../support/csi';
import { tmpDir } from '../support/containerd';
import { Registry } from '../../src/volumes/registry';

const MiB = 2 ** 20;
const RWO = { mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
const { INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, OUT_OF_RANGE, RESOURCE_EXHAUSTED, UNIMPLEMENTED } = grpc.status;

/** Every entry under dir but the plugin's log: type, mode, size and content digest (images included), symlink targets. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string, rel: string): void => {
    const st = fs.lstatSync(p);
    if (st.isSymbolicLink()) out[rel] = `link ${fs.readlinkSync(p)}`;
    else if (st.isDirectory()) {
      out[rel] = `dir ${(st.mode & 0o7777).toString(8)}`;
      for (const n of fs.readdirSync(p).sort()) if (`${rel}/${n}` !== '/csi.log') walk(path.join(p, n), `${rel}/${n}`);
    } else if (st.isFile()) out[rel] = `file ${(st.mode & 0o7777).toString(8)} ${st.size} ${crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`;
    else out[rel] = 'other';
  };
  walk(dir, '');
  return out;
}

describe('katavol csi: hostile and conflicting requests get the spec\'s codes and change nothing', function () {
  let plugin: CsiPlugin;
  let c: CsiClient;
  let reg: Registry;
  let k: string;
  let staging: string;
  let target: string;
  const name = 'pvc-hostile';
  const id = `${name}@node-a`;
  let outside: string;

  before(async function () {
    const dirs = csiDirs(tmpDir('katavol-csi-hostile-'));
    plugin = new CsiPlugin(dirs, ['--max-volume-size', '1T']);
    reg = new Registry(dirs.volumeRoot);
    k = dirs.kubelet;
    outside = path.join(dirs.root, 'outside');
    fs.mkdirSync(outside);
    fs.symlinkSync(outside, path.join(k, 'escape'));
    staging = path.join(k, 'plugins/x/globalmount');
    target = path.join(k, 'pods/uid-1/volumes/kubernetes.io~csi/pvc-hostile/mount');
    c = await plugin.start();
    await c.controller.CreateVolume({ name, capacity_range: { required_bytes: String(24 * MiB) }, volume_capabilities: [RWO] });
    await c.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: RWO });
    await c.node.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: RWO });
  });

  after(async function () {
    await plugin?.stop();
    if (plugin) fs.rmSync(plugin.dirs.root, { recursive: true, force: true });
  });

  const create = (over: object): object => ({ name: 'pvc-new', capacity_range: { required_bytes: String(32 * MiB) }, volume_capabilities: [RWO], parameters: {}, ...over });
  const publish = (over: object): object => ({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: RWO, ...over });
  const free = (): number => { const s = fs.statfsSync(plugin.dirs.storage); return s.bavail * s.bsize; };

  const cases: Array<[string, grpc.status, RegExp, () => Promise<unknown>]> = [
    ['CreateVolume without a name', INVALID_ARGUMENT, /name is missing/, () => c.controller.CreateVolume(create({ name: '' }))],
    ['CreateVolume without capabilities', INVALID_ARGUMENT, /volume_capabilities is missing/, () => c.controller.CreateVolume(create({ volume_capabilities: [] }))],
    ['CreateVolume of 0 bytes', OUT_OF_RANGE, /"pvc-new": capacity_range asks for 0 bytes.*resources.requests.storage/, () => c.controller.CreateVolume(create({ capacity_range: { required_bytes: '0' } }))],
    ['CreateVolume without capacity_range', OUT_OF_RANGE, /asks for 0 bytes/, () => c.controller.CreateVolume(create({ capacity_range: null }))],
    ['CreateVolume of 1 KiB', OUT_OF_RANGE, /less than the minimum/, () => c.controller.CreateVolume(create({ capacity_range: { required_bytes: '1024' } }))],
    ['CreateVolume of 2^63-1 bytes', OUT_OF_RANGE, /more than this plugin's maximum volume size of 1099511627776/, () => c.controller.CreateVolume(create({ capacity_range: { required_bytes: '9223372036854775807' } }))],
    ['CreateVolume with a limit below the size', OUT_OF_RANGE, /limit 1000 is below/, () => c.controller.CreateVolume(create({ capacity_range: { required_bytes: String(32 * MiB), limit_bytes: '1000' } }))],
    ['CreateVolume of an unknown volume type', INVALID_ARGUMENT, /volume type "nfsvol" is not one katavol provisions.*directvol, spdkvol, vfiovol/, () => c.controller.CreateVolume(create({ parameters: { 'katacontainers.direct.volume/volumetype': 'nfsvol' } }))],
    ['CreateVolume with an unknown parameter', INVALID_ARGUMENT, /unknown StorageClass parameter "fsType"/, () => c.controller.CreateVolume(create({ parameters: { fsType: 'ext4' } }))],
    ['CreateVolume with an unsupported fstype', INVALID_ARGUMENT, /filesystem type "btrfs" is not supported/, () => c.controller.CreateVolume(create({ parameters: { 'katacontainers.direct.volume/fstype': 'btrfs' } }))],
    ['CreateVolume of a spdkvol without device', INVALID_ARGUMENT, /spdkvol volume needs katacontainers.direct.volume\/device/, () => c.controller.CreateVolume(create({ parameters: { 'katacontainers.direct.volume/volumetype': 'spdkvol' } }))],
    ['CreateVolume of a vfiovol with a bad device', INVALID_ARGUMENT, /PCI address/, () => c.controller.CreateVolume(create({ parameters: { 'katacontainers.direct.volume/volumetype': 'vfiovol', 'katacontainers.direct.volume/device': 'eth0' } }))],
    ['CreateVolume for raw block', INVALID_ARGUMENT, /raw block access/, () => c.controller.CreateVolume(create({ volume_capabilities: [{ block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }] }))],
    ['CreateVolume ReadWriteMany', INVALID_ARGUMENT, /MULTI_NODE_MULTI_WRITER is not supported/, () => c.controller.CreateVolume(create({ volume_capabilities: [{ mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } }] }))],
    ['CreateVolume from a snapshot', INVALID_ARGUMENT, /cannot clone/, () => c.controller.CreateVolume(create({ volume_content_source: { snapshot: { snapshot_id: 's1' } } }))],
    ['CreateVolume for another node', RESOURCE_EXHAUSTED, /does not include this node/, () => c.controller.CreateVolume(create({ accessibility_requirements: { requisite: [{ segments: { 'directvolume.katavol.io/node': 'node-b' } }] } }))],
    ['CreateVolume larger than the free space', RESOURCE_EXHAUSTED, /bytes free/, () => c.controller.CreateVolume(create({ capacity_range: { required_bytes: String(Math.min(2 ** 40, Math.floor(free() / 512) * 512 + 2 ** 30)) } }))],
    ['CreateVolume of an existing name, larger', ALREADY_EXISTS, /does not match this request/, () => c.controller.CreateVolume(create({ name }))],
    ['DeleteVolume without id', INVALID_ARGUMENT, /volume_id is missing/, () => c.controller.DeleteVolume({ volume_id: '' })],
    ['DeleteVolume of a published volume', FAILED_PRECONDITION, /still published at .*delete the pods/, () => c.controller.DeleteVolume({ volume_id: id })],
    ['ControllerExpandVolume of an unknown volume', NOT_FOUND, /"pvc-nope@node-a": no such volume/, () => c.controller.ControllerExpandVolume({ volume_id: 'pvc-nope@node-a', capacity_range: { required_bytes: String(64 * MiB) } })],
    ['ControllerExpandVolume of a volume id no katavol node hands out', NOT_FOUND, /"pvc-plain": no such volume/, () => c.controller.ControllerExpandVolume({ volume_id: 'pvc-plain', capacity_range: { required_bytes: String(64 * MiB) } })],
    ['ControllerExpandVolume to 2^62 bytes', OUT_OF_RANGE, /maximum volume size/, () => c.controller.ControllerExpandVolume({ volume_id: id, capacity_range: { required_bytes: String(2n ** 62n) } })],
    ['ValidateVolumeCapabilities of an unknown volume', NOT_FOUND, /no such volume/, () => c.controller.ValidateVolumeCapabilities({ volume_id: 'pvc-nope@node-a', volume_capabilities: [RWO] })],
    ['CreateSnapshot (not offered)', UNIMPLEMENTED, /./, () => c.controller.CreateSnapshot({ name: 's', source_volume_id: id })],
    ['NodeStageVolume without id', INVALID_ARGUMENT, /volume_id is missing/, () => c.node.NodeStageVolume({ volume_id: '', staging_target_path: staging, volume_capability: RWO })],
    ['NodeStageVolume of an unknown volume', NOT_FOUND, /no such volume/, () => c.node.NodeStageVolume({ volume_id: 'pvc-nope@node-a', staging_target_path: staging, volume_capability: RWO })],
    ['NodeStageVolume of an id without a node', NOT_FOUND, /no such volume/, () => c.node.NodeStageVolume({ volume_id: name, staging_target_path: staging, volume_capability: RWO })],
    ['NodeStageVolume of a path-like id', NOT_FOUND, /no such volume/, () => c.node.NodeStageVolume({ volume_id: '../../etc/passwd', staging_target_path: staging, volume_capability: RWO })],
    ['NodeStageVolume outside --kubelet-dir', INVALID_ARGUMENT, /outside the kubelet directory.*--kubelet-dir/, () => c.node.NodeStageVolume({ volume_id: id, staging_target_path: path.join(outside, 'stage'), volume_capability: RWO })],
    ['NodeStageVolume through "..", out of --kubelet-dir', INVALID_ARGUMENT, /not an absolute, normalised path/, () => c.node.NodeStageVolume({ volume_id: id, staging_target_path: `${k}/../outside/stage`, volume_capability: RWO })],
    ['NodeStageVolume through a symlink out of --kubelet-dir', INVALID_ARGUMENT, /resolves to .*outside/, () => c.node.NodeStageVolume({ volume_id: id, staging_target_path: path.join(k, 'escape', 'stage'), volume_capability: RWO })],
    ['NodeStageVolume relative path', INVALID_ARGUMENT, /not an absolute/, () => c.node.NodeStageVolume({ volume_id: id, staging_target_path: 'kubelet/stage', volume_capability: RWO })],
    ['NodeStageVolume without capability', INVALID_ARGUMENT, /volume_capability is missing/, () => c.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: null })],
    ['NodeStageVolume at a second staging path', FAILED_PRECONDITION, /already staged at/, () => c.node.NodeStageVolume({ volume_id: id, staging_target_path: path.join(k, 'plugins/y/globalmount'), volume_capability: RWO })],
    ['NodePublishVolume outside --kubelet-dir', INVALID_ARGUMENT, /target_path .* is outside the kubelet directory/, () => c.node.NodePublishVolume(publish({ target_path: '/etc/evil' }))],
    ['NodePublishVolume without target', INVALID_ARGUMENT, /target_path is missing/, () => c.node.NodePublishVolume(publish({ target_path: '' }))],
    ['NodePublishVolume from a path it is not staged at', FAILED_PRECONDITION, /is not staged at .*NodeStageVolume first/, () => c.node.NodePublishVolume(publish({ staging_target_path: path.join(k, 'plugins/y/globalmount'), target_path: path.join(k, 'pods/uid-2/mount') }))],
    ['NodePublishVolume with mount flags', INVALID_ARGUMENT, /mount flags noatime cannot be applied/, () => c.node.NodePublishVolume(publish({ volume_capability: { mount: { mount_flags: ['noatime'] }, access_mode: { mode: 'SINGLE_NODE_WRITER' } } }))],
    ['NodePublishVolume read-only where it is read-write', ALREADY_EXISTS, /already published at .* read-write.*unpublish it first/, () => c.node.NodePublishVolume(publish({ readonly: true }))],
    ['NodeUnpublishVolume outside --kubelet-dir', INVALID_ARGUMENT, /outside the kubelet directory/, () => c.node.NodeUnpublishVolume({ volume_id: id, target_path: path.join(outside, 'mount') })],
    ['NodeUnpublishVolume of an unknown volume', NOT_FOUND, /no such volume/, () => c.node.NodeUnpublishVolume({ volume_id: 'pvc-nope@node-a', target_path: target })],
    ['NodeUnstageVolume while published', FAILED_PRECONDITION, /still published at .*unpublish it first/, () => c.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging })],
    ['NodeGetVolumeStats where it is not published', NOT_FOUND, /is not published at/, () => c.node.NodeGetVolumeStats({ volume_id: id, volume_path: path.join(k, 'pods/uid-9/mount') })],
    ['NodeGetVolumeStats without path', INVALID_ARGUMENT, /volume_path is missing/, () => c.node.NodeGetVolumeStats({ volume_id: id, volume_path: '' })],
    ['NodeExpandVolume smaller than the image', OUT_OF_RANGE, /never shrinks/, () => c.node.NodeExpandVolume({ volume_id: id, volume_path: target, capacity_range: { required_bytes: String(16 * MiB) } })],
    ['NodeExpandVolume outside --kubelet-dir', INVALID_ARGUMENT, /outside the kubelet directory/, () => c.node.NodeExpandVolume({ volume_id: id, volume_path: '/tmp', capacity_range: { required_bytes: String(32 * MiB) } })],
  ];

  for (const [what, code, message, call] of cases) {
    it(`${what}: ${grpc.status[code]}`, async () => {
      const before = tree(plugin.dirs.root);
      const e = await expectCode(call(), code);
      assert.match(e.details, message);
      assert.deepEqual(tree(plugin.dirs.root), before);
    });
  }

  it('NodeUnpublishVolume while a sandbox holds the volume: FAILED_PRECONDITION naming it; the entry stays', async () => {
    reg.recordSandbox(target, 'sandbox-1', 'runtime-rs');
    try {
      const before = tree(plugin.dirs.root);
      const e = await expectCode(c.node.NodeUnpublishVolume({ volume_id: id, target_path: target }), FAILED_PRECONDITION);
      assert.match(e.details, /sandbox sandbox-1 still holds the volume .*stop the pod first/);
      assert.deepEqual(tree(plugin.dirs.root), before);
      const x = await expectCode(c.node.NodeExpandVolume({ volume_id: id, volume_path: target, capacity_range: { required_bytes: String(32 * MiB) } }), FAILED_PRECONDITION);
      assert.match(x.details, /VM sandbox sandbox-1 holds the volume/);
      assert.deepEqual(tree(plugin.dirs.root), before);
    } finally {
      reg.releaseSandbox(target, 'sandbox-1');
    }
  });

  it('NodeStageVolume never formats over data: a foreign filesystem or unknown bytes are refused and kept', async () => {
    for (const [name, prepare, message] of [
      ['pvc-ext2', (img: string) => spawnSync('mkfs.ext2', ['-q', '-F', img]), /holds ext2, not the volume's ext4 filesystem; katavol never reformats/],
      ['pvc-junk', (img: string) => { const fd = fs.openSync(img, 'r+'); fs.writeSync(fd, Buffer.from('precious data'), 0, 13, 4096); fs.closeSync(fd); }, /holds data but no filesystem blkid recognises/],
    ] as const) {
      const vid = (await c.controller.CreateVolume(create({ name, capacity_range: { required_bytes: String(16 * MiB) } }))).volume.volume_id;
      const img = path.join(plugin.dirs.storage, `${vid}.img`);
      fs.writeFileSync(img, '');
      fs.truncateSync(img, 16 * MiB);
      prepare(img);
      const digest = crypto.createHash('sha256').update(fs.readFileSync(img)).digest('hex');
      const e = await expectCode(c.node.NodeStageVolume({ volume_id: vid, staging_target_path: path.join(k, `plugins/${name}/globalmount`), volume_capability: RWO }), FAILED_PRECONDITION);
      assert.match(e.details, message);
      assert.equal(crypto.createHash('sha256').update(fs.readFileSync(img)).digest('hex'), digest);
      await c.controller.DeleteVolume({ volume_id: vid });
    }
  });

  it('NodePublishVolume onto a target registered for another device: ALREADY_EXISTS, the other entry untouched', async () => {
    const other = path.join(k, 'pods/uid-3/volumes/kubernetes.io~csi/other/mount');
    const img = path.join(plugin.dirs.root, 'other.img');
    fs.writeFileSync(img, '');
    reg.add(other, JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
    const before = tree(plugin.dirs.root);
    const e = await expectCode(c.node.NodePublishVolume(publish({ target_path: other })), ALREADY_EXISTS);
    assert.match(e.details, /registered for another device \(directvol .*other\.img\)/);
    const u = await expectCode(c.node.NodeUnpublishVolume({ volume_id: id, target_path: other }), FAILED_PRECONDITION);
    assert.match(u.details, /not this volume/);
    assert.deepEqual(tree(plugin.dirs.root), before);
    reg.remove(other);
  });
});

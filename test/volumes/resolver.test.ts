// Which mounts of an OCI spec are direct volumes, and the refusals the resolver gives for them, against
// a real registry on disk. kubelet passes a CSI volume as a bind mount of the registered path (type
// "bind", or "none" with a bind/rbind option), `ctr run --mount` as type directvol/vfiovol/spdkvol.
import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { MountVolumeError, resolveVolumes } from '../../src/volumes/resolver';
import { Registry } from '../../src/volumes/registry';
import { type OciMount, type ResolvedVolume, VolumeError } from '../../src/volumes/types';
import { scratchDir } from '../support/scratch';
import { imageFile, mkExt4 } from '../support/disks';

const MiB = 1 << 20;
const ADD_EXAMPLE = (type: string): string => `'{"volume-type":"${type}","device":"/path/to/disk.img","fstype":"ext4"}'`;
const MOUNT_EXAMPLE = '(e.g. {"destination":"/disk","type":"directvol","source":"/kubelet/vol1","options":["rbind","rw"]}), so the spec was changed by something else';

describe('volumes/resolver', () => {
  let scratch: string;
  let registry: Registry;
  let img: string;
  before(() => {
    scratch = scratchDir('resolver');
    registry = new Registry(path.join(scratch, 'root'));
    img = mkExt4(scratch, 'vol.img', 8 * MiB);
    registry.add('/kubelet/vol1', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
    registry.add('/kubelet/ro', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4', options: ['ro'] }));
    registry.add('/kubelet/pci', JSON.stringify({ 'volume-type': 'vfiovol', device: '0000:3b:00.1', fstype: 'ext4' }));
    registry.add('/kubelet/slash/', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
    registry.add('/kubelet/blank', JSON.stringify({ 'volume-type': 'directvol', device: imageFile(scratch, 'blank.img', MiB), fstype: 'ext4' }));
    // Written by hand (add would want a live vhost-user socket): the resolver reads, the backend checks the socket.
    fs.mkdirSync(registry.entryDir('/kubelet/spdk'));
    fs.writeFileSync(registry.mountInfoFile('/kubelet/spdk'), JSON.stringify({ 'volume-type': 'spdkvol', device: imageFile(scratch, 'not-a-socket', MiB), fstype: 'ext4' }));
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  const resolve = (mounts: unknown[], opts?: { typelessBind?: () => boolean }): ResolvedVolume[] => resolveVolumes('c1', { mounts: mounts as OciMount[] }, registry, undefined, opts);
  /** The refusal's message (a MountVolumeError naming container c1, whose cause is the volume problem). */
  const refusal = (mounts: unknown[], rootOrigin?: string, reg = registry): string => {
    try {
      resolveVolumes('c1', { mounts: mounts as OciMount[] }, reg, rootOrigin);
    } catch (e) {
      assert.ok(e instanceof MountVolumeError, String(e));
      assert.strictEqual(e.name, 'MountVolumeError');
      assert.strictEqual(e.containerId, 'c1');
      assert.strictEqual(e.cause, e.reason);
      return e.message;
    }
    assert.fail(`resolved ${JSON.stringify(mounts)}, expected a refusal`);
  };
  const paths = (r: ResolvedVolume[]): Array<[number, string]> => r.map((v) => [v.index, v.volumePath]);

  it('resolves mount types directvol, vfiovol and spdkvol through their registry entries', () => {
    const mounts = [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/a', type: 'directvol', source: '/kubelet/vol1', options: ['rbind', 'rw'] },
      { destination: '/b', type: 'vfiovol', source: '/kubelet/pci' },
      { destination: '/c', type: 'spdkvol', source: '/kubelet/spdk', options: [] },
    ];
    const r = resolve(mounts);
    assert.deepStrictEqual(paths(r), [[1, '/kubelet/vol1'], [2, '/kubelet/pci'], [3, '/kubelet/spdk']]);
    assert.strictEqual(r[0].mount, mounts[1]);
    assert.deepStrictEqual(r[0].info, { volumeType: 'directvol', device: img, fsType: 'ext4', metadata: {}, options: [] });
    assert.strictEqual(r[0].entryDir, registry.entryDir('/kubelet/vol1'));
    assert.strictEqual(r[0].file, registry.mountInfoFile('/kubelet/vol1'));
    assert.deepStrictEqual(r.map((v) => v.info.volumeType), ['directvol', 'vfiovol', 'spdkvol']);
    assert.deepStrictEqual(resolve([]), []);
    assert.deepStrictEqual(resolveVolumes('c1', {}, registry), [], 'a spec without mounts has no volumes');
    assert.deepStrictEqual(resolveVolumes('c1', { mounts: 'x' } as unknown as { mounts: OciMount[] }, registry), [], 'nor one whose mounts are not a list');
    assert.deepStrictEqual(resolve([null, 3, 'x', [], { destination: '/d', type: 'tmpfs' }]), [], 'not mounts katavol could act on: runc judges them');
  });

  it('resolves a bind mount of a registered path the way kubelet passes it through CRI: type bind, or none with bind/rbind', () => {
    const r = resolve([
      { destination: '/etc/hosts', type: 'bind', source: '/var/lib/kubelet/pods/x/etc-hosts', options: ['rbind', 'rprivate', 'rw'] },
      { destination: '/a', type: 'bind', source: '/kubelet/vol1', options: ['rprivate', 'rw'] },
      { destination: '/b', type: 'none', source: '/kubelet/pci', options: ['rbind', 'ro'] },
      { destination: '/c', type: 'none', source: '/kubelet/vol1', options: ['bind'] },
      { destination: '/d', type: 'bind', source: '/kubelet/vol1' },
    ]);
    assert.deepStrictEqual(paths(r), [[1, '/kubelet/vol1'], [2, '/kubelet/pci'], [3, '/kubelet/vol1'], [4, '/kubelet/vol1']]);
  });

  it('leaves alone what is not a bind of a registered path: no bind option, another type, an unregistered or empty source', () => {
    for (const m of [
      { destination: '/a', type: 'none', source: '/kubelet/vol1', options: ['rw'] },
      { destination: '/a', type: 'none', source: '/kubelet/vol1' },
      { destination: '/a', type: 'none', source: '/kubelet/vol1', options: 'rbind' },
      { destination: '/a', type: 'none', source: '/kubelet/vol1', options: [['rbind']] },
      { destination: '/a', type: 'tmpfs', source: '/kubelet/vol1', options: ['rbind'] },
      { destination: '/a', type: 'ext4', source: '/kubelet/vol1', options: ['bind'] },
      { destination: '/a', type: 'bind', source: '/kubelet/unregistered', options: ['rbind'] },
      { destination: '/a', type: 'bind', source: '', options: ['rbind'] },
      { destination: '/a', type: 'bind', options: ['rbind'] },
      { destination: '/a', type: 'bind', source: 7, options: ['rbind'] },
      { destination: '/a', type: 'bind', source: `/${'a'.repeat(400)}`, options: ['rbind'] },
      { destination: '/a', source: '/kubelet/vol1' },
      { destination: '/a', type: 5, source: '/kubelet/vol1', options: ['rbind'] },
      { destination: '/a', type: ['directvol'], source: '/kubelet/vol1' },
    ]) {
      assert.deepStrictEqual(resolve([m]), [], JSON.stringify(m).slice(0, 120));
    }
  });

  it('a bind without a type counts only where the backend mounts it as one (Backend.typelessBind; the default is yes)', () => {
    for (const m of [{ destination: '/t', source: '/kubelet/vol1', options: ['rbind'] }, { destination: '/t', type: '', source: '/kubelet/vol1', options: ['bind', 'ro'] }]) {
      assert.deepStrictEqual(paths(resolve([m])), [[0, '/kubelet/vol1']]);
      assert.deepStrictEqual(paths(resolve([m], { typelessBind: () => true })), [[0, '/kubelet/vol1']]);
      assert.deepStrictEqual(resolve([m], { typelessBind: () => false }), []);
    }
    let asked = 0;
    resolve([{ destination: '/t', type: 'bind', source: '/kubelet/vol1' }, { destination: '/u', type: 'none', source: '/kubelet/vol1', options: ['rbind'] }], { typelessBind: () => { asked++; return false; } });
    assert.strictEqual(asked, 0, 'a typed bind does not ask the backend (which would be built for nothing)');
  });

  it('a bind whose options hold something other than strings is resolved and refused for its shape, not passed over', () => {
    const msg = refusal([{ destination: '/a', type: 'none', source: '/kubelet/vol1', options: [5, 'rbind'] }]);
    assert.strictEqual(msg, `container "c1": mount "/a": volume "/kubelet/vol1": the mount options must be a list of strings without NUL bytes, found a list holding something else; containerd writes a valid mount here ${MOUNT_EXAMPLE}`);
  });

  it('read-only when the mount or the registry entry says ro', () => {
    const r = resolve([
      { destination: '/a', type: 'directvol', source: '/kubelet/vol1', options: ['rbind', 'rw'] },
      { destination: '/b', type: 'directvol', source: '/kubelet/vol1', options: ['rbind', 'ro'] },
      { destination: '/c', type: 'directvol', source: '/kubelet/ro', options: ['rbind', 'rw'] },
      { destination: '/d', type: 'bind', source: '/kubelet/vol1', options: ['ro'] },
      { destination: '/e', type: 'directvol', source: '/kubelet/vol1' },
    ]);
    assert.deepStrictEqual(r.map((v) => v.readOnly), [false, true, true, true, false]);
  });

  it('refuses near misses of our mount types with "did you mean", and judges no other type', () => {
    const cases: Array<[string, string]> = [
      ['directvolume', 'directvol'], ['DirectVol', 'directvol'], ['direct', 'directvol'], ['direct-vol', 'directvol'],
      ['vfio', 'vfiovol'], ['VFIO_VOLUME', 'vfiovol'], ['spdk', 'spdkvol'], ['spdk vol', 'spdkvol'], ['spdkvolume', 'spdkvol'],
    ];
    for (const [type, meant] of cases) {
      assert.strictEqual(refusal([{ destination: '/d', type, source: '/kubelet/v9', options: ['rbind'] }]),
        `container "c1": mount "/d": volume "/kubelet/v9": mount type "${type}" is not a direct-volume type (runc would fail with "no such device"); did you mean type=${meant}? e.g. --mount type=${meant},src=/kubelet/v9,dst=/d`);
    }
    // Without a source or destination the example fills in the usual ones.
    assert.strictEqual(refusal([{ type: 'vfio' }]),
      'container "c1": mount (destination missing): mount type "vfio" is not a direct-volume type (runc would fail with "no such device"); did you mean type=vfiovol? e.g. --mount type=vfiovol,src=/kubelet/vol1,dst=/disk');
    assert.match(refusal([{ destination: '', type: 'spdk', source: 3 }]), /^container "c1": mount "": mount type "spdk" .* --mount type=spdkvol,src=\/kubelet\/vol1,dst=\/disk$/);
    assert.match(refusal([{ destination: 5, type: 'spdk', source: '/kubelet/v9' }]), /^container "c1": mount \(destination a number\): volume "\/kubelet\/v9": .* --mount type=spdkvol,src=\/kubelet\/v9,dst=\/disk$/);
    for (const type of ['bind', 'none', '', 'spool', 'volume', 'vol', 'proc', 'overlay', 'directvols']) {
      assert.deepStrictEqual(resolve([{ destination: '/d', type, source: '/x/y', options: ['ro'] }]), [], type);
    }
  });

  it('refuses a direct-volume mount without a source, naming the mount type', () => {
    for (const [source, type] of [[undefined, 'directvol'], ['', 'vfiovol'], [5, 'spdkvol']] as const) {
      assert.strictEqual(refusal([{ destination: '/d', type, source }]),
        `container "c1": mount "/d": a ${type} mount needs a source; pass the volume path as src=, e.g. --mount type=directvol,src=/kubelet/vol1,dst=/disk`);
    }
  });

  it('refuses an unregistered volume naming the registry root, where it came from, and the add command for its type', () => {
    const dir = registry.entryDir('/kubelet/none');
    assert.strictEqual(refusal([{ destination: '/d', type: 'directvol', source: '/kubelet/none' }]),
      `container "c1": mount "/d": volume "/kubelet/none": is not registered in the registry root ${registry.root} (${dir}); register it first: katavol direct-volume add /kubelet/none ${ADD_EXAMPLE('directvol')}`);
    assert.strictEqual(refusal([{ destination: '/d', type: 'vfiovol', source: '/kubelet/none' }], '$KATAVOL_VOLUME_ROOT'),
      `container "c1": mount "/d": volume "/kubelet/none": is not registered in the registry root ${registry.root} (from $KATAVOL_VOLUME_ROOT) (${dir}); register it first: katavol direct-volume add /kubelet/none ${ADD_EXAMPLE('vfiovol')}`);
  });

  it('an unregistered path whose trailing slashes are all that differ from a registered one gets "did you mean"', () => {
    const twin = (source: string, meant: string): void => {
      assert.strictEqual(refusal([{ destination: '/d', type: 'directvol', source }]),
        `container "c1": mount "/d": volume ${JSON.stringify(source)}: is not registered, but ${meant} is (volume paths are matched byte for byte) (${registry.entryDir(source)}); did you mean src=${meant}?`);
    };
    twin('/kubelet/vol1/', '/kubelet/vol1');
    twin('/kubelet/vol1///', '/kubelet/vol1');
    twin('/kubelet/slash', '/kubelet/slash/');
    twin('/kubelet/slash//', '/kubelet/slash/');
    assert.match(refusal([{ destination: '/d', type: 'directvol', source: '/' }]), /volume "\/": is not registered in the registry root/);
    assert.match(refusal([{ destination: '/d', type: 'directvol', source: '/kubelet' }]), /volume "\/kubelet": is not registered in the registry root/);
  });

  it('refuses a registered volume whose mount has no usable destination or options, showing what was found', () => {
    const shape = (m: Record<string, unknown>, shown: string, problem: string): void => {
      assert.strictEqual(refusal([{ type: 'directvol', source: '/kubelet/vol1', ...m }]),
        `container "c1": mount ${shown}: volume "/kubelet/vol1": ${problem}; containerd writes a valid mount here ${MOUNT_EXAMPLE}`);
    };
    const noDest = 'the mount has no destination (the path in the container, a string such as "/disk")';
    shape({}, '(destination missing)', noDest);
    shape({ destination: '' }, '""', noDest);
    shape({ destination: 5 }, '(destination a number)', noDest);
    shape({ destination: null }, '(destination null)', noDest);
    shape({ destination: ['/d'] }, '(destination an array)', noDest);
    shape({ destination: { p: '/d' } }, '(destination an object)', noDest);
    shape({ destination: '/d\0x' }, '"/d\\u0000x"', 'the mount destination holds a NUL byte');
    const opts = 'the mount options must be a list of strings without NUL bytes, found';
    shape({ destination: '/d', options: 'rbind,rw' }, '"/d"', `${opts} a string`);
    shape({ destination: '/d', options: null }, '"/d"', `${opts} null`);
    shape({ destination: '/d', options: { ro: true } }, '"/d"', `${opts} an object`);
    shape({ destination: '/d', options: ['rw', 1] }, '"/d"', `${opts} a list holding something else`);
    shape({ destination: '/d', options: ['rw', 'r\0o'] }, '"/d"', `${opts} a list holding something else`);
  });

  it('refuses a directvol whose device holds another filesystem than declared; other types are left to their backend checks', () => {
    const entry = registry.read('/kubelet/blank');
    assert.strictEqual(refusal([{ destination: '/d', type: 'directvol', source: '/kubelet/blank' }]),
      `container "c1": mount "/d": volume "/kubelet/blank": declares fstype "ext4" but device ${entry.info.device} holds no filesystem katavol recognises (ext2/3/4, xfs, btrfs, ...) (${entry.file}); point "device" at the ext4 image or disk, or correct "fstype" (blkid -p ${entry.info.device} shows what it holds)`);
    assert.deepStrictEqual(paths(resolve([{ destination: '/d', type: 'spdkvol', source: '/kubelet/spdk' }])), [[0, '/kubelet/spdk']]);
  });

  it('a registry entry that cannot be read is refused with its file named; the error is the cause', () => {
    const broken = '/kubelet/broken';
    fs.mkdirSync(registry.entryDir(broken));
    try {
      fs.writeFileSync(registry.mountInfoFile(broken), '{"volume-type":"directvol"}');
      try {
        resolveVolumes('c7', { mounts: [{ destination: '/d', type: 'bind', source: broken }] }, registry);
        assert.fail('resolved');
      } catch (e) {
        assert.ok(e instanceof MountVolumeError);
        assert.ok(e.reason instanceof VolumeError);
        assert.strictEqual(e.mount.destination, '/d');
        assert.strictEqual(e.message, `container "c7": mount "/d": ${e.reason.message}`);
        assert.match(e.message, new RegExp(`volume "/kubelet/broken": stored mount info has no "device" \\(${registry.mountInfoFile(broken)}\\)`));
      }
    } finally {
      fs.rmSync(registry.entryDir(broken), { recursive: true });
    }
  });

  it('a registry root that cannot be looked into (a symlink loop): binds pass through, direct-volume types are refused with the error', () => {
    const loopRoot = path.join(scratch, 'loop');
    fs.symlinkSync(loopRoot, loopRoot);
    const reg = new Registry(loopRoot);
    assert.deepStrictEqual(resolveVolumes('c1', { mounts: [{ destination: '/a', type: 'bind', source: '/kubelet/vol1', options: ['rbind'] }] }, reg), []);
    assert.match(refusal([{ destination: '/a', type: 'directvol', source: '/kubelet/vol1' }], undefined, reg), /^container "c1": mount "\/a": ELOOP/);
  });
});

import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import type { PrepareContext } from '../../../src/backends/backend';
import type { OciSpec } from '../../../src/volumes/types';
import { DEVICES_ANNOTATION, volumePathsOf } from '../../../src/backends/runtime-rs/annotation';
import { HELD_FILE } from '../../../src/backends/backend';
import { RuntimeRsBackend, type RegistryPort } from '../../../src/backends/runtime-rs/backend';
import { parseRuntimeRsConfig } from '../../../src/backends/runtime-rs/config';
import { driveIdFor } from '../../../src/backends/runtime-rs/volume';
import { VolumeError } from '../../../src/volumes/types';
import type { SandboxUse } from '../../../src/volumes/registry';
import { buildSysfs } from '../../support/sysfs';
import { mountInfo, recordingLog, resolved, useVhostSocket } from '../../support/volumes';
import { scratchDir } from '../../support/scratch';

type Call = [string, ...unknown[]];

/** Records every change; sandboxesOf is a query and is not recorded. Like the registry, a record replaces the sandbox's earlier one. */
class FakeRegistry implements RegistryPort {
  calls: Call[] = [];
  users = new Map<string, SandboxUse[]>();
  canonical = new Set<string>();
  failRecordOn?: string;
  /** Makes the n-th recordSandbox call (1-based) fail, e.g. the restore of an earlier record. */
  failRecordCall?: number;
  failReleaseOn?: string;

  rewriteCanonical(volumePath: string): boolean {
    this.calls.push(['rewriteCanonical', volumePath]);
    const changed = !this.canonical.has(volumePath);
    this.canonical.add(volumePath);
    return changed;
  }
  recordSandbox(volumePath: string, sandboxId: string, backend = '', readOnly = false): void {
    this.calls.push(['recordSandbox', volumePath, sandboxId, backend, readOnly]);
    if (this.failRecordOn === volumePath) throw new Error('ENOSPC: no space left on device');
    if (this.failRecordCall === this.calls.filter((c) => c[0] === 'recordSandbox').length) throw new Error('EIO: i/o error, restoring');
    const list = this.users.get(volumePath) ?? [];
    const use = { id: sandboxId, backend, readOnly };
    const at = list.findIndex((u) => u.id === sandboxId);
    if (at < 0) list.push(use);
    else list[at] = use;
    this.users.set(volumePath, list);
  }
  releaseSandbox(volumePath: string, sandboxId: string): void {
    this.calls.push(['releaseSandbox', volumePath, sandboxId]);
    if (this.failReleaseOn === volumePath) throw new Error('EROFS: read-only file system');
    this.users.set(volumePath, (this.users.get(volumePath) ?? []).filter((u) => u.id !== sandboxId));
  }
  sandboxesOf(volumePath: string): SandboxUse[] {
    return (this.users.get(volumePath) ?? []).map((u) => ({ ...u }));
  }
}

describe('runtime-rs backend (backend.ts)', () => {
  let dir: string;
  let image: string;
  let sock: string;
  let sysfs: string;
  const vhost = useVhostSocket('backend');

  before(() => {
    ({ dir, sock } = vhost);
    image = path.join(dir, 'data.img');
    fs.writeFileSync(image, Buffer.alloc(65536));
    sysfs = path.join(dir, 'sys');
    buildSysfs(sysfs, [
      { dbdf: '0000:3b:00.0', vendor: '0x1af4', device: '0x1042', class: '0x010000', group: '7', driver: 'vfio-pci' },
      { dbdf: '0000:3b:00.1', vendor: '0x1af4', device: '0x1042', class: '0x010000', group: '8', driver: 'nvme' },
      { dbdf: '0000:3b:00.2', vendor: '0x1af4', device: '0x1042', class: '0x010000', group: '9', driver: 'vfio-pci' },
    ]);
  });

  const cfg = () => parseRuntimeRsConfig({ sysfsRoot: sysfs, blockDeviceDriver: 'virtio-blk-mmio' }, 'test');
  const ctx = (containerId = 'c1', sandboxId = 'pod-a', bundle = path.join(dir, 'bundles', containerId)) => {
    const log = recordingLog();
    return { ctx: { containerId, sandboxId, bundle, log } as PrepareContext, log };
  };

  const dataMount = () => ({ destination: '/data', type: 'directvol', source: '/kubelet/data', options: ['rbind', 'rw'] });
  const spdkMount = () => ({ destination: '/fast', type: 'spdkvol', source: '/kubelet/fast', options: ['rbind'] });
  const vfioMount = () => ({ destination: '/dpu', type: 'bind', source: '/kubelet/dpu', options: ['rbind', 'nosuid'] });
  const procMount = { destination: '/proc', type: 'proc', source: 'proc' };
  const baseSpec = (): OciSpec => ({
    ociVersion: '1.1.0',
    mounts: [procMount, dataMount(), spdkMount(), vfioMount()],
    annotations: { 'io.kubernetes.cri.sandbox-id': 'pod-a' },
  });
  const volumes = (spec: OciSpec) => [
    resolved(1, spec.mounts![1], '/kubelet/data', mountInfo('directvol', image, { fsType: 'xfs', options: ['bind', 'noatime'] })),
    resolved(2, spec.mounts![2], '/kubelet/fast', mountInfo('spdkvol', sock, { metadata: { num_queues: '2' }, options: ['ro'] }), true),
    resolved(3, spec.mounts![3], '/kubelet/dpu', mountInfo('vfiovol', '3B:00.0')),
  ];

  it('rewrites each mount, sets the devices annotation, canonicalises and records every volume', async () => {
    const reg = new FakeRegistry();
    reg.canonical.add('/kubelet/fast');
    const backend = new RuntimeRsBackend(cfg(), reg);
    const spec = baseSpec();
    const before = JSON.stringify(spec);
    const { ctx: c, log } = ctx();
    const out = await backend.prepare(c, spec, volumes(spec));

    assert.strictEqual(JSON.stringify(spec), before, 'the input spec is not modified');
    assert.strictEqual(out.spec.ociVersion, '1.1.0');
    assert.deepStrictEqual(out.spec.mounts, [
      procMount,
      { destination: '/data', type: 'directvol', source: '/kubelet/data', options: ['rbind', 'rw'] },
      { destination: '/fast', type: 'spdkvol', source: '/kubelet/fast', options: ['rbind', 'ro'] },
      { destination: '/dpu', type: 'vfiovol', source: '/kubelet/dpu', options: ['rbind', 'nosuid'] },
    ]);
    assert.strictEqual(out.spec.annotations!['io.kubernetes.cri.sandbox-id'], 'pod-a');
    const limiter = { bandwidth: { size: 0, one_time_burst: 0, refill_time: 1000 }, ops: { size: 0, one_time_burst: 0, refill_time: 1000 } };
    assert.deepStrictEqual(JSON.parse(out.spec.annotations![DEVICES_ANNOTATION]), [
      {
        destination: '/data', volumePath: '/kubelet/data', volumeType: 'directvol', readOnly: false,
        spec: {
          drive_id: driveIdFor(`blk:${image}`), device_type: 'RawBlock', path_on_host: image, is_root_device: false, part_uuid: null,
          is_read_only: false, is_direct: false, no_drop: false, num_queues: 1, queue_size: 256, rate_limiter: limiter,
          use_shared_irq: null, use_generic_irq: null, use_pci_bus: null,
        },
        guest: { driver: 'mmioblk', virtPath: '/dev/vda' },
        storage: { driver: 'mmioblk', source: '/dev/vda', fs_type: 'xfs', options: ['noatime'] },
      },
      {
        destination: '/fast', volumePath: '/kubelet/fast', volumeType: 'spdkvol', readOnly: true,
        spec: {
          drive_id: driveIdFor(`spdk:${sock}`), device_type: 'Spdk', path_on_host: `spdk://${sock}`, is_root_device: false, part_uuid: null,
          is_read_only: true, is_direct: false, no_drop: false, num_queues: 2, queue_size: 256, rate_limiter: limiter,
          use_shared_irq: null, use_generic_irq: null, use_pci_bus: null,
        },
        guest: { driver: 'mmioblk', virtPath: '/dev/vdb' },
        storage: { driver: 'mmioblk', source: '/dev/vdb', fs_type: 'ext4', options: ['ro'] },
      },
      {
        destination: '/dpu', volumePath: '/kubelet/dpu', volumeType: 'vfiovol', readOnly: false,
        spec: {
          host_devices: [{
            hostdev_id: 'vfio_vol_7_0', sysfs_path: '/sys/bus/pci/devices/0000:3b:00.0',
            dev_config: { bus_slot_func: '3b:00.0', vendor_device_id: 0x10421af4, guest_dev_id: null, clique_id: null },
          }],
        },
        guest: { driver: 'mmioblk', virtPath: '/dev/vdc' },
        storage: { driver: 'mmioblk', source: '/dev/vdc', fs_type: 'ext4', options: ['nosuid'] },
      },
    ]);
    assert.deepStrictEqual(reg.calls, [
      ['recordSandbox', '/kubelet/data', 'pod-a', 'runtime-rs', false],
      ['recordSandbox', '/kubelet/fast', 'pod-a', 'runtime-rs', true],
      ['recordSandbox', '/kubelet/dpu', 'pod-a', 'runtime-rs', false],
      ['rewriteCanonical', '/kubelet/data'],
      ['rewriteCanonical', '/kubelet/fast'],
      ['rewriteCanonical', '/kubelet/dpu'],
    ]);
    // Only the entries that were not canonical are reported as rewritten.
    const rewritten = log.lines.filter((l) => /canonical/.test(l.msg)).map((l) => l.meta?.volume);
    assert.deepStrictEqual(rewritten, ['/kubelet/data', '/kubelet/dpu']);
    assert.deepStrictEqual(out.summary.map((s) => [s.destination, s.volumeType, s.readOnly, s.virtPath]), [
      ['/data', 'directvol', false, '/dev/vda'], ['/fast', 'spdkvol', true, '/dev/vdb'], ['/dpu', 'vfiovol', false, '/dev/vdc'],
    ]);
  });

  it('gives two mounts of one device the same drive id and guest disk', async () => {
    const reg = new FakeRegistry();
    const spec: OciSpec = { mounts: [dataMount(), { ...dataMount(), destination: '/data2' }, spdkMount()] };
    const info = mountInfo('directvol', image);
    const out = await new RuntimeRsBackend(cfg(), reg).prepare(ctx().ctx, spec, [
      resolved(0, spec.mounts![0], '/kubelet/data', info),
      resolved(1, spec.mounts![1], '/kubelet/data', info),
      resolved(2, spec.mounts![2], '/kubelet/fast', mountInfo('spdkvol', sock)),
    ]);
    const entries = JSON.parse(out.spec.annotations![DEVICES_ANNOTATION]) as Array<{ spec: { drive_id: string }; guest: { virtPath: string } }>;
    assert.deepStrictEqual(entries.map((e) => e.guest.virtPath), ['/dev/vda', '/dev/vda', '/dev/vdb']);
    assert.strictEqual(entries[0].spec.drive_id, entries[1].spec.drive_id);
    assert.deepStrictEqual(reg.calls.filter((c) => c[0] === 'recordSandbox').map((c) => c[1]), ['/kubelet/data', '/kubelet/fast']);
  });

  it('refuses a read-write volume already used by another sandbox, and touches nothing', async () => {
    const reg = new FakeRegistry();
    reg.users.set('/kubelet/fast', []);
    reg.users.set('/kubelet/dpu', [{ id: 'pod-b', backend: '', readOnly: false }]);
    const spec = baseSpec();
    await assert.rejects(new RuntimeRsBackend(cfg(), reg).prepare(ctx().ctx, spec, volumes(spec)), (e: Error) => {
      assert.ok(e instanceof VolumeError);
      assert.match(e.message, /^volume "\/kubelet\/dpu": mount \/dpu: the volume is read-write and already in use by sandbox pod-b \(read-write: an empty record, as Kata writes, does not say the mode\)/);
      assert.match(e.message, /\(\/registry\/\/kubelet\/dpu\/mountInfo\.json\)/);
      assert.match(e.message, /stop the pod that uses it, or mount it read-only in every pod/);
      assert.match(e.message, /remove its stale record: rm \/registry\/kubelet\/dpu\/pod-b$/);
      return true;
    });
    assert.deepStrictEqual(reg.calls, []);
  });

  it('refuses when another pod records the volume at the same moment, and takes its own record back', async () => {
    const reg = new FakeRegistry();
    // Another pod's shim passed its check just before us and records while we record.
    const record = reg.recordSandbox.bind(reg);
    reg.recordSandbox = (vp, id, backend, readOnly) => {
      record(vp, id, backend, readOnly);
      if (vp === '/kubelet/data') record(vp, 'pod-b', 'runtime-rs', true);
    };
    const spec = baseSpec();
    await assert.rejects(new RuntimeRsBackend(cfg(), reg).prepare(ctx().ctx, spec, volumes(spec)),
      /volume "\/kubelet\/data": mount \/data: the volume is read-write and already in use by sandbox pod-b \(runtime-rs, read-only\)/);
    for (const vp of ['/kubelet/data', '/kubelet/fast', '/kubelet/dpu']) {
      assert.ok(!reg.sandboxesOf(vp).some((u) => u.id === 'pod-a'), `pod-a record left on ${vp}`);
    }
    assert.ok(!reg.calls.some((c) => c[0] === 'rewriteCanonical'));
  });

  it('lets read-only users share a volume, and its own sandbox reuse one', async () => {
    const reg = new FakeRegistry();
    reg.users.set('/kubelet/fast', [{ id: 'pod-b', backend: 'runtime-rs', readOnly: true }]); // /fast is read-only here
    reg.users.set('/kubelet/data', [{ id: 'pod-a', backend: 'runtime-rs', readOnly: true }]); // our own pod, read-only so far
    const spec = baseSpec();
    await new RuntimeRsBackend(cfg(), reg).prepare(ctx().ctx, spec, volumes(spec));
    assert.deepStrictEqual(reg.sandboxesOf('/kubelet/fast'), [
      { id: 'pod-b', backend: 'runtime-rs', readOnly: true }, { id: 'pod-a', backend: 'runtime-rs', readOnly: true },
    ]);
    // Our own sandbox now writes /data: its record says so.
    assert.deepStrictEqual(reg.sandboxesOf('/kubelet/data'), [{ id: 'pod-a', backend: 'runtime-rs', readOnly: false }]);
  });

  it('refuses a read-only volume another sandbox holds read-write, and touches nothing', async () => {
    const reg = new FakeRegistry();
    reg.users.set('/kubelet/fast', [{ id: 'pod-c', backend: 'runtime-rs', readOnly: true }, { id: 'pod-b', backend: 'runtime-rs', readOnly: false }]);
    const spec = baseSpec();
    await assert.rejects(new RuntimeRsBackend(cfg(), reg).prepare(ctx().ctx, spec, volumes(spec)), (e: Error) => {
      assert.ok(e instanceof VolumeError);
      assert.match(e.message, /^volume "\/kubelet\/fast": mount \/fast: the volume is read-only here but sandbox pod-b \(runtime-rs, read-write\) holds it read-write/);
      assert.match(e.message, /\(\/registry\/\/kubelet\/fast\/mountInfo\.json\)/);
      assert.match(e.message, /stop the pod that writes it, or mount it read-only there too/);
      // Only the writer is named as a stale record to remove, not the other reader.
      assert.match(e.message, /remove its stale record: rm \/registry\/kubelet\/fast\/pod-b$/);
      return true;
    });
    assert.deepStrictEqual(reg.calls, []);
  });

  it('takes an empty record (written by Kata itself) as read-write when asked for read-only', async () => {
    const reg = new FakeRegistry();
    reg.users.set('/kubelet/fast', [{ id: 'kata-pod', backend: '', readOnly: false }]);
    const spec = baseSpec();
    await assert.rejects(new RuntimeRsBackend(cfg(), reg).prepare(ctx().ctx, spec, volumes(spec)),
      /mount \/fast: the volume is read-only here but sandbox kata-pod \(read-write: an empty record, as Kata writes, does not say the mode\) holds it read-write/);
    assert.deepStrictEqual(reg.calls, []);
  });

  it('refuses when another pod records the volume read-write while it takes it read-only, and takes its own record back', async () => {
    const reg = new FakeRegistry();
    const record = reg.recordSandbox.bind(reg);
    reg.recordSandbox = (vp, id, backend, readOnly) => {
      record(vp, id, backend, readOnly);
      if (vp === '/kubelet/fast' && id === 'pod-a') record(vp, 'pod-b', 'runtime-rs', false);
    };
    const spec = baseSpec();
    await assert.rejects(new RuntimeRsBackend(cfg(), reg).prepare(ctx().ctx, spec, volumes(spec)),
      /mount \/fast: the volume is read-only here but sandbox pod-b \(runtime-rs, read-write\) holds it read-write/);
    for (const vp of ['/kubelet/data', '/kubelet/fast', '/kubelet/dpu']) {
      assert.ok(!reg.sandboxesOf(vp).some((u) => u.id === 'pod-a'), `pod-a record left on ${vp}`);
    }
  });

  it('records a volume read-write when any of its mounts is, and keeps its sandbox read-write for a later read-only container', async () => {
    const reg = new FakeRegistry();
    const backend = new RuntimeRsBackend(cfg(), reg);
    const info = mountInfo('directvol', image);
    const both: OciSpec = { mounts: [{ ...dataMount(), destination: '/ro', options: ['rbind', 'ro'] }, dataMount()] };
    await backend.prepare(ctx('c1').ctx, both, [
      resolved(0, both.mounts![0], '/kubelet/data', info, true),
      resolved(1, both.mounts![1], '/kubelet/data', info),
    ]);
    assert.deepStrictEqual(reg.sandboxesOf('/kubelet/data'), [{ id: 'pod-a', backend: 'runtime-rs', readOnly: false }]);
    // A read-only container of the same sandbox: c1 still writes the volume in the same VM.
    const ro: OciSpec = { mounts: [{ ...dataMount(), options: ['rbind', 'ro'] }] };
    await backend.prepare(ctx('c2').ctx, ro, [resolved(0, ro.mounts![0], '/kubelet/data', info, true)]);
    assert.deepStrictEqual(reg.sandboxesOf('/kubelet/data'), [{ id: 'pod-a', backend: 'runtime-rs', readOnly: false }]);
    // ...and another sandbox still cannot read it.
    await assert.rejects(backend.prepare(ctx('c3', 'pod-b').ctx, ro, [resolved(0, ro.mounts![0], '/kubelet/data', info, true)]),
      /sandbox pod-a \(runtime-rs, read-write\) holds it read-write/);
  });

  it('refuses the whole container when any volume fails its host check, recording nothing', async () => {
    const reg = new FakeRegistry();
    const spec = baseSpec();
    const vols = volumes(spec);
    vols[2] = resolved(3, spec.mounts![3], '/kubelet/dpu', mountInfo('vfiovol', '0000:3b:00.1'));
    await assert.rejects(new RuntimeRsBackend(cfg(), reg).prepare(ctx().ctx, spec, vols), (e: Error) => {
      assert.ok(e instanceof VolumeError);
      assert.match(e.message, /^volume "\/kubelet\/dpu": mount \/dpu: PCI function 0000:3b:00\.1 is bound to nvme, not vfio-pci/);
      assert.match(e.message, /bind it to vfio-pci/);
      return true;
    });
    assert.deepStrictEqual(reg.calls, []);
  });

  it('undoes the sandbox records it made when recording fails part-way', async () => {
    const reg = new FakeRegistry();
    reg.users.set('/kubelet/fast', [{ id: 'pod-a', backend: 'runtime-rs', readOnly: true }]); // held before: must stay
    reg.users.set('/kubelet/data', [{ id: 'pod-a', backend: 'runtime-rs', readOnly: true }]); // held read-only before: must go back to that
    reg.failRecordOn = '/kubelet/dpu';
    const spec = baseSpec();
    await assert.rejects(new RuntimeRsBackend(cfg(), reg).prepare(ctx().ctx, spec, volumes(spec)), /ENOSPC/);
    assert.deepStrictEqual(reg.calls.filter((c) => c[0] === 'releaseSandbox'), []);
    assert.deepStrictEqual(reg.sandboxesOf('/kubelet/fast'), [{ id: 'pod-a', backend: 'runtime-rs', readOnly: true }]);
    assert.deepStrictEqual(reg.sandboxesOf('/kubelet/data'), [{ id: 'pod-a', backend: 'runtime-rs', readOnly: true }]);
    assert.deepStrictEqual(reg.sandboxesOf('/kubelet/dpu'), []);
  });

  it('a second container of the same sandbox (a sidecar) gets the read-write volume too; another sandbox is still refused', async () => {
    const reg = new FakeRegistry();
    const backend = new RuntimeRsBackend(cfg(), reg);
    const prepare = (containerId: string, sandboxId: string) => {
      const spec: OciSpec = { mounts: [dataMount()], annotations: { 'io.kubernetes.cri.sandbox-id': sandboxId } };
      return backend.prepare(ctx(containerId, sandboxId).ctx, spec, [resolved(0, spec.mounts![0], '/kubelet/data', mountInfo('directvol', image))]);
    };
    const app = await prepare('app', 'pod-a');
    const sidecar = await prepare('sidecar', 'pod-a');
    // One VM per sandbox: both containers get the same device spec, and the sandbox is recorded once.
    assert.deepStrictEqual(JSON.parse(sidecar.spec.annotations![DEVICES_ANNOTATION]), JSON.parse(app.spec.annotations![DEVICES_ANNOTATION]));
    assert.strictEqual(sidecar.spec.mounts![0].type, 'directvol');
    assert.deepStrictEqual(reg.sandboxesOf('/kubelet/data'), [{ id: 'pod-a', backend: 'runtime-rs', readOnly: false }]);
    await assert.rejects(prepare('other', 'pod-b'), /the volume is read-write and already in use by sandbox pod-a \(runtime-rs, read-write\)/);
    assert.deepStrictEqual(reg.sandboxesOf('/kubelet/data').map((u) => u.id), ['pod-a']);
  });

  it('release drops the records once no container of the sandbox uses the volume', async () => {
    const reg = new FakeRegistry();
    const backend = new RuntimeRsBackend(cfg(), reg);
    const specA: OciSpec = { mounts: [dataMount(), spdkMount()] };
    const specB: OciSpec = { mounts: [dataMount()] };
    const a = ctx('ca');
    const b = ctx('cb');
    await backend.prepare(a.ctx, specA, [
      resolved(0, specA.mounts![0], '/kubelet/data', mountInfo('directvol', image)),
      resolved(1, specA.mounts![1], '/kubelet/fast', mountInfo('spdkvol', sock)),
    ]);
    await backend.prepare(b.ctx, specB, [resolved(0, specB.mounts![0], '/kubelet/data', mountInfo('directvol', image))]);
    reg.calls = [];
    await backend.release(a.ctx);
    assert.deepStrictEqual(reg.calls, [['releaseSandbox', '/kubelet/fast', 'pod-a']]);
    await backend.release(b.ctx);
    assert.deepStrictEqual(reg.calls, [['releaseSandbox', '/kubelet/fast', 'pod-a'], ['releaseSandbox', '/kubelet/data', 'pod-a']]);
  });

  it('leaves a mount without options without options unless it must say ro, and keeps mount order whatever order the volumes come in', async () => {
    const reg = new FakeRegistry();
    const other = path.join(dir, 'other.img');
    fs.writeFileSync(other, Buffer.alloc(65536));
    // Index 10 sorts before 2 as text: the order must be numeric.
    const mounts = Array.from({ length: 11 }, (_, i) => ({ destination: `/m${i}`, type: 'bind', source: `/x${i}`, options: ['rbind'] }));
    mounts[2] = { destination: '/data', type: 'directvol', source: '/kubelet/data' } as never;
    mounts[10] = { destination: '/other', type: 'directvol', source: '/kubelet/other' } as never;
    const spec: OciSpec = { mounts };
    const out = await new RuntimeRsBackend(cfg(), reg).prepare(ctx().ctx, spec, [
      resolved(10, mounts[10], '/kubelet/other', mountInfo('directvol', other), true),
      resolved(2, mounts[2], '/kubelet/data', mountInfo('directvol', image)),
    ]);
    assert.deepStrictEqual(out.spec.mounts![2], { destination: '/data', type: 'directvol', source: '/kubelet/data' });
    assert.deepStrictEqual(out.spec.mounts![10], { destination: '/other', type: 'directvol', source: '/kubelet/other', options: ['ro'] });
    const entries = JSON.parse(out.spec.annotations![DEVICES_ANNOTATION]) as Array<{ destination: string; spec: { drive_id: string }; guest: { virtPath: string } }>;
    // Two images, two devices, in mount order.
    assert.deepStrictEqual(entries.map((e) => [e.destination, e.guest.virtPath, e.spec.drive_id]),
      [['/data', '/dev/vda', driveIdFor(`blk:${image}`)], ['/other', '/dev/vdb', driveIdFor(`blk:${other}`)]]);
    assert.deepStrictEqual(out.summary.map((e) => e.destination), ['/data', '/other']);
  });

  it('adds only the annotation to a spec without mounts when no volume is given', async () => {
    const out = await new RuntimeRsBackend(cfg(), new FakeRegistry()).prepare(ctx().ctx, { ociVersion: '1.1.0' }, []);
    assert.deepStrictEqual(out.spec, { ociVersion: '1.1.0', mounts: [], annotations: { [DEVICES_ANNOTATION]: '[]' } });
  });

  it('gives one vfio function one device however it is spelled; an spoolvol is refused as Dragonball cannot serve it', async () => {
    const reg = new FakeRegistry();
    const devices = ['3B:00.0', '0000:3b:00.0', '3b:00.2', '/dev/vfio/7', '/dev/vfio/9', '/dev/vfio/09'];
    const spec: OciSpec = { mounts: devices.map((_, i) => ({ ...vfioMount(), destination: `/dpu${i}` })) };
    const out = await new RuntimeRsBackend(cfg(), reg).prepare(ctx().ctx, spec,
      devices.map((d, i) => resolved(i, spec.mounts![i], `/kubelet/dpu${i}`, mountInfo('vfiovol', d))));
    const entries = JSON.parse(out.spec.annotations![DEVICES_ANNOTATION]) as Array<{ guest: { virtPath: string } }>;
    assert.deepStrictEqual(entries.map((e) => e.guest.virtPath), ['/dev/vda', '/dev/vda', '/dev/vdb', '/dev/vdc', '/dev/vdd', '/dev/vdd']);
    const pool: OciSpec = { mounts: [{ ...spdkMount(), type: 'spoolvol' }] };
    await assert.rejects(new RuntimeRsBackend(cfg(), reg).prepare(ctx().ctx, pool, [resolved(0, pool.mounts![0], '/kubelet/pool', mountInfo('spoolvol', sock))]),
      /^VolumeError: volume "\/kubelet\/pool": mount \/fast: spoolvol is not supported with Dragonball/);
  });

  it('refuses a vfiovol device that is neither a PCI address nor a VFIO group, naming the volume, the file and the fix', async () => {
    const spec: OciSpec = { mounts: [vfioMount()] };
    await assert.rejects(new RuntimeRsBackend(cfg(), new FakeRegistry()).prepare(ctx().ctx, spec, [
      resolved(0, spec.mounts![0], '/kubelet/dpu', mountInfo('vfiovol', '3b:00')),
    ]), (e: Error) => {
      assert.ok(e instanceof VolumeError, String(e));
      assert.strictEqual(e.message, 'volume "/kubelet/dpu": mount /dpu: vfiovol device "3b:00" is not a PCI address (BB:DD.F or DDDD:BB:DD.F) or a VFIO group (/dev/vfio/N) (/registry//kubelet/dpu/mountInfo.json); re-register the volume with "device" set to the function\'s address, e.g. 0000:3b:00.1 (see lspci -D)');
      return true;
    });
  });

  it('binds a raw block device at a /dev destination with only the mount\'s own options (none here)', async () => {
    const mount = { destination: '/dev/xvdb', type: 'directvol', source: '/kubelet/data' };
    const out = await new RuntimeRsBackend(cfg(), new FakeRegistry()).prepare(ctx().ctx, { mounts: [mount] }, [
      resolved(0, mount, '/kubelet/data', mountInfo('directvol', image)),
    ]);
    assert.deepStrictEqual(out.spec.mounts, [mount]);
    const [entry] = JSON.parse(out.spec.annotations![DEVICES_ANNOTATION]) as Array<{ storage: unknown }>;
    assert.deepStrictEqual(entry.storage, { driver: 'mmioblk', source: '/dev/vda', fs_type: 'bind', options: [] });
  });

  it('refuses a volume type it does not handle, naming the volume, the file and the fix', async () => {
    const spec: OciSpec = { mounts: [dataMount()] };
    await assert.rejects(new RuntimeRsBackend(cfg(), new FakeRegistry()).prepare(ctx().ctx, spec, [
      resolved(0, spec.mounts![0], '/kubelet/data', mountInfo('nfsvol' as never, image)),
    ]), (e: Error) => {
      assert.ok(e instanceof VolumeError);
      assert.strictEqual(e.message, 'volume "/kubelet/data": mount /data: volume-type "nfsvol" is not one runtime-rs handles (/registry//kubelet/data/mountInfo.json); re-register it as directvol, spdkvol or vfiovol');
      return true;
    });
  });

  it('turns an unexpected failure while checking a device into a volume error that keeps the cause', async () => {
    // A VFIO group whose devices directory is a file: listing it fails with ENOTDIR.
    const odd = path.join(dir, 'sys-odd');
    fs.mkdirSync(path.join(odd, 'kernel/iommu_groups/5'), { recursive: true });
    fs.writeFileSync(path.join(odd, 'kernel/iommu_groups/5/devices'), '');
    const spec: OciSpec = { mounts: [vfioMount()] };
    const config = parseRuntimeRsConfig({ sysfsRoot: odd, blockDeviceDriver: 'virtio-blk-mmio' }, 'test');
    await assert.rejects(new RuntimeRsBackend(config, new FakeRegistry()).prepare(ctx().ctx, spec, [
      resolved(0, spec.mounts![0], '/kubelet/dpu', mountInfo('vfiovol', '/dev/vfio/5')),
    ]), (e: Error) => {
      assert.ok(e instanceof VolumeError, String(e));
      assert.match(e.message, /^volume "\/kubelet\/dpu": mount \/dpu: checking the device failed: ENOTDIR: not a directory, scandir '.*\/kernel\/iommu_groups\/5\/devices' \(\/registry\/\/kubelet\/dpu\/mountInfo\.json\); fix the device or re-register the volume$/);
      assert.strictEqual((e.cause as NodeJS.ErrnoException).code, 'ENOTDIR');
      return true;
    });
  });

  it('names every sandbox in the way and every stale record to remove', async () => {
    const reg = new FakeRegistry();
    reg.users.set('/kubelet/data', [{ id: 'pod-b', backend: 'runtime-rs', readOnly: true }, { id: 'pod-c', backend: 'runtime-rs', readOnly: true }]);
    const spec: OciSpec = { mounts: [dataMount()] };
    await assert.rejects(new RuntimeRsBackend(cfg(), reg).prepare(ctx().ctx, spec, [resolved(0, spec.mounts![0], '/kubelet/data', mountInfo('directvol', image))]),
      /already in use by sandbox pod-b \(runtime-rs, read-only\), pod-c \(runtime-rs, read-only\) .*rm \/registry\/kubelet\/data\/pod-b \/registry\/kubelet\/data\/pod-c$/);
  });

  it('undoing a failed Create releases only its own new records and restores only the records it changed', async () => {
    const reg = new FakeRegistry();
    // Another pod reads /data; our pod already writes /fast (unchanged by this Create) and holds /dpu in Kata's form.
    reg.users.set('/kubelet/data', [{ id: 'pod-b', backend: 'runtime-rs', readOnly: true }]);
    reg.users.set('/kubelet/fast', [{ id: 'pod-a', backend: 'runtime-rs', readOnly: false }]);
    reg.users.set('/kubelet/dpu', [{ id: 'pod-a', backend: '', readOnly: false }]);
    reg.failRecordOn = '/kubelet/extra';
    const spec = baseSpec();
    spec.mounts!.push({ destination: '/extra', type: 'directvol', source: '/kubelet/extra', options: ['ro'] });
    const vols = volumes(spec);
    vols[0] = resolved(1, spec.mounts![1], '/kubelet/data', mountInfo('directvol', image), true);
    vols.push(resolved(4, spec.mounts![4], '/kubelet/extra', mountInfo('directvol', image), true));
    const { ctx: c, log } = ctx();
    await assert.rejects(new RuntimeRsBackend(cfg(), reg).prepare(c, spec, vols), /ENOSPC/);
    assert.deepStrictEqual(reg.calls, [
      ['recordSandbox', '/kubelet/data', 'pod-a', 'runtime-rs', true],
      ['recordSandbox', '/kubelet/fast', 'pod-a', 'runtime-rs', false],
      ['recordSandbox', '/kubelet/dpu', 'pod-a', 'runtime-rs', false],
      ['recordSandbox', '/kubelet/extra', 'pod-a', 'runtime-rs', true],
      ['releaseSandbox', '/kubelet/data', 'pod-a'],
      ['recordSandbox', '/kubelet/dpu', 'pod-a', '', false],
    ]);
    assert.deepStrictEqual(reg.sandboxesOf('/kubelet/data'), [{ id: 'pod-b', backend: 'runtime-rs', readOnly: true }]);
    assert.deepStrictEqual(reg.sandboxesOf('/kubelet/dpu'), [{ id: 'pod-a', backend: '', readOnly: false }]);
    assert.deepStrictEqual(log.lines.filter((l) => l.level === 'warn'), []);
  });

  it('when undoing fails too, says so per volume and still undoes the rest', async () => {
    const reg = new FakeRegistry();
    reg.users.set('/kubelet/fast', [{ id: 'pod-a', backend: '', readOnly: true }]);
    reg.failRecordOn = '/kubelet/dpu';
    reg.failReleaseOn = '/kubelet/data';
    reg.failRecordCall = 4; // data, fast, dpu (fails), then the restore of fast
    const spec = baseSpec();
    const { ctx: c, log } = ctx();
    await assert.rejects(new RuntimeRsBackend(cfg(), reg).prepare(c, spec, volumes(spec)), /ENOSPC/);
    assert.deepStrictEqual(log.lines.filter((l) => l.level === 'warn'), [
      { level: 'warn', msg: 'undoing a sandbox record failed', meta: { volume: '/kubelet/data', error: 'EROFS: read-only file system' } },
      { level: 'warn', msg: 'restoring the earlier sandbox record failed', meta: { volume: '/kubelet/fast', error: 'EIO: i/o error, restoring' } },
    ]);
  });

  it('a failing release of one volume is logged and the others are still released', async () => {
    const reg = new FakeRegistry();
    const backend = new RuntimeRsBackend(cfg(), reg);
    const spec = baseSpec();
    const { ctx: c, log } = ctx();
    await backend.prepare(c, spec, volumes(spec));
    reg.calls = [];
    reg.failReleaseOn = '/kubelet/fast';
    await backend.release(c);
    assert.deepStrictEqual(reg.calls, [
      ['releaseSandbox', '/kubelet/data', 'pod-a'], ['releaseSandbox', '/kubelet/fast', 'pod-a'], ['releaseSandbox', '/kubelet/dpu', 'pod-a'],
    ]);
    assert.deepStrictEqual(log.lines.filter((l) => l.level === 'warn'), [
      { level: 'warn', msg: 'releasing the sandbox record failed', meta: { volume: '/kubelet/fast', sandboxId: 'pod-a', error: 'EROFS: read-only file system' } },
    ]);
  });

  describe('from the bundle (after a restart)', () => {
    let bundles: string;
    beforeEach(() => {
      bundles = scratchDir('bundles');
    });
    afterEach(() => fs.rmSync(bundles, { recursive: true, force: true }));

    const writeBundle = (id: string, spec: OciSpec) => {
      fs.mkdirSync(path.join(bundles, id));
      fs.writeFileSync(path.join(bundles, id, 'config.json'), JSON.stringify(spec));
      // The interceptor's record that the container still holds what Create took.
      fs.writeFileSync(path.join(bundles, id, HELD_FILE), '{}');
      return path.join(bundles, id);
    };
    const prepared = async (id: string, sandbox: string, mount = dataMount(), volumePath = '/kubelet/data') => {
      const spec: OciSpec = { mounts: [mount], annotations: { 'io.kubernetes.cri.sandbox-id': sandbox } };
      const out = await new RuntimeRsBackend(cfg(), new FakeRegistry()).prepare(ctx(id, sandbox).ctx, spec, [
        resolved(0, spec.mounts![0], volumePath, mountInfo('directvol', image)),
      ]);
      return writeBundle(id, out.spec);
    };

    it('releaseBundle reads the annotation and the sandbox id back', async () => {
      const bundle = await prepared('c1', 'pod-z');
      const reg = new FakeRegistry();
      const log = recordingLog();
      await new RuntimeRsBackend(cfg(), reg).releaseBundle(bundle, log);
      assert.deepStrictEqual(reg.calls, [['releaseSandbox', '/kubelet/data', 'pod-z']]);
    });

    it('keeps the record while a sibling bundle of the same sandbox lists the volume', async () => {
      const bundle = await prepared('c1', 'pod-z');
      await prepared('c2', 'pod-z');
      await prepared('c3', 'pod-other');
      const reg = new FakeRegistry();
      await new RuntimeRsBackend(cfg(), reg).releaseBundle(bundle, recordingLog());
      assert.deepStrictEqual(reg.calls, []);
      // c2 released (held record gone) but its bundle not yet removed: no longer a user.
      fs.rmSync(path.join(bundles, 'c2', HELD_FILE));
      await new RuntimeRsBackend(cfg(), reg).releaseBundle(bundle, recordingLog());
      assert.deepStrictEqual(reg.calls, [['releaseSandbox', '/kubelet/data', 'pod-z']]);
    });

    it('release by a fresh process falls back to the bundle', async () => {
      const bundle = await prepared('c1', 'pod-z');
      const reg = new FakeRegistry();
      await new RuntimeRsBackend(cfg(), reg).release({ containerId: 'c1', sandboxId: 'pod-z', bundle, log: recordingLog() });
      assert.deepStrictEqual(reg.calls, [['releaseSandbox', '/kubelet/data', 'pod-z']]);
    });

    it('releases nothing, with a warning, when the bundle has no readable config.json', async () => {
      const reg = new FakeRegistry();
      const log = recordingLog();
      await new RuntimeRsBackend(cfg(), reg).releaseBundle(path.join(bundles, 'gone'), log);
      assert.deepStrictEqual(reg.calls, []);
      assert.ok(log.lines.some((l) => l.level === 'warn' && /devices annotation/.test(l.msg)));
      assert.deepStrictEqual(log.lines.map((l) => [l.level, l.msg, l.meta?.bundle]),
        [['warn', 'cannot read the devices annotation back from the bundle; nothing released', path.join(bundles, 'gone')]]);
      assert.match(String(log.lines[0].meta?.error), /ENOENT/);
      // The same through release() in a process that did not prepare the container.
      const fresh = recordingLog();
      await new RuntimeRsBackend(cfg(), reg).release({ containerId: 'gone', sandboxId: 'pod-z', bundle: path.join(bundles, 'gone'), log: fresh });
      assert.deepStrictEqual(reg.calls, []);
      assert.deepStrictEqual(fresh.lines.map((l) => [l.level, l.msg, l.meta?.bundle]),
        [['warn', 'cannot read the devices annotation back from the bundle; nothing released', path.join(bundles, 'gone')]]);
      const plain = writeBundle('plain', { mounts: [] });
      await new RuntimeRsBackend(cfg(), reg).releaseBundle(plain, log);
      assert.deepStrictEqual(reg.calls, []);
    });
  });
});

describe('runtime-rs devices annotation read back (annotation.ts)', () => {
  const spec = (value?: string): OciSpec => (value === undefined ? {} : { annotations: { [DEVICES_ANNOTATION]: value } });

  it('lists each volume once, in order; none without the annotation', () => {
    assert.deepStrictEqual(volumePathsOf({}), []);
    assert.deepStrictEqual(volumePathsOf({ annotations: {} }), []);
    assert.deepStrictEqual(volumePathsOf(spec(JSON.stringify([{ volumePath: '/b' }, { volumePath: '/a' }, { volumePath: '/b' }]))), ['/b', '/a']);
  });

  it('refuses a malformed annotation, saying what is wrong', () => {
    assert.throws(() => volumePathsOf(spec('{"volumePath":"/a"}')), /^Error: io\.katacontainers\.katavol\.devices is not a JSON array$/);
    for (const entry of ['null', '{}', '{"volumePath":5}']) {
      assert.throws(() => volumePathsOf(spec(`[${entry}]`)), /^Error: io\.katacontainers\.katavol\.devices has an entry without a volumePath$/, entry);
    }
  });
});

import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { parseRuntimeRsConfig, type RuntimeRsConfig } from '../../../src/backends/runtime-rs/config';
import { Sysfs, busSlotFunc, isDbdf, parseVfioDevice, skippedClass } from '../../../src/backends/runtime-rs/pci';
import { buildVfioDevice, checkVfioDevice } from '../../../src/backends/runtime-rs/vfio';
import { VolumeError } from '../../../src/volumes/types';
import { GROUP_7, NOT_LISTED, NO_IOMMU, NVME_BOUND, buildSysfs } from '../../support/sysfs';
import { mountInfo, recordingLog, volumeInput } from '../../support/volumes';
import { scratchDir } from '../../support/scratch';

const PLACE = { index: 3, driveId: 'unused0000000000' };

describe('runtime-rs vfiovol: PCI address parsing (pci.ts)', () => {
  it('accepts BB:DD.F and DDDD:BB:DD.F, lowercasing and defaulting the domain', () => {
    assert.deepStrictEqual(parseVfioDevice('3b:00.1'), { kind: 'bdf', dbdf: '0000:3b:00.1' });
    assert.deepStrictEqual(parseVfioDevice('0000:3B:1F.7'), { kind: 'bdf', dbdf: '0000:3b:1f.7' });
    assert.deepStrictEqual(parseVfioDevice('00AF:02:03.0'), { kind: 'bdf', dbdf: '00af:02:03.0' });
  });

  it('accepts /dev/vfio/N', () => {
    assert.deepStrictEqual(parseVfioDevice('/dev/vfio/12'), { kind: 'group', group: '12' });
    assert.deepStrictEqual(parseVfioDevice('/dev/vfio/007'), { kind: 'group', group: '7' });
  });

  it('rejects anything else', () => {
    for (const bad of ['3b:00', '3b:20.0', '3b:00.8', '0:3b:00.0', 'vfio/12', '/dev/vfio/', '/dev/vfio/x', '12', '', '0000:3b:00.0 ']) {
      assert.strictEqual(parseVfioDevice(bad), undefined, bad);
    }
  });

  it('strips the domain for bus_slot_func and knows which classes stay on the host', () => {
    assert.strictEqual(busSlotFunc('0000:3b:00.1'), '3b:00.1');
    assert.strictEqual(skippedClass(0x060000), 'a host bridge');
    assert.strictEqual(skippedClass(0x040300), 'an audio function');
    assert.strictEqual(skippedClass(0x060400), undefined); // PCI bridge class is not in runtime-rs's list
    assert.strictEqual(skippedClass(0x010000), undefined);
  });
});

describe('runtime-rs vfiovol: sysfs names and attributes (pci.ts)', () => {
  let root: string;
  before(() => {
    root = scratchDir('sysfs-attr');
    buildSysfs(root, [
      { dbdf: '0000:01:00.0', vendor: '0x1AF4', device: '0x1042zz', class: 'zz0x010000', group: '3' },
    ]);
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('takes a sysfs PCI device name only in full, lower-case form', () => {
    assert.strictEqual(isDbdf('0000:3b:00.1'), true);
    for (const name of ['x0000:3b:00.1', '0000:3b:00.1x', '0000:3B:00.1', '3b:00.1', '0000:3b:00.8']) assert.strictEqual(isDbdf(name), false, name);
  });

  it('reads hex attributes whole, naming the file of one that is not', () => {
    const sysfs = new Sysfs(root);
    assert.strictEqual(sysfs.hexAttr('0000:01:00.0', 'vendor'), 0x1af4);
    for (const attr of ['device', 'class']) {
      const file = path.join(root, 'bus/pci/devices/0000:01:00.0', attr);
      const text = fs.readFileSync(file, 'utf8').trim();
      assert.throws(() => sysfs.hexAttr('0000:01:00.0', attr), (e: Error) => e.message === `${file} holds ${JSON.stringify(text)}, not a hex number`);
    }
    assert.strictEqual(sysfs.iommuGroupOf('0000:01:00.0'), '3');
    assert.strictEqual(sysfs.driverOf('0000:01:00.0'), undefined);
    assert.strictEqual(sysfs.iommuGroupOf('0000:02:00.0'), undefined);
    assert.strictEqual(sysfs.exists(path.join(root, 'nothing')), false);
  });
});

describe('runtime-rs vfiovol: host checks and HostDeviceConfig (vfio.ts)', () => {
  let root: string;
  let cfg: RuntimeRsConfig;

  before(() => {
    root = scratchDir('sysfs');
    buildSysfs(root, [
      // Group 7: a host bridge, the virtio-blk VF we want, its HDMI-like audio sibling, and one more VF.
      ...GROUP_7,
      NVME_BOUND,
      // Group 9: no driver at all.
      { dbdf: '0000:5f:00.0', vendor: '0x1af4', device: '0x1042', class: '0x010000', group: '9' },
      NO_IOMMU,
      NOT_LISTED,
      // Group 11: the requested VF is fine, its sibling is bound to virtio-pci.
      { dbdf: '0000:62:00.0', vendor: '0x1af4', device: '0x1042', class: '0x010000', group: '11', driver: 'vfio-pci' },
      { dbdf: '0000:62:00.1', vendor: '0x1af4', device: '0x1042', class: '0x010000', group: '11', driver: 'virtio-pci' },
      // Group 12: a GPU-like function whose audio sibling is still held by the host sound driver.
      { dbdf: '0000:63:00.0', vendor: '0x1af4', device: '0x1042', class: '0x010000', group: '12', driver: 'vfio-pci' },
      { dbdf: '0000:63:00.1', vendor: '0x10de', device: '0x10f0', class: '0x040300', group: '12', driver: 'snd_hda_intel' },
      // Group 13: six functions, made in descending address order.
      ...[5, 4, 3, 2, 1, 0].map((f) => ({ dbdf: `0000:64:00.${f}`, vendor: '0x1af4', device: '0x1042', class: '0x010000', group: '13', driver: 'vfio-pci' })),
      // Group 14: only a host bridge.
      { dbdf: '0000:65:00.0', vendor: '0x8086', device: '0x3ec2', class: '0x060000', group: '14' },
      // Group 16: a function whose class attribute is unreadable.
      { dbdf: '0000:67:00.0', vendor: '0x1af4', device: '0x1042', class: 'garbage', group: '16', driver: 'vfio-pci' },
      // Group 17: a bridge held by its port driver, an audio function with no driver, one on pci-stub: all fine.
      { dbdf: '0000:68:00.0', vendor: '0x1af4', device: '0x1042', class: '0x010000', group: '17', driver: 'vfio-pci' },
      { dbdf: '0000:68:00.1', vendor: '0x8086', device: '0x3ec2', class: '0x060000', group: '17', driver: 'pcieport' },
      { dbdf: '0000:68:00.2', vendor: '0x10de', device: '0x10f0', class: '0x040300', group: '17' },
      { dbdf: '0000:68:00.3', vendor: '0x10de', device: '0x10f0', class: '0x040300', group: '17', driver: 'pci-stub' },
      // A group whose name makes the host device id longer than runtime-rs's 31 characters.
      { dbdf: '0000:69:00.0', vendor: '0x1af4', device: '0x1042', class: '0x010000', group: '1234567890123456789012345', driver: 'vfio-pci' },
    ]);
    // Group 15: a mediated device (named by UUID, not a PCI address) beside a PCI function.
    buildSysfs(root, [{ dbdf: '0000:66:00.0', vendor: '0x1af4', device: '0x1042', class: '0x010000', group: '15', driver: 'vfio-pci' }]);
    fs.mkdirSync(path.join(root, 'kernel/iommu_groups/15/devices/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001'));
    cfg = parseRuntimeRsConfig({ sysfsRoot: root }, 'test');
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  const expectedGroup7 = (first: '0000:3b:00.0' | '0000:3b:00.2') => {
    const vf0 = { sysfs_path: '/sys/bus/pci/devices/0000:3b:00.0', dev_config: { bus_slot_func: '3b:00.0', vendor_device_id: 0x10421af4, guest_dev_id: null, clique_id: null } };
    // 0xa808144d does not fit a signed 32-bit int: must stay unsigned.
    const vf2 = { sysfs_path: '/sys/bus/pci/devices/0000:3b:00.2', dev_config: { bus_slot_func: '3b:00.2', vendor_device_id: 2819101773, guest_dev_id: null, clique_id: null } };
    const ordered = first === '0000:3b:00.0' ? [vf0, vf2] : [vf2, vf0];
    return ordered.map((d, i) => ({ hostdev_id: `vfio_vol_7_${i}`, ...d }));
  };

  it('lists every passable function of the group (no host bridge, no audio), the requested one first', () => {
    const log = recordingLog();
    const e = buildVfioDevice(volumeInput(mountInfo('vfiovol', '3b:00.2', { options: ['bind', 'nodiscard'] })), cfg, PLACE, log);
    assert.deepStrictEqual(e, {
      destination: '/data',
      volumePath: '/kubelet/vol-1',
      volumeType: 'vfiovol',
      readOnly: false,
      spec: { host_devices: expectedGroup7('0000:3b:00.2') },
      guest: { driver: 'mmioblk', virtPath: '/dev/vdd' },
      storage: { driver: 'mmioblk', source: '/dev/vdd', fs_type: 'ext4', options: ['nodiscard'] },
    });
    const skipped = log.lines.filter((l) => l.level === 'debug').map((l) => l.meta?.dbdf);
    assert.deepStrictEqual(skipped, ['0000:00:00.0', '0000:3b:00.1']);
  });

  it('normalises an upper-case DDDD:BB:DD.F address', () => {
    const e = buildVfioDevice(volumeInput(mountInfo('vfiovol', '0000:3B:00.0')), cfg, PLACE);
    assert.deepStrictEqual(e.spec.host_devices, expectedGroup7('0000:3b:00.0'));
  });

  it('takes the whole group from /dev/vfio/N, in address order', () => {
    const e = buildVfioDevice(volumeInput(mountInfo('vfiovol', '/dev/vfio/7'), { readOnly: true, ociOptions: ['rbind', 'rw'] }), cfg, PLACE);
    assert.deepStrictEqual(e.spec.host_devices, expectedGroup7('0000:3b:00.0'));
    // Empty mountInfo options: the (rewritten) OCI options, without bind flags, plus ro.
    assert.deepStrictEqual(e.storage, { driver: 'mmioblk', source: '/dev/vdd', fs_type: 'ext4', options: ['ro'] });
  });

  const refusals: Array<[string, string, RegExp, RegExp, string]> = [
    ['a function bound to another driver', '5e:00.0', /PCI function 0000:5e:00\.0 is bound to nvme, not vfio-pci/,
      /echo 0000:5e:00\.0 > .*\/bus\/pci\/devices\/0000:5e:00\.0\/driver\/unbind; echo vfio-pci > .*0000:5e:00\.0\/driver_override; echo 0000:5e:00\.0 > .*\/bus\/pci\/drivers\/vfio-pci\/bind/,
      '0000:5e:00.0/driver'],
    ['a function with no driver', '0000:5f:00.0', /PCI function 0000:5f:00\.0 is not bound to any driver, not vfio-pci/,
      /bind it to vfio-pci: echo vfio-pci > .*0000:5f:00\.0\/driver_override/, '0000:5f:00.0/driver'],
    ['a function without an IOMMU group', '60:00.0', /PCI function 0000:60:00\.0 has no IOMMU group/,
      /enable the IOMMU \(intel_iommu=on or amd_iommu=on/, '0000:60:00.0/iommu_group'],
    ['a function not listed in its group', '61:00.0', /PCI function 0000:61:00\.0 is not listed in its IOMMU group 10/,
      /rescan/, 'kernel/iommu_groups/10/devices/0000:61:00.0'],
    ['a sibling in the group not bound to vfio-pci', '62:00.0', /PCI function 0000:62:00\.1 \(in IOMMU group 11 with 0000:62:00\.0\) is bound to virtio-pci/,
      /driver\/unbind/, '0000:62:00.1/driver'],
    ['a group whose audio function is held by a host driver', '63:00.0', /IOMMU group 12 is not usable by VFIO: PCI function 0000:63:00\.1 \(an audio function\) is bound to snd_hda_intel/,
      /echo 0000:63:00\.1 > .*driver\/unbind/, '0000:63:00.1/driver'],
    ['a host bridge', '00:00.0', /PCI function 0000:00:00\.0 is a host bridge, which cannot be passed through/, /register the function you want/, 'mountInfo.json'],
    ['an address with no device', '70:00.0', /no PCI function 0000:70:00\.0 on this host/, /lspci -D/, 'bus/pci/devices/0000:70:00.0'],
    ['a VFIO group that does not exist', '/dev/vfio/42', /VFIO group 42 does not exist/, /iommu_groups/, 'kernel/iommu_groups/42/devices'],
    ['a device that is not an address', 'nvme0n1', /"nvme0n1" is not a PCI address \(BB:DD\.F or DDDD:BB:DD\.F\) or a VFIO group/, /lspci -D/, 'mountInfo.json'],
  ];
  for (const [what, device, problem, fix, file] of refusals) {
    it(`refuses ${what}, naming the address, the file and the fix`, () => {
      assert.throws(() => checkVfioDevice(volumeInput(mountInfo('vfiovol', device)), cfg), (e: Error) => {
        assert.ok(e instanceof VolumeError, String(e));
        assert.match(e.message, /^volume "\/kubelet\/vol-1": mount \/data: /);
        assert.match(e.message, problem);
        assert.match(e.message, fix);
        assert.ok(e.file?.endsWith(file), `file ${e.file} should end with ${file}`);
        return true;
      });
    });
  }

  it('orders a group by address with the requested function first, wherever it sorts', () => {
    const ids = (device: string) => checkVfioDevice(volumeInput(mountInfo('vfiovol', device)), cfg).functions.map((f) => f.dbdf.slice(-1));
    assert.deepStrictEqual(ids('/dev/vfio/13'), ['0', '1', '2', '3', '4', '5']);
    assert.deepStrictEqual(ids('64:00.5'), ['5', '0', '1', '2', '3', '4']);
    assert.deepStrictEqual(ids('64:00.3'), ['3', '0', '1', '2', '4', '5']);
  });

  it('leaves bridges on their port driver and audio functions without a driver or on pci-stub in the group, out of the VM', () => {
    const e = buildVfioDevice(volumeInput(mountInfo('vfiovol', '68:00.0')), cfg, PLACE);
    assert.deepStrictEqual(e.spec.host_devices.map((d) => d.sysfs_path), ['/sys/bus/pci/devices/0000:68:00.0']);
  });

  it('keeps the host device id within runtime-rs\'s 31 characters', () => {
    const e = buildVfioDevice(volumeInput(mountInfo('vfiovol', '69:00.0')), cfg, PLACE);
    assert.deepStrictEqual(e.spec.host_devices.map((d) => d.hostdev_id), ['vfio_vol_1234567890123456789012'.slice(0, 31)]);
  });

  const more: Array<[string, string, string, string]> = [
    ['a group with nothing to pass through', '/dev/vfio/14', 'VFIO group 14 has no function that can be passed through', 'register a group holding the PCI function to pass through'],
    ['a group holding a mediated device', '/dev/vfio/15', 'IOMMU group 15 holds 83b8f4f2-509f-382f-3c1e-e6bfe0fa1001, which is not a PCI function (mediated devices are not supported)', 'use a group of PCI functions only'],
    ['a function whose class cannot be read', '67:00.0', 'cannot read the class of PCI function 0000:67:00.0: ', 'check that sysfs is mounted and the device is present'],
    ['a group (named as /dev/vfio/N) with a function on another driver', '/dev/vfio/11', 'PCI function 0000:62:00.1 (in IOMMU group 11 with the volume) is bound to virtio-pci, not vfio-pci', 'bind it to vfio-pci: echo 0000:62:00.1 > '],
    ['a VFIO group that does not exist', '/dev/vfio/42', 'VFIO group 42 does not exist', 'check ls /sys/kernel/iommu_groups and re-register the volume with an existing group or a PCI address'],
  ];
  for (const [what, device, problem, fix] of more) {
    it(`refuses ${what}, saying why and what to do`, () => {
      assert.throws(() => checkVfioDevice(volumeInput(mountInfo('vfiovol', device)), cfg), (e: Error) => {
        assert.ok(e instanceof VolumeError, String(e));
        assert.ok(e.problem.startsWith(`mount /data: ${problem}`), e.problem);
        assert.ok(e.fix.startsWith(fix), e.fix);
        return true;
      });
    });
  }

  it('reads sysfs under the configured root only', () => {
    assert.throws(() => checkVfioDevice(volumeInput(mountInfo('vfiovol', '3b:00.0')), parseRuntimeRsConfig({ sysfsRoot: path.join(root, 'nothing') }, 't')),
      /no PCI function 0000:3b:00\.0 on this host/);
  });
});

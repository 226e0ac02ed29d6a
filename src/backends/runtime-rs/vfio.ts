// vfiovol -> Dragonball HostDeviceConfig for every passable function of the IOMMU group, after
// checking sysfs: the group exists, the function is in it, and it is bound to vfio-pci.
import * as fs from 'fs';
import * as path from 'path';
import type { BackendLogger } from '../backend';
import { messageOf } from '../../volumes/types';
import type { RuntimeRsConfig } from './config';
import type { HostDeviceConfig } from './dragonball';
import { predictStorage, virtPathForIndex } from './guest';
import { busSlotFunc, isDbdf, parseVfioDevice, SKIPPED_CLASSES, skippedClass, Sysfs } from './pci';
import { rewrittenOptions, volumeError, type DeviceEntry, type Placement, type VfioSpec, type VolumeInput } from './volume';

export const VFIO_PCI_DRIVER = 'vfio-pci';
/** Drivers that leave a VFIO group viable for a function that is not passed through. */
const GROUP_SAFE_DRIVERS = [VFIO_PCI_DRIVER, 'pci-stub'];
/** runtime-rs names vfiovol host devices vfio_vol_<group>_<n>, at most 31 characters. */
export const HOSTDEV_PREFIX = 'vfio_vol';
const MAX_HOSTDEV_ID = 31;
/** The sysfs path Dragonball opens: always the host's /sys, whatever sysfsRoot we read. */
const VMM_SYSFS_DEVICES = '/sys/bus/pci/devices';

export interface VfioFunction {
  dbdf: string;
  vendor: number;
  device: number;
}

export interface VfioGroupFacts {
  group: string;
  /** Passable functions, the requested one first. */
  functions: VfioFunction[];
}

function bindFix(sysfs: Sysfs, dbdf: string, current: string | undefined): string {
  const dev = sysfs.deviceDir(dbdf);
  const unbind = current ? `echo ${dbdf} > ${path.join(dev, 'driver/unbind')}; ` : '';
  return `bind it to vfio-pci: ${unbind}echo vfio-pci > ${path.join(dev, 'driver_override')}; echo ${dbdf} > ${path.join(sysfs.root, 'bus/pci/drivers/vfio-pci/bind')}`;
}

/** Host checks runtime-rs makes, plus the driver check it leaves to the VMM; returns the group's functions. */
export function checkVfioDevice(v: VolumeInput, cfg: RuntimeRsConfig, log?: BackendLogger): VfioGroupFacts {
  const sysfs = new Sysfs(cfg.sysfsRoot);
  const { group, requested } = iommuGroupFor(v, sysfs);
  // Sorted for a stable spec (runtime-rs uses readdir order); the requested function goes first
  // because Dragonball inserts only the first device of the list.
  const functions: VfioFunction[] = [];
  // Stryker disable next-line MethodExpression: Node's readdirSync already lists names sorted (libuv sorts scandir's result); the sort keeps the order from resting on that
  for (const dbdf of fs.readdirSync(sysfs.groupDevicesDir(group)).sort()) {
    const f = passThroughFunction(v, sysfs, group, requested, dbdf, log);
    if (f) functions.push(f);
  }
  if (functions.length === 0) {
    throw volumeError(v, `VFIO group ${group} has no function that can be passed through`, 'register a group holding the PCI function to pass through', sysfs.groupDevicesDir(group));
  }
  const rank = (f: VfioFunction): number => (f.dbdf === requested ? 0 : 1);
  functions.sort((a, b) => rank(a) - rank(b));
  return { group, functions };
}

/** The IOMMU group the volume's device names (a PCI function's group, or /dev/vfio/N), checked to exist. */
function iommuGroupFor(v: VolumeInput, sysfs: Sysfs): { group: string; requested?: string } {
  const target = parseVfioDevice(v.info.device);
  if (!target) {
    throw volumeError(
      v,
      `vfiovol device ${JSON.stringify(v.info.device)} is not a PCI address (BB:DD.F or DDDD:BB:DD.F) or a VFIO group (/dev/vfio/N)`,
      `re-register the volume with "device" set to the function's address, e.g. 0000:3b:00.1 (see lspci -D)`,
    );
  }
  if (target.kind !== 'bdf') {
    const group = target.group;
    if (!sysfs.exists(sysfs.groupDevicesDir(group))) {
      throw volumeError(v, `VFIO group ${group} does not exist`, 'check ls /sys/kernel/iommu_groups and re-register the volume with an existing group or a PCI address', sysfs.groupDevicesDir(group));
    }
    return { group };
  }
  const requested = target.dbdf;
  if (!sysfs.exists(sysfs.deviceDir(requested))) {
    throw volumeError(v, `no PCI function ${requested} on this host`, 'check the address with lspci -D and re-register the volume', sysfs.deviceDir(requested));
  }
  const group = sysfs.iommuGroupOf(requested);
  if (group === undefined) {
    throw volumeError(
      v,
      `PCI function ${requested} has no IOMMU group`,
      `enable the IOMMU (intel_iommu=on or amd_iommu=on on the kernel command line, reboot), then ${bindFix(sysfs, requested, sysfs.driverOf(requested))}`,
      path.join(sysfs.deviceDir(requested), 'iommu_group'),
    );
  }
  const member = path.join(sysfs.groupDevicesDir(group), requested);
  if (!sysfs.exists(member)) {
    throw volumeError(
      v,
      `PCI function ${requested} is not listed in its IOMMU group ${group}`,
      'the device was probably removed or re-enumerated; rescan (echo 1 > /sys/bus/pci/rescan) and check lspci -D',
      member,
    );
  }
  return { group, requested };
}

/**
 * One function of the group: passed through (bound to vfio-pci), left on the host (a bridge or an
 * audio function, which must then be released by its host driver), or refused with the fix.
 */
function passThroughFunction(v: VolumeInput, sysfs: Sysfs, group: string, requested: string | undefined, dbdf: string, log?: BackendLogger): VfioFunction | undefined {
  if (!isDbdf(dbdf)) {
    throw volumeError(v, `IOMMU group ${group} holds ${dbdf}, which is not a PCI function (mediated devices are not supported)`, 'use a group of PCI functions only', path.join(sysfs.groupDevicesDir(group), dbdf));
  }
  const attr = (name: string): number => {
    try {
      return sysfs.hexAttr(dbdf, name);
    } catch (e) {
      throw volumeError(v, `cannot read the ${name} of PCI function ${dbdf}: ${messageOf(e)}`, 'check that sysfs is mounted and the device is present', path.join(sysfs.deviceDir(dbdf), name), e);
    }
  };
  const skip = skippedClass(attr('class'));
  if (skip) {
    if (dbdf === requested) {
      throw volumeError(v, `PCI function ${dbdf} is ${skip}, which cannot be passed through`, 'register the function you want in the guest (lspci -D -s <address>)');
    }
    // Left out of the VM, but the kernel opens a VFIO group only when no function in it is held by
    // a host driver (bridges excepted), so an audio function must be released too.
    const held = sysfs.driverOf(dbdf);
    if (skip !== SKIPPED_CLASSES[0x0600] && held !== undefined && !GROUP_SAFE_DRIVERS.includes(held)) {
      throw volumeError(
        v,
        `IOMMU group ${group} is not usable by VFIO: PCI function ${dbdf} (${skip}) is bound to ${held}`,
        bindFix(sysfs, dbdf, held),
        path.join(sysfs.deviceDir(dbdf), 'driver'),
      );
    }
    // Stryker disable next-line StringLiteral: only the debug line's wording (its dbdf is checked)
    log?.debug('vfiovol: leaving a function of the IOMMU group out', { volume: v.volumePath, dbdf, why: skip });
    return undefined;
  }
  const driver = sysfs.driverOf(dbdf);
  if (driver !== VFIO_PCI_DRIVER) {
    const why = driver ? `bound to ${driver}` : 'not bound to any driver';
    const which = dbdf === requested ? `PCI function ${dbdf}` : `PCI function ${dbdf} (in IOMMU group ${group} with ${requested ?? 'the volume'})`;
    throw volumeError(v, `${which} is ${why}, not vfio-pci`, bindFix(sysfs, dbdf, driver), path.join(sysfs.deviceDir(dbdf), 'driver'));
  }
  return { dbdf, vendor: attr('vendor'), device: attr('device') };
}

export function hostDeviceConfigs(facts: VfioGroupFacts): HostDeviceConfig[] {
  return facts.functions.map((f, i) => ({
    hostdev_id: `${HOSTDEV_PREFIX}_${facts.group}_${i}`.slice(0, MAX_HOSTDEV_ID),
    sysfs_path: `${VMM_SYSFS_DEVICES}/${f.dbdf}`,
    dev_config: {
      bus_slot_func: busSlotFunc(f.dbdf),
      // Unsigned: device in the high 16 bits.
      vendor_device_id: (((f.device & 0xffff) << 16) | (f.vendor & 0xffff)) >>> 0,
      guest_dev_id: null,
      clique_id: null,
    },
  }));
}

/** The Dragonball configs and guest view for a checked vfiovol (pure). */
export function vfioDeviceEntry(v: VolumeInput, place: Placement, facts: VfioGroupFacts): DeviceEntry<VfioSpec> {
  const virtPath = virtPathForIndex(place.index);
  const ociOptions = rewrittenOptions(v.ociOptions, v.readOnly);
  // The function appears in the guest as virtio-blk on MMIO; runtime-rs has no /dev-destination case for VFIO.
  const storage = predictStorage({
    driver: 'mmioblk',
    source: virtPath,
    fsType: v.info.fsType,
    options: v.info.options.length > 0 ? v.info.options : ociOptions,
    readOnly: v.readOnly,
  });
  return {
    destination: v.destination,
    volumePath: v.volumePath,
    volumeType: v.info.volumeType,
    readOnly: v.readOnly,
    spec: { host_devices: hostDeviceConfigs(facts) },
    guest: { driver: 'mmioblk', virtPath },
    storage,
  };
}

export function buildVfioDevice(v: VolumeInput, cfg: RuntimeRsConfig, place: Placement, log?: BackendLogger): DeviceEntry<VfioSpec> {
  return vfioDeviceEntry(v, place, checkVfioDevice(v, cfg, log));
}

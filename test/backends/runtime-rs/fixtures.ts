// Test fixtures for the runtime-rs backend: a sysfs tree laid out like the kernel's
// (/sys/bus/pci/devices -> /sys/devices/..., iommu_group and driver links), and its volume input.
// Fixtures every suite uses (mountInfo, resolved, loggers) are in test/support/volumes.ts.
import * as fs from 'fs';
import * as path from 'path';
import type { MountInfo } from '../../../src/volumes/types';
import type { VolumeInput } from '../../../src/backends/runtime-rs/volume';

export interface PciFunction {
  dbdf: string;
  vendor: string;
  device: string;
  /** 24-bit class as sysfs prints it, e.g. 0x060000. */
  class: string;
  /** IOMMU group; undefined = no iommu_group link (IOMMU off). */
  group?: string;
  /** Bound driver; undefined = none. */
  driver?: string;
  /** Listed under /kernel/iommu_groups/<g>/devices (default true). */
  listedInGroup?: boolean;
}

/** Builds <root>/devices/pci0000:00/<dbdf>, <root>/bus/pci/devices/<dbdf> links, drivers and iommu_groups. */
export function buildSysfs(root: string, functions: PciFunction[]): void {
  for (const f of functions) {
    const real = path.join(root, 'devices/pci0000:00', f.dbdf);
    fs.mkdirSync(real, { recursive: true });
    fs.writeFileSync(path.join(real, 'vendor'), `${f.vendor}\n`);
    fs.writeFileSync(path.join(real, 'device'), `${f.device}\n`);
    fs.writeFileSync(path.join(real, 'class'), `${f.class}\n`);
    const busDir = path.join(root, 'bus/pci/devices');
    fs.mkdirSync(busDir, { recursive: true });
    fs.symlinkSync(path.join('../../../devices/pci0000:00', f.dbdf), path.join(busDir, f.dbdf));
    if (f.driver) {
      fs.mkdirSync(path.join(root, 'bus/pci/drivers', f.driver), { recursive: true });
      fs.symlinkSync(path.join('../../../bus/pci/drivers', f.driver), path.join(real, 'driver'));
    }
    if (f.group !== undefined) {
      const groupDevices = path.join(root, 'kernel/iommu_groups', f.group, 'devices');
      fs.mkdirSync(groupDevices, { recursive: true });
      fs.symlinkSync(path.join('../../../kernel/iommu_groups', f.group), path.join(real, 'iommu_group'));
      if (f.listedInGroup !== false) {
        fs.symlinkSync(path.join('../../../../devices/pci0000:00', f.dbdf), path.join(groupDevices, f.dbdf));
      }
    }
  }
}

export function volumeInput(info: MountInfo, over: Partial<VolumeInput> = {}): VolumeInput {
  return {
    volumePath: '/kubelet/vol-1',
    destination: '/data',
    info,
    file: '/tmp/registry/L2t1YmVsZXQvdm9sLTE=/mountInfo.json',
    readOnly: false,
    ociOptions: [],
    ...over,
  };
}

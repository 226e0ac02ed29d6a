// A sysfs tree laid out like the kernel's (/sys/bus/pci/devices -> /sys/devices/..., iommu_group and
// driver links) for the vfiovol host checks, and the PCI functions the vfio suites share.
import * as fs from 'fs';
import * as path from 'path';

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

/** IOMMU group 7: a host bridge and an audio function (both stay on the host) beside two passable functions. */
export const GROUP_7: readonly PciFunction[] = [
  { dbdf: '0000:00:00.0', vendor: '0x8086', device: '0x3ec2', class: '0x060000', group: '7' },
  { dbdf: '0000:3b:00.0', vendor: '0x1af4', device: '0x1042', class: '0x010000', group: '7', driver: 'vfio-pci' },
  { dbdf: '0000:3b:00.1', vendor: '0x10de', device: '0x10f0', class: '0x040300', group: '7', driver: 'vfio-pci' },
  { dbdf: '0000:3b:00.2', vendor: '0x144d', device: '0xa808', class: '0x010802', group: '7', driver: 'vfio-pci' },
];

/** Group 8: still bound to the host's nvme driver. */
export const NVME_BOUND: PciFunction = { dbdf: '0000:5e:00.0', vendor: '0x144d', device: '0xa808', class: '0x010802', group: '8', driver: 'nvme' };

/** No IOMMU group (IOMMU off). */
export const NO_IOMMU: PciFunction = { dbdf: '0000:60:00.0', vendor: '0x1af4', device: '0x1042', class: '0x010000', driver: 'vfio-pci' };

/** Links to group 10 but is not listed in it. */
export const NOT_LISTED: PciFunction = { dbdf: '0000:61:00.0', vendor: '0x1af4', device: '0x1042', class: '0x010000', group: '10', driver: 'vfio-pci', listedInGroup: false };

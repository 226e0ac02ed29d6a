// directvol -> Dragonball virtio-blk BlockDeviceConfigInfo, after checking the device on the host.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { kindOf } from '../../volumes/device';
import { devNumberOf } from '../../volumes/host-device';
import { type HostUseOptions, refuseHostUse } from '../../volumes/in-use';
import { VolumeError } from '../../volumes/types';
import type { BackendLogger } from '../backend';
import type { RuntimeRsConfig } from './config';
import { rateLimiterFor, type BlockDeviceConfigInfo } from './dragonball';
import { agentDriverFor, predictStorage, virtPathForIndex } from './guest';
import { rewrittenOptions, volumeError, type DeviceEntry, type Placement, type VolumeInput } from './volume';

export interface BlockHostFacts {
  kind: 'file' | 'block';
  /** The host reports the block device read-only (BLKROGET). */
  hostReadOnly: boolean;
}

/** The host's read-only flag of a block device (what BLKROGET returns); undefined when it cannot be read. */
export type ReadOnlyProbe = (device: string, rdev: number) => boolean | undefined;

/** BLKROGET without an exec: the kernel's /sys/dev/block/<major>:<minor>/ro says the same (blockdev as fallback). */
export const hostReadOnly: ReadOnlyProbe = (device, rdev) => {
  try {
    const v = fs.readFileSync(`/sys/dev/block/${devNumberOf(BigInt(rdev))}/ro`, 'utf8').trim();
    // Stryker disable next-line ConditionalExpression: the kernel writes only 0 or 1 there; the guard is for a sysfs that is not the kernel's
    if (v === '0' || v === '1') return v === '1';
  } catch { /* no sysfs here: ask the device */ }
  try {
    const out = execFileSync('blockdev', ['--getro', device], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return out.trim() === '1';
  } catch {
    return undefined;
  }
};

/** Host checks runtime-rs makes (stat: regular file or block device; BLKROGET), with errors that say the fix. */
/** `hostUse`: shared by a Create's volumes (one loop-device scan for all, see LoopTable). */
export function checkBlockDevice(v: VolumeInput, log?: BackendLogger, probe: ReadOnlyProbe = hostReadOnly, hostUse: HostUseOptions = {}): BlockHostFacts {
  const device = v.info.device;
  const reAdd = `fix the device and re-register the volume: katavol direct-volume add ${v.volumePath} '{"volume-type":"directvol","device":"<image file or block device>","fstype":"${v.info.fsType || 'ext4'}"}'`;
  if (!device.startsWith('/')) {
    throw volumeError(v, `directvol device ${JSON.stringify(device)} is not an absolute path`, reAdd);
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(device);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const problem = err.code === 'ENOENT'
      ? `directvol device ${device} does not exist`
      : `cannot stat directvol device ${device} (${err.code ?? err.message})`;
    throw volumeError(v, problem, err.code === 'ENOENT' ? `create the image or attach the disk, or ${reAdd}` : reAdd);
  }
  if (!st.isFile() && !st.isBlockDevice()) {
    throw volumeError(v, `directvol device ${device} is ${kindOf(st)}, not a regular file or block device`, reAdd);
  }
  const ro = st.isFile() ? false : probe(device, st.rdev);
  // The guest kernel mounts what the VM is given: nothing on the host may write it meanwhile.
  try {
    refuseHostUse({ volumePath: v.volumePath, device, readOnly: v.readOnly || ro === true }, hostUse);
  } catch (e) {
    // Stryker disable next-line ConditionalExpression: refuseHostUse throws only VolumeErrors; anything else is passed on as is
    if (e instanceof VolumeError) throw volumeError(v, e.problem, e.fix);
    throw e;
  }
  if (st.isFile()) return { kind: 'file', hostReadOnly: false };
  if (ro === undefined) {
    // runtime-rs also only warns: the device is still usable, just without the host's read-only hint.
    log?.warn('cannot read the read-only flag (BLKROGET) of a directvol block device; assuming writable', { volume: v.volumePath, device });
  } else if (ro && !v.readOnly) {
    log?.info('host reports the block device read-only (BLKROGET); the volume is attached read-only', { volume: v.volumePath, device, destination: v.destination });
  }
  return { kind: 'block', hostReadOnly: ro === true };
}

/** The Dragonball config and guest view for a checked directvol (pure). */
export function blockDeviceEntry(v: VolumeInput, cfg: RuntimeRsConfig, place: Placement, host: BlockHostFacts): DeviceEntry<BlockDeviceConfigInfo> {
  const readOnly = v.readOnly || host.hostReadOnly;
  const driver = agentDriverFor(cfg.blockDeviceDriver);
  const virtPath = virtPathForIndex(place.index);
  const spec: BlockDeviceConfigInfo = {
    drive_id: place.driveId,
    device_type: 'RawBlock',
    path_on_host: v.info.device,
    is_root_device: false,
    part_uuid: null,
    is_read_only: readOnly,
    is_direct: cfg.blockDeviceCacheDirect,
    no_drop: false,
    // runtime-rs leaves these at Dragonball's defaults (1/256); we carry the configured values.
    num_queues: cfg.numQueues,
    queue_size: cfg.queueSize,
    rate_limiter: rateLimiterFor(cfg),
    use_shared_irq: null,
    use_generic_irq: null,
    use_pci_bus: driver === 'blk' ? true : null,
  };
  const storage = predictStorage({
    driver,
    // The PCI path of a blk device is only known after hot-plug.
    source: driver === 'mmioblk' ? virtPath : undefined,
    fsType: v.info.fsType,
    // Raw block always uses the mountInfo options, even when empty.
    options: v.info.options,
    readOnly,
    devBind: { destination: v.destination, ociOptions: rewrittenOptions(v.ociOptions, readOnly) },
  });
  return {
    destination: v.destination,
    volumePath: v.volumePath,
    volumeType: v.info.volumeType,
    readOnly,
    spec,
    guest: { driver, virtPath },
    storage,
  };
}

export function buildBlockDevice(v: VolumeInput, cfg: RuntimeRsConfig, place: Placement, log?: BackendLogger, probe?: ReadOnlyProbe, hostUse?: HostUseOptions): DeviceEntry<BlockDeviceConfigInfo> {
  return blockDeviceEntry(v, cfg, place, checkBlockDevice(v, log, probe, hostUse));
}

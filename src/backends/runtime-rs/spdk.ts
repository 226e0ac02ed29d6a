// spdkvol -> Dragonball vhost-user-blk BlockDeviceConfigInfo (device_type Spdk, always MMIO).
import * as fs from 'fs';
import type { BackendLogger } from '../backend';
import { MAX_NUM_QUEUES, MAX_QUEUE_SIZE, type RuntimeRsConfig } from './config';
import { rateLimiterFor, type BlockDeviceConfigInfo } from './dragonball';
import { agentDriverFor, predictStorage, virtPathForIndex } from './guest';
import { rewrittenOptions, volumeError, type DeviceEntry, type Placement, type VolumeInput } from './volume';

export const SPDK_SCHEME = 'spdk://';

export interface SpdkQueues {
  numQueues?: number;
  queueSize?: number;
}

/** The socket path without the scheme (a registered device may already carry `spdk://`). */
export function spdkSocketPath(device: string): string {
  return device.startsWith(SPDK_SCHEME) ? device.slice(SPDK_SCHEME.length) : device;
}

/** `socket_path` as Dragonball takes it: the scheme added exactly once. */
export function spdkPathOnHost(device: string): string {
  return SPDK_SCHEME + spdkSocketPath(device);
}

function queueValue(v: VolumeInput, key: string, max: number): number | undefined {
  const raw = v.info.metadata[key];
  if (raw === undefined) return undefined;
  // Rust's usize/u16 parsing: ASCII digits, optional leading '+', no spaces.
  const n = /^\+?[0-9]+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    throw volumeError(
      v,
      `metadata ${key}=${JSON.stringify(raw)} is not a whole number from 1 to ${max}`,
      `re-register the volume with a valid value, e.g. "metadata":{"${key}":"${key === 'num_queues' ? 1 : 256}"}, or leave it out to use the configured default`,
    );
  }
  return n;
}

/** num_queues / queue_size from mountInfo metadata (runtime-rs parses them, then drops them before Dragonball). */
export function spdkQueuesFromMetadata(v: VolumeInput): SpdkQueues {
  return {
    numQueues: queueValue(v, 'num_queues', MAX_NUM_QUEUES),
    queueSize: queueValue(v, 'queue_size', MAX_QUEUE_SIZE),
  };
}

/** Host checks: spoolvol refused (Dragonball cannot open spool://), the socket must be an absolute path to a unix socket. */
export function checkSpdkSocket(v: VolumeInput): string {
  if (v.info.volumeType === 'spoolvol') {
    throw volumeError(
      v,
      'spoolvol is not supported with Dragonball (its vhost-user block device accepts only spdk:// sockets and fails on spool://)',
      `register the vhost-user socket as spdkvol instead: katavol direct-volume add ${v.volumePath} '{"volume-type":"spdkvol","device":"${spdkSocketPath(v.info.device)}","fstype":"${v.info.fsType || 'ext4'}"}'`,
    );
  }
  const socket = spdkSocketPath(v.info.device);
  const fix = 'start the SPDK vhost target for this volume (or fix "device" in mountInfo.json to the vhost-user-blk socket path, e.g. /var/tmp/vhost.0)';
  if (!socket.startsWith('/')) {
    throw volumeError(v, `spdkvol device ${JSON.stringify(v.info.device)} is not an absolute socket path`, fix);
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(socket);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw volumeError(v, err.code === 'ENOENT' ? `spdkvol socket ${socket} does not exist` : `cannot stat spdkvol socket ${socket} (${err.code ?? err.message})`, fix);
  }
  if (!st.isSocket()) {
    const kind = st.isDirectory() ? 'a directory' : st.isFile() ? 'a regular file' : 'not a socket';
    throw volumeError(v, `spdkvol socket ${socket} is ${kind}, not a unix socket`, fix);
  }
  return socket;
}

/** The Dragonball config and guest view for a checked spdkvol (pure). */
export function spdkDeviceEntry(v: VolumeInput, cfg: RuntimeRsConfig, place: Placement, queues: SpdkQueues): DeviceEntry<BlockDeviceConfigInfo> {
  const driver = agentDriverFor(cfg.blockDeviceDriver);
  const virtPath = virtPathForIndex(place.index);
  const spec: BlockDeviceConfigInfo = {
    drive_id: place.driveId,
    device_type: 'Spdk',
    path_on_host: spdkPathOnHost(v.info.device),
    is_root_device: false,
    part_uuid: null,
    // runtime-rs never marks vhost-user devices read-only; we do when the volume is read-only.
    is_read_only: v.readOnly,
    is_direct: cfg.blockDeviceCacheDirect,
    no_drop: false,
    num_queues: queues.numQueues ?? cfg.numQueues,
    queue_size: queues.queueSize ?? cfg.queueSize,
    rate_limiter: rateLimiterFor(cfg),
    use_shared_irq: null,
    use_generic_irq: null,
    // vhost-user block devices are always attached on MMIO.
    use_pci_bus: null,
  };
  const ociOptions = rewrittenOptions(v.ociOptions, v.readOnly);
  const storage = predictStorage({
    driver,
    source: virtPath,
    fsType: v.info.fsType,
    options: v.info.options.length > 0 ? v.info.options : ociOptions,
    readOnly: v.readOnly,
    devBind: { destination: v.destination, ociOptions },
  });
  return {
    destination: v.destination,
    volumePath: v.volumePath,
    volumeType: v.info.volumeType,
    readOnly: v.readOnly,
    spec,
    guest: { driver, virtPath },
    storage,
  };
}

export function buildSpdkDevice(v: VolumeInput, cfg: RuntimeRsConfig, place: Placement, _log?: BackendLogger): DeviceEntry<BlockDeviceConfigInfo> {
  checkSpdkSocket(v);
  return spdkDeviceEntry(v, cfg, place, spdkQueuesFromMetadata(v));
}

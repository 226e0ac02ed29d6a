// Dragonball's device configuration types as serde serialises them (field names = Rust field names,
// Option::None = null), and the pieces runtime-rs fills from its configuration.
import type { RuntimeRsConfig } from './config';

/** Dragonball `BlockDeviceType` (serde unit variants serialise as their names). */
export type BlockDeviceType = 'RawBlock' | 'Spdk' | 'Spool' | 'Unknown';

export interface TokenBucketConfigInfo {
  size: number;
  one_time_burst: number;
  /** Milliseconds to refill `size` tokens. */
  refill_time: number;
}

export interface RateLimiterConfigInfo {
  bandwidth: TokenBucketConfigInfo;
  ops: TokenBucketConfigInfo;
}

/** Dragonball `BlockDeviceConfigInfo` (virtio-blk and vhost-user-blk). `sparse` is serde(default) and omitted (false). */
export interface BlockDeviceConfigInfo {
  drive_id: string;
  device_type: BlockDeviceType;
  path_on_host: string;
  is_root_device: boolean;
  part_uuid: string | null;
  is_read_only: boolean;
  is_direct: boolean;
  no_drop: boolean;
  num_queues: number;
  queue_size: number;
  rate_limiter: RateLimiterConfigInfo | null;
  use_shared_irq: boolean | null;
  use_generic_irq: boolean | null;
  use_pci_bus: boolean | null;
}

/** Dragonball `VfioPciDeviceConfig`. */
export interface VfioPciDeviceConfig {
  /** "BB:DD.F", no domain. */
  bus_slot_func: string;
  /** (device << 16) | vendor. */
  vendor_device_id: number;
  /** Guest PCI slot; chosen by Dragonball at hot-plug. */
  guest_dev_id: number | null;
  clique_id: number | null;
}

/** Dragonball `HostDeviceConfig`. */
export interface HostDeviceConfig {
  hostdev_id: string;
  sysfs_path: string;
  dev_config: VfioPciDeviceConfig;
}

/** runtime-rs `DEFAULT_RATE_LIMITER_REFILL_TIME`: buckets refill once a second. */
export const RATE_LIMITER_REFILL_TIME_MS = 1000;

/** The rate limiter runtime-rs always attaches (size 0 = unlimited), from the disk_rate_limiter_* settings. */
export function rateLimiterFor(cfg: RuntimeRsConfig): RateLimiterConfigInfo {
  return {
    bandwidth: {
      size: cfg.diskRateLimiterBwMaxRate,
      one_time_burst: cfg.diskRateLimiterBwOneTimeBurst,
      refill_time: RATE_LIMITER_REFILL_TIME_MS,
    },
    ops: {
      size: cfg.diskRateLimiterOpsMaxRate,
      one_time_burst: cfg.diskRateLimiterOpsOneTimeBurst,
      refill_time: RATE_LIMITER_REFILL_TIME_MS,
    },
  };
}

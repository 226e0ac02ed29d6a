// Runtime settings that shape the Dragonball device specs: the `runtimeRs` object of katavol's
// config.json. Names follow Kata's configuration.toml keys in camelCase; defaults are Kata's.

/** Block drivers Dragonball can attach (runtime-rs maps them to the agent drivers blk / mmioblk). */
export const BLOCK_DRIVERS = ['virtio-blk-pci', 'virtio-blk-mmio'] as const;
export type BlockDriver = (typeof BLOCK_DRIVERS)[number];

export interface RuntimeRsConfig {
  /** Kata `block_device_driver`; Dragonball's default is virtio-blk-pci. */
  blockDeviceDriver: BlockDriver;
  /** Kata `block_device_cache_direct` (O_DIRECT on the host file); Kata default false. */
  blockDeviceCacheDirect: boolean;
  /** Kata `disk_rate_limiter_bw_max_rate` in bytes/s, 0 = unlimited. */
  diskRateLimiterBwMaxRate: number;
  /** Kata `disk_rate_limiter_bw_one_time_burst` in bytes, 0 = none. */
  diskRateLimiterBwOneTimeBurst: number;
  /** Kata `disk_rate_limiter_ops_max_rate` in operations/s, 0 = unlimited. */
  diskRateLimiterOpsMaxRate: number;
  /** Kata `disk_rate_limiter_ops_one_time_burst` in operations, 0 = none. */
  diskRateLimiterOpsOneTimeBurst: number;
  /** Virtio queues per block device (Dragonball default 1). */
  numQueues: number;
  /** Virtio queue depth (Dragonball default 256). */
  queueSize: number;
  /** Where sysfs is read (tests point this at a fixture tree); specs always name /sys paths. */
  sysfsRoot: string;
}

export const DEFAULT_RUNTIME_RS_CONFIG: Readonly<RuntimeRsConfig> = Object.freeze({
  blockDeviceDriver: 'virtio-blk-pci',
  blockDeviceCacheDirect: false,
  diskRateLimiterBwMaxRate: 0,
  diskRateLimiterBwOneTimeBurst: 0,
  diskRateLimiterOpsMaxRate: 0,
  diskRateLimiterOpsOneTimeBurst: 0,
  numQueues: 1,
  queueSize: 256,
  sysfsRoot: '/sys',
});

/**
 * Queue limits: Dragonball's queue_size is a u16; num_queues is a usize there, but virtio-blk's
 * num_queues config field is 16-bit, so more could never work. (Rates are u64; JSON numbers are
 * exact only to 2^53, which Number.isSafeInteger enforces.)
 */
export const MAX_QUEUE_SIZE = 0xffff;
export const MAX_NUM_QUEUES = 0xffff;

export class RuntimeRsConfigError extends Error {
  constructor(readonly file: string, readonly key: string, problem: string) {
    super(`katavol config ${file}: key "runtimeRs${key ? '.' + key : ''}": ${problem}`);
    this.name = 'RuntimeRsConfigError';
  }
}

type Kind = 'driver' | 'bool' | 'count' | 'positive' | 'absPath';
const KEYS: Record<keyof RuntimeRsConfig, { kind: Kind; max?: number }> = {
  blockDeviceDriver: { kind: 'driver' },
  blockDeviceCacheDirect: { kind: 'bool' },
  diskRateLimiterBwMaxRate: { kind: 'count' },
  diskRateLimiterBwOneTimeBurst: { kind: 'count' },
  diskRateLimiterOpsMaxRate: { kind: 'count' },
  diskRateLimiterOpsOneTimeBurst: { kind: 'count' },
  numQueues: { kind: 'positive', max: MAX_NUM_QUEUES },
  queueSize: { kind: 'positive', max: MAX_QUEUE_SIZE },
  sysfsRoot: { kind: 'absPath' },
};

/** Parses config.json's `runtimeRs` object (undefined/null = all defaults). Errors name the file and key. */
export function parseRuntimeRsConfig(obj: unknown, file: string): RuntimeRsConfig {
  const cfg: RuntimeRsConfig = { ...DEFAULT_RUNTIME_RS_CONFIG };
  if (obj === undefined || obj === null) return cfg;
  if (typeof obj !== 'object' || Array.isArray(obj)) {
    throw new RuntimeRsConfigError(file, '', `must be a JSON object like {"blockDeviceDriver":"virtio-blk-mmio"}, got ${JSON.stringify(obj)}`);
  }
  const known = Object.keys(KEYS);
  for (const [key, value] of Object.entries(obj as Record<string, unknown>)) {
    if (!(key in KEYS)) {
      throw new RuntimeRsConfigError(file, key, `unknown key; supported keys are ${known.join(', ')}`);
    }
    const k = key as keyof RuntimeRsConfig;
    const spec = KEYS[k];
    const bad = (want: string): never => {
      throw new RuntimeRsConfigError(file, key, `must be ${want}, got ${JSON.stringify(value)}`);
    };
    switch (spec.kind) {
      case 'driver':
        if (!BLOCK_DRIVERS.includes(value as BlockDriver)) {
          bad(`one of ${BLOCK_DRIVERS.join(', ')} (the block drivers Dragonball supports)`);
        }
        cfg.blockDeviceDriver = value as BlockDriver;
        break;
      case 'bool':
        if (typeof value !== 'boolean') bad('true or false');
        (cfg as unknown as Record<string, unknown>)[k] = value;
        break;
      case 'count':
        if (!Number.isSafeInteger(value) || (value as number) < 0) bad('a whole number >= 0 (0 = unlimited)');
        (cfg as unknown as Record<string, unknown>)[k] = value;
        break;
      case 'positive':
        if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > spec.max!) {
          bad(`a whole number from 1 to ${spec.max}`);
        }
        (cfg as unknown as Record<string, unknown>)[k] = value;
        break;
      case 'absPath':
        if (typeof value !== 'string' || !value.startsWith('/')) bad('an absolute path');
        cfg.sysfsRoot = (value as string).replace(/(.)\/+$/, '$1');
        break;
    }
  }
  return cfg;
}

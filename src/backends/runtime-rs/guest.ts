// What the guest sees of a device (agent driver, predicted /dev/vdX) and the Kata agent Storage that
// runtime-rs builds for it, predicted from the same rules runtime-rs applies.
import type { BlockDriver } from './config';

/** Kata agent block drivers that Dragonball devices appear as. */
export type AgentBlockDriver = 'blk' | 'mmioblk';

export interface GuestView {
  driver: AgentBlockDriver;
  /** Predicted guest device node (see predictVirtPath for why it is a prediction). */
  virtPath?: string;
}

/** Predicted Kata agent Storage (serde names of runtime-rs `agent::Storage`); mount_point is random and left out. */
export interface StorageView {
  driver: AgentBlockDriver;
  /** virt_path for mmioblk; for blk the PCI path known only after hot-plug, so absent. */
  source?: string;
  fs_type: string;
  options: string[];
}

export function agentDriverFor(driver: BlockDriver): AgentBlockDriver {
  return driver === 'virtio-blk-mmio' ? 'mmioblk' : 'blk';
}

/** Guest disk name for a device index, as runtime-rs names them: 0 -> vda, 25 -> vdz, 26 -> vdaa. */
export function virtPathForIndex(index: number): string {
  if (!Number.isSafeInteger(index) || index < 0) throw new RangeError(`device index must be a whole number >= 0, got ${index}`);
  let name = '';
  let n = index;
  for (;;) {
    name = String.fromCharCode(97 + (n % 26)) + name;
    n = Math.floor(n / 26) - 1;
    if (n < 0) break;
  }
  return `/dev/vd${name}`;
}

/** runtime-rs drops the bind flags from what the agent mounts (the guest mount is not a bind mount). */
export function filterBlockStorageOptions(options: readonly string[]): string[] {
  return options.filter((o) => o !== 'bind' && o !== 'rbind');
}

/** True for a destination under /dev, where runtime-rs bind-mounts the device node itself. */
export function isDevDestination(destination: string): boolean {
  return destination === '/dev' || destination.startsWith('/dev/');
}

export interface StorageInput {
  driver: AgentBlockDriver;
  source?: string;
  fsType: string;
  /** The options runtime-rs chooses (mountInfo options, or OCI options for SPDK/VFIO when those are empty). */
  options: readonly string[];
  readOnly: boolean;
  /** Destination under /dev gets fs_type "bind" plus the OCI options (raw block and SPDK only). */
  devBind?: { destination: string; ociOptions: readonly string[] };
}

export function predictStorage(input: StorageInput): StorageView {
  const options = filterBlockStorageOptions(input.options);
  if (input.readOnly && !options.includes('ro')) options.push('ro');
  let fsType = input.fsType;
  if (input.devBind && isDevDestination(input.devBind.destination)) {
    fsType = 'bind';
    options.push(...input.devBind.ociOptions);
  }
  // Key order is fixed (driver, source, fs_type, options) so the annotation JSON is stable.
  return input.source !== undefined
    ? { driver: input.driver, source: input.source, fs_type: fsType, options }
    : { driver: input.driver, fs_type: fsType, options };
}

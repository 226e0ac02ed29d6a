// What `katavol csi` is started with; parsed by src/cli/csi.ts, read by every service.

export const DEFAULT_DRIVER_NAME = 'directvolume.katavol.io';
export const DEFAULT_KUBELET_DIR = '/var/lib/kubelet';
/** Largest volume CreateVolume accepts unless --max-volume-size says otherwise (Kata's default too). */
export const DEFAULT_MAX_VOLUME_SIZE = 2 ** 40;

export interface CsiOptions {
  /** unix:///path/csi.sock (or a bare absolute path). */
  endpoint: string;
  nodeId: string;
  driverName: string;
  /** Directory holding the volumes' image files. */
  storageDir: string;
  /** Directory holding one JSON record per volume (what survives a plugin restart). */
  stateDir: string;
  /** Staging and target paths must lie under it. */
  kubeletDir: string;
  /** Root of the direct-volume registry the targets are registered in. */
  volumeRoot: string;
  maxVolumeSize: number;
  version: string;
}

/** The socket path of a unix endpoint, or undefined when the endpoint is not one. */
export function socketPathOf(endpoint: string): string | undefined {
  const m = /^unix:\/\/(\/.*)$/.exec(endpoint) ?? /^(\/.*)$/.exec(endpoint);
  return m ? m[1] : undefined;
}

// Volume and backend fixtures every suite shares: registry entries as parsed, resolved mounts, and
// backend loggers (one that records what was logged, one that drops it).
import type { BackendLogger } from '../../src/backends/backend';
import type { MountInfo, OciMount, ResolvedVolume } from '../../src/volumes/types';

export function mountInfo(volumeType: MountInfo['volumeType'], device: string, extra: Partial<MountInfo> = {}): MountInfo {
  return { volumeType, device, fsType: 'ext4', metadata: {}, options: [], ...extra };
}

export function resolved(index: number, mount: OciMount, volumePath: string, info: MountInfo, readOnly = false): ResolvedVolume {
  return {
    index,
    mount,
    volumePath,
    entryDir: `/registry/${volumePath}`,
    file: `/registry/${volumePath}/mountInfo.json`,
    info,
    readOnly,
  };
}

export interface LogLine {
  level: string;
  msg: string;
  meta?: Record<string, unknown>;
}

export function recordingLog(): BackendLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (msg: string, meta?: Record<string, unknown>) => {
    lines.push({ level, msg, meta });
  };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A logger for code under test whose logging is not what the test checks. */
export const quietLog: BackendLogger = { debug() {}, info() {}, warn() {}, error() {} };

// The image file behind a directvol volume: created sparse at the exact size asked for, reused as it
// is when it exists, and given a filesystem only when it is blank. A filesystem, or any data katavol
// cannot identify, is never overwritten.
import * as fs from 'fs';
import * as path from 'path';
import { errnoOf } from '../volumes/files';
import { messageOf } from '../volumes/types';
import { runTool } from '../volumes/host-device';
import { failedPrecondition, internal, volumeStep, Status } from './errors';

/** Filesystems CreateVolume accepts: those the guest and the runc backend mount and mkfs knows. */
export const FS_TYPES = ['ext4', 'ext3', 'ext2', 'xfs'] as const;
/** Loop devices and filesystems work in 512-byte sectors; an image is a whole number of them. */
export const SECTOR = 512;

export function imagePath(storageDir: string, volumeId: string): string {
  return path.join(storageDir, `${volumeId}.img`);
}

/** Creates the image (sparse, `size` bytes) unless it exists; returns its current size. */
export function ensureImage(volumeId: string, file: string, size: number): { created: boolean; size: number } {
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const fd = fs.openSync(file, 'wx', 0o600);
    try {
      fs.ftruncateSync(fd, size);
      fs.fsyncSync(fd);
    } catch (e) {
      fs.closeSync(fd);
      fs.rmSync(file, { force: true });
      throw e;
    }
    fs.closeSync(fd);
    return { created: true, size };
  } catch (e) {
    if (errnoOf(e) !== 'EEXIST') {
      throw internal(volumeId, `cannot create the image ${file}: ${messageOf(e)}`, 'check that the --storage directory exists, is writable and has space', e);
    }
  }
  const st = fs.lstatSync(file);
  if (!st.isFile()) throw failedPrecondition(volumeId, `${file} exists but is not a regular file`, `move it away; katavol keeps the volume's image there`);
  return { created: false, size: st.size };
}

/** What blkid recognises on the image, or undefined when it finds no signature. */
function probe(volumeId: string, file: string): string | undefined {
  const r = volumeStep(volumeId, Status.INTERNAL, () => runTool(volumeId, 'blkid', ['-p', '-o', 'export', file], 'util-linux'));
  if (r.status === 2) return undefined;
  if (r.status !== 0) throw internal(volumeId, `${r.command} failed (exit ${r.status}): ${r.stderr}`, 'check the image file and util-linux');
  const kind = /^TYPE=(.*)$/m.exec(r.stdout)?.[1] ?? /^PTTYPE=(.*)$/m.exec(r.stdout)?.[1];
  return kind ?? 'unknown signature';
}

/** True when the first MiB of the file is all zero bytes (where every filesystem keeps its superblock). */
function headIsZero(file: string): boolean {
  const buf = Buffer.alloc(1 << 20);
  const fd = fs.openSync(file, 'r');
  try {
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n).every((b) => b === 0);
  } finally {
    fs.closeSync(fd);
  }
}

/** Makes the filesystem if the image is blank; refuses (never formats) when it holds anything else. */
export function ensureFilesystem(volumeId: string, file: string, fsType: string): 'formatted' | 'kept' {
  const found = probe(volumeId, file);
  if (found === fsType) return 'kept';
  if (found !== undefined) {
    throw failedPrecondition(volumeId, `the image ${file} holds ${found}, not the volume's ${fsType} filesystem; katavol never reformats a volume`,
      `copy the data off and delete the volume, or fix the StorageClass fstype`);
  }
  if (!headIsZero(file)) {
    throw failedPrecondition(volumeId, `the image ${file} holds data but no filesystem blkid recognises; katavol never formats over data`,
      `inspect it (e.g. with file or hexdump) and restore it, or delete the volume`);
  }
  const args = fsType.startsWith('ext') ? ['-q', '-F', '-m', '0', file] : ['-q', file];
  const r = volumeStep(volumeId, Status.INTERNAL, () => runTool(volumeId, `mkfs.${fsType}`, args, fsType === 'xfs' ? 'xfsprogs' : 'e2fsprogs'));
  if (r.status !== 0) throw internal(volumeId, `${r.command} failed (exit ${r.status}): ${r.stderr}`, 'check the image size (too small for the filesystem?) and the --storage directory');
  return 'formatted';
}

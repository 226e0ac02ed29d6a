// Volume fixtures for the volume/CLI tests (scratch dirs and snapshots: test/support/scratch.ts).
import * as fs from 'fs';
import * as path from 'path';

/** A regular file usable as a directvol device. */
export function imageFile(dir: string, name = 'disk.img', size = 1 << 20): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, '');
  fs.truncateSync(p, size);
  return p;
}

// Scratch directories and byte-exact snapshots of a directory tree: the fixtures every suite shares.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** A fresh private directory under the temp dir, named katavol-<tag>-XXXXXX; the caller removes it. */
export function scratchDir(tag = 'test'): string {
  return tmpDir(`katavol-${tag}-`);
}

/** The same with a name of the caller's choosing: <prefix>XXXXXX under the temp dir. */
export function tmpDir(prefix = 'katavol-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * A fresh private directory for sockets: /tmp/kv<tag>-XXXXXX, short on purpose (a socket path must fit
 * sun_path's 108 bytes, and the shim's sockets nest under it), hence /tmp itself rather than the temp dir.
 */
export function socketDir(tag = 's'): string {
  return fs.mkdtempSync(`/tmp/kv${tag}-`);
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Every entry under dir with its type, mode and content digest (files; images included) or target (symlinks). */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string, rel: string): void => {
    const st = fs.lstatSync(p);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) out[rel] = `link ${fs.readlinkSync(p)}`;
    else if (st.isDirectory()) {
      out[rel] = `dir ${mode}`;
      for (const n of fs.readdirSync(p).sort()) walk(path.join(p, n), rel ? `${rel}/${n}` : n);
    } else if (st.isFile()) out[rel] = `file ${mode} ${st.size} ${crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`;
    else out[rel] = `other ${mode} ${st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : 'device'}`;
  };
  if (fs.existsSync(dir)) walk(dir, '');
  return out;
}

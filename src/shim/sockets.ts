// Unix socket probes shared by start, delete and the daemon.
import * as fs from 'fs';
import * as net from 'net';

/** True when something accepts connections on the socket. */
export function canConnect(p: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(p);
    const t = setTimeout(() => { s.destroy(); resolve(false); }, timeoutMs);
    s.once('connect', () => { clearTimeout(t); s.destroy(); resolve(true); });
    s.once('error', () => { clearTimeout(t); resolve(false); });
  });
}

/** Removes a socket file nobody listens on any more (shims leave theirs behind). */
export async function removeIfDeadSocket(p: string): Promise<boolean> {
  if (p.startsWith('\0')) return false;
  try {
    if (!fs.lstatSync(p).isSocket()) return false;
  } catch {
    return false;
  }
  if (await canConnect(p)) return false;
  fs.rmSync(p, { force: true });
  return true;
}

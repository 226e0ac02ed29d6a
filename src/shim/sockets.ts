// Our socket's name, and unix socket probes shared by start, delete, the daemon and the reaper.
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import * as crypto from 'crypto';

/** Our socket: one katavol daemon per downstream daemon, so a pod that shares a shim shares ours. */
export function ourAddress(socketDir: string, downstreamAddress: string): string {
  const hash = crypto.createHash('sha256').update(downstreamAddress).digest('hex');
  return `unix://${path.join(socketDir, hash)}.sock`;
}

/** True when something accepts connections on the socket. */
export function canConnect(p: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const s = net.connect(p);
    // A unix connect succeeds or fails at once, but its callback runs in the loop phase after timers:
    // when this process was busy past the timeout, let that callback speak first (setImmediate runs
    // after it) rather than call a live socket dead.
    const t = setTimeout(() => setImmediate(() => settle(false)), timeoutMs);
    s.once('connect', () => settle(true));
    s.once('error', () => settle(false));
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

// Stopping a downstream shim daemon that nobody else will stop: after our daemon crashed (delete), or
// when our own start failed after the downstream start succeeded (containerd then never calls delete).
import * as fs from 'fs';
import { fullyExited, pidAlive, socketPath } from './state';
import { removeIfDeadSocket } from './sockets';
import type { Client } from '../ttrpc';
import { messageOf } from '../volumes/types';

const V2 = 'containerd.task.v2.Task';
const V3 = 'containerd.task.v3.Task';

/**
 * A task call of katavol's own, in the API version the downstream announced at start (a containerd
 * 2.x runc shim serves only v3, Kata only v2); on Unimplemented (code 12) the other version is tried,
 * for state written before the version was recorded or a downstream that changed under us.
 */
export async function callTask(c: Client, version: number | undefined, method: string, payload: Buffer, timeoutMs = 2000): Promise<Buffer> {
  const [first, second] = (version ?? 2) >= 3 ? [V3, V2] : [V2, V3];
  try {
    return await c.call(first, method, payload, { timeoutMs });
  } catch (e) {
    if ((e as { code?: number }).code !== 12) throw e;
    return c.call(second, method, payload, { timeoutMs });
  }
}

/**
 * Asks the downstream to shut down. With `force`, a daemon that stays (runc's shim answers Shutdown as a
 * no-op while it still tracks a task; runtime-rs ignores SIGTERM) is SIGKILLed by pid.
 */
export async function stopDownstream(id: string, address: string, opts: { pid?: number; force: boolean; version?: number }): Promise<string> {
  const sock = socketPath(address);
  const { Client } = await import('../ttrpc');
  const msgs = await import('./messages');
  let pid = opts.pid;
  const did: string[] = [];
  try {
    const c = await Client.connect(sock);
    try {
      if (!pid && opts.force) {
        const r = await callTask(c, opts.version, 'Connect', msgs.encodeConnectRequest(id));
        pid = msgs.decodeConnectResponse(r).shimPid || undefined;
      }
      await callTask(c, opts.version, 'Shutdown', msgs.encodeShutdownRequest(id, opts.force)).catch(() => undefined);
      did.push(`sent Shutdown to downstream shim${pid ? ` pid ${pid}` : ''}`);
    } finally {
      c.close();
    }
  } catch (e) {
    did.push(`downstream not reachable (${messageOf(e)})`);
  }
  // A shim that accepts but does not answer (stopped, or stuck starting) still has to go: find it by
  // the socket it listens on.
  if (opts.force && !pid) {
    pid = listenerPid(sock);
    if (pid) did.push(`found it as pid ${pid} by its socket`);
  }
  if (opts.force) {
    // containerd gives a dead shim's delete a few seconds in all: a short grace, then SIGKILL.
    for (let i = 0; i < 8 && pidAlive(pid); i++) await sleep(25);
    if (pidAlive(pid)) {
      try { process.kill(pid!, 'SIGKILL'); did.push(`SIGKILLed it`); } catch { /* raced */ }
      // Its socket only stops accepting once every thread is gone: a Go shim's main thread shows as a
      // zombie while its other threads still hold the file table.
      for (let i = 0; i < 80 && !fullyExited(pid!); i++) await sleep(25);
    }
  }
  if (await removeIfDeadSocket(sock)) did.push(`removed its socket ${sock}`);
  else if (fs.existsSync(sock)) did.push(`its socket ${sock} still accepts connections`);
  return did.join('; ');
}

/** The process listening on a unix socket path: its inode in /proc/net/unix, then the fd holding it. */
export function listenerPid(sock: string): number | undefined {
  let inode: string | undefined;
  try {
    for (const line of fs.readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // Num RefCount Protocol Flags Type St Inode Path; St 01 = listening (SS_UNCONNECTED with __SO_ACCEPTCON).
      if (f[7] === sock && (Number.parseInt(f[3], 16) & 0x10000) !== 0) inode = f[6];
    }
  } catch {
    return undefined;
  }
  if (!inode) return undefined;
  const want = `socket:[${inode}]`;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${d}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (fs.readlinkSync(`/proc/${d}/fd/${fd}`) === want) return Number(d);
      } catch { /* closed meanwhile */ }
    }
  }
  return undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}


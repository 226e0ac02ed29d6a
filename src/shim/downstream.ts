// Stopping a downstream shim daemon that nobody else will stop: after our daemon crashed (delete), or
// when our own start failed after the downstream start succeeded (containerd then never calls delete).
import { pidAlive, socketPath } from './state';
import { removeIfDeadSocket } from './sockets';

/**
 * Asks the downstream to shut down. With `force`, a daemon that stays (runc's shim answers Shutdown as a
 * no-op while it still tracks a task; runtime-rs ignores SIGTERM) is SIGKILLed by pid.
 */
export async function stopDownstream(id: string, address: string, opts: { pid?: number; force: boolean }): Promise<void> {
  const sock = socketPath(address);
  const { Client } = await import('../ttrpc');
  const msgs = await import('./messages');
  let pid = opts.pid;
  try {
    const c = await Client.connect(sock);
    try {
      if (!pid && opts.force) {
        const r = await c.call('containerd.task.v2.Task', 'Connect', msgs.encodeConnectRequest(id), { timeoutMs: 2000 });
        pid = msgs.decodeConnectResponse(r).shimPid || undefined;
      }
      await c.call('containerd.task.v2.Task', 'Shutdown', msgs.encodeShutdownRequest(id, opts.force), { timeoutMs: 2000 }).catch(() => undefined);
    } finally {
      c.close();
    }
  } catch { /* not reachable: already gone */ }
  if (opts.force) {
    for (let i = 0; i < 20 && pidAlive(pid); i++) await sleep(50);
    if (pidAlive(pid)) {
      try { process.kill(pid!, 'SIGKILL'); } catch { /* raced */ }
      // Its socket only stops accepting once the process is really gone.
      for (let i = 0; i < 40 && pidAlive(pid); i++) await sleep(25);
    }
  }
  await removeIfDeadSocket(sock);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// Start peer servers (Go or Node) as child processes and run peer clients, for tests and benchmarks.
import { execFile, spawn, type ChildProcess } from 'node:child_process';

export interface PeerServer {
  readonly pid: number;
  /** Resolves once the server's stdout (since start) has a line matching `re`. */
  waitForOutput(re: RegExp): Promise<void>;
  /** SIGTERM this pid and wait for it to exit (SIGKILL after 5 s). */
  stop(): Promise<void>;
}

/** Spawn `cmd args`, resolve once it prints a "ready" line; reject with its stderr if it exits first. */
export function startPeerServer(cmd: string, args: string[], label = `${cmd} ${args.join(' ')}`): Promise<PeerServer> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let ready = false;
    const waiters: Array<{ re: RegExp; resolve: () => void }> = [];
    const checkWaiters = () => {
      for (const w of waiters.splice(0)) {
        if (w.re.test(out)) w.resolve();
        else waiters.push(w);
      }
    };
    const exited = new Promise<void>((res) => child.once('exit', () => res()));
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      checkWaiters();
      if (!ready && /^ready$/m.test(out)) {
        ready = true;
        resolve({
          pid: child.pid!,
          waitForOutput: (re) => new Promise<void>((res) => {
            const m = new RegExp(re.source, re.flags.includes('m') ? re.flags : `${re.flags}m`);
            waiters.push({ re: m, resolve: res });
            checkWaiters();
          }),
          stop: async () => {
            if (child.exitCode !== null || child.signalCode !== null) return;
            process.kill(child.pid!, 'SIGTERM');
            const timer = setTimeout(() => { if (child.exitCode === null) process.kill(child.pid!, 'SIGKILL'); }, 5000);
            await exited;
            clearTimeout(timer);
          },
        });
      }
    });
    child.once('error', (e) => reject(new Error(`cannot start ${label}: ${e.message}`)));
    child.once('exit', (code, signal) => {
      if (!ready) reject(new Error(`${label} exited (${signal ?? code}) before it was ready: ${err.trim() || out.trim()}`));
    });
  });
}

export interface PeerRun { code: number; stdout: string; stderr: string }

/** Run a peer client to completion; a non-zero exit is a result (the Go client exits 3 on an RPC error). */
export function runPeer(cmd: string, args: string[], timeoutMs = 60_000): Promise<PeerRun> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 64 << 20, timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') {
        reject(new Error(`${cmd} ${args.slice(0, 4).join(' ')}...: ${error.message}${stderr ? `: ${stderr}` : ''}`));
        return;
      }
      resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

// The daemon side of the launcher's start hand-off (the launcher side is `claim` in
// bin/containerd-shim-katavol-v2): a directory holding two fifos,
//   req: the launcher writes "<its pid>\0<its path, as run>\0<argc>\0<argv...>\0"
//   ans: we write "<exit status>\n" and the bytes for its stdout (status 0) or stderr (status 1), or
//        "A<answer>\n" for an answer that is one line without NUL (printed with shell builtins only), or
//        "R\n" ("not for me": it tries elsewhere); closing our end is its EOF, also when we die.
// A launcher claims the directory first with an O_EXCL create of <dir>/claim (holding its pid). We read
// its environment, cwd and stdin (fd 8) through /proc/<pid> (a socket stdin, which /proc cannot reopen, the
// launcher has already moved into an unlinked file: keep_stdin), and leave a copy in <dir>/stdin for it
// to replay should we die.
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { spawnSync } from 'child_process';

/** The launcher's fd holding the start's stdin while it waits for the answer (see try_claim). */
const LAUNCHER_STDIN_FD = 8;

export interface HandoffRequest {
  pid: number;
  /** The launcher's $0: the path containerd ran, maybe a symlink (see launcherRoot). */
  launcher: string;
  argv: string[];
}

export interface LauncherInputs {
  env: NodeJS.ProcessEnv;
  cwd: string;
  stdin: Buffer;
}

export class HandoffChannel {
  private readonly req: net.Socket;
  private ansFd: number | undefined;
  private buf = Buffer.alloc(0);

  private constructor(readonly dir: string, reqFd: number, ansFd: number, onRequest: (r: HandoffRequest) => void) {
    this.ansFd = ansFd;
    this.req = new net.Socket({ fd: reqFd, readable: true, writable: false });
    this.req.on('error', () => undefined);
    this.req.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      const f = splitNul(this.buf);
      if (f.length < 3 || f.length < 3 + Number(f[2])) return;
      this.req.pause();
      onRequest({ pid: Number(f[0]), launcher: f[1], argv: f.slice(3, 3 + Number(f[2])) });
    });
  }

  /**
   * Builds the fifos under a name no launcher looks at, then renames the directory to `dir`, so a
   * claimable directory always has them. `replace`: an existing `dir` (our own previous one) goes first.
   */
  static open(dir: string, onRequest: (r: HandoffRequest) => void, opts: { replace?: boolean; owner?: string } = {}): HandoffChannel {
    const building = path.join(path.dirname(dir), `.${path.basename(dir)}.${process.pid}.new`);
    fs.rmSync(building, { recursive: true, force: true });
    fs.mkdirSync(building, { mode: 0o700 });
    try {
      const mk = spawnSync('mkfifo', ['-m', '0600', path.join(building, 'req'), path.join(building, 'ans')]);
      if (mk.status !== 0) throw new Error(`mkfifo: ${mk.stderr?.toString().trim() || mk.error?.message}`);
      if (opts.owner) fs.writeFileSync(path.join(building, 'owner'), opts.owner, { mode: 0o600 });
      // O_RDWR: opening never blocks, and we never see EOF on req while waiting.
      const reqFd = fs.openSync(path.join(building, 'req'), fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
      const ansFd = fs.openSync(path.join(building, 'ans'), fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
      const ch = new HandoffChannel(dir, reqFd, ansFd, onRequest);
      try {
        // Our previous directory (its launcher's claim in it) leaves by a rename: gone in one step.
        const old = opts.replace ? moveAside(dir) : undefined;
        fs.renameSync(building, dir);
        if (old) fs.rmSync(old, { recursive: true, force: true });
      } catch (e) {
        ch.close();
        throw e;
      }
      return ch;
    } catch (e) {
      fs.rmSync(building, { recursive: true, force: true });
      throw e;
    }
  }

  get claimed(): boolean {
    return fs.existsSync(path.join(this.dir, 'claim'));
  }

  /** Takes our own directory (to retire), unless a launcher holds it. */
  selfClaim(): boolean {
    try {
      fs.closeSync(fs.openSync(path.join(this.dir, 'claim'), 'wx', 0o600));
      return true;
    } catch {
      return false;
    }
  }

  answer(status: string, payload: Buffer | string = ''): void {
    if (this.ansFd === undefined) return;
    const bytes = Buffer.from(payload);
    const line = status === '0' && bytes.length > 0 && !bytes.includes(0x0a) && !bytes.includes(0);
    const data = line ? Buffer.concat([Buffer.from('A'), bytes, Buffer.from('\n')]) : Buffer.concat([Buffer.from(`${status}\n`), bytes]);
    // The launcher reads as we write; a full pipe (EAGAIN) only means it has not caught up yet.
    for (let off = 0, tries = 0; off < data.length && tries < 2000;) {
      try {
        off += fs.writeSync(this.ansFd, data, off);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') break;
        tries++;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
      }
    }
    this.closeAnswer();
  }

  close(): void {
    this.req.destroy();
    this.closeAnswer();
  }

  remove(): void {
    this.close();
    removeHandoffDir(this.dir);
  }

  private closeAnswer(): void {
    if (this.ansFd !== undefined) try { fs.closeSync(this.ansFd); } catch { /* gone */ }
    this.ansFd = undefined; // EOF for the launcher
  }

  /** The launcher's environment as containerd gave it; undefined when it cannot be read. */
  environ(pid: number): NodeJS.ProcessEnv | undefined {
    try {
      const env: NodeJS.ProcessEnv = {};
      for (const kv of splitNul(fs.readFileSync(`/proc/${pid}/environ`))) {
        const eq = kv.indexOf('=');
        if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
      }
      return env;
    } catch {
      return undefined;
    }
  }

  /**
   * The launcher's cwd and stdin (with its environment). Reading stdin consumes it: only once the
   * start is surely ours to run (after this, answer with a result, never "R").
   */
  async inputs(pid: number, env: NodeJS.ProcessEnv): Promise<LauncherInputs | undefined> {
    try {
      const cwd = fs.readlinkSync(`/proc/${pid}/cwd`);
      // fd 8: its stdin, kept there while its fd 0 is the answer fifo (a shell's `read <&5` moves it there).
      const stdin = await fs.promises.readFile(`/proc/${pid}/fd/${LAUNCHER_STDIN_FD}`);
      // Kept for the launcher, which replays it on a cold start should this process die before answering.
      try { fs.writeFileSync(path.join(this.dir, 'stdin'), stdin, { mode: 0o600 }); } catch { /* best effort */ }
      return { env, cwd, stdin };
    } catch {
      return undefined;
    }
  }
}

/**
 * Where a hand-off directory goes to be removed: a name no launcher looks at (a leading dot), judged by
 * the remover's pid when swept (the launcher's EOF path in bin/containerd-shim-katavol-v2 uses the same).
 */
export function goneName(dir: string, pid = process.pid): string {
  return path.join(path.dirname(dir), `.${path.basename(dir)}.${pid}.gone`);
}

/** `dir` renamed to its gone name; undefined when it does not exist. */
function moveAside(dir: string): string | undefined {
  const gone = goneName(dir);
  try {
    fs.renameSync(dir, gone);
    return gone;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * Removes a hand-off directory without ever leaving it claimable: a plain recursive rm drops the claim
 * file while other files remain, and a launcher could claim those remains, write its request to fifos
 * nobody reads, or take another start's stdin copy (and the rm then fails with ENOTEMPTY). One rename
 * takes it out of sight with the claim in it; then it is removed at leisure. Never throws: what stays is
 * swept once this process is gone (see sweepPool, sweepPodChannels).
 */
export function removeHandoffDir(dir: string): void {
  try {
    const gone = moveAside(dir);
    if (gone) fs.rmSync(gone, { recursive: true, force: true });
  } catch { /* swept later */ }
}

export function splitNul(buf: Buffer): string[] {
  const out: string[] = [];
  let from = 0;
  for (let i = buf.indexOf(0); i >= 0; i = buf.indexOf(0, from)) {
    out.push(buf.subarray(from, i).toString());
    from = i + 1;
  }
  return out;
}

// Disk fixtures every suite shares: sparse image files, real ext4 images, and loop devices and mounts
// (LoopFixture; everything it made is undone by cleanup()).
import * as fs from 'fs';
import * as path from 'path';
import * as assert from 'assert';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'child_process';

const ENV = { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` };
export const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });

/** A sparse regular file (no filesystem), usable as a directvol device. */
export function imageFile(dir: string, name = 'disk.img', size = 1 << 20): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, '');
  fs.truncateSync(p, size);
  return p;
}

/**
 * Runs fn with a fresh tmpfs mounted at dir (made if missing), mounted with the given options (a small
 * size to fill, `ro` for EROFS, another file system for EXDEV); unmounted afterwards, whatever fn did.
 */
export function withTmpfs<T>(dir: string, fn: () => T, options = 'size=1m'): T {
  fs.mkdirSync(dir, { recursive: true });
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', options, 'katavol-test', dir], { encoding: 'utf8' });
  assert.strictEqual(m.status, 0, m.stderr);
  try {
    return fn();
  } finally {
    spawnSync('umount', [dir]);
  }
}

/** A sparse ext4 image of sizeBytes at dir/name. */
export function mkExt4(dir: string, name: string, sizeBytes: number): string {
  const p = imageFile(dir, name, sizeBytes);
  sh('mkfs.ext4', ['-q', '-F', p]);
  return p;
}

/** The same at a full path, sized in MiB (the containerd suites' images). */
export function makeExt4Image(file: string, sizeMiB = 64): void {
  mkExt4(path.dirname(file), path.basename(file), sizeMiB * 1024 * 1024);
}

/** Block count x block size of an ext4 image or device, from the superblock. */
export function ext4Bytes(target: string): number {
  const out = sh('dumpe2fs', ['-h', target]);
  const n = (l: string): number => Number(new RegExp(`^${l}:\\s+(\\d+)`, 'm').exec(out)![1]);
  return n('Block count') * n('Block size');
}

/** True when the kernel lets us grow a mounted ext4 (needs CAP_SYS_RESOURCE, absent in some sandboxes). */
export function canResizeOnline(): boolean {
  const m = /^CapEff:\s+([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return !!m && (BigInt('0x' + m[1]) & (1n << 24n)) !== 0n;
}

/** What a loop device is backed by, from sysfs, without the " (deleted)" of a replaced file ('' when not attached). */
export function loopBacking(device: string): string {
  try {
    return fs.readFileSync(`/sys/block/${path.basename(device)}/loop/backing_file`, 'utf8').trim().replace(/ \(deleted\)$/, '');
  } catch {
    return '';
  }
}

/** The file as the kernel names it in backing_file (symlinks resolved), also once it is gone. */
function kernelPath(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    return path.resolve(file);
  }
}

/** Loop devices backed by the file, found through sysfs (losetup -j cannot name a deleted file). */
export function loopsBackedBy(file: string): string[] {
  const want = kernelPath(file);
  return fs.readdirSync('/sys/block').filter((n) => /^loop\d+$/.test(n)).map((n) => `/dev/${n}`).filter((d) => loopBacking(d) === want);
}

/**
 * Detaches the loop device only while it is backed by the test's own file: a device that the code under
 * test (or a mutant of it) detached already may have been given to another test's image since, and must
 * not be taken from it. Returns whether it detached. Pass the file's real path if it may be gone.
 */
export function detachOwnLoop(device: string, file: string): boolean {
  if (loopBacking(device) !== kernelPath(file)) return false;
  sh('losetup', ['-d', device]);
  return true;
}

/** Detaches every loop device backed by the file; returns them. */
export function detachLoopsOf(file: string): string[] {
  return loopsBackedBy(file).filter((d) => detachOwnLoop(d, file));
}

export class LoopFixture {
  private loops: Array<{ device: string; file: string }> = [];
  private mounts: string[] = [];
  private children: ChildProcess[] = [];
  private swaps: string[] = [];

  /** Attaches a file (or a block device: loop over loop) to a free loop device. */
  attach(file: string, readOnly = false): string {
    const dev = sh('losetup', ['-f', '--show', ...(readOnly ? ['--read-only'] : []), file]).trim();
    this.loops.push({ device: dev, file: kernelPath(file) });
    return dev;
  }

  mount(dev: string, dir: string, options?: string): void {
    fs.mkdirSync(dir, { recursive: true });
    sh('mount', [...(options ? ['-o', options] : []), dev, dir]);
    this.mounts.push(dir);
  }

  /** Mounts dev in a new private mount namespace held by a sleeping process; returns its pid. */
  async mountInOtherNamespace(dev: string, dir: string, mountOptions: string[] = []): Promise<number> {
    fs.mkdirSync(dir, { recursive: true });
    const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `dev=$0 dir=$1; shift; mount "$@" "$dev" "$dir" && echo ready && exec sleep 600`, dev, dir, ...mountOptions], { env: ENV, stdio: ['ignore', 'pipe', 'inherit'] });
    this.children.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      child.on('exit', (code) => reject(new Error(`unshare mount exited ${code}`)));
    });
    return child.pid!;
  }

  /** A process in a new mount namespace (a private copy of ours, mounts included), until cleanup; its pid. */
  async holdMountNamespace(): Promise<number> {
    const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'echo ready && exec sleep 600'], { env: ENV, stdio: ['ignore', 'pipe', 'inherit'] });
    this.children.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      child.on('exit', (code) => reject(new Error(`unshare exited ${code}`)));
    });
    return child.pid!;
  }

  /** mkswap + swapon (swapoff in cleanup). */
  swapOn(dev: string): void {
    sh('mkswap', [dev]);
    sh('swapon', [dev]);
    this.swaps.push(dev);
  }

  loopSizeBytes(dev: string): number {
    return Number(fs.readFileSync(`/sys/block/${path.basename(dev)}/size`, 'utf8')) * 512;
  }

  async cleanup(): Promise<void> {
    for (const c of this.children.splice(0)) {
      if (c.exitCode === null && c.signalCode === null) {
        const gone = new Promise((r) => c.once('exit', r));
        process.kill(c.pid!, 'SIGKILL');
        await gone;
      }
    }
    // Undo everything even if one step fails, then report the first failure.
    const errors: unknown[] = [];
    const attempt = (f: () => unknown): void => {
      try {
        f();
      } catch (e) {
        errors.push(e);
      }
    };
    for (const s of this.swaps.splice(0)) attempt(() => sh('swapoff', [s]));
    for (const m of this.mounts.splice(0).reverse()) attempt(() => sh('umount', [m]));
    // A namespace's mount goes away with its last process; detach waits for that (autoclear otherwise).
    // Newest first: a loop device over another loop device goes before the one beneath it. Only while
    // still over our file: one the code under test detached may be another test's device by now.
    for (const l of this.loops.splice(0).reverse()) attempt(() => detachOwnLoop(l.device, l.file));
    if (errors.length) throw errors[0];
  }
}

// Loop devices through util-linux losetup (the kernel's loop ioctls have no Node binding).
import * as fs from 'fs';
import { execFileSync } from 'child_process';
import { loopsBacking } from '../volumes/host-device';
import { messageOf } from '../volumes/types';

// Stryker disable all: where losetup lives; on a merged-/usr Debian every candidate (and PATH) is the same binary
function losetupPath(): string {
  for (const p of ['/usr/sbin/losetup', '/sbin/losetup', '/usr/bin/losetup']) {
    if (fs.existsSync(p)) return p;
  }
  return 'losetup';
}
// Stryker restore all

function run(args: string[]): string {
  try {
    // Stryker disable next-line ArrayDeclaration,StringLiteral: losetup reads no stdin, and execFileSync pipes stdout and stderr by default
    return execFileSync(losetupPath(), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    // Stryker disable next-line ConditionalExpression: the message fallback is for a losetup that could not be run at all (no stderr), which this host cannot lack
    throw new Error(`losetup ${args.join(' ')}: ${(err.stderr || err.message).trim()}`);
  }
}

/**
 * Attaches a file to a free loop device; returns /dev/loopN. The device is chosen first and named to
 * `beforeAttach` before the attach, so a caller killed right after the attach has already recorded
 * what to detach (the device is taken by number; if another process took it meanwhile, the next free
 * one is tried).
 */
export function attach(file: string, readOnly: boolean, beforeAttach: (device: string) => void): string {
  const ro = readOnly ? ['--read-only'] : [];
  for (let i = 0; ; i++) {
    const device = run(['--find']);
    beforeAttach(device);
    try {
      run([...ro, device, file]);
      return device;
    } catch (e) {
      // Lost the device to another process: it is attached now, or busy (being set up or torn down
      // by that process, which may be done with it again by the time we look). Anything else is ours.
      const lost = backingFile(device) !== '' || /Device or resource busy/.test(messageOf(e));
      if (i >= 20 || !lost) throw e;
    }
  }
}

/** Loop devices currently backed by the file, with their read-only flag (sysfs, no exec). */
export function loopsOf(file: string): Array<{ device: string; readOnly: boolean }> {
  return loopsBacking(file);
}

/** The file backing a loop device, from sysfs ('' when not attached). */
export function backingFile(device: string): string {
  // Stryker disable next-line Regex: loop device names start with /dev/ and hold it once
  const name = device.replace(/^\/dev\//, '');
  try {
    return fs.readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Detaches the device if it is still backed by `realFile` (after a crash the number may be reused). */
export function detach(device: string, realFile: string): boolean {
  const back = backingFile(device);
  if (!back || back.replace(/ \(deleted\)$/, '') !== realFile) return false;
  run(['--detach', device]);
  return true;
}

/** Whether the loop device is read-only, from sysfs. */
export function isReadOnly(device: string): boolean {
  try {
    // Stryker disable next-line Regex: loop device names start with /dev/ and hold it once
    return fs.readFileSync(`/sys/block/${device.replace(/^\/dev\//, '')}/ro`, 'utf8').trim() === '1';
  } catch {
    return false;
  }
}

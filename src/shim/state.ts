// What katavol keeps in a container's bundle so that `delete`, the daemon and a restarted containerd
// can find the downstream shim and undo what the backend took.
import * as fs from 'fs';
import * as path from 'path';
import { writeFileAtomic } from '../volumes/files';

export const STATE_FILE = 'katavol.json';
export const ORIGINAL_SPEC = 'config.json.katavol-orig';

/**
 * katavol.json. Besides Node, the sh launcher bin/containerd-shim-katavol-v2 reads it for its fast
 * `delete` (without starting Node): one line of JSON without backslash escapes, whose string fields
 * `downstream` (absolute path), `address` and `downstreamAddress` it parses by hand, and only while
 * the bundle has no katavol-held.json (HELD_FILE) nor a claim of it. Keep it one line, keep those names, and test
 * changes with test/shim/launcher.test.ts.
 */
export interface BundleState {
  /** Our daemon's address as printed to containerd (unix:///...). */
  address: string;
  /** The downstream shim's address as its `start` printed it. */
  downstreamAddress: string;
  /** The downstream shim binary. */
  downstream: string;
  backend: string;
  /** Our daemon's pid (the one serving this bundle, possibly shared by a pod). */
  daemonPid?: number;
  /** The downstream daemon's pid when known (shim.pid or Connect). */
  downstreamPid?: number;
  /** What the downstream `start` printed (base64, exact bytes), in which form, announcing which version. */
  bootstrap?: { form: 'plain' | 'json' | 'protobuf'; version: number; output: string };
}

export function readState(bundle: string): BundleState | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(bundle, STATE_FILE), 'utf8')) as BundleState;
  } catch {
    return undefined;
  }
}

/** Not durable (see AtomicWriteOptions.durable): the bundle is containerd's state, gone with a reboot. */
export function writeState(bundle: string, st: BundleState): void {
  writeFileAtomic(path.join(bundle, STATE_FILE), JSON.stringify(st) + '\n', { durable: false });
}

/** Strips the unix:// scheme; containerd treats a bare name as an abstract socket. */
export function socketPath(address: string): string {
  if (address.startsWith('unix://')) return address.slice('unix://'.length);
  return '\0' + address;
}

/** A live (not zombie) process. containerd is a child subreaper, so a killed shim can stay a zombie
 *  of containerd for a while, and kill(pid, 0) alone would call it alive. */
export function pidAlive(pid: number | undefined): boolean {
  if (!pid || pid <= 0) return false;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Every thread of the process has exited (its files, sockets included, are closed). */
export function fullyExited(pid: number): boolean {
  let tasks: string[];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return true;
  }
  return tasks.every((t) => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const state = stat.charAt(stat.lastIndexOf(')') + 2);
      return state === 'Z' || state === 'X';
    } catch {
      return true;
    }
  });
}

/** Where a katavol daemon records its pid: next to its socket (found by the next start of a pod). */
export function daemonPidFile(sock: string): string {
  return sock.replace(/\.sock$/, '.pid');
}

export function readPidFile(file: string): number | undefined {
  try {
    const n = parseInt(fs.readFileSync(file, 'utf8').trim(), 10);
    return Number.isFinite(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

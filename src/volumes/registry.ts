// The direct-volume registry, on disk exactly as Kata lays it out: <root>/<base64url(path)>/mountInfo.json
// plus one file per sandbox using the volume. Writes are validated first, then done under a
// per-volume lock with temp file/dir + fsync + rename, so readers never see a partial entry.
import * as fs from 'fs';
import * as path from 'path';
import { type MountInfo, VolumeError, messageOf } from './types';
import { MAX_NAME_BYTES, MAX_VOLUME_PATH_BYTES, decodeLooseDirName, decodeVolumeDirName, encodeVolumePath } from './encoding';
import { EXAMPLE_MOUNT_INFO, parseMountInfo, serializeMountInfo } from './mountinfo';
import { normalizeDevice, validateDevice } from './device';
import { withLock } from './lock';
import { fsTypeProblem, superblockMismatch } from './fstype';
import { TEMP_PREFIX, UnreadableFileError, errnoOf, fsyncDir, lstatOrUndefined, readRegularFile, tempName, writeFileAtomic, writeNewFileSync } from './files';

export { encodeVolumePath, decodeVolumeDirName } from './encoding';
export { parseMountInfo, serializeMountInfo } from './mountinfo';
export { validateDevice } from './device';

export const KATA_VOLUME_ROOT = '/run/kata-containers/shared/direct-volumes';
export const MOUNT_INFO_FILE = 'mountInfo.json';
/** Lock files live here, inside the root; the leading dot keeps it apart from base64 names. */
export const LOCK_DIR_NAME = `${TEMP_PREFIX}locks`;
/**
 * katavol's own part of a sandbox record (backend, read-only) lives here, as
 * <root>/.katavol-sandboxes/<entry name>/<sandbox id>, never in the volume's directory: there Kata writes
 * the bare `<sandbox id>` file empty (Go's RecordSandboxID; runtime-rs once kata PR #13443 lands, which
 * truncates whatever was there), and kata-ctl takes the first entry other than mountInfo.json as the
 * sandbox id, so nothing else of ours may sit beside it.
 */
export const SANDBOX_MODES_DIR_NAME = `${TEMP_PREFIX}sandboxes`;
/** Far above any real mountInfo.json (Kata's are under 1 KiB); a larger file is not read into memory. */
export const MOUNT_INFO_MAX_BYTES = 1 << 20;
/** A sandbox record holds a backend name and a mode at most. */
const SANDBOX_RECORD_MAX_BYTES = 4096;
/** Environment override of the root, used by every test. */
export const VOLUME_ROOT_ENV = 'KATAVOL_VOLUME_ROOT';

/** The registry root: $KATAVOL_VOLUME_ROOT, else the configured root, else Kata's (volumeRootInEffect's rule). */
export function resolveVolumeRoot(configured?: string, env: NodeJS.ProcessEnv = process.env): string {
  // Stryker disable next-line StringLiteral: the file names only the origin, which this caller drops
  return volumeRootInEffect(env, { root: configured, file: '' }).root;
}

/**
 * The one rule for where the registry root comes from ($KATAVOL_VOLUME_ROOT > the shim config's
 * volumeRoot > Kata's default), and where it came from, for help texts and "not registered" errors.
 * The caller reads the environment (at its edge) and passes it in.
 */
export function volumeRootInEffect(env: NodeJS.ProcessEnv, configured?: { root?: string; file: string }): { root: string; origin: string } {
  const fromEnv = env[VOLUME_ROOT_ENV];
  if (fromEnv && !path.isAbsolute(fromEnv)) {
    // Each process would resolve it from its own directory (the shim runs in each bundle): two registries.
    throw new VolumeError('', `$${VOLUME_ROOT_ENV} "${fromEnv}" is a relative path, which the CLI and the shim would each resolve from their own working directory`,
      `set ${VOLUME_ROOT_ENV} to an absolute path, e.g. ${VOLUME_ROOT_ENV}=${path.resolve(fromEnv)}`);
  }
  if (fromEnv) return { root: fromEnv, origin: `$${VOLUME_ROOT_ENV}` };
  if (configured?.root) return { root: configured.root, origin: `"volumeRoot" in ${configured.file}` };
  return { root: KATA_VOLUME_ROOT, origin: "Kata's default" };
}

/** Sandbox ids as containerd/Kata accept them; they become file names in the entry directory. */
const SANDBOX_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export interface ReadResult {
  info: MountInfo;
  file: string;
  dir: string;
  /** The file's bytes equal the canonical serialisation. */
  canonical: boolean;
  /** The file's content as stored. */
  raw: string;
}

export interface ListEntry {
  volumePath: string;
  /** Directory name inside the root. */
  name: string;
  dir: string;
  info?: MountInfo;
  error?: string;
  sandboxes: string[];
}

export type AddAction = 'added' | 'replaced' | 'repaired' | 'unchanged';

export interface AddResult {
  info: MountInfo;
  action: AddAction;
  file: string;
  /** Things accepted but changed on the way to the canonical form, and warnings about the path. */
  notes: string[];
}

export interface SandboxUse {
  id: string;
  /** Backend that recorded it ('runc', 'runtime-rs', ...); '' for an empty file (written by Kata itself). */
  backend: string;
  /** True when the sandbox uses the volume only read-only; an empty (Kata-written) record counts as read-write. */
  readOnly: boolean;
}

/** Marker after the backend name in a sandbox record of a read-only use. */
const READ_ONLY_MARK = 'ro';

/** A sandbox record's content: `<backend>` for read-write, `<backend> ro` for read-only. */
export function formatSandboxRecord(backend: string, readOnly: boolean): string {
  return readOnly ? `${backend} ${READ_ONLY_MARK}`.trimStart() : backend;
}

/** Reads a sandbox record back; tolerant of surrounding whitespace and newlines (hand-written files). */
export function parseSandboxRecord(content: string): { backend: string; readOnly: boolean } {
  const words = content.trim().split(/\s+/); // [''] for a blank record
  const readOnly = words[words.length - 1] === READ_ONLY_MARK;
  if (readOnly) words.pop();
  return { backend: words.join(' '), readOnly };
}

/** Warnings for volume paths that are legal but probably not what the user meant (keys are byte-exact). */
export function volumePathWarnings(volumePath: string): string[] {
  const w: string[] = [];
  if (!path.isAbsolute(volumePath)) w.push(`volume path "${volumePath}" is relative; the OCI mount source must match it byte for byte`);
  if (volumePath.length > 1 && volumePath.endsWith('/')) w.push(`volume path "${volumePath}" ends with "/"; "${volumePath.replace(/\/+$/, '')}" is a different volume`);
  if (volumePath.includes('//') || /(^|\/)\.\.?(\/|$)/.test(volumePath)) w.push(`volume path "${volumePath}" is not normalised ("//", "." or ".."); it is used byte for byte`);
  return w;
}

/** Orders strings by their UTF-8 bytes, as `ls` does in the C locale. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Turns a file-system error into a VolumeError that says what to do. */
function fsFailure(volumePath: string, doing: string, file: string, e: unknown): VolumeError {
  if (e instanceof VolumeError) return e;
  const code = errnoOf(e);
  const fix =
    code === 'EACCES' || code === 'EPERM' ? `run as root (sudo), or point ${VOLUME_ROOT_ENV} at a directory you own`
    : code === 'EROFS' ? 'the registry root is on a read-only file system; remount it read-write'
    : code === 'ENOSPC' ? 'free some space on the file system of the registry root'
    : code === 'ENOTDIR' ? `the registry root or a directory above it is a file: point ${VOLUME_ROOT_ENV} (or "volumeRoot" in the shim config) at a directory`
    : 'check the registry root and try again';
  return new VolumeError(volumePath, `cannot ${doing}: ${messageOf(e)}`, fix, file, e);
}

export class Registry {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  entryDir(volumePath: string): string {
    if (typeof volumePath !== 'string' || volumePath === '') {
      throw new VolumeError('', 'the volume path is empty', 'give the path the volume is mounted from (the OCI mount source), e.g. /kubelet/vol1');
    }
    const name = encodeVolumePath(volumePath);
    // Stryker disable next-line EqualityOperator: encoded names are multiples of 4 bytes long, never exactly MAX_NAME_BYTES (255)
    if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
      throw new VolumeError(
        volumePath,
        `the volume path is ${Buffer.byteLength(volumePath)} bytes, so its encoded directory name would be ${name.length} bytes, over the ${MAX_NAME_BYTES}-byte file name limit (Kata fails with "File name too long", issue #10284)`,
        `use a volume path of at most ${MAX_VOLUME_PATH_BYTES} bytes`,
      );
    }
    return path.join(this.root, name);
  }

  mountInfoFile(volumePath: string): string {
    return path.join(this.entryDir(volumePath), MOUNT_INFO_FILE);
  }

  isRegistered(volumePath: string): boolean {
    let dir: string;
    try {
      dir = this.entryDir(volumePath);
    } catch {
      return false;
    }
    const st = lstatOrUndefined(dir);
    return st !== undefined && st.isDirectory();
  }

  /** Runs fn holding the volume's cross-process lock (add, remove, rewrite, sandbox records, resize). */
  locked<T>(volumePath: string, fn: () => T): T {
    const dir = this.entryDir(volumePath);
    const lockDir = path.join(this.root, LOCK_DIR_NAME);
    try {
      fs.mkdirSync(this.root, { recursive: true, mode: 0o755 });
    } catch (e) {
      throw fsFailure(volumePath, 'create the registry root', this.root, e);
    }
    try {
      return withLock({ volumePath, lockDir, entryName: path.basename(dir) }, fn);
    } catch (e) {
      // Taking the lock is the first write: a user who may not write the registry learns it here.
      if (!(e instanceof VolumeError) && errnoOf(e)) throw fsFailure(volumePath, 'lock the registry entry', lockDir, e);
      throw e;
    }
  }

  /** Throws unless the entry directory is a real directory; returns its path. */
  private requireEntryDir(volumePath: string): string {
    const dir = this.entryDir(volumePath);
    let st: fs.Stats | undefined;
    try {
      st = lstatOrUndefined(dir);
    } catch (e) {
      throw fsFailure(volumePath, 'read the registry entry', dir, e);
    }
    if (!st) {
      const stray = this.strayEntryFor(volumePath);
      if (stray) {
        throw new VolumeError(volumePath, `is not registered under ${path.basename(dir)}, but ${stray} holds an entry for it with the wrong encoding (Kata cannot find it)`,
          `register it again with katavol direct-volume add, then delete ${stray}`, dir);
      }
      throw new VolumeError(volumePath, 'is not registered (no registry entry)', `register it with: katavol direct-volume add ${volumePath} '${EXAMPLE_MOUNT_INFO}'`, dir);
    }
    this.refuseOddEntry(volumePath, dir, st);
    return dir;
  }

  private refuseOddEntry(volumePath: string, dir: string, st: fs.Stats): void {
    if (st.isSymbolicLink()) {
      throw new VolumeError(volumePath, 'the registry entry is a symbolic link; katavol refuses to follow it', `check where it points and delete it by hand (rm ${dir}), then add the volume again`, dir);
    }
    if (!st.isDirectory()) {
      throw new VolumeError(volumePath, 'the registry entry exists but is not a directory', `delete it by hand (rm ${dir}), then add the volume again`, dir);
    }
  }

  /** A directory in the root that decodes loosely (no padding, '+' alphabet) to this path: someone else's mis-encoding. */
  strayEntryFor(volumePath: string): string | undefined {
    const canonical = encodeVolumePath(volumePath);
    // '=' is only ever padding, at the end.
    const variants = new Set([canonical.replace(/=/g, ''), canonical.replace(/-/g, '+'), canonical.replace(/-/g, '+').replace(/=/g, '')]);
    variants.delete(canonical);
    for (const v of variants) {
      const p = path.join(this.root, v);
      if (lstatOrUndefined(p)?.isDirectory()) return p;
    }
    return undefined;
  }

  read(volumePath: string): ReadResult {
    const dir = this.requireEntryDir(volumePath);
    const file = path.join(dir, MOUNT_INFO_FILE);
    let raw = this.readIfPresent(volumePath, file);
    // Stryker disable next-line all: differs only when a remove renames the entry away in between, a race between processes (test/volumes/concurrency.test.ts drives it with 4 writer processes and a reader)
    if (raw === undefined) {
      // A concurrent remove renames the whole entry away between the lstat and the read: that is
      // "not registered", not an incomplete entry. Look again before blaming the entry.
      this.requireEntryDir(volumePath);
      raw = this.readIfPresent(volumePath, file);
    }
    if (raw === undefined) {
      throw new VolumeError(volumePath, `the registry entry has no ${MOUNT_INFO_FILE} (an incomplete entry, e.g. left by a failed kata-ctl add; Kata runtime-rs fails every container using it)`,
        `add it again with katavol direct-volume add ${volumePath} '<mount-info-json>', or delete it with katavol direct-volume remove ${volumePath}`, file);
    }
    let info: MountInfo;
    try {
      info = parseMountInfo(raw, { volumePath, file });
    } catch (e) {
      // Stryker disable next-line ConditionalExpression: parseMountInfo throws only VolumeErrors, so "always" is the same; "never" fails the stored-file tests
      if (e instanceof VolumeError) {
        throw new VolumeError(volumePath, `stored ${e.problem}`, `${e.fix}; then write it again with katavol direct-volume add`, file, e);
      }
      throw e;
    }
    return { info, file, dir, canonical: raw === serializeMountInfo(info), raw };
  }

  private readIfPresent(volumePath: string, file: string): string | undefined {
    try {
      return readRegularFile(file, { maxBytes: MOUNT_INFO_MAX_BYTES });
    } catch (e) {
      if (e instanceof UnreadableFileError) {
        // A FIFO, socket, link or huge file put there by hand: never waited on, followed or loaded.
        throw new VolumeError(volumePath, `${MOUNT_INFO_FILE} ${e.problem}`, `remove it (katavol direct-volume remove --force ${volumePath}) and add the volume again`, file);
      }
      throw fsFailure(volumePath, `read ${MOUNT_INFO_FILE}`, file, e);
    }
  }

  add(volumePath: string, mountInfoJson: string): MountInfo {
    return this.addWithResult(volumePath, mountInfoJson).info;
  }

  /**
   * add() with what was done, for the CLI's one-line report. Changing the entry of a volume that a
   * sandbox is recorded as using is refused unless `force` (the sandbox keeps what it resolved).
   */
  addWithResult(volumePath: string, mountInfoJson: string, opts: { force?: boolean } = {}): AddResult {
    // Everything that can be checked without the lock is checked before anything is created.
    const dir = this.entryDir(volumePath);
    const notes = volumePathWarnings(volumePath);
    const parsed = parseMountInfo(mountInfoJson, { volumePath, notes });
    if (parsed.fsType === '') {
      throw new VolumeError(volumePath, '"fstype" is empty (the guest could not mount the volume)', 'set "fstype" to the filesystem on the device, e.g. "fstype":"ext4"');
    }
    const fsProblem = fsTypeProblem(parsed.fsType);
    if (fsProblem) throw new VolumeError(volumePath, fsProblem.problem, fsProblem.fix);
    validateDevice(parsed, volumePath);
    if (parsed.volumeType === 'directvol') {
      const mismatch = superblockMismatch(parsed.device, parsed.fsType);
      // A blank device may be formatted after it is registered (Create checks again); another filesystem is a mistake now.
      if (mismatch && mismatch.found !== 'none') throw new VolumeError(volumePath, mismatch.problem, mismatch.fix);
      if (mismatch) notes.push(`${mismatch.problem}; containers using it will be refused until it holds ${parsed.fsType}`);
    }
    const info: MountInfo = { ...parsed, device: normalizeDevice(parsed) };
    if (info.device !== parsed.device) notes.push(`stored PCI address "${parsed.device}" as "${info.device}" (sysfs names are lower case)`);
    const data = serializeMountInfo(info);
    const file = path.join(dir, MOUNT_INFO_FILE);
    this.checkRootUsable(volumePath);
    const pre = lstatOrUndefined(dir);
    if (pre) this.refuseOddEntry(volumePath, dir, pre);

    const action = this.locked(volumePath, (): AddAction => {
      try {
        const st = lstatOrUndefined(dir);
        if (!st) {
          this.createEntry(dir, data);
          return 'added';
        }
        this.refuseOddEntry(volumePath, dir, st);
        let old: string | undefined;
        try {
          old = readRegularFile(file, { maxBytes: MOUNT_INFO_MAX_BYTES });
        } catch (e) {
          if (!(e instanceof UnreadableFileError)) throw e;
          // Stryker disable next-line StringLiteral: any text but the new content does: the entry is then replaced
          old = ''; // not a mountInfo.json katavol could have written: replaced like any other content
        }
        if (old === data) return 'unchanged';
        if (old !== undefined && !opts.force) this.refuseWhileUsed(volumePath, 'change it', file);
        writeFileAtomic(file, data, { tempDir: this.root });
        return old === undefined ? 'repaired' : 'replaced';
      } catch (e) {
        throw fsFailure(volumePath, 'write the registry entry', file, e);
      }
    });
    return { info, action, file, notes };
  }

  private checkRootUsable(volumePath: string): void {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(this.root);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return; // created on demand
      throw fsFailure(volumePath, 'read the registry root', this.root, e);
    }
    if (!st.isDirectory()) {
      throw new VolumeError(volumePath, 'the registry root is not a directory', `remove it or set ${VOLUME_ROOT_ENV} to a directory`, this.root);
    }
  }

  /** New entry: build it under a temp name, then rename, so it appears complete or not at all. */
  private createEntry(dir: string, data: string): void {
    // Stryker disable next-line StringLiteral: the kind only labels the temporary name for a reader of the directory; every temporary name starts with TEMP_PREFIX
    const tmp = path.join(this.root, tempName('new'));
    try {
      // Stryker disable next-line ObjectLiteral: the chmod below sets 0700 whatever the umask; this mode only closes the moment between the two
      fs.mkdirSync(tmp, { mode: 0o700 });
      fs.chmodSync(tmp, 0o700);
      writeNewFileSync(path.join(tmp, MOUNT_INFO_FILE), data);
      fsyncDir(tmp);
      fs.renameSync(tmp, dir);
    } catch (e) {
      // Stryker disable next-line BooleanLiteral: force matters only if making the temporary directory itself failed (no inode left), which no test arranges
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    fsyncDir(this.root);
  }

  /** The sandboxes recorded as using the volume (read under its lock): refuse while there are any. */
  private refuseWhileUsed(volumePath: string, doing: string, file: string): void {
    const users = this.sandboxesOf(volumePath);
    if (!users.length) return;
    const who = users.map((u) => `${u.id} (${u.backend || 'recorded by Kata'}, ${u.readOnly ? 'read-only' : 'read-write'})`).join(', ');
    throw new VolumeError(volumePath, `is recorded as used by sandbox ${who}; katavol does not ${doing} under a running sandbox`,
      `stop those sandboxes first; if a record is stale (its sandbox is gone), pass --force`, file);
  }

  /** Unregisters the volume; refused while a sandbox is recorded as using it, unless `force`. Returns the records removed with it. */
  remove(volumePath: string, opts: { force?: boolean } = {}): SandboxUse[] {
    const dir = this.requireEntryDir(volumePath);
    return this.locked(volumePath, () => {
      const st = lstatOrUndefined(dir);
      // Stryker disable next-line all: another process removed it between the first look and the lock (test/volumes/concurrency.test.ts drives it with 4 writer processes and a reader)
      if (!st) throw new VolumeError(volumePath, 'is not registered (removed meanwhile)', 'nothing to do', dir);
      this.refuseOddEntry(volumePath, dir, st);
      const users = this.sandboxesOf(volumePath);
      if (!opts.force) this.refuseWhileUsed(volumePath, 'remove it', dir);
      // Rename first: the entry disappears atomically, then the contents go.
      // Stryker disable next-line StringLiteral: the kind only labels the temporary name for a reader of the directory; every temporary name starts with TEMP_PREFIX
      const trash = path.join(this.root, tempName('trash'));
      try {
        fs.renameSync(dir, trash);
        fsyncDir(this.root);
      } catch (e) {
        throw fsFailure(volumePath, 'remove the registry entry', dir, e);
      }
      // Stryker disable next-line BooleanLiteral: force matters only if the trash vanished, and only this call, under the lock, knows its name
      fs.rmSync(trash, { recursive: true, force: true });
      fs.rmSync(path.join(this.root, SANDBOX_MODES_DIR_NAME, path.basename(dir)), { recursive: true, force: true });
      try { fs.rmdirSync(path.join(this.root, SANDBOX_MODES_DIR_NAME)); } catch { /* other volumes' records remain */ }
      return users;
    });
  }

  rewriteCanonical(volumePath: string): boolean {
    return this.locked(volumePath, () => {
      const r = this.read(volumePath);
      if (r.canonical) return false;
      try {
        writeFileAtomic(r.file, serializeMountInfo(r.info), { tempDir: this.root });
      } catch (e) {
        throw fsFailure(volumePath, `rewrite ${MOUNT_INFO_FILE}`, r.file, e);
      }
      return true;
    });
  }

  list(): ListEntry[] {
    let names: fs.Dirent[];
    try {
      names = fs.readdirSync(this.root, { withFileTypes: true });
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return [];
      throw fsFailure('', 'list the registry root', this.root, e);
    }
    const out: ListEntry[] = [];
    for (const d of names) {
      if (d.name.startsWith(TEMP_PREFIX)) continue;
      const dir = path.join(this.root, d.name);
      const decoded = decodeVolumeDirName(d.name);
      // Stryker disable next-line ConditionalExpression: a canonical name decodes loosely to the same path, which `decoded` already gives
      const loose = decoded === undefined ? decodeLooseDirName(d.name) : undefined;
      const entry: ListEntry = { volumePath: decoded ?? loose ?? '', name: d.name, dir, sandboxes: [] };
      if (decoded === undefined) {
        entry.error = loose !== undefined
          ? `directory name is not Kata's encoding of "${loose}" (Kata looks for ${encodeVolumePath(loose)}); add the volume again with katavol and delete ${dir}`
          : `not a registry entry (the name is not a base64url-encoded volume path)${d.name === MOUNT_INFO_FILE ? '; probably written by kata-runtime direct-volume add with an empty path' : ''}; delete ${dir} if it is stale`;
      } else {
        try {
          entry.info = this.read(decoded).info;
        } catch (e) {
          entry.error = messageOf(e);
        }
        entry.sandboxes = this.sandboxesOf(decoded).map((s) => s.id);
      }
      out.push(entry);
    }
    return out.sort((a, b) => byteOrder(a.volumePath, b.volumePath) || byteOrder(a.name, b.name));
  }

  /** Where katavol keeps its part of a sandbox's record (see SANDBOX_MODES_DIR_NAME). */
  sandboxModeFile(volumePath: string, sandboxId: string): string {
    return path.join(this.root, SANDBOX_MODES_DIR_NAME, path.basename(this.entryDir(volumePath)), path.basename(this.sandboxFile(volumePath, sandboxId)));
  }

  private sandboxFile(volumePath: string, sandboxId: string): string {
    if (typeof sandboxId !== 'string' || !SANDBOX_ID.test(sandboxId) || Buffer.byteLength(sandboxId) > MAX_NAME_BYTES || sandboxId === MOUNT_INFO_FILE) {
      throw new VolumeError(volumePath, `sandbox id ${JSON.stringify(sandboxId)} is not valid`, 'use a containerd-style id: letters, digits, ".", "_" and "-", starting with a letter or digit');
    }
    return path.join(this.entryDir(volumePath), sandboxId);
  }

  /** Records that the sandbox uses the volume, and how; replaces an earlier record of the same sandbox. */
  recordSandbox(volumePath: string, sandboxId: string, backend = '', readOnly = false): void {
    this.recordSandboxIf(volumePath, sandboxId, backend, readOnly, () => undefined);
  }

  /**
   * Records the sandbox only if `check` (given the other sandboxes' records, read under the volume's
   * lock) does not throw: check and record are one step for every process using this registry.
   */
  recordSandboxIf(volumePath: string, sandboxId: string, backend: string, readOnly: boolean, check: (others: SandboxUse[]) => void): void {
    const file = this.sandboxFile(volumePath, sandboxId);
    if (/\s/.test(backend) || backend === READ_ONLY_MARK) {
      throw new VolumeError(volumePath, `backend name ${JSON.stringify(backend)} cannot be stored in a sandbox record (it would read back differently)`, `use a backend name without white space, other than "${READ_ONLY_MARK}"`, file);
    }
    this.requireEntryDir(volumePath);
    this.locked(volumePath, () => {
      this.requireEntryDir(volumePath);
      check(this.sandboxesOf(volumePath).filter((u) => u.id !== sandboxId));
      // Our mode first, then Kata's form of the record: an empty <sandbox id> file, 0600, as Go writes it.
      const mode = this.sandboxModeFile(volumePath, sandboxId);
      try {
        fs.mkdirSync(path.dirname(mode), { recursive: true, mode: 0o700 });
        writeFileAtomic(mode, formatSandboxRecord(backend, readOnly), { tempDir: this.root });
        fs.writeFileSync(file, '', { mode: 0o600 });
      } catch (e) {
        this.pruneModeDirs(mode); // the directories made for a record that failed (nothing half-created)
        throw fsFailure(volumePath, `record sandbox ${sandboxId}`, file, e);
      }
    });
  }

  releaseSandbox(volumePath: string, sandboxId: string): void {
    if (!this.isRegistered(volumePath)) return;
    this.releaseSandboxIf(volumePath, sandboxId, () => true);
  }

  /**
   * Runs `decide` under the volume's lock (also when the volume is no longer registered) and drops the
   * sandbox's record if it returns true: a backend's "is this the pod's last user?" and the release
   * are then one step against every process using this registry. `settled` runs next, still under the
   * lock, once the record is gone or kept: a caller's own note that the volume is released belongs
   * there, so a release killed half-way never notes it while the record stays (the next one redoes it).
   */
  releaseSandboxIf(volumePath: string, sandboxId: string, decide: () => boolean, settled?: () => void): void {
    const file = this.sandboxFile(volumePath, sandboxId);
    this.locked(volumePath, () => {
      if (decide() && this.isRegistered(volumePath)) {
        try {
          fs.rmSync(file, { force: true });
          this.dropMode(this.sandboxModeFile(volumePath, sandboxId));
        } catch (e) {
          throw fsFailure(volumePath, `release sandbox ${sandboxId}`, file, e);
        }
      }
      settled?.();
    });
  }

  /** Removes our part of a record, and the volume's mode directory once empty. */
  private dropMode(mode: string): void {
    fs.rmSync(mode, { force: true });
    this.pruneModeDirs(mode);
  }

  /** Removes the volume's mode directory and the one above it, each only once empty. */
  private pruneModeDirs(mode: string): void {
    try {
      fs.rmdirSync(path.dirname(mode));
      fs.rmdirSync(path.dirname(path.dirname(mode)));
    } catch { /* other sandboxes' or volumes' records remain, or already gone */ }
  }

  sandboxesOf(volumePath: string): SandboxUse[] {
    if (!this.isRegistered(volumePath)) return [];
    const dir = this.entryDir(volumePath);
    let names: fs.Dirent[];
    try {
      names = fs.readdirSync(dir, { withFileTypes: true });
    } catch (e) {
      // Stryker disable next-line all: removed since isRegistered looked, a race between processes (test/volumes/concurrency.test.ts drives it with 4 writer processes and a reader)
      if (errnoOf(e) === 'ENOENT') return [];
      throw fsFailure(volumePath, 'list the registry entry', dir, e);
    }
    const out: SandboxUse[] = [];
    for (const d of names) {
      if (!d.isFile() || d.name === MOUNT_INFO_FILE || !SANDBOX_ID.test(d.name)) continue;
      let content: string;
      try {
        const c = readRegularFile(path.join(dir, d.name), { maxBytes: SANDBOX_RECORD_MAX_BYTES });
        // Stryker disable next-line ConditionalExpression,BlockStatement: released since the listing, a race between processes (test/volumes/concurrency.test.ts drives it with 4 writer processes and a reader)
        if (c === undefined) continue; // released meanwhile
        content = c;
      } catch (e) {
        if (!(e instanceof UnreadableFileError)) throw e;
        content = ''; // swapped for something odd since the listing: a record all the same, of unknown mode
      }
      // Kata's empty file; our mode beside it when we recorded it (a record of an older katavol holds it inline).
      if (content.trim() === '') {
        try { content = readRegularFile(this.sandboxModeFile(volumePath, d.name), { maxBytes: SANDBOX_RECORD_MAX_BYTES }) ?? ''; } catch { /* written by Kata */ }
      }
      out.push({ id: d.name, ...parseSandboxRecord(content) });
    }
    // Stryker disable next-line MethodExpression,ArrowFunction: readdirSync already lists names in byte order (libuv sorts scandir's result with strcmp); the sort keeps the order from resting on that
    return out.sort((a, b) => byteOrder(a.id, b.id));
  }
}

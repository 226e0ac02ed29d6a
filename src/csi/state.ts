// The plugin's memory, on disk: one JSON record per volume under <state>/volumes/<id>.json, written
// atomically under the volume's lock. Every RPC reads what it needs from here, so a restarted plugin
// (or a second one) answers exactly as the first would have; nothing is kept in process memory.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { TEMP_PREFIX, errnoOf, writeFileAtomic } from '../volumes/files';
import { withLock } from '../volumes/lock';
import { messageOf } from '../volumes/types';
import { internal } from './errors';

export type CsiVolumeType = 'directvol' | 'spdkvol' | 'vfiovol';

export interface VolumeRecord {
  id: string;
  /** CreateVolume's name: the idempotency key. */
  name: string;
  capacityBytes: number;
  volumeType: CsiVolumeType;
  fsType: string;
  /** Image file (directvol), vhost-user socket (spdkvol) or PCI address / VFIO group (vfiovol). */
  device: string;
  /** The volume_context CreateVolume answered with (Kata's keys). */
  context: Record<string, string>;
  /** Staging paths NodeStageVolume succeeded on. */
  staged: string[];
  /** Target paths NodePublishVolume registered, and how. */
  published: Record<string, { readOnly: boolean; stagingPath: string }>;
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const SAFE_TAG = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/**
 * Volume ids this plugin hands out (and so the only ones that can name a record file):
 * `<name>@<node>`. The node part lets every node's plugin tell its own volumes from other nodes'
 * (ControllerExpandVolume is called on whichever node the one csi-resizer runs).
 */
const VOLUME_ID = /^([A-Za-z0-9][A-Za-z0-9._-]{0,127})@([A-Za-z0-9][A-Za-z0-9._-]{0,63})$/;

const digest = (s: string, n: number): string => crypto.createHash('sha256').update(s).digest('hex').slice(0, n);

/** The node part of the ids a node hands out: its name, or a digest of a name too long or odd for a file name. */
export function nodeTag(nodeId: string): string {
  return SAFE_TAG.test(nodeId) ? nodeId : `h-${digest(nodeId, 32)}`;
}

/** The id CreateVolume gives `name` on `nodeId` (pvc-<uid> names are used as they are). */
export function volumeIdFor(name: string, nodeId: string): string {
  return `${SAFE_NAME.test(name) ? name : `kv-${digest(name, 40)}`}@${nodeTag(nodeId)}`;
}

/** The node tag of a katavol volume id, or undefined when `id` is not one. */
export function nodeTagOf(id: string): string | undefined {
  return typeof id === 'string' ? VOLUME_ID.exec(id)?.[2] : undefined;
}

export function isValidVolumeId(id: string): boolean {
  return nodeTagOf(id) !== undefined;
}

export class VolumeStore {
  readonly dir: string;
  private readonly lockDir: string;

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'volumes');
    this.lockDir = path.join(stateDir, `${TEMP_PREFIX}locks`);
  }

  private file(id: string): string {
    return path.join(this.dir, `${id}.json`);
  }

  /** Runs fn holding the lock of `key` (a volume id, or `name:<name>` while creating). */
  locked<T>(key: string, fn: () => T): T {
    return withLock({ volumePath: key, lockDir: this.lockDir, entryName: key }, fn);
  }

  get(id: string): VolumeRecord | undefined {
    if (!isValidVolumeId(id)) return undefined;
    const file = this.file(id);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return undefined;
      throw internal(id, `cannot read the plugin's record ${file}: ${messageOf(e)}`, 'check the --state directory', e);
    }
    try {
      const rec = JSON.parse(text) as VolumeRecord;
      if (rec.id !== id || typeof rec.name !== 'string' || !Number.isSafeInteger(rec.capacityBytes)) throw new Error('fields missing or wrong');
      rec.staged ??= [];
      rec.published ??= {};
      return rec;
    } catch (e) {
      throw internal(id, `the plugin's record ${file} is damaged (${messageOf(e)})`, 'restore it from a backup, or delete it and the PersistentVolume', e);
    }
  }

  list(): VolumeRecord[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return [];
      throw e;
    }
    return names
      .filter((n) => n.endsWith('.json') && !n.startsWith('.'))
      .map((n) => this.get(n.slice(0, -'.json'.length)))
      .filter((r): r is VolumeRecord => r !== undefined)
      .sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  byName(name: string): VolumeRecord | undefined {
    return this.list().find((r) => r.name === name);
  }

  put(rec: VolumeRecord): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeFileAtomic(this.file(rec.id), JSON.stringify(rec, null, 2) + '\n');
  }

  delete(id: string): void {
    fs.rmSync(this.file(id), { force: true });
  }
}

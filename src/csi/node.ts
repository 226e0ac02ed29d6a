// CSI Node service. Stage makes the image ready (created at its exact size, formatted only when
// blank); publish registers the pod's target path as a Kata direct volume through the registry
// library; unpublish unregisters it unless a sandbox still holds the volume; unstage keeps the data.
// Everything is decided from the state records and the registry on disk, so it is correct after a restart.
import * as fs from 'fs';
import { type Registry } from '../volumes/registry';
import { volumeStats } from '../volumes/stats';
import { HOST_BACKEND, resizeVolume } from '../volumes/resize';
import { validateDevice } from '../volumes/device';
import { errnoOf, lstatOrUndefined } from '../volumes/files';
import { type MountInfo } from '../volumes/types';
import { Status, alreadyExists, failedPrecondition, invalidArgument, notFound, outOfRange, volumeStep } from './errors';
import { ensureFilesystem, ensureImage } from './image';
import { type CsiOptions } from './options';
import { checkKubeletPath } from './paths';
import { type CapacityRange, type VolumeCapability, capabilityProblem, requireId, sizeFor } from './requests';
import { type VolumeRecord, type VolumeStore } from './state';
import { nodeTopology, MIN_IMAGE_SIZE } from './controller';

interface StageRequest { volume_id: string; staging_target_path: string; volume_capability: VolumeCapability | null; volume_context: Record<string, string> }
interface PublishRequest extends StageRequest { target_path: string; readonly: boolean }

const FIX_ID = 'check the PersistentVolume\'s volumeHandle; the volume may have been deleted';

export class NodeService {
  constructor(private readonly o: CsiOptions, private readonly store: VolumeStore, private readonly reg: Registry) {}

  /** The volume's record, or NOT_FOUND; `fn` then runs under the volume's lock with a fresh copy. */
  private withVolume<T>(id: string, fn: (r: VolumeRecord) => T): T {
    if (!this.store.get(id)) throw notFound(id, 'no such volume on this node', FIX_ID);
    return this.store.locked(id, () => {
      const r = this.store.get(id);
      if (!r) throw notFound(id, 'no such volume on this node (deleted meanwhile)', FIX_ID);
      return fn(r);
    });
  }

  private requireCapability(id: string, cap: VolumeCapability | null): VolumeCapability {
    const p = capabilityProblem(cap);
    if (p) throw invalidArgument(id, p, 'use a filesystem volume with a single-node access mode');
    return cap as VolumeCapability;
  }

  private path(id: string, field: string, p: string): string {
    return checkKubeletPath(id, field, p, this.o.kubeletDir);
  }

  NodeStageVolume(req: StageRequest): object {
    const id = requireId(req.volume_id);
    const staging = this.path(id, 'staging_target_path', req.staging_target_path);
    this.requireCapability(id, req.volume_capability);
    return this.withVolume(id, (r) => {
      const other = r.staged.find((s) => s !== staging);
      if (other) throw failedPrecondition(id, `is already staged at ${other}`, 'unstage it there first (a volume has one staging path per node)');
      if (r.volumeType === 'directvol') {
        const img = ensureImage(id, r.device, r.capacityBytes);
        // A smaller image is one expanded while unstaged: NodeExpandVolume grows it once published.
        ensureFilesystem(id, r.device, r.fsType);
        if (img.size > r.capacityBytes) r.capacityBytes = img.size;
      } else {
        volumeStep(id, Status.FAILED_PRECONDITION, () => validateDevice(this.mountInfo(r, {}, false), id));
      }
      fs.mkdirSync(staging, { recursive: true, mode: 0o750 });
      if (!r.staged.includes(staging)) r.staged.push(staging);
      this.store.put(r);
      return {};
    });
  }

  NodeUnstageVolume(req: { volume_id: string; staging_target_path: string }): object {
    const id = requireId(req.volume_id);
    const staging = this.path(id, 'staging_target_path', req.staging_target_path);
    return this.withVolume(id, (r) => {
      const targets = Object.entries(r.published).filter(([, p]) => p.stagingPath === staging).map(([t]) => t);
      if (targets.length) throw failedPrecondition(id, `is still published at ${targets.join(', ')}`, 'unpublish it first (NodeUnpublishVolume)');
      if (!r.staged.includes(staging)) return {}; // not staged there: already done
      // The image stays: data outlives the pods until DeleteVolume.
      r.staged = r.staged.filter((s) => s !== staging);
      this.store.put(r);
      return {};
    });
  }

  private mountInfo(r: VolumeRecord, context: Record<string, string>, readOnly: boolean): MountInfo {
    return { volumeType: r.volumeType, device: r.device, fsType: r.fsType, metadata: { ...r.context, ...context }, options: ['bind', readOnly ? 'ro' : 'rw'] };
  }

  /** The registered entry at `target`, if any, and whether it is this volume's. */
  private registered(id: string, target: string, r: VolumeRecord): { info: MountInfo; ours: boolean } | undefined {
    if (!this.reg.isRegistered(target)) return undefined;
    const info = volumeStep(id, Status.FAILED_PRECONDITION, () => this.reg.read(target).info);
    return { info, ours: info.device === r.device && info.volumeType === r.volumeType };
  }

  NodePublishVolume(req: PublishRequest): object {
    const id = requireId(req.volume_id);
    const target = this.path(id, 'target_path', req.target_path);
    const staging = this.path(id, 'staging_target_path', req.staging_target_path);
    const cap = this.requireCapability(id, req.volume_capability);
    if (cap.mount?.mount_flags?.length) {
      throw invalidArgument(id, `mount flags ${cap.mount.mount_flags.join(',')} cannot be applied: the guest mounts the volume`, 'remove mountOptions from the StorageClass or PersistentVolume');
    }
    const readOnly = req.readonly || cap.access_mode?.mode === 'SINGLE_NODE_READER_ONLY';
    return this.withVolume(id, (r) => {
      if (!r.staged.includes(staging)) throw failedPrecondition(id, `is not staged at ${staging}`, 'call NodeStageVolume first');
      const info = this.mountInfo(r, req.volume_context ?? {}, readOnly);
      const have = this.registered(id, target, r);
      if (have && !have.ours) {
        throw alreadyExists(id, `target ${target} is registered for another device (${have.info.volumeType} ${have.info.device})`, 'unpublish that volume first');
      }
      if (have && !have.info.options.includes(readOnly ? 'ro' : 'rw')) {
        throw alreadyExists(id, `is already published at ${target} ${readOnly ? 'read-write' : 'read-only'}`, 'unpublish it first to change the mode');
      }
      const st = lstatOrUndefined(target);
      if (st && !st.isDirectory()) throw failedPrecondition(id, `target ${target} exists and is not a directory`, 'remove it; kubelet expects the plugin to create the target directory');
      // Record first, then register: a crash in between leaves a record that unpublish cleans up.
      r.published[target] = { readOnly, stagingPath: staging };
      this.store.put(r);
      fs.mkdirSync(target, { recursive: true, mode: 0o750 });
      volumeStep(id, Status.INTERNAL, () => this.reg.add(target, JSON.stringify(toJson(info))));
      return {};
    });
  }

  NodeUnpublishVolume(req: { volume_id: string; target_path: string }): object {
    const id = requireId(req.volume_id);
    const target = this.path(id, 'target_path', req.target_path);
    return this.withVolume(id, (r) => {
      const have = this.registered(id, target, r);
      if (have && !have.ours) throw failedPrecondition(id, `target ${target} is registered for another device (${have.info.volumeType} ${have.info.device}), not this volume`, 'unpublish the volume it belongs to');
      if (have) {
        const users = this.reg.sandboxesOf(target);
        if (users.length) {
          throw failedPrecondition(id, `sandbox ${users.map((u) => u.id).join(', ')} still holds the volume at ${target}`,
            `stop the pod first (kubelet retries); if no such sandbox exists any more, delete its stale record under ${this.reg.entryDir(target)}`);
        }
        volumeStep(id, Status.INTERNAL, () => this.reg.remove(target));
      }
      try {
        fs.rmdirSync(target); // only when empty: whatever is inside is someone's data
      } catch (e) {
        if (errnoOf(e) !== 'ENOENT' && errnoOf(e) !== 'ENOTEMPTY') throw e;
      }
      if (r.published[target]) {
        delete r.published[target];
        this.store.put(r);
      }
      return {};
    });
  }

  /** The published target at volume_path: stats and expansion work through its registry entry. */
  private publishedAt(id: string, volumePath: string, r: VolumeRecord): string {
    const have = this.registered(id, volumePath, r);
    if (!have || !have.ours) throw notFound(id, `is not published at ${volumePath}`, 'give the target path the volume was published at');
    return volumePath;
  }

  NodeGetVolumeStats(req: { volume_id: string; volume_path: string }): object {
    const id = requireId(req.volume_id);
    const volumePath = this.path(id, 'volume_path', req.volume_path);
    const r = this.store.get(id);
    if (!r) throw notFound(id, 'no such volume on this node', FIX_ID);
    const s = volumeStep(id, Status.INTERNAL, () => volumeStats(this.reg, this.publishedAt(id, volumePath, r)));
    const usage: object[] = [];
    if (s.usage) {
      usage.push({ unit: 'BYTES', total: String(s.usage.totalBytes), used: String(s.usage.usedBytes), available: String(s.usage.availableBytes) });
      if (s.usage.inodes !== undefined) {
        usage.push({ unit: 'INODES', total: String(s.usage.inodes), used: String(s.usage.inodes - (s.usage.inodesFree ?? 0)), available: String(s.usage.inodesFree ?? 0) });
      }
    } else if (s.sizeBytes !== undefined) {
      usage.push({ unit: 'BYTES', total: String(s.sizeBytes) });
    }
    return { usage };
  }

  NodeExpandVolume(req: { volume_id: string; volume_path: string; capacity_range: CapacityRange | null }): object {
    const id = requireId(req.volume_id);
    const volumePath = this.path(id, 'volume_path', req.volume_path);
    return this.withVolume(id, (r) => {
      if (r.volumeType !== 'directvol') throw invalidArgument(id, `is a ${r.volumeType} volume; katavol grows directvol image volumes only`, 'grow the device with its own tools');
      const target = this.publishedAt(id, volumePath, r);
      const size = req.capacity_range ? sizeFor(id, req.capacity_range, MIN_IMAGE_SIZE, this.o.maxVolumeSize) : r.capacityBytes;
      const current = fs.statSync(r.device).size;
      if (size < current) throw outOfRange(id, `${size} bytes is less than the image's ${current} bytes; katavol never shrinks a volume`, `ask for at least ${current} bytes`);
      const vms = this.reg.sandboxesOf(target).filter((s) => s.backend !== HOST_BACKEND);
      if (vms.length) {
        throw failedPrecondition(id, `VM sandbox ${vms.map((s) => s.id).join(', ')} holds the volume, and a running VM does not see its disk grow`, 'restart the pod; kubelet expands the volume before the next one starts');
      }
      const res = volumeStep(id, Status.INTERNAL, () => resizeVolume(this.reg, target, size));
      if (res.newSize > r.capacityBytes) {
        r.capacityBytes = res.newSize;
        this.store.put(r);
      }
      return { capacity_bytes: String(res.newSize) };
    });
  }

  NodeGetCapabilities(): object {
    return { capabilities: ['STAGE_UNSTAGE_VOLUME', 'GET_VOLUME_STATS', 'EXPAND_VOLUME'].map((type) => ({ rpc: { type } })) };
  }

  NodeGetInfo(): object {
    return { node_id: this.o.nodeId, max_volumes_per_node: '0', accessible_topology: nodeTopology(this.o) };
  }
}

/** mountInfo.json's field names, for Registry.add (which validates and writes the canonical form). */
function toJson(i: MountInfo): object {
  return { 'volume-type': i.volumeType, device: i.device, fstype: i.fsType, metadata: i.metadata, options: i.options };
}

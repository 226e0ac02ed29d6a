// CSI Controller service, node-local (csi-provisioner --node-deployment): a volume is a record in the
// state directory plus, once staged, an image file in the storage directory of this node.
import * as fs from 'fs';
import { alreadyExists, failedPrecondition, invalidArgument, notFound, resourceExhausted } from './errors';
import { imagePath } from './image';
import { type CsiOptions } from './options';
import { type CapacityRange, type VolumeCapability, capabilityProblem, requireCapabilities, requireId, sizeFor } from './requests';
import { type VolumeRecord, type VolumeStore, nodeTag, nodeTagOf, volumeIdFor } from './state';
import { PARAM_VOLUME_TYPE, readParams, volumeContext } from './volume-params';

/** Smallest image: room for ext2/3/4 metadata and a journal. */
export const MIN_IMAGE_SIZE = 16 * 2 ** 20;
/** mkfs.xfs (xfsprogs >= 5.19) refuses filesystems under 300 MiB. */
export const MIN_XFS_SIZE = 300 * 2 ** 20;

export interface Topology {
  segments: Record<string, string>;
}

export const topologyKey = (o: CsiOptions): string => `${o.driverName}/node`;
export const nodeTopology = (o: CsiOptions): Topology => ({ segments: { [topologyKey(o)]: o.nodeId } });

interface CreateVolumeRequest {
  name: string;
  capacity_range: CapacityRange | null;
  volume_capabilities: VolumeCapability[];
  parameters: Record<string, string>;
  volume_content_source: object | null;
  accessibility_requirements: { requisite: Topology[]; preferred: Topology[] } | null;
}

export class ControllerService {
  constructor(private readonly o: CsiOptions, private readonly store: VolumeStore) {}

  private volumeOf(r: VolumeRecord): object {
    return { volume_id: r.id, capacity_bytes: String(r.capacityBytes), volume_context: r.context, accessible_topology: [nodeTopology(this.o)] };
  }

  CreateVolume(req: CreateVolumeRequest): object {
    const name = req.name;
    if (!name) throw invalidArgument('', 'name is missing', 'send the volume name (csi-provisioner sends pvc-<uid>)');
    requireCapabilities(name, req.volume_capabilities);
    if (req.volume_content_source) throw invalidArgument(name, 'volume_content_source is set, but katavol cannot clone volumes or restore snapshots', 'create the PVC without dataSource');
    const params = readParams(name, req.parameters, req.volume_capabilities.map((c) => c.mount?.fs_type ?? ''));
    const min = params.volumeType !== 'directvol' ? 1 : params.fsType === 'xfs' ? MIN_XFS_SIZE : MIN_IMAGE_SIZE;
    const size = sizeFor(name, req.capacity_range, min, this.o.maxVolumeSize);
    const requisite = req.accessibility_requirements?.requisite ?? [];
    const key = topologyKey(this.o);
    if (requisite.length && !requisite.some((t) => t.segments?.[key] === this.o.nodeId)) {
      throw resourceExhausted(name, `the requisite topology does not include this node (${key}=${this.o.nodeId})`, 'schedule the pod onto a node whose plugin provisions the volume (volumeBindingMode: WaitForFirstConsumer)');
    }

    return this.store.locked(`name:${name}`, () => {
      const existing = this.store.byName(name);
      if (existing) {
        const limit = BigInt(req.capacity_range?.limit_bytes || '0');
        const sameKind = existing.volumeType === params.volumeType && existing.fsType === params.fsType && existing.device === (params.device || existing.device);
        if (!sameKind || existing.capacityBytes < size || (limit > 0n && BigInt(existing.capacityBytes) > limit)) {
          throw alreadyExists(name, `a volume of this name exists (${existing.id}: ${existing.volumeType} ${existing.fsType}, ${existing.capacityBytes} bytes) and does not match this request (${params.volumeType} ${params.fsType}, ${size} bytes)`,
            'use another name, or delete the existing volume first');
        }
        return { volume: this.volumeOf(existing) };
      }
      const id = volumeIdFor(name, this.o.nodeId);
      if (this.store.get(id)) throw alreadyExists(name, `volume id ${id} is taken by another name`, 'use another volume name');
      if (params.volumeType === 'directvol') this.requireSpace(name, size);
      const rec: VolumeRecord = {
        id, name, capacityBytes: size, volumeType: params.volumeType, fsType: params.fsType,
        device: params.volumeType === 'directvol' ? imagePath(this.o.storageDir, id) : params.device,
        context: volumeContext(name, params, size), staged: [], published: {},
      };
      this.store.put(rec);
      return { volume: this.volumeOf(rec) };
    });
  }

  /** Images are sparse, but a volume larger than the free space would fail its writes later, inside the pod. */
  private requireSpace(name: string, size: number): void {
    fs.mkdirSync(this.o.storageDir, { recursive: true, mode: 0o700 });
    const s = fs.statfsSync(this.o.storageDir);
    const free = s.bavail * s.bsize;
    if (size > free) {
      throw resourceExhausted(name, `${size} bytes asked, but the storage directory ${this.o.storageDir} has ${free} bytes free`, 'ask for less, or free space on the node');
    }
  }

  DeleteVolume(req: { volume_id: string }): object {
    const id = requireId(req.volume_id);
    const rec = this.store.get(id);
    if (!rec) return {}; // already gone: DeleteVolume is idempotent
    return this.store.locked(id, () => {
      const r = this.store.get(id);
      if (!r) return {};
      const targets = Object.keys(r.published);
      if (targets.length || r.staged.length) {
        throw failedPrecondition(id, `is still ${targets.length ? `published at ${targets.join(', ')}` : `staged at ${r.staged.join(', ')}`}`, 'delete the pods using it first (kubelet then unpublishes and unstages it)');
      }
      if (r.volumeType === 'directvol') fs.rmSync(r.device, { force: true });
      this.store.delete(id);
      return {};
    });
  }

  ControllerExpandVolume(req: { volume_id: string; capacity_range: CapacityRange | null }): object {
    const id = requireId(req.volume_id);
    if (!this.store.get(id)) {
      const owner = nodeTagOf(id);
      if (owner === undefined || owner === nodeTag(this.o.nodeId)) throw notFound(id, 'no such volume on this node', 'check the PersistentVolume\'s volumeHandle');
      // Another node's volume (the one csi-resizer of the cluster runs here): its node checks and
      // grows it in NodeExpandVolume, with this size.
      const size = sizeFor(id, req.capacity_range, MIN_IMAGE_SIZE, this.o.maxVolumeSize);
      return { capacity_bytes: String(size), node_expansion_required: true };
    }
    return this.store.locked(id, () => {
      const r = this.store.get(id);
      if (!r) throw notFound(id, 'no such volume on this node (deleted meanwhile)', 'check the PersistentVolume\'s volumeHandle');
      if (r.volumeType !== 'directvol') throw invalidArgument(id, `is a ${r.volumeType} volume; katavol grows directvol image volumes only`, 'grow the device with its own tools');
      const size = sizeFor(id, req.capacity_range, MIN_IMAGE_SIZE, this.o.maxVolumeSize);
      if (size > r.capacityBytes) {
        this.requireSpace(id, size - r.capacityBytes);
        r.capacityBytes = size;
        r.context = { ...r.context, capacity_in_bytes: String(size) };
        this.store.put(r);
      }
      // The image and its filesystem grow in NodeExpandVolume, on the node, where katavol can see who holds it.
      return { capacity_bytes: String(r.capacityBytes), node_expansion_required: true };
    });
  }

  ValidateVolumeCapabilities(req: { volume_id: string; volume_capabilities: VolumeCapability[]; volume_context: Record<string, string>; parameters: Record<string, string> }): object {
    const id = requireId(req.volume_id);
    if (!req.volume_capabilities?.length) throw invalidArgument(id, 'volume_capabilities is missing', 'send at least one volume capability');
    if (!this.store.get(id)) throw notFound(id, 'no such volume on this node', 'check the PersistentVolume\'s volumeHandle');
    const problem = req.volume_capabilities.map(capabilityProblem).find((p) => p !== undefined);
    if (problem) return { message: problem };
    return { confirmed: { volume_context: req.volume_context, volume_capabilities: req.volume_capabilities, parameters: req.parameters } };
  }

  GetCapacity(req: { parameters: Record<string, string> }): object {
    const type = Object.entries(req.parameters ?? {}).find(([k]) => k.toLowerCase() === PARAM_VOLUME_TYPE)?.[1] ?? 'directvol';
    if (type !== 'directvol') return { available_capacity: '0' };
    fs.mkdirSync(this.o.storageDir, { recursive: true, mode: 0o700 });
    const s = fs.statfsSync(this.o.storageDir);
    const free = s.bavail * s.bsize;
    return { available_capacity: String(free), maximum_volume_size: { value: String(Math.min(free, this.o.maxVolumeSize)) }, minimum_volume_size: { value: String(MIN_IMAGE_SIZE) } };
  }

  ControllerGetCapabilities(): object {
    return { capabilities: ['CREATE_DELETE_VOLUME', 'EXPAND_VOLUME', 'GET_CAPACITY'].map((type) => ({ rpc: { type } })) };
  }
}

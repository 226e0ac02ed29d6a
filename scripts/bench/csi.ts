// CSI section: what `katavol csi` costs kubelet and csi-provisioner. The plugin's start-up (process to
// first Probe answer; kubelet waits on it after every plugin restart), and each RPC of a volume's life
// as a client on csi.proto sees it, next to the direct path: the same host work done in this process
// (truncate + mkfs.ext4 for NodeStageVolume, Registry.add/remove for publish/unpublish).
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { fmt, median, printTable, type Section } from './section';
import { CsiPlugin, csiDirs } from '../../test/support/csi';
import { tmpDir } from '../../test/support/containerd';
import { Registry } from '../../src/volumes/registry';

const STARTS = 5;
const VOLUMES = 8;
const SIZE = 64 * 2 ** 20;
const RWO = { mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };

async function timed(f: () => unknown): Promise<number> {
  const t = process.hrtime.bigint();
  await f();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

export const section: Section = {
  name: 'csi',
  title: `katavol csi: plugin start-up (${STARTS} runs) and the RPCs of ${VOLUMES} volumes of 64 MiB (ms, median)`,
  async run() {
    const root = tmpDir('katavol-bench-csi-');
    const dirs = csiDirs(root);
    const plugin = new CsiPlugin(dirs);
    try {
      const starts: number[] = [];
      for (let i = 0; i < STARTS; i++) {
        starts.push(await timed(() => plugin.start()));
        await plugin.stop();
      }
      const c = await plugin.start();
      const reg = new Registry(path.join(root, 'direct-registry'));
      const t: Record<string, number[]> = {};
      const add = (k: string, ms: number): void => void (t[k] ??= []).push(ms);
      for (let i = 0; i < VOLUMES; i++) {
        const name = `pvc-bench-${i}`;
        const staging = path.join(dirs.kubelet, `plugins/x/${i}/globalmount`);
        const target = path.join(dirs.kubelet, `pods/${i}/volumes/kubernetes.io~csi/${name}/mount`);
        let id = '';
        add('CreateVolume', await timed(async () => {
          const r = (await c.controller.CreateVolume({ name, capacity_range: { required_bytes: String(SIZE) }, volume_capabilities: [RWO] })) as { volume: { volume_id: string } };
          id = r.volume.volume_id;
        }));
        add('NodeStageVolume (new image, mkfs)', await timed(() => c.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: RWO })));
        add('NodePublishVolume', await timed(() => c.node.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: RWO })));
        add('NodeGetVolumeStats', await timed(() => c.node.NodeGetVolumeStats({ volume_id: id, volume_path: target })));
        add('NodeUnpublishVolume', await timed(() => c.node.NodeUnpublishVolume({ volume_id: id, target_path: target })));
        add('NodeUnstageVolume', await timed(() => c.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging })));
        add('NodeStageVolume (reused image)', await timed(() => c.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: RWO })));
        await c.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
        add('DeleteVolume', await timed(() => c.controller.DeleteVolume({ volume_id: id })));

        // The direct path: the same host work without gRPC, records or checks.
        const img = path.join(root, `direct-${i}.img`);
        add('direct: truncate + mkfs.ext4', await timed(() => { fs.writeFileSync(img, ''); fs.truncateSync(img, SIZE); spawnSync('mkfs.ext4', ['-q', '-F', '-m', '0', img]); }));
        const vp = `/kubelet/direct/${i}`;
        add('direct: Registry.add', await timed(() => reg.add(vp, JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }))));
        add('direct: Registry.remove', await timed(() => reg.remove(vp)));
        fs.rmSync(img);
      }
      const m = (k: string): number => median(t[k]);
      const rows: Array<Array<string | number>> = [['plugin start to first Probe', fmt(median(starts), 1), '']];
      const vs: Record<string, string> = {
        'NodeStageVolume (new image, mkfs)': 'direct: truncate + mkfs.ext4',
        NodePublishVolume: 'direct: Registry.add',
        NodeUnpublishVolume: 'direct: Registry.remove',
      };
      for (const k of Object.keys(t).filter((x) => !x.startsWith('direct'))) {
        rows.push([k, fmt(m(k), 1), vs[k] ? `${fmt(m(k) / m(vs[k]), 1)}x ${vs[k]} (${fmt(m(vs[k]), 1)})` : '']);
      }
      printTable(['step', 'ms', 'vs the direct path'], rows);
    } finally {
      await plugin.stop();
      fs.rmSync(root, { recursive: true, force: true });
    }
  },
};

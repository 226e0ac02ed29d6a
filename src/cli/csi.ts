// `katavol csi`: runs the CSI plugin (src/csi) until SIGTERM/SIGINT. Flags only; the services get
// everything from CsiOptions, so the edge that reads argv and the environment is this file.
import * as path from 'path';
import { type CliContext, EXIT_FAILURE, EXIT_OK, UsageError } from './context';
import { noMore, parseArgs } from './args';
import { volumeRootFor } from './direct-volume';
import { type CsiOptions, DEFAULT_DRIVER_NAME, DEFAULT_KUBELET_DIR, DEFAULT_MAX_VOLUME_SIZE, socketPathOf } from '../csi/options';
import { parseSize } from '../volumes/resize';
import { messageOf } from '../volumes/types';

export const CSI_VALUE_FLAGS = ['endpoint', 'node-id', 'storage', 'state', 'kubelet-dir', 'driver-name', 'max-volume-size'];

const USAGE = `usage: katavol csi --node-id NODE --storage DIR --state DIR [options]

Serves the CSI v1 Identity, Controller and Node services for Kata direct volumes (node-local
provisioning: run it on every node with csi-provisioner --node-deployment and node-driver-registrar).

  --endpoint unix:///PATH   socket to serve (default unix://<kubelet-dir>/plugins/<driver-name>/csi.sock)
  --node-id NODE            this node's name (the DaemonSet passes spec.nodeName)
  --storage DIR             where the volumes' image files live
  --state DIR               where the plugin keeps one record per volume (survives restarts)
  --kubelet-dir DIR         kubelet's root; staging and target paths outside it are refused (default ${DEFAULT_KUBELET_DIR})
  --driver-name NAME        CSI driver name (default ${DEFAULT_DRIVER_NAME})
  --max-volume-size SIZE    largest volume CreateVolume accepts (default 1T; bytes or 10G, 512M, ...)

Targets are registered in the direct-volume registry: $KATAVOL_VOLUME_ROOT, else the shim config's
volumeRoot, else /run/kata-containers/shared/direct-volumes.`;

function absDir(flag: string, v: string): string {
  if (!path.isAbsolute(v)) throw new UsageError(`--${flag} must be an absolute path, got ${JSON.stringify(v)}`, USAGE);
  return path.resolve(v);
}

export function parseCsiArgs(argv: string[], ctx: CliContext): CsiOptions {
  const a = parseArgs(argv, CSI_VALUE_FLAGS, [], USAGE);
  noMore(a, USAGE);
  const need = (flag: string): string => {
    const v = a.values.get(flag);
    if (!v) throw new UsageError(`missing --${flag}`, USAGE);
    return v;
  };
  const driverName = a.values.get('driver-name') ?? DEFAULT_DRIVER_NAME;
  if (!/^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/.test(driverName)) throw new UsageError(`--driver-name ${JSON.stringify(driverName)} is not a DNS-style name (e.g. ${DEFAULT_DRIVER_NAME})`, USAGE);
  const kubeletDir = absDir('kubelet-dir', a.values.get('kubelet-dir') ?? DEFAULT_KUBELET_DIR);
  const endpoint = a.values.get('endpoint') ?? `unix://${kubeletDir}/plugins/${driverName}/csi.sock`;
  if (!socketPathOf(endpoint)) throw new UsageError(`--endpoint ${JSON.stringify(endpoint)} is not unix:///absolute/path`, USAGE);
  const sizeText = a.values.get('max-volume-size');
  const maxVolumeSize = sizeText === undefined ? DEFAULT_MAX_VOLUME_SIZE : parseSize(sizeText);
  if (!maxVolumeSize) throw new UsageError(`--max-volume-size ${JSON.stringify(sizeText)} is not a positive size`, USAGE);
  const nodeId = need('node-id');
  return {
    endpoint, nodeId, driverName, kubeletDir, maxVolumeSize,
    storageDir: absDir('storage', need('storage')),
    stateDir: absDir('state', need('state')),
    volumeRoot: path.resolve(volumeRootFor(ctx)),
    version: (require('../../../package.json') as { version: string }).version,
  };
}

export async function run(argv: string[], ctx: CliContext): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    ctx.out(USAGE + '\n');
    return EXIT_OK;
  }
  const o = parseCsiArgs(argv, ctx);
  const { serveCsi, stderrLogger } = await import('../csi/server');
  const log = stderrLogger();
  let running: Awaited<ReturnType<typeof serveCsi>>;
  try {
    running = await serveCsi(o, log);
  } catch (e) {
    ctx.err(`katavol csi: ${messageOf(e)}\n`);
    return EXIT_FAILURE;
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info('katavol csi stopping', { signal });
      void running.stop().then(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return EXIT_OK;
}

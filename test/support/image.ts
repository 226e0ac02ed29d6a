// Container images built offline from Debian's static busybox, as one-layer docker archives (the
// `docker save` layout) that `ctr images import` accepts: no registry, no network.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';

export const BUSYBOX = '/usr/bin/busybox';

export interface ImageSpec {
  /** Fully qualified reference, e.g. katavol.test/busybox:1 (a short name would mean docker.io/library/...). */
  ref: string;
  entrypoint: string[];
  /** busybox applets linked into /bin (none: the rootfs is the busybox binary alone). */
  applets?: string[];
}

/** The sandbox ("pause") image: busybox sleeping forever; CRI stops it with SIGKILL. */
export const PAUSE_IMAGE: ImageSpec = { ref: 'katavol.test/pause:1', entrypoint: ['/bin/busybox', 'sleep', 'inf'] };

/** The image test containers run: a shell and the applets the tests use. */
export const BUSYBOX_IMAGE: ImageSpec = {
  ref: 'katavol.test/busybox:1',
  entrypoint: ['/bin/sh'],
  applets: ['sh', 'sleep', 'cat', 'echo', 'ls', 'mount', 'grep', 'df', 'touch', 'sync', 'id', 'hostname', 'ps', 'rm', 'test', 'true', 'wc'],
};

function sha256(data: Buffer | string): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

function tar(args: string[]): void {
  const r = spawnSync('tar', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tar ${args.join(' ')}: ${r.stderr || r.error?.message}`);
}

/** Writes the docker archive of `spec` to `out` (work files go to a sibling temp dir, then are removed). */
export function buildImage(spec: ImageSpec, out: string): void {
  if (!fs.existsSync(BUSYBOX) || spawnSync('ldd', [BUSYBOX]).status === 0) {
    throw new Error(`${BUSYBOX} must be the static build: install the Debian package busybox-static (make deps does)`);
  }
  const work = fs.mkdtempSync(`${out}.work-`);
  try {
    const rootfs = path.join(work, 'rootfs');
    fs.mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
    fs.copyFileSync(BUSYBOX, path.join(rootfs, 'bin', 'busybox'));
    fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
    for (const a of spec.applets ?? []) fs.symlinkSync('busybox', path.join(rootfs, 'bin', a));
    // Reproducible layer: sorted, numeric root ownership, epoch mtimes.
    tar(['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', rootfs, '-cf', path.join(work, 'layer.tar'), '.']);
    const diffId = sha256(fs.readFileSync(path.join(work, 'layer.tar')));
    const config = JSON.stringify({
      architecture: 'amd64', os: 'linux',
      config: { Env: ['PATH=/bin'], Entrypoint: spec.entrypoint, WorkingDir: '/' },
      rootfs: { type: 'layers', diff_ids: [`sha256:${diffId}`] },
    });
    const configName = `${sha256(config)}.json`;
    fs.writeFileSync(path.join(work, configName), config);
    fs.writeFileSync(path.join(work, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: [spec.ref], Layers: ['layer.tar'] }]));
    tar(['-C', work, '-cf', out, 'manifest.json', configName, 'layer.tar']);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

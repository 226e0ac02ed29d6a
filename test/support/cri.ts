// A private containerd 1.6 with its CRI plugin, driven the way kubelet drives it, offline: everything under
// one scratch dir (root, state, sockets, opt, CNI config, logs, katavol's socketDir and volume registry),
// no TCP port of its own (stream server on 127.0.0.1, port 0), host-network pods (no CNI plugin needed;
// a loopback conflist makes NetworkReady true), pause and busybox images built from busybox-static and
// imported into k8s.io, and katavol as runtime handler `katavol` through a PATH link to its shim.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { PrivateContainerd, SHIM, loopDevicesOf, pidsMatching, sleep, startedFor } from './containerd';
import { POOL_DIR, stopPool } from '../../src/shim/pool';
import { CriClient, type ContainerConfig, type Mount, type PodSandboxConfig } from './cri-client';
import { BUSYBOX_IMAGE, PAUSE_IMAGE, buildImage } from './image';

export { CriClient } from './cri-client';
export type { ContainerConfig, ExecResult, Mount, PodSandboxConfig } from './cri-client';

/** The runtime handler name users put in a RuntimeClass (GUIDE: stable). */
export const KATAVOL_HANDLER = 'katavol';
export const CRI_NAMESPACE = 'k8s.io';
/** A shell loop that exits at once on SIGTERM (a plain `sleep` would make StopContainer wait for it). */
export const IDLE_COMMAND = ['/bin/sh', '-c', 'trap "exit 0" TERM; while :; do sleep 1 & wait $!; done'];
const CGROUP_ROOT = '/sys/fs/cgroup';

export interface CriContainerdOptions {
  /** katavol shim config (merged over runc backend, containerd-shim-runc-v2 downstream, private socketDir). */
  katavol?: Record<string, unknown>;
  /** Extra environment for containerd and so for the shims. */
  env?: Record<string, string>;
  debug?: boolean;
}

/** A pod as the tests hold it: its id and the config it was started with (CreateContainer needs it again). */
export interface Pod {
  id: string;
  name: string;
  config: PodSandboxConfig;
  handler: string;
}

export interface ContainerOptions {
  mounts?: Mount[];
  command?: string[];
}

function criToml(dir: string): string[] {
  const cri = '[plugins."io.containerd.grpc.v1.cri"]';
  const rt = '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes';
  return [
    '[plugins."io.containerd.internal.v1.opt"]', `  path = "${dir}/opt"`,
    cri,
    `  sandbox_image = "${PAUSE_IMAGE.ref}"`,
    // Without it runc fails the sandbox (oomScoreAdj -998) on hosts without CAP_SYS_RESOURCE.
    '  restrict_oom_score_adj = true',
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    `${cri.slice(0, -1)}.cni]`, `  bin_dir = "${dir}/cni/bin"`, `  conf_dir = "${dir}/cni/net.d"`,
    `${cri.slice(0, -1)}.containerd]`, '  default_runtime_name = "runc"',
    `${rt}.runc]`, '  runtime_type = "io.containerd.runc.v2"',
    `${rt}.runc.options]`, '  SystemdCgroup = false',
    `${rt}.${KATAVOL_HANDLER}]`, '  runtime_type = "io.containerd.katavol.v2"', '  privileged_without_host_devices = true',
  ];
}

export class CriContainerd {
  readonly client: CriClient;
  /** katavol's socketDir and volume registry root for this containerd's shims. */
  readonly socketDir: string;
  readonly volumeRoot: string;
  readonly katavolConfig: string;
  /** Pods' cgroup parent: one per instance, so cgroup leaks are ours to see and remove. */
  readonly cgroupParent: string;
  private pods = 0;

  private constructor(readonly ctd: PrivateContainerd) {
    this.client = new CriClient(ctd.sock);
    this.socketDir = path.join(ctd.dir, 's');
    this.volumeRoot = path.join(ctd.dir, 'volumes');
    this.katavolConfig = path.join(ctd.dir, 'katavol.json');
    this.cgroupParent = `/${path.basename(ctd.dir)}`;
  }

  get dir(): string {
    return this.ctd.dir;
  }

  /** Starts containerd with CRI, imports the images, waits until the runtime and network report ready. */
  static async start(opts: CriContainerdOptions = {}): Promise<CriContainerd> {
    let self: CriContainerd | undefined;
    const ctd = await PrivateContainerd.start({
      prefix: '/tmp/kvk-',
      namespace: CRI_NAMESPACE,
      debug: opts.debug,
      criToml: (dir) => {
        // Everything containerd reads is written before it starts.
        fs.mkdirSync(path.join(dir, 'bin'));
        fs.symlinkSync(SHIM, path.join(dir, 'bin', 'containerd-shim-katavol-v2'));
        fs.mkdirSync(path.join(dir, 'cni', 'bin'), { recursive: true });
        fs.mkdirSync(path.join(dir, 'cni', 'net.d'), { recursive: true });
        fs.writeFileSync(path.join(dir, 'cni', 'net.d', '10-loopback.conflist'),
          JSON.stringify({ cniVersion: '0.4.0', name: 'katavol-test-lo', plugins: [{ type: 'loopback' }] }));
        fs.writeFileSync(path.join(dir, 'katavol.json'), JSON.stringify({
          backend: 'runc', downstream: '/usr/bin/containerd-shim-runc-v2', socketDir: path.join(dir, 's'), ...opts.katavol,
        }));
        return criToml(dir);
      },
      envOf: (dir) => ({
        PATH: `${dir}/bin:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
        KATAVOL_CONFIG: path.join(dir, 'katavol.json'),
        KATAVOL_VOLUME_ROOT: path.join(dir, 'volumes'),
        ...opts.env,
      }),
    });
    try {
      self = new CriContainerd(ctd);
      for (const img of [PAUSE_IMAGE, BUSYBOX_IMAGE]) {
        const tarball = path.join(ctd.dir, `${img.ref.replace(/[^a-z0-9]+/g, '-')}.tar`);
        buildImage(img, tarball);
        const r = ctd.ctr(['images', 'import', tarball]);
        if (r.status !== 0) throw new Error(`ctr images import ${tarball}: ${r.stderr}`);
        fs.rmSync(tarball);
      }
      await self.waitReady();
      return self;
    } catch (e) {
      if (self) await self.stop(); else await ctd.stop();
      throw e;
    }
  }

  /** Until Status reports RuntimeReady and NetworkReady (after a start, the CRI plugin first answers "not initialized"). */
  private async waitReady(): Promise<void> {
    let last: unknown = {};
    for (let i = 0; i < 300; i++) {
      try {
        last = await this.client.conditions();
        const c = last as Record<string, { status: boolean }>;
        if (c.RuntimeReady?.status && c.NetworkReady?.status) return;
      } catch (e) {
        last = (e as Error).message;
      }
      await sleep(100);
    }
    throw new Error(`CRI did not become ready: ${JSON.stringify(last)}`);
  }

  /** Restarts containerd alone (pods, shims and katavol daemons keep running), as a node's containerd upgrade would. */
  async restart(): Promise<void> {
    await this.ctd.restart();
    await this.waitReady();
  }

  /** A host-network pod, as kubelet configures one (no hostname: runc refuses it without a UTS namespace). */
  podConfig(name: string): PodSandboxConfig {
    const uid = crypto.randomUUID();
    return {
      metadata: { name, uid, namespace: 'default', attempt: 0 },
      log_directory: path.join(this.ctd.dir, 'logs', `${name}_${uid}`),
      labels: { app: name },
      linux: {
        cgroup_parent: this.cgroupParent,
        security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } },
      },
    };
  }

  async runPod(name = `pod${++this.pods}`, handler = KATAVOL_HANDLER): Promise<Pod> {
    const config = this.podConfig(name);
    const id = await this.client.runPodSandbox(config, handler);
    return { id, name, config, handler };
  }

  containerConfig(name: string, opts: ContainerOptions = {}): ContainerConfig {
    return {
      metadata: { name, attempt: 0 },
      image: { image: BUSYBOX_IMAGE.ref },
      command: opts.command ?? IDLE_COMMAND,
      log_path: `${name}.log`,
      mounts: (opts.mounts ?? []).map((m) => ({ propagation: 'PROPAGATION_PRIVATE', readonly: false, ...m })),
      linux: { security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
    };
  }

  createContainer(pod: Pod, name: string, opts: ContainerOptions = {}): Promise<string> {
    return this.client.createContainer(pod.id, this.containerConfig(name, opts), pod.config);
  }

  /** CreateContainer + StartContainer, as kubelet does for each container of a pod. */
  async runContainer(pod: Pod, name: string, opts: ContainerOptions = {}): Promise<string> {
    const id = await this.createContainer(pod, name, opts);
    await this.client.startContainer(id);
    return id;
  }

  async stopAndRemoveContainer(id: string): Promise<void> {
    await this.client.stopContainer(id);
    await this.client.removeContainer(id);
  }

  async removePod(pod: Pod | string): Promise<void> {
    const id = typeof pod === 'string' ? pod : pod.id;
    await this.client.stopPodSandbox(id);
    await this.client.removePodSandbox(id);
  }

  /** containerd's bundle directory of a container or sandbox. */
  bundleOf(id: string): string {
    return this.ctd.bundleOf(id);
  }

  /** The runc shim's socket for a sandbox: /run/containerd/s/<sha256(address/namespace/sandbox id)>, whatever `state` says. */
  runcSocketOf(sandboxId: string): string {
    return `/run/containerd/s/${crypto.createHash('sha256').update(path.join(this.ctd.sock, CRI_NAMESPACE, sandboxId)).digest('hex')}`;
  }

  /** Cgroup directories of a container or sandbox that still exist (runc removes them on delete). */
  cgroupsOf(id: string): string[] {
    const out: string[] = [];
    let controllers: string[] = [];
    try {
      controllers = fs.readdirSync(CGROUP_ROOT);
    } catch {
      return out;
    }
    for (const c of controllers) {
      for (const p of [path.join(CGROUP_ROOT, c, this.cgroupParent, id), path.join(CGROUP_ROOT, this.cgroupParent, id)]) {
        if (fs.existsSync(p) && !out.includes(p)) out.push(p);
      }
    }
    return out;
  }

  /** Processes started for this containerd: shims and katavol daemons name its socket in argv, and a
   *  daemon that came from the warm pool carries this containerd's KATAVOL_CONFIG in its environment.
   *  Warm daemons still waiting in the pool are not counted (stop() stops them). */
  shimPids(): number[] {
    return startedFor(this.ctd, this.katavolConfig, this.socketDir);
  }

  /** What is left of pods and containers removed through CRI: [] when nothing (see assertNothingLeft). */
  async leftovers(ids: { pods: string[]; containers: string[] }, images: string[] = []): Promise<string[]> {
    const all = [...ids.pods, ...ids.containers];
    const found = (): string[] => {
      const out: string[] = [];
      for (const pid of this.shimPids()) out.push(`process ${pid}: ${procCmdline(pid)}`);
      for (const img of images) for (const dev of loopDevicesOf(img)) out.push(`loop device ${dev} on ${img}`);
      for (const f of listOrEmpty(this.socketDir)) if (f !== POOL_DIR) out.push(`socketDir entry ${path.join(this.socketDir, f)}`);
      for (const id of ids.pods) if (fs.existsSync(this.runcSocketOf(id))) out.push(`runc shim socket ${this.runcSocketOf(id)} (pod ${id})`);
      for (const id of all) {
        if (fs.existsSync(this.bundleOf(id))) out.push(`bundle ${this.bundleOf(id)}`);
        for (const cg of this.cgroupsOf(id)) out.push(`cgroup ${cg}`);
      }
      for (const e of listOrEmpty(this.volumeRoot)) {
        if (e.startsWith('.')) continue;
        for (const f of listOrEmpty(path.join(this.volumeRoot, e))) {
          if (f !== 'mountInfo.json' && !f.startsWith('.')) out.push(`registry record ${path.join(this.volumeRoot, e, f)}`);
        }
      }
      return out;
    };
    // Shims exit asynchronously after their last task; give them time, never assert on speed.
    let left = found();
    for (let i = 0; i < 100 && left.length; i++) {
      await sleep(100);
      left = found();
    }
    return left;
  }

  /** Removes every pod through CRI, stops containerd and its shims by pid, removes cgroups and the scratch dir. */
  async stop(): Promise<void> {
    try {
      for (const p of await this.client.listPodSandbox()) {
        await this.removePod(p.id).catch(() => undefined);
      }
    } catch { /* containerd already gone */ }
    this.client.close();
    await this.ctd.kill();
    for (const pid of pidsMatching(this.ctd.sock)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await stopPool(this.socketDir);
    for (const c of listOrEmpty(CGROUP_ROOT)) {
      const parent = path.join(CGROUP_ROOT, c, this.cgroupParent);
      for (const child of listOrEmpty(parent)) {
        try { fs.rmdirSync(path.join(parent, child)); } catch { /* a control file, or still has tasks */ }
      }
      try { fs.rmdirSync(parent); } catch { /* absent or busy */ }
    }
    await this.ctd.stop();
  }
}

function listOrEmpty(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

function procCmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '(exited)';
  }
}

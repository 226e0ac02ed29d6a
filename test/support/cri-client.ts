// A CRI v1 client (kubelet's side of containerd's CRI plugin): @grpc/grpc-js over a unix socket, with
// the RPC definitions loaded at run time from the unmodified upstream api.proto (no code generation).
// Requests and replies are plain objects with the proto's snake_case field names; enums are strings.
import * as fs from 'fs';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Our copy of kubernetes/cri-api v0.25.0 pkg/apis/runtime/v1/api.proto (what containerd 1.6 vendors). */
export const CRI_PROTO = 'k8s.io/cri-api/runtime/v1/api.proto';
/** api.proto imports github.com/gogo/protobuf/gogoproto/gogo.proto: Debian's golang-github-gogo-protobuf-dev. */
export const GOGO_INCLUDE = '/usr/share/gocode/src';

export function protoDir(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'proto', CRI_PROTO))) return path.join(dir, 'proto');
  }
  throw new Error(`cannot find proto/${CRI_PROTO} above ${__dirname}`);
}

let loaded: grpc.GrpcObject | undefined;

function runtimeV1(): grpc.GrpcObject {
  if (!loaded) {
    if (!fs.existsSync(path.join(GOGO_INCLUDE, 'github.com/gogo/protobuf/gogoproto/gogo.proto'))) {
      throw new Error(`the CRI api.proto imports gogo.proto, which is missing under ${GOGO_INCLUDE}: install the Debian package golang-github-gogo-protobuf-dev (make deps does)`);
    }
    const def = protoLoader.loadSync(CRI_PROTO, {
      keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
      includeDirs: [protoDir(), GOGO_INCLUDE],
    });
    loaded = (grpc.loadPackageDefinition(def).runtime as grpc.GrpcObject).v1 as grpc.GrpcObject;
  }
  return loaded;
}

/** A gRPC error as the client sees it: `code` (grpc.status), `details` (the server's message). */
export type CriError = grpc.ServiceError;

export function isCriError(e: unknown): e is CriError {
  return typeof (e as CriError)?.code === 'number' && typeof (e as CriError)?.details === 'string';
}

// The request shapes the tests and the demo build (a subset of api.proto's fields).
export interface Mount {
  container_path: string;
  host_path: string;
  readonly?: boolean;
  propagation?: 'PROPAGATION_PRIVATE' | 'PROPAGATION_HOST_TO_CONTAINER' | 'PROPAGATION_BIDIRECTIONAL';
}

export interface PodSandboxConfig {
  metadata: { name: string; uid: string; namespace: string; attempt?: number };
  log_directory?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: Record<string, unknown>;
  [extra: string]: unknown;
}

export interface ContainerConfig {
  metadata: { name: string; attempt?: number };
  image: { image: string };
  command?: string[];
  args?: string[];
  log_path?: string;
  mounts?: Mount[];
  linux?: Record<string, unknown>;
  [extra: string]: unknown;
}

export interface ExecResult {
  exit_code: number;
  stdout: string;
  stderr: string;
}

type Reply = Record<string, unknown> & { [k: string]: any }; // eslint-disable-line @typescript-eslint/no-explicit-any

export class CriClient {
  private readonly runtime: grpc.Client & Record<string, unknown>;
  private readonly image: grpc.Client & Record<string, unknown>;

  /** `socket` is the path of containerd's gRPC socket. */
  constructor(readonly socket: string, private readonly timeoutMs = 60000) {
    const v1 = runtimeV1();
    const address = `unix://${socket}`;
    const Runtime = v1.RuntimeService as grpc.ServiceClientConstructor;
    const Image = v1.ImageService as grpc.ServiceClientConstructor;
    this.runtime = new Runtime(address, grpc.credentials.createInsecure());
    this.image = new Image(address, grpc.credentials.createInsecure());
  }

  /** One unary call with a deadline; rejects with the gRPC error (code + details). */
  call(service: 'runtime' | 'image', method: string, request: object, timeoutMs = this.timeoutMs): Promise<Reply> {
    const client = service === 'runtime' ? this.runtime : this.image;
    const fn = client[method] as ((req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Reply) => void) => void) | undefined;
    if (typeof fn !== 'function') throw new Error(`CRI ${service} service has no method ${method}`);
    return new Promise((resolve, reject) => {
      fn.call(client, request, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, reply) => (err ? reject(err) : resolve(reply)));
    });
  }

  version(): Promise<Reply> {
    return this.call('runtime', 'Version', { version: 'v1' });
  }

  /** Runtime conditions by type (RuntimeReady, NetworkReady). */
  async conditions(): Promise<Record<string, { status: boolean; reason: string; message: string }>> {
    const r = await this.call('runtime', 'Status', { verbose: false });
    const out: Record<string, { status: boolean; reason: string; message: string }> = {};
    for (const c of r.status?.conditions ?? []) out[c.type] = { status: c.status, reason: c.reason, message: c.message };
    return out;
  }

  async runPodSandbox(config: PodSandboxConfig, runtimeHandler: string): Promise<string> {
    return (await this.call('runtime', 'RunPodSandbox', { config, runtime_handler: runtimeHandler })).pod_sandbox_id;
  }

  async stopPodSandbox(podSandboxId: string): Promise<void> {
    await this.call('runtime', 'StopPodSandbox', { pod_sandbox_id: podSandboxId });
  }

  async removePodSandbox(podSandboxId: string): Promise<void> {
    await this.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: podSandboxId });
  }

  async listPodSandbox(): Promise<Reply[]> {
    return (await this.call('runtime', 'ListPodSandbox', {})).items;
  }

  async podSandboxStatus(podSandboxId: string): Promise<Reply> {
    return (await this.call('runtime', 'PodSandboxStatus', { pod_sandbox_id: podSandboxId })).status;
  }

  /** CreateContainer; `sandboxConfig` is the pod's config, as kubelet sends it again. */
  async createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig): Promise<string> {
    return (await this.call('runtime', 'CreateContainer', { pod_sandbox_id: podSandboxId, config, sandbox_config: sandboxConfig })).container_id;
  }

  /** StartContainer: containerd creates the shim task here (not in CreateContainer). */
  async startContainer(containerId: string): Promise<void> {
    await this.call('runtime', 'StartContainer', { container_id: containerId });
  }

  async stopContainer(containerId: string, timeoutSeconds = 2): Promise<void> {
    await this.call('runtime', 'StopContainer', { container_id: containerId, timeout: timeoutSeconds });
  }

  async removeContainer(containerId: string): Promise<void> {
    await this.call('runtime', 'RemoveContainer', { container_id: containerId });
  }

  async listContainers(podSandboxId?: string): Promise<Reply[]> {
    return (await this.call('runtime', 'ListContainers', podSandboxId ? { filter: { pod_sandbox_id: podSandboxId } } : {})).containers;
  }

  async containerStatus(containerId: string): Promise<Reply> {
    return (await this.call('runtime', 'ContainerStatus', { container_id: containerId })).status;
  }

  async execSync(containerId: string, cmd: string[], timeoutSeconds = 10): Promise<ExecResult> {
    const r = await this.call('runtime', 'ExecSync', { container_id: containerId, cmd, timeout: timeoutSeconds }, (timeoutSeconds + 30) * 1000);
    return { exit_code: r.exit_code, stdout: Buffer.from(r.stdout).toString('utf8'), stderr: Buffer.from(r.stderr).toString('utf8') };
  }

  async listImages(): Promise<Reply[]> {
    return (await this.call('image', 'ListImages', {})).images;
  }

  close(): void {
    this.runtime.close();
    this.image.close();
  }
}

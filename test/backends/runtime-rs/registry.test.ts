// The backend against the real volume registry and resolver: the RegistryPort contract end to end.
import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import type { OciSpec } from '../../../src/volumes/types';
import { RuntimeRsBackend } from '../../../src/backends/runtime-rs/backend';
import { parseRuntimeRsConfig } from '../../../src/backends/runtime-rs/config';
import { encodeVolumePath, Registry } from '../../../src/volumes/registry';
import { resolveVolumes } from '../../../src/volumes/resolver';
import { RuncBackend } from '../../../src/backends/runc';
import { CreateInterceptor } from '../../../src/shim/interceptor';
import { createLogger } from '../../../src/shim/logger';
import { Writable } from 'stream';
import { recordingLog } from '../../support/volumes';
import { scratchDir } from '../../support/scratch';
import { makeExt4Image } from '../../support/containerd';

describe('runtime-rs backend with the real registry', () => {
  let dir: string;
  let root: string;
  let image: string;
  const vol = '/kubelet/legacy-vol';

  beforeEach(() => {
    dir = scratchDir('registry');
    root = path.join(dir, 'direct-volumes');
    image = path.join(dir, 'disk.img');
    makeExt4Image(image, 1);
    // An entry as older Kata docs told users to write it: runtime-rs's serde cannot parse this.
    fs.mkdirSync(path.join(root, encodeVolumePath(vol)), { recursive: true });
    fs.writeFileSync(path.join(root, encodeVolumePath(vol), 'mountInfo.json'), `{"volume_type":"directvol","device":"${image}","fs_type":"ext4","metadata":"{}"}`);
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const spec = (mode = 'rw'): OciSpec => ({ mounts: [{ destination: '/data', type: 'bind', source: vol, options: ['rbind', mode] }] });
  const ctx = (containerId: string, sandboxId: string) => ({ containerId, sandboxId, bundle: path.join(dir, 'bundles', containerId), log: recordingLog() });

  it('a mount without a type is a direct volume only where the runtime bind-mounts it: not for runtime-rs, yes for runc', async () => {
    const registry = new Registry(root);
    const rs = new RuntimeRsBackend(parseRuntimeRsConfig(undefined, 't'), registry);
    const runc = new RuncBackend(registry);
    const typeless: OciSpec = { mounts: [{ destination: '/data', source: vol, options: ['rbind', 'rw'] }] };
    const none: OciSpec = { mounts: [{ destination: '/data', type: 'none', source: vol, options: ['rbind', 'rw'] }] };
    // runtime-rs's get_mount_type: "none" + bind|rbind is "bind"; a missing type is "", never a direct volume.
    assert.deepStrictEqual(resolveVolumes('c1', typeless, registry, undefined, { typelessBind: () => rs.typelessBind }), []);
    assert.strictEqual(resolveVolumes('c1', none, registry, undefined, { typelessBind: () => rs.typelessBind }).length, 1);
    // runc bind-mounts a typeless mount with bind/rbind, so the runc backend realises it.
    assert.strictEqual(resolveVolumes('c1', typeless, registry, undefined, { typelessBind: () => runc.typelessBind }).length, 1);
    // Wired through the Create interceptor: with runtime-rs the container is forwarded untouched.
    const bundle = path.join(dir, 'bundles', 'c1');
    fs.mkdirSync(bundle, { recursive: true });
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(typeless));
    const log = createLogger({ level: 'error', stream: new Writable({ write: (_c, _e, cb) => cb() }) });
    const icp = new CreateInterceptor({ volumeRoot: root, log, makeBackend: () => rs });
    assert.strictEqual(await icp.create('c1', bundle), undefined);
    assert.deepStrictEqual(registry.sandboxesOf(vol), []);
  });

  it('leaves the entry canonical for runtime-rs, records the sandbox, and releases it', async () => {
    const registry = new Registry(root);
    const backend = new RuntimeRsBackend(parseRuntimeRsConfig(undefined, 't'), registry);
    const s = spec();
    const c = ctx('c1', 'pod-a');
    const out = await backend.prepare(c, s, resolveVolumes('c1', s, registry));

    assert.strictEqual(fs.readFileSync(registry.mountInfoFile(vol), 'utf8'), `{"volume-type":"directvol","device":"${image}","fstype":"ext4"}`);
    assert.deepStrictEqual(registry.sandboxesOf(vol), [{ id: 'pod-a', backend: 'runtime-rs', readOnly: false }]);
    assert.deepStrictEqual(out.spec.mounts, [{ destination: '/data', type: 'directvol', source: vol, options: ['rbind', 'rw'] }]);

    // Another pod may not take it read-write while pod-a holds it.
    const s2 = spec();
    await assert.rejects(backend.prepare(ctx('c2', 'pod-b'), s2, resolveVolumes('c2', s2, registry)), /already in use by sandbox pod-a \(runtime-rs, read-write\)/);
    // Nor read-only: pod-a writes it from another VM.
    const s3 = spec('ro');
    await assert.rejects(backend.prepare(ctx('c3', 'pod-b'), s3, resolveVolumes('c3', s3, registry)),
      /mount \/data: the volume is read-only here but sandbox pod-a \(runtime-rs, read-write\) holds it read-write/);
    assert.deepStrictEqual(registry.sandboxesOf(vol).map((u) => u.id), ['pod-a']);

    await backend.release(c);
    assert.deepStrictEqual(registry.sandboxesOf(vol), []);
  });

  it('lets two pods share the volume read-only, recording the mode on disk, and keeps a writer out', async () => {
    const registry = new Registry(root);
    const backend = new RuntimeRsBackend(parseRuntimeRsConfig(undefined, 't'), registry);
    for (const [c, pod] of [['c1', 'pod-a'], ['c2', 'pod-b']]) {
      const s = spec('ro');
      await backend.prepare(ctx(c, pod), s, resolveVolumes(c, s, registry));
    }
    assert.strictEqual(fs.readFileSync(path.join(registry.entryDir(vol), 'pod-a'), 'utf8'), '', 'Kata\'s form: an empty file');
    assert.strictEqual(fs.readFileSync(registry.sandboxModeFile(vol, 'pod-a'), 'utf8'), 'runtime-rs ro');
    assert.deepStrictEqual(registry.sandboxesOf(vol), [
      { id: 'pod-a', backend: 'runtime-rs', readOnly: true }, { id: 'pod-b', backend: 'runtime-rs', readOnly: true },
    ]);
    const s = spec();
    await assert.rejects(backend.prepare(ctx('c3', 'pod-c'), s, resolveVolumes('c3', s, registry)),
      /the volume is read-write and already in use by sandbox pod-a \(runtime-rs, read-only\), pod-b \(runtime-rs, read-only\)/);
    assert.deepStrictEqual(registry.sandboxesOf(vol).map((u) => u.id), ['pod-a', 'pod-b']);
    await backend.release(ctx('c1', 'pod-a'));
    await backend.release(ctx('c2', 'pod-b'));
    assert.deepStrictEqual(registry.sandboxesOf(vol), []);
  });
});

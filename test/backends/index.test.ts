// The backend factory (src/backends/index.ts): the shim config's `backend` key picks one, and its name is
// what the interceptor writes into the bundle's held record, so a later process releases with the same one.
import * as assert from 'assert';
import { createBackend } from '../../src/backends';
import { RuncBackend } from '../../src/backends/runc';
import { RuntimeRsBackend } from '../../src/backends/runtime-rs/backend';

describe('backend factory (backends/index.ts)', () => {
  const deps = (runtimeRs?: unknown) => ({ config: { file: '/etc/katavol/test.json', runtimeRs }, volumeRoot: '/tmp/katavol-factory-root' });

  it('makes the runc backend, named runc', () => {
    const b = createBackend('runc', deps());
    assert.ok(b instanceof RuncBackend);
    assert.strictEqual(b.name, 'runc');
    assert.strictEqual(b.typelessBind, true);
  });

  it('makes the runtime-rs backend from the runtimeRs section, or from the defaults without one', () => {
    const b = createBackend('runtime-rs', deps({ blockDeviceDriver: 'virtio-blk-mmio' }));
    assert.ok(b instanceof RuntimeRsBackend);
    assert.strictEqual(b.name, 'runtime-rs');
    assert.strictEqual(b.typelessBind, false);
    assert.strictEqual(b.config.blockDeviceDriver, 'virtio-blk-mmio');
    const d = createBackend('runtime-rs', deps()) as RuntimeRsBackend;
    assert.strictEqual(d.config.blockDeviceDriver, 'virtio-blk-pci');
    // The section is parsed with the config file named in its errors.
    assert.throws(() => createBackend('runtime-rs', deps({ blockDeviceDriver: 'floppy' })), /\/etc\/katavol\/test\.json/);
  });

  it('refuses a backend it does not know, naming it', () => {
    assert.throws(() => createBackend('kvm', deps()), /^Error: unknown backend "kvm"$/);
  });
});

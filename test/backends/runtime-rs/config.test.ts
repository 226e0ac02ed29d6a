import * as assert from 'assert';
import { DEFAULT_RUNTIME_RS_CONFIG, parseRuntimeRsConfig, RuntimeRsConfigError } from '../../../src/backends/runtime-rs/config';

const FILE = '/etc/katavol/config.json';

describe('runtime-rs config', () => {
  it("uses Kata's defaults when the section is absent", () => {
    const expected = {
      blockDeviceDriver: 'virtio-blk-pci',
      blockDeviceCacheDirect: false,
      diskRateLimiterBwMaxRate: 0,
      diskRateLimiterBwOneTimeBurst: 0,
      diskRateLimiterOpsMaxRate: 0,
      diskRateLimiterOpsOneTimeBurst: 0,
      numQueues: 1,
      queueSize: 256,
      sysfsRoot: '/sys',
    };
    assert.deepStrictEqual(parseRuntimeRsConfig(undefined, FILE), expected);
    assert.deepStrictEqual(parseRuntimeRsConfig(null, FILE), expected);
    assert.deepStrictEqual(parseRuntimeRsConfig({}, FILE), expected);
    assert.deepStrictEqual({ ...DEFAULT_RUNTIME_RS_CONFIG }, expected);
  });

  it('takes every supported setting', () => {
    const settings = {
      blockDeviceDriver: 'virtio-blk-mmio',
      blockDeviceCacheDirect: true,
      diskRateLimiterBwMaxRate: 10485760,
      diskRateLimiterBwOneTimeBurst: 1048576,
      diskRateLimiterOpsMaxRate: 2000,
      diskRateLimiterOpsOneTimeBurst: 100,
      numQueues: 4,
      queueSize: 1024,
      sysfsRoot: '/tmp/fake-sys/',
    };
    // Taken as given, but for sysfsRoot's trailing slash.
    assert.deepStrictEqual(parseRuntimeRsConfig(settings, FILE), { ...settings, sysfsRoot: '/tmp/fake-sys' });
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['blockDeviceDriver', 'virtio-scsi', /runtimeRs\.blockDeviceDriver.*virtio-blk-pci, virtio-blk-mmio/],
    ['blockDeviceCacheDirect', 'yes', /runtimeRs\.blockDeviceCacheDirect.*true or false/],
    ['diskRateLimiterBwMaxRate', -1, /runtimeRs\.diskRateLimiterBwMaxRate.*>= 0/],
    ['diskRateLimiterOpsOneTimeBurst', 1.5, /runtimeRs\.diskRateLimiterOpsOneTimeBurst.*whole number/],
    ['numQueues', 0, /runtimeRs\.numQueues.*1 to 65535/],
    ['queueSize', 65536, /runtimeRs\.queueSize.*1 to 65535/],
    ['queueSize', '256', /runtimeRs\.queueSize/],
    ['sysfsRoot', 'sys', /runtimeRs\.sysfsRoot.*absolute path/],
    ['block_device_driver', 'virtio-blk-pci', /runtimeRs\.block_device_driver.*unknown key; supported keys are blockDeviceDriver/],
  ];
  for (const [key, value, re] of bad) {
    it(`rejects ${key}=${JSON.stringify(value)} naming the file and key`, () => {
      assert.throws(() => parseRuntimeRsConfig({ [key]: value }, FILE), (e: Error) => {
        assert.ok(e instanceof RuntimeRsConfigError);
        assert.strictEqual(String(e).split(':')[0], 'RuntimeRsConfigError', 'named in logs and stack traces by its own class');
        assert.ok(e.message.startsWith(`katavol config ${FILE}: `), e.message);
        assert.match(e.message, re);
        return true;
      });
    });
  }

  it('words its refusals exactly: the key with its section, the supported keys, the expected value', () => {
    const message = (section: unknown) => {
      try {
        parseRuntimeRsConfig(section, FILE);
      } catch (e) {
        return (e as Error).message;
      }
      return 'accepted';
    };
    assert.strictEqual(message({ numQueues: 0 }), `katavol config ${FILE}: key "runtimeRs.numQueues": must be a whole number from 1 to 65535, got 0`);
    assert.strictEqual(message({ nope: 1 }), `katavol config ${FILE}: key "runtimeRs.nope": unknown key; supported keys are ${Object.keys(DEFAULT_RUNTIME_RS_CONFIG).join(', ')}`);
    assert.strictEqual(message({ sysfsRoot: 5 }), `katavol config ${FILE}: key "runtimeRs.sysfsRoot": must be an absolute path, got 5`);
  });

  it('drops every trailing slash of sysfsRoot, but keeps the root itself', () => {
    assert.strictEqual(parseRuntimeRsConfig({ sysfsRoot: '/host/sys///' }, FILE).sysfsRoot, '/host/sys');
    assert.strictEqual(parseRuntimeRsConfig({ sysfsRoot: '/' }, FILE).sysfsRoot, '/');
  });

  it('rejects a section that is not an object', () => {
    assert.throws(() => parseRuntimeRsConfig(['virtio-blk-pci'], FILE), /config \/etc\/katavol\/config.json: key "runtimeRs": must be a JSON object/);
    assert.throws(() => parseRuntimeRsConfig('mmio', FILE), /key "runtimeRs": must be a JSON object/);
  });
});

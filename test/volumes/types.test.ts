import * as assert from 'assert';
import * as util from 'util';
import { VOLUME_TYPES, VolumeError, messageOf } from '../../src/volumes/types';

describe('volumes/types', () => {
  it('a VolumeError reads "volume <path>: <problem> (<file>); <fix>", each part only when there is one', () => {
    const full = new VolumeError('/kubelet/v1', 'is not registered', 'register it', '/root/L2t1YmVsZXQvdjE=');
    assert.strictEqual(full.message, 'volume "/kubelet/v1": is not registered (/root/L2t1YmVsZXQvdjE=); register it');
    assert.strictEqual(full.name, 'VolumeError');
    assert.deepStrictEqual([full.volumePath, full.problem, full.fix, full.file], ['/kubelet/v1', 'is not registered', 'register it', '/root/L2t1YmVsZXQvdjE=']);
    assert.strictEqual(new VolumeError('/v', 'p', 'f').message, 'volume "/v": p; f');
    assert.strictEqual(new VolumeError('', 'the registry root is not a directory', 'remove it', '/root').message, 'the registry root is not a directory (/root); remove it');
    assert.strictEqual(new VolumeError('a"b', 'p', 'f').message, 'volume "a\\"b": p; f', 'the path quoted as JSON');
  });

  it('keeps the failure underneath as its cause, and has none when there was none', () => {
    const under = Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
    const e = new VolumeError('/v', 'cannot read', 'run as root', undefined, under);
    assert.strictEqual(e.cause, under);
    assert.match(util.inspect(e), /\[cause\]: Error: EACCES: permission denied/);
    const none = new VolumeError('/v', 'p', 'f');
    assert.strictEqual(Object.prototype.hasOwnProperty.call(none, 'cause'), false);
    assert.doesNotMatch(util.inspect(none), /\[cause\]/);
  });

  it('messageOf: the message of anything thrown, or its text', () => {
    assert.strictEqual(messageOf(new Error('boom')), 'boom');
    assert.strictEqual(messageOf({ message: 'shaped like an error' }), 'shaped like an error');
    assert.strictEqual(messageOf({ message: 42 }), '[object Object]');
    assert.strictEqual(messageOf('text'), 'text');
    assert.strictEqual(messageOf(null), 'null');
    assert.strictEqual(messageOf(undefined), 'undefined');
  });

  it('knows Kata\'s four volume types', () => {
    assert.deepStrictEqual(VOLUME_TYPES, ['directvol', 'vfiovol', 'spdkvol', 'spoolvol']);
  });
});

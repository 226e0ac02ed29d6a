// The shim's hand-rolled task-message codec, checked against protobufjs driven by our proto/ files.
import { strict as assert } from 'assert';
import * as path from 'path';
import * as protobuf from 'protobufjs';
import { decodeConnectResponse, decodeCreateTaskRequest, decodeIdExec, encodeConnectRequest, encodeShutdownRequest } from '../../src/shim/messages';
import { REPO } from '../support/containerd';

describe('shim task messages', () => {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : path.join(REPO, 'proto', target));
  root.loadSync(['containerd/task/v2/shim.proto'], { keepCase: true });
  root.resolveAll();
  const T = (name: string) => root.lookupType(`containerd.task.v2.${name}`);

  it('decodes id and bundle of a full CreateTaskRequest, skipping every other field', () => {
    const msg = T('CreateTaskRequest').create({
      id: 'ctr-1', bundle: '/run/containerd/io.containerd.runtime.v2.task/default/ctr-1',
      rootfs: [{ type: 'overlay', source: 'overlay', options: ['lowerdir=/a', 'upperdir=/b'] }],
      terminal: true, stdin: '/fifo/in', stdout: '/fifo/out', stderr: '/fifo/err', checkpoint: 'cp', parent_checkpoint: 'pcp',
      options: { type_url: 'containerd.runc.v1.Options', value: Buffer.from([8, 1]) },
    });
    const bytes = Buffer.from(T('CreateTaskRequest').encode(msg).finish());
    assert.deepEqual(decodeCreateTaskRequest(bytes), { id: 'ctr-1', bundle: '/run/containerd/io.containerd.runtime.v2.task/default/ctr-1' });
  });

  it('decodes DeleteRequest id and exec_id', () => {
    const bytes = Buffer.from(T('DeleteRequest').encode({ id: 'c', exec_id: 'e1' }).finish());
    assert.deepEqual(decodeIdExec(bytes), { id: 'c', execId: 'e1' });
    assert.deepEqual(decodeIdExec(Buffer.from(T('DeleteRequest').encode({ id: 'c' }).finish())), { id: 'c', execId: '' });
  });

  it('encodes ShutdownRequest and ConnectRequest as protobufjs reads them, long ids included', () => {
    const long = 'x'.repeat(300);
    for (const [id, now] of [['c1', true], ['c2', false], [long, true], ['', false]] as Array<[string, boolean]>) {
      assert.deepEqual(T('ShutdownRequest').toObject(T('ShutdownRequest').decode(encodeShutdownRequest(id, now)), { defaults: true }), { id, now });
      assert.deepEqual(T('ConnectRequest').toObject(T('ConnectRequest').decode(encodeConnectRequest(id)), { defaults: true }), { id });
    }
  });

  it('decodes ConnectResponse', () => {
    const bytes = Buffer.from(T('ConnectResponse').encode({ shim_pid: 4242, task_pid: 70000, version: '1.6.20' }).finish());
    assert.deepEqual(decodeConnectResponse(bytes), { shimPid: 4242, taskPid: 70000, version: '1.6.20' });
  });

  it('throws (never crashes the daemon silently) on malformed bytes', () => {
    assert.throws(() => decodeCreateTaskRequest(Buffer.from([0x0a, 0x50, 0x41])), /exceeds/);
    assert.throws(() => decodeIdExec(Buffer.from([0x00])), /illegal tag 0/);
  });
});

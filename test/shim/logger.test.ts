import { strict as assert } from 'assert';
import { Writable } from 'stream';
import { createLogger, formatLogrus } from '../../src/shim/logger';
import { parseLogrus } from '../support/logrus';

function capture(format?: 'text' | 'json'): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  const stream = new Writable({ write: (c, _e, cb) => { lines.push(String(c).trimEnd()); cb(); } });
  return { lines, log: createLogger({ level: 'debug', format, stream, meta: { namespace: 'k8s.io', id: 'c1', runtime: 'io.containerd.katavol.v2' } }) };
}

describe('shim logger', () => {
  it('writes logrus text lines like containerd\'s: time, level, msg, then sorted fields, quoted only where logrus quotes', () => {
    const { lines, log } = capture();
    log.warn('create rolled back', { reason: 'runc: "no such device"', volumes: [{ device: '/x.img' }], container: 'c1' });
    log.info('plain', { path: '/run/a-b_c.d@e^f+g' });
    assert.match(lines[0], /^time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z" level=warning msg="create rolled back" component=katavol-shim container=c1 id=c1 namespace=k8s\.io pid=\d+ reason="runc: \\"no such device\\"" runtime=io\.containerd\.katavol\.v2 volumes="\[{\\"device\\":\\"\/x\.img\\"}\]"$/);
    assert.deepEqual(JSON.parse(parseLogrus(lines[0])!.volumes), [{ device: '/x.img' }]);
    assert.match(lines[1], / msg=plain .*path=\/run\/a-b_c\.d@e\^f\+g /);
    assert.equal(formatLogrus({ timestamp: '2026-01-02T03:04:05.678Z', level: 'error', message: 'x' }), 'time="2026-01-02T03:04:05.678000000Z" level=error msg=x');
  });

  it('writes JSON lines when configured so', () => {
    const { lines, log } = capture('json');
    log.error('create refused', { error: 'boom' });
    const j = JSON.parse(lines[0]);
    assert.equal(j.level, 'error');
    assert.equal(j.message, 'create refused');
    assert.equal(j.runtime, 'io.containerd.katavol.v2');
  });
});

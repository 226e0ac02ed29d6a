// The proxy in isolation: containerd played by our TTRPC Client, the downstream shim by our Server (or a
// raw Channel where a misbehaving peer is needed), the backend by a recording fake.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { Writable } from 'stream';
import { Channel, Client, Code, FrameType, type Frame, Server, TtrpcError, decodeRequest, encodeFrame, encodeRequest, encodeResponse } from '../../src/ttrpc';
import { ProxyConnection } from '../../src/shim/proxy';
import { CreateInterceptor } from '../../src/shim/interceptor';
import { createLogger } from '../../src/shim/logger';
import type { Backend, PrepareContext, PreparedSpec } from '../../src/backends/backend';
import type { OciSpec, ResolvedVolume } from '../../src/volumes/types';
import { Registry } from '../../src/volumes/registry';
import { makeExt4Image, tmpDir } from '../support/containerd';
import { RawPeer } from '../support/ttrpc';

const TASK = 'containerd.task.v2.Task';
const str = (field: number, s: string) => Buffer.concat([Buffer.from([(field << 3) | 2, Buffer.byteLength(s)]), Buffer.from(s)]);

class FakeBackend implements Backend {
  readonly name = 'fake';
  readonly typelessBind = true;
  prepared: string[] = [];
  released: string[] = [];
  /** When set, prepare waits for it (a slow backend). */
  gate: Promise<void> | undefined;
  async prepare(ctx: PrepareContext, spec: OciSpec, volumes: ResolvedVolume[]): Promise<PreparedSpec> {
    this.prepared.push(ctx.containerId);
    await this.gate;
    const mounts = [...(spec.mounts ?? [])];
    for (const v of volumes) mounts[v.index] = { ...v.mount, type: 'ext4', source: '/dev/fake0' };
    return { spec: { ...spec, mounts }, summary: volumes.map((v) => ({ volumePath: v.volumePath })) };
  }
  async release(ctx: PrepareContext): Promise<void> {
    this.released.push(ctx.containerId);
  }
  async releaseBundle(): Promise<void> { /* not used here */ }
}

describe('shim proxy (fake downstream)', function () {
  let dir: string;
  let downSock: string;
  let upServer: net.Server;
  let upSock: string;
  let backend: FakeBackend;
  let registry: Registry;
  let closed: Array<{ sawShutdown: boolean }>;
  let clients: Client[];
  let logLines: string[];

  async function startProxy(): Promise<void> {
    const log = createLogger({ level: 'debug', stream: new Writable({ write: (c, _e, cb) => { logLines.push(String(c)); cb(); } }) });
    const interceptor = new CreateInterceptor({ volumeRoot: registry.root, log, makeBackend: () => backend });
    upServer = net.createServer((s) => new ProxyConnection(s, downSock, { interceptor, log, onClosed: (_p, sawShutdown) => closed.push({ sawShutdown }) }));
    await new Promise<void>((r) => upServer.listen(upSock, r));
  }

  async function client(): Promise<Client> {
    const c = await Client.connect(upSock);
    clients.push(c);
    return c;
  }

  function bundle(mounts: unknown[]): string {
    const b = fs.mkdtempSync(path.join(dir, 'bundle-'));
    fs.writeFileSync(path.join(b, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', mounts }));
    return b;
  }

  beforeEach(async () => {
    dir = tmpDir('katavol-proxy-');
    downSock = path.join(dir, 'down.sock');
    upSock = path.join(dir, 'up.sock');
    backend = new FakeBackend();
    registry = new Registry(path.join(dir, 'volumes'));
    closed = [];
    clients = [];
    logLines = [];
    await startProxy();
  });

  afterEach(async () => {
    for (const c of clients) c.close();
    await new Promise((r) => upServer.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('forwards unknown services, errors and payloads byte for byte', async () => {
    const down = new Server();
    const seen: Buffer[] = [];
    down.register('example.Other', {
      Echo: (_ctx, p) => { seen.push(Buffer.from(p)); return Buffer.concat([Buffer.from('re:'), p]); },
      Fail: () => { throw new TtrpcError(Code.NotFound, 'nope: from downstream'); },
    });
    await down.listen(downSock);
    const c = await client();
    const payload = Buffer.from([0, 1, 2, 255, 254]);
    assert.deepEqual(await c.call('example.Other', 'Echo', payload), Buffer.concat([Buffer.from('re:'), payload]));
    assert.deepEqual(seen, [payload]);
    await assert.rejects(c.call('example.Other', 'Fail', Buffer.alloc(0)), (e: TtrpcError) => e.code === Code.NotFound && e.message === 'nope: from downstream');
    await assert.rejects(c.call('example.Missing', 'X', Buffer.alloc(0)), (e: TtrpcError) => e.code === Code.Unimplemented && /service example.Missing/.test(e.message));
    down.close();
  });

  it('passes large frames through (cut-through) intact both ways, interleaved with small calls on the same connections', async () => {
    const down = new Server();
    down.register('example.Other', { Echo: (_ctx, p) => Buffer.concat([p, Buffer.from('!')]) });
    await down.listen(downSock);
    const c = await client();
    const big = (n: number) => Buffer.alloc(1 << 20, n); // 1 MiB: arrives in many socket reads
    const calls = [];
    for (let i = 0; i < 6; i++) {
      calls.push(c.call('example.Other', 'Echo', big(i)).then((r) => assert.ok(r.equals(Buffer.concat([big(i), Buffer.from('!')])), `large echo ${i}`)));
      calls.push(c.call('example.Other', 'Echo', Buffer.from(`small ${i}`)).then((r) => assert.equal(r.toString(), `small ${i}!`)));
    }
    await Promise.all(calls);
    down.close();
  });

  it('still intercepts a Create request large enough to arrive in pieces: refused with code 9, never forwarded', async () => {
    const down = new Server();
    const calls: string[] = [];
    down.register(TASK, { Create: () => { calls.push('Create'); return Buffer.from([8, 42]); } });
    await down.listen(downSock);
    const b = bundle([{ destination: '/disk', type: 'directvol', source: '/vol/none', options: ['rbind', 'rw'] }]);
    const c = await client();
    // The downstream connection up first (until then every frame waits, assembled, in the backlog).
    await assert.rejects(c.call('example.Other', 'Ping', Buffer.alloc(0)), (e: TtrpcError) => e.code === Code.Unimplemented);
    // CreateTaskRequest.stdin (field 5), 200 KB: the frame is far above the cut-through size.
    const stdin = Buffer.alloc(200000, 0x61);
    const padded = Buffer.concat([str(1, 'cbig'), str(2, b), Buffer.from([(5 << 3) | 2, 0xc0, 0x9a, 0x0c]), stdin]);
    await assert.rejects(c.call(TASK, 'Create', padded), (e: TtrpcError) => e.code === Code.FailedPrecondition && /container "cbig": mount "\/disk": volume "\/vol\/none": is not registered/.test(e.message));
    assert.deepEqual(calls, []);
    assert.deepEqual(fs.readdirSync(b), ['config.json']);
    down.close();
  });

  it('keeps the order of requests that come while a Create is prepared (ttrpc refuses a lower stream id), large ones too, and stalls nothing', async function () {
    this.timeout(10000); // a stall shows as this test's timeout
    const img = path.join(dir, 'disk.img');
    makeExt4Image(img, 1);
    registry.add('/vol/slow', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
    const b = bundle([{ destination: '/disk', type: 'directvol', source: '/vol/slow', options: ['rbind', 'rw'] }]);
    let ready!: () => void;
    backend.gate = new Promise<void>((r) => (ready = r));
    const down = new Server(); // our server, like Go ttrpc >= 1.2, refuses a stream id below one it has seen
    const order: string[] = [];
    down.register(TASK, { Create: () => { order.push('Create'); return Buffer.from([8, 42]); } });
    down.register('example.Other', { Echo: (_ctx, p) => { order.push(`Echo ${p.length}`); return p; } });
    await down.listen(downSock);
    const peer = await RawPeer.connect(upSock);
    try {
      const req = (id: number, service: string, method: string, payload: Buffer) => encodeFrame(id, FrameType.Request, 0, encodeRequest({ service, method, payload }));
      peer.write(req(1, 'example.Other', 'Echo', Buffer.from('ping'))); // the downstream connection is up after this
      assert.equal((await peer.nextResponse()).streamId, 1);
      order.length = 0;
      peer.write(req(3, TASK, 'Create', Buffer.concat([str(1, 'cslow'), str(2, b)])));
      for (let i = 0; i < 200 && backend.prepared.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      const payload = Buffer.alloc(300000, 0x33);
      const big = req(7, 'example.Other', 'Echo', payload);
      peer.write(Buffer.concat([req(5, 'example.Other', 'Echo', Buffer.from('small')), big.subarray(0, 100000)]));
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(order, [], 'nothing overtakes the Create being prepared');
      ready();
      await new Promise((r) => setTimeout(r, 50));
      peer.write(big.subarray(100000));
      const answers = new Map<number, { payload: Buffer; status: unknown }>();
      for (let i = 0; i < 3; i++) {
        const a = await peer.nextResponse();
        answers.set(a.streamId, { payload: a.res.payload, status: a.res.status });
      }
      assert.deepEqual(answers.get(3), { payload: Buffer.from([8, 42]), status: undefined }, 'Create answered');
      assert.deepEqual(answers.get(5), { payload: Buffer.from('small'), status: undefined });
      assert.ok(answers.get(7)?.payload.equals(payload), 'the large echo came back whole');
      assert.deepEqual(order, ['Create', 'Echo 5', 'Echo 300000']);
    } finally {
      peer.destroy();
      down.close();
    }
  });

  it('carries streams through untouched', async () => {
    const down = new Server();
    down.registerStream('example.Stream', 'Count', async (_ctx, stream) => {
      let n = 0;
      for await (const m of stream) { n++; stream.send(Buffer.from(`got ${m.toString()}`)); }
      stream.send(Buffer.from(`total ${n}`));
    }, { clientStream: true, serverStream: true });
    await down.listen(downSock);
    const c = await client();
    const s = c.stream('example.Stream', 'Count', { clientStream: true, serverStream: true });
    s.send(Buffer.from('a'));
    s.send(Buffer.from('b'));
    s.closeSend();
    const got: string[] = [];
    for await (const m of s) got.push(m.toString());
    assert.deepEqual(got, ['got a', 'got b', 'total 2']);
    down.close();
  });

  it('answers an oversize request itself and keeps the connection', async () => {
    const down = new Server();
    down.register('example.Other', { Echo: (_c, p) => p });
    await down.listen(downSock);
    const raw = net.connect(upSock);
    await new Promise((r) => raw.once('connect', r));
    const ch = new Channel(raw, { maxLength: 64 << 20 });
    const frames: Frame[] = [];
    ch.on('frame', (f: Frame) => frames.push(f));
    // A Request frame above 4 MiB, then a normal one on the same connection.
    ch.sendRaw(encodeFrame(1, FrameType.Request, 0, Buffer.alloc((4 << 20) + 1)));
    ch.send(3, FrameType.Request, 0, encodeRequest({ service: 'example.Other', method: 'Echo', payload: Buffer.from('ok') }));
    for (let i = 0; i < 100 && frames.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    const byId = new Map(frames.map((f) => [f.streamId, f]));
    const { decodeResponse } = await import('../../src/ttrpc');
    assert.equal(decodeResponse(byId.get(1)!.data).status?.code, Code.ResourceExhausted);
    assert.deepEqual(decodeResponse(byId.get(3)!.data).payload, Buffer.from('ok'));
    ch.close();
    down.close();
  });

  it('answers ResourceExhausted when the downstream replies above 4 MiB, instead of hanging the call', async () => {
    const down = net.createServer((sock) => {
      const ch = new Channel(sock, { maxLength: 64 << 20 });
      ch.on('frame', (f: Frame) => {
        const big = decodeRequest(f.data).method === 'Big';
        ch.send(f.streamId, FrameType.Response, 0, encodeResponse({ payload: big ? Buffer.alloc(5 << 20) : Buffer.from('small') }));
      });
    });
    await new Promise<void>((r) => down.listen(downSock, r));
    const c = await client();
    await assert.rejects(c.call('example.Other', 'Big', Buffer.alloc(0), { timeoutMs: 10000 }), (e: TtrpcError) => e.code === Code.ResourceExhausted && /exceed maximum message size of 4194304/.test(e.message));
    assert.deepEqual(await c.call('example.Other', 'Small', Buffer.alloc(0)), Buffer.from('small'));
    down.close();
  });

  it('fails pending calls with a clean "closed" error when the downstream dies mid-call (no hang)', async () => {
    const down = new Server();
    let entered!: () => void;
    const inCall = new Promise<void>((r) => (entered = r));
    down.register(TASK, { Wait: () => { entered(); return new Promise<Uint8Array>(() => undefined); } });
    await down.listen(downSock);
    const c = await client();
    const pending = c.call(TASK, 'Wait', str(1, 'c1'));
    await inCall;
    down.close(); // the downstream shim dies with the call in flight
    await assert.rejects(pending, (e: TtrpcError) => /closed/.test(e.message));
  });

  it('counts a downstream that exits on Shutdown without replying (Kata Go) as success', async () => {
    const down = net.createServer((s) => {
      const ch = new Channel(s);
      ch.on('frame', (f: Frame) => {
        const req = decodeRequest(f.data);
        if (req.method === 'Shutdown') s.destroy(); // os.Exit(0), no reply
        else ch.send(f.streamId, FrameType.Response, 0, encodeResponse({ payload: Buffer.alloc(0) }));
      });
    });
    await new Promise<void>((r) => down.listen(downSock, r));
    const c = await client();
    assert.deepEqual(await c.call(TASK, 'Shutdown', str(1, 'c1')), Buffer.alloc(0));
    for (let i = 0; i < 50 && closed.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(closed, [{ sawShutdown: true }]);
    down.close();
  });

  it('refuses Create of an unregistered volume with code 9 and never forwards it', async () => {
    const down = new Server();
    const calls: string[] = [];
    down.register(TASK, { Create: () => { calls.push('Create'); return Buffer.from([8, 42]); } });
    await down.listen(downSock);
    const b = bundle([{ destination: '/disk', type: 'directvol', source: '/vol/none', options: ['rbind', 'rw'] }]);
    const before = fs.readFileSync(path.join(b, 'config.json'), 'utf8');
    const c = await client();
    await assert.rejects(c.call(TASK, 'Create', Buffer.concat([str(1, 'c9'), str(2, b)])), (e: TtrpcError) =>
      e.code === Code.FailedPrecondition && /container "c9": mount "\/disk": volume "\/vol\/none": is not registered/.test(e.message) && /katavol direct-volume add \/vol\/none/.test(e.message));
    assert.deepEqual(calls, []);
    assert.deepEqual(backend.prepared, []);
    assert.equal(fs.readFileSync(path.join(b, 'config.json'), 'utf8'), before);
    assert.deepEqual(fs.readdirSync(b), ['config.json']);
    down.close();
  });

  it('intercepts Create on the task v3 API (containerd 2.x) as on v2: refused with code 9, never forwarded', async () => {
    const TASK3 = 'containerd.task.v3.Task';
    const down = new Server();
    const calls: string[] = [];
    down.register(TASK3, { Create: () => { calls.push('Create'); return Buffer.from([8, 42]); } });
    await down.listen(downSock);
    const b = bundle([{ destination: '/disk', type: 'directvol', source: '/vol/none', options: ['rbind', 'rw'] }]);
    const c = await client();
    await assert.rejects(c.call(TASK3, 'Create', Buffer.concat([str(1, 'c3'), str(2, b)])), (e: TtrpcError) =>
      e.code === Code.FailedPrecondition && /^katavol: container "c3": mount "\/disk": volume "\/vol\/none": is not registered/.test(e.message));
    assert.deepEqual(calls, []);
    assert.deepEqual(fs.readdirSync(b), ['config.json']);
    down.close();
  });

  it('rewrites config.json before forwarding Create, and releases on task Delete', async () => {
    const img = path.join(dir, 'disk.img');
    makeExt4Image(img, 1);
    registry.add('/vol/ok', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
    const b = bundle([{ destination: '/proc', type: 'proc', source: 'proc' }, { destination: '/disk', type: 'directvol', source: '/vol/ok', options: ['rbind', 'rw'] }]);
    const original = fs.readFileSync(path.join(b, 'config.json'), 'utf8');
    let specAtCreate: OciSpec | undefined;
    const down = new Server();
    down.register(TASK, {
      Create: () => { specAtCreate = JSON.parse(fs.readFileSync(path.join(b, 'config.json'), 'utf8')); return Buffer.from([8, 42]); },
      Delete: () => Buffer.from([8, 42]),
    });
    await down.listen(downSock);
    const c = await client();
    assert.deepEqual(await c.call(TASK, 'Create', Buffer.concat([str(1, 'c1'), str(2, b)])), Buffer.from([8, 42]));
    assert.deepEqual(specAtCreate?.mounts, [{ destination: '/proc', type: 'proc', source: 'proc' }, { destination: '/disk', type: 'ext4', source: '/dev/fake0', options: ['rbind', 'rw'] }]);
    assert.equal(fs.readFileSync(path.join(b, 'config.json.katavol-orig'), 'utf8'), original);
    assert.ok(fs.existsSync(path.join(b, 'katavol-held.json')));
    // An exec's Delete releases nothing; the task's Delete does.
    await c.call(TASK, 'Delete', Buffer.concat([str(1, 'c1'), str(2, 'exec1')]));
    assert.deepEqual(backend.released, []);
    await c.call(TASK, 'Delete', str(1, 'c1'));
    for (let i = 0; i < 50 && backend.released.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(backend.released, ['c1']);
    assert.ok(!fs.existsSync(path.join(b, 'katavol-held.json')));
    down.close();
  });

  it('still sees a large answer to a watched task Delete (released, answer intact)', async () => {
    const img = path.join(dir, 'disk.img');
    makeExt4Image(img, 1);
    registry.add('/vol/ok', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
    const b = bundle([{ destination: '/disk', type: 'directvol', source: '/vol/ok', options: ['rbind', 'rw'] }]);
    const answer = Buffer.concat([Buffer.from([8, 42]), Buffer.from([(15 << 3) | 2, 0xa0, 0x8d, 0x06]), Buffer.alloc(100000, 7)]);
    const down = new Server();
    down.register(TASK, { Create: () => Buffer.from([8, 42]), Delete: () => answer });
    await down.listen(downSock);
    const c = await client();
    await c.call(TASK, 'Create', Buffer.concat([str(1, 'c1'), str(2, b)]));
    assert.ok((await c.call(TASK, 'Delete', str(1, 'c1'))).equals(answer));
    for (let i = 0; i < 50 && backend.released.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(backend.released, ['c1']);
    down.close();
  });

  it('rolls back when the downstream Create fails and passes its error through unchanged', async () => {
    const img = path.join(dir, 'disk.img');
    makeExt4Image(img, 1);
    registry.add('/vol/rb', JSON.stringify({ 'volume-type': 'directvol', device: img, fstype: 'ext4' }));
    const b = bundle([{ destination: '/disk', type: 'directvol', source: '/vol/rb' }]);
    const original = fs.readFileSync(path.join(b, 'config.json'), 'utf8');
    const down = new Server();
    down.register(TASK, { Create: () => { throw new TtrpcError(Code.Unknown, 'OCI runtime create failed: boom'); } });
    await down.listen(downSock);
    const c = await client();
    await assert.rejects(c.call(TASK, 'Create', Buffer.concat([str(1, 'c2'), str(2, b)])), (e: TtrpcError) => e.code === Code.Unknown && e.message === 'OCI runtime create failed: boom');
    assert.deepEqual(backend.prepared, ['c2']);
    assert.deepEqual(backend.released, ['c2']);
    assert.equal(fs.readFileSync(path.join(b, 'config.json'), 'utf8'), original, 'original spec restored');
    assert.deepEqual(fs.readdirSync(b).sort(), ['config.json']);
    // The downstream's reason is in katavol's log at warn, not only in containerd's answer.
    const line = logLines.find((l) => l.includes('create rolled back'));
    assert.ok(line, logLines.join(''));
    assert.match(line, /^time="\d{4}-\d\d-\d\dT[\d:]+\.\d{9}Z" level=warning msg="create rolled back" /);
    assert.match(line, /reason="downstream Create failed \(code 2\): OCI runtime create failed: boom"/);
    down.close();
  });

  it('closes the containerd connection (EOF, not a hang) when the downstream cannot be reached', async () => {
    const c = await client(); // nothing listens on downSock
    await assert.rejects(c.call(TASK, 'State', str(1, 'x'), { timeoutMs: 5000 }), (e: TtrpcError) => /closed/.test(e.message));
  });
});

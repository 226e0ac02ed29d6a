// The raw-forwarder pattern from src/ttrpc/README.md (what the shim proxy does): Client -> Channel proxy ->
// Server, frame by frame, stream ids kept, nothing decoded but service/method for logging.

import { strict as assert } from 'assert';
import * as net from 'net';
import * as path from 'path';
import { Channel, Client, Code, type Frame, FrameType, Server, TtrpcError, peekServiceMethod } from '../../src/ttrpc';
import { forwardFrames, hex, until } from '../support/ttrpc';
import { removeDir, scratchDir } from '../support/scratch';

/** forwardFrames, noting the raw frames and the calls (service/method #stream) that pass. */
function pipe(from: Channel, to: Channel, seen: string[], rawSeen: Buffer[]): void {
  forwardFrames(from, to, (f: Frame) => {
    if (f.type === FrameType.Request) {
      const { service, method } = peekServiceMethod(f.data);
      seen.push(`${service}/${method} #${f.streamId}`);
    }
    rawSeen.push(f.raw);
  });
}

describe('ttrpc raw forwarding through Channel', () => {
  let dir: string;
  let server: Server;
  let proxy: net.Server;
  let client: Client | undefined;
  const seen: string[] = [];
  const upRaw: Buffer[] = [];
  const downRaw: Buffer[] = [];
  const channels: Channel[] = [];

  beforeEach(async () => {
    dir = scratchDir();
    seen.length = upRaw.length = downRaw.length = channels.length = 0;
    server = new Server();
    server.register('fwd.Svc', {
      Echo: (_c, p) => p,
      Fail: () => {
        throw new TtrpcError(Code.NotFound, 'nothing here');
      },
    });
    server.registerStream(
      'fwd.Svc',
      'Split',
      async (_c, s) => {
        const text = (await s.recv())!.toString();
        for (const ch of text) s.send(Buffer.from(ch));
      },
      { clientStream: false, serverStream: true },
    );
    const backend = path.join(dir, 'backend.sock');
    await server.listen(backend);
    proxy = net.createServer((upSocket) => {
      const up = new Channel(upSocket);
      const down = new Channel(net.createConnection(backend));
      channels.push(up, down);
      pipe(up, down, seen, upRaw);
      pipe(down, up, [], downRaw);
    });
    await new Promise<void>((r) => proxy.listen(path.join(dir, 'proxy.sock'), () => r()));
  });

  afterEach(async () => {
    client?.close();
    client = undefined;
    for (const c of channels) c.destroy();
    server.close();
    await new Promise((r) => proxy.close(r));
    removeDir(dir);
  });

  it('carries unary calls, errors, big payloads and streams end to end, with ids and bytes unchanged', async () => {
    client = await Client.connect(path.join(dir, 'proxy.sock'));
    const big = Buffer.alloc(3 << 20, 7);
    const [a, b, bigBack] = await Promise.all([
      client.call('fwd.Svc', 'Echo', Buffer.from('a')),
      client.call('fwd.Svc', 'Echo', Buffer.from('b')),
      client.call('fwd.Svc', 'Echo', big),
    ]);
    assert.equal(a.toString(), 'a');
    assert.equal(b.toString(), 'b');
    assert.ok(bigBack.equals(big));
    await assert.rejects(client.call('fwd.Svc', 'Fail', Buffer.alloc(0)), { code: Code.NotFound, message: 'nothing here' });
    await assert.rejects(client.call('other.Svc', 'X', Buffer.alloc(0)), { code: Code.Unimplemented, message: 'service other.Svc' });
    const s = client.stream('fwd.Svc', 'Split', { clientStream: false, serverStream: true, payload: Buffer.from('xyz') });
    const parts: string[] = [];
    for await (const m of s) parts.push(m.toString());
    assert.deepEqual(parts, ['x', 'y', 'z']);
    assert.deepEqual(seen, ['fwd.Svc/Echo #1', 'fwd.Svc/Echo #3', 'fwd.Svc/Echo #5', 'fwd.Svc/Fail #7', 'other.Svc/X #9', 'fwd.Svc/Split #11']);
    // Four Data frames came back for the stream: three messages and the closing RemoteClosed|NoData.
    const dataBack = downRaw.filter((r) => r[8] === FrameType.Data);
    assert.deepEqual(dataBack, [
      hex('00000001 0000000b 03 00 78'),
      hex('00000001 0000000b 03 00 79'),
      hex('00000001 0000000b 03 00 7a'),
      hex('00000000 0000000b 03 05'),
    ]);
  });

  it('closing the client closes the downstream connection too', async () => {
    client = await Client.connect(path.join(dir, 'proxy.sock'));
    await client.call('fwd.Svc', 'Echo', Buffer.from('x'));
    client.close();
    await until(() => server.connectionCount === 0, 'the backend connection to close');
    assert.ok(channels.every((c) => c.closed));
  });
});

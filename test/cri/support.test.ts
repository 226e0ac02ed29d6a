// The CRI test support itself: our api.proto is the unmodified upstream file, and a private containerd
// with its CRI plugin comes up offline, ready, with the images, and serves runc and katavol pods.
import { strict as assert } from 'assert';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { REPO } from '../support/containerd';
import { CRI_PROTO, isCriError } from '../support/cri-client';
import { CriContainerd, KATAVOL_HANDLER } from '../support/cri';
import { BUSYBOX_IMAGE, PAUSE_IMAGE } from '../support/image';

// kubernetes/cri-api v0.25.0 pkg/apis/runtime/v1/api.proto, as containerd v1.6.20 vendors it.
const UPSTREAM_SHA256 = '59bb3b2bfd9e4c64d4d14e89ffc27e7b98d829bca95927889c56d45fe0b2f960';

describe('CRI api.proto copy', () => {
  const ours = path.join(REPO, 'proto', CRI_PROTO);

  it('is the upstream file byte for byte (pinned digest)', () => {
    assert.equal(crypto.createHash('sha256').update(fs.readFileSync(ours)).digest('hex'), UPSTREAM_SHA256);
  });

  it('is byte-identical to the reference copy in shared/reference/upstream', function () {
    // The repo's CI and developers' checkouts have shared/ beside the repo, or at /work/shared.
    const candidates = [path.join(REPO, '..', 'shared'), '/work/shared'].map((d) => path.join(d, 'reference', 'upstream', 'cri-api-v1.proto'));
    const ref = candidates.find((f) => fs.existsSync(f));
    if (!ref) this.skip(); // the digest test above still pins the content
    assert.ok(fs.readFileSync(ours).equals(fs.readFileSync(ref)), `${ours} differs from ${ref}`);
  });
});

describe('CRI test support (private containerd 1.6 with its CRI plugin)', function () {
  let cri: CriContainerd;

  before(async function () {
    cri = await CriContainerd.start();
  });

  after(async function () {
    await cri?.stop();
  });

  it('answers Version as CRI v1, reports RuntimeReady and NetworkReady, and lists the imported images', async () => {
    const v = await cri.client.version();
    assert.equal(v.runtime_api_version, 'v1');
    assert.equal(v.runtime_name, 'containerd');
    const c = await cri.client.conditions();
    assert.equal(c.RuntimeReady.status, true);
    assert.equal(c.NetworkReady.status, true, `NetworkReady: ${JSON.stringify(c.NetworkReady)}`);
    const tags = (await cri.client.listImages()).flatMap((i) => i.repo_tags);
    assert.ok(tags.includes(PAUSE_IMAGE.ref) && tags.includes(BUSYBOX_IMAGE.ref), `images: ${tags.join(', ')}`);
  });

  it('listens on no fixed or public TCP port (stream server on 127.0.0.1, port 0)', () => {
    const inodes = new Set<string>();
    for (const fd of fs.readdirSync(`/proc/${cri.ctd.pid}/fd`)) {
      const m = /^socket:\[(\d+)\]$/.exec(safeReadlink(`/proc/${cri.ctd.pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    }
    const listening: string[] = [];
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of fs.readFileSync(table, 'utf8').split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f.length > 9 && f[3] === '0A' && inodes.has(f[9])) listening.push(f[1]);
      }
    }
    // The stream server, on an ephemeral loopback port (0100007F = 127.0.0.1).
    for (const local of listening) assert.match(local, /^0100007F:/, `containerd listens on ${local}`);
    assert.equal(listening.length, 1, `the stream server alone listens: ${listening.join(', ')}`);
  });

  for (const handler of ['runc', KATAVOL_HANDLER]) {
    it(`runs a host-network pod with the ${handler} handler, execs in it, and removes it without leftovers`, async () => {
      const pod = await cri.runPod(`support-${handler}`, handler);
      const c = await cri.runContainer(pod, 'c1');
      const r = await cri.client.execSync(c, ['sh', '-c', 'echo hello; id -u']);
      assert.deepEqual(r, { exit_code: 0, stdout: 'hello\n0\n', stderr: '' });
      const address = fs.readFileSync(path.join(cri.bundleOf(c), 'address'), 'utf8');
      if (handler === KATAVOL_HANDLER) assert.ok(address.startsWith(`unix://${cri.socketDir}/`), `served by katavol: ${address}`);
      else assert.ok(address.startsWith('unix:///run/containerd/s/'), address);
      await cri.stopAndRemoveContainer(c);
      await cri.removePod(pod);
      assert.deepEqual(await cri.leftovers({ pods: [pod.id], containers: [c] }), []);
    });
  }

  it('reports an unknown runtime handler as a gRPC error', async () => {
    await assert.rejects(cri.runPod('nope', 'no-such-handler'), (e: unknown) => {
      assert.ok(isCriError(e));
      assert.match(e.details, /no runtime for "no-such-handler" is configured/);
      return true;
    });
  });
});

function safeReadlink(p: string): string {
  try {
    return fs.readlinkSync(p);
  } catch {
    return '';
  }
}

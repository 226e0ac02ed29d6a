// Walks README.md as a new user would: every ```sh block, in order, against a private containerd with
// the runc backend. Blocks that cannot run here are marked in the README itself by an HTML comment
// right before them: `<!-- readme-test: skip (why) -->`, or `<!-- readme-test: offline-image (why) -->`
// for an image pull, which the walk replaces by importing an offline busybox image under the same name.
// The only change to the commands: the paths a user would write to on their host (/etc/katavol,
// /run/katavol, /srv/katavol) are replaced by scratch paths, and ctr and katavol reach the private
// containerd and a scratch registry root through their environment variables.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { KATAVOL, PrivateContainerd, REPO, SHIM, debugfsCat, loopDevicesOf, tmpDir } from './support/containerd';
import { buildImage } from './support/image';
import { stopPool } from '../src/shim/pool';

export interface ReadmeBlock {
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  text: string;
  /** `skip` / `offline-image` from a readme-test comment right before the block, with its reason. */
  marker?: { kind: string; reason: string };
}

/** The fenced code blocks of a markdown file, with the readme-test marker before each, if any. */
export function markdownBlocks(markdown: string): ReadmeBlock[] {
  const lines = markdown.split('\n');
  const out: ReadmeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\w*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const indent = open[1].length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]); j++) body.push(lines[j].slice(Math.min(indent, /^\s*/.exec(lines[j])![0].length)));
    let k = i - 1;
    while (k >= 0 && lines[k].trim() === '') k--;
    const m = k >= 0 ? /^\s*<!--\s*readme-test:\s*([\w-]+)\s*(?:\((.*)\))?\s*-->\s*$/.exec(lines[k]) : null;
    out.push({ line: i + 1, lang: open[2], text: body.join('\n'), ...(m ? { marker: { kind: m[1], reason: m[2] ?? '' } } : {}) });
    i = j;
  }
  return out;
}

/** README.md and every page of docs/: each is walked on its own, in a fresh scratch environment. */
const DOCS = ['README.md', ...fs.readdirSync(path.join(REPO, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];

interface Walked {
  scratch: string;
  ctd: PrivateContainerd;
  ran: number;
}

/**
 * Runs every runnable sh block of `doc` in order; `check` looks at the result before it is torn down
 * (no loop device or katavol socket of the walk may be left in any case).
 */
async function walk(doc: string, check: (w: Walked) => void = () => undefined): Promise<number> {
  const text = fs.readFileSync(path.join(REPO, doc), 'utf8');
  const scratch = tmpDir('katavol-readme-');
  const sockDir = fs.mkdtempSync('/tmp/kvr-'); // socketDir must stay short
  const paths: Array<[string, string]> = [['/etc/katavol', path.join(scratch, 'etc')], ['/run/katavol', sockDir], ['/srv/katavol', path.join(scratch, 'srv')]];
  const subst = (t: string): string => paths.reduce((acc, [from, to]) => acc.split(from).join(to), t);
  // `katavol` and the shim on PATH, as after `make install` (containerd resolves io.containerd.katavol.v2 there).
  const bin = path.join(scratch, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(KATAVOL, path.join(bin, 'katavol'));
  fs.symlinkSync(SHIM, path.join(bin, 'containerd-shim-katavol-v2'));
  const extra: Record<string, string> = {
    PATH: `${bin}:${process.env.PATH ?? ''}:/usr/sbin:/sbin`,
    KATAVOL_CONFIG: path.join(scratch, 'etc', 'config.json'),
    KATAVOL_VOLUME_ROOT: path.join(scratch, 'volumes'),
  };
  let ctd: PrivateContainerd | undefined;
  try {
    ctd = await PrivateContainerd.start({ env: extra });
    const blockEnv = { ...process.env, ...extra, CONTAINERD_ADDRESS: ctd.sock, CONTAINERD_NAMESPACE: ctd.namespace };
    let ran = 0;
    for (const b of markdownBlocks(text).filter((x) => x.lang === 'sh')) {
      if (b.marker?.kind === 'skip') continue;
      if (b.marker?.kind === 'offline-image') {
        const ref = /ctr image pull (\S+)/.exec(b.text)?.[1];
        assert.ok(ref, `${doc}:${b.line}: an offline-image block pulls an image`);
        const tar = path.join(scratch, 'image.tar');
        buildImage({ ref, entrypoint: ['/bin/sh'], applets: ['sh', 'echo', 'cat', 'df', 'ls', 'sleep', 'true'] }, tar);
        const r = ctd.ctr(['image', 'import', tar]);
        assert.equal(r.status, 0, `offline import for ${doc}:${b.line}: ${r.stderr}`);
        continue;
      }
      const r = spawnSync('bash', ['-euo', 'pipefail', '-c', subst(b.text)], { encoding: 'utf8', env: blockEnv, cwd: scratch, timeout: 120000 });
      assert.equal(r.status, 0, `${doc}:${b.line}: the block failed (exit ${r.status}):\n${subst(b.text)}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
      ran++;
    }
    check({ scratch, ctd, ran });
    const srv = path.join(scratch, 'srv');
    for (const img of fs.existsSync(srv) ? fs.readdirSync(srv) : []) assert.deepEqual(loopDevicesOf(path.join(srv, img)), [], `no loop device left on ${img}`);
    // A start boots a warm daemon for the next one (warmDaemons defaults to 1): stop the pool first.
    await stopPool(sockDir);
    assert.deepEqual(fs.readdirSync(sockDir), [], 'no katavol socket left');
    return ran;
  } finally {
    await ctd?.stop();
    await stopPool(sockDir);
    fs.rmSync(sockDir, { recursive: true, force: true });
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

describe('README and docs/ walk (private containerd, runc backend)', function () {
  it('every sh block that cannot run here is marked, with a reason, and every marker is known', () => {
    for (const doc of DOCS) {
      for (const b of markdownBlocks(fs.readFileSync(path.join(REPO, doc), 'utf8')).filter((x) => x.lang === 'sh' && x.marker)) {
        assert.ok(['skip', 'offline-image'].includes(b.marker!.kind), `${doc}:${b.line}: unknown readme-test marker "${b.marker!.kind}"`);
        assert.ok(b.marker!.reason.length > 5, `${doc}:${b.line}: a readme-test marker says why`);
      }
    }
    const readme = markdownBlocks(fs.readFileSync(path.join(REPO, 'README.md'), 'utf8')).filter((b) => b.lang === 'sh');
    assert.ok(readme.filter((b) => !b.marker).length >= 3, 'most of the README runs');
  });

  it('README.md: every runnable sh block runs in order, as written (scratch paths for the host ones)', async function () {
    const ran = await walk('README.md', ({ scratch, ctd }) => {
      // The quick start really went through the shim into the image, and the shim logged it in containerd's format.
      assert.equal(debugfsCat(path.join(scratch, 'srv', 'vol1.img'), '/hello'), 'hello\n');
      assert.match(fs.readFileSync(ctd.logFile, 'utf8'), /level=info msg="create intercepted" .*runtime=io\.containerd\.katavol\.v2/);
    });
    assert.ok(ran >= 3, `ran ${ran} blocks`);
  });

  for (const doc of DOCS.filter((d) => d !== 'README.md')) {
    it(`${doc}: every runnable sh block runs in order`, async function () {
      await walk(doc);
    });
  }
});

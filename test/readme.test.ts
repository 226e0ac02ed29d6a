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

describe('README walk (private containerd, runc backend)', function () {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');

  it('marks every sh block it cannot run, with a reason, and knows every marker', () => {
    const blocks = markdownBlocks(readme).filter((b) => b.lang === 'sh');
    assert.ok(blocks.length >= 6, 'README has its sh blocks');
    for (const b of blocks.filter((x) => x.marker)) {
      assert.ok(['skip', 'offline-image'].includes(b.marker!.kind), `README.md:${b.line}: unknown readme-test marker "${b.marker!.kind}"`);
      assert.ok(b.marker!.reason.length > 5, `README.md:${b.line}: a readme-test marker says why`);
    }
    assert.ok(blocks.filter((b) => !b.marker).length >= 3, 'most of the README runs');
  });

  it('runs every runnable sh block of README.md in order, as written (scratch paths for the host ones)', async function () {
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
    const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
    let ctd: PrivateContainerd | undefined;
    try {
      ctd = await PrivateContainerd.start({ env: extra });
      const blockEnv = { ...env, CONTAINERD_ADDRESS: ctd.sock, CONTAINERD_NAMESPACE: ctd.namespace };
      let ran = 0;
      for (const b of markdownBlocks(readme).filter((x) => x.lang === 'sh')) {
        if (b.marker?.kind === 'skip') continue;
        if (b.marker?.kind === 'offline-image') {
          const ref = /ctr image pull (\S+)/.exec(b.text)?.[1];
          assert.ok(ref, `README.md:${b.line}: an offline-image block pulls an image`);
          const tar = path.join(scratch, 'image.tar');
          buildImage({ ref, entrypoint: ['/bin/sh'], applets: ['sh', 'echo', 'cat', 'df', 'ls', 'sleep', 'true'] }, tar);
          const r = ctd.ctr(['image', 'import', tar]);
          assert.equal(r.status, 0, `offline import for README.md:${b.line}: ${r.stderr}`);
          continue;
        }
        const r = spawnSync('bash', ['-euo', 'pipefail', '-c', subst(b.text)], { encoding: 'utf8', env: blockEnv, cwd: scratch, timeout: 120000 });
        assert.equal(r.status, 0, `README.md:${b.line}: the block failed (exit ${r.status}):\n${subst(b.text)}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
        ran++;
      }
      assert.ok(ran >= 3);
      // The quick start really went through the shim into the image.
      assert.equal(debugfsCat(path.join(scratch, 'srv', 'vol1.img'), '/hello'), 'hello\n');
      const log = fs.readFileSync(ctd.logFile, 'utf8');
      assert.match(log, /level=info msg="create intercepted" .*runtime=io\.containerd\.katavol\.v2/, 'the shim logged the Create in containerd\'s format');
      for (const img of ['vol1.img', 'vol2.img']) assert.deepEqual(loopDevicesOf(path.join(scratch, 'srv', img)), [], `no loop device left on ${img}`);
      assert.deepEqual(fs.readdirSync(sockDir), [], 'no katavol socket left');
    } finally {
      await ctd?.stop();
      fs.rmSync(sockDir, { recursive: true, force: true });
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  });
});

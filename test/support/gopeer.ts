// Builds the Go TTRPC test peer (test/peers/ttrpcpeer/main.go, on Debian's ttrpc 1.1.1) once per source
// version, offline, into <tmpdir>/katavol-gopeer-<hash>/ttrpcpeer, and returns its path.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const GOCODE = '/usr/share/gocode';
const INSTALL_HINT = 'install the Debian packages golang-go and golang-github-containerd-ttrpc-dev (make deps does)';

let cached: string | undefined;

/** Absolute path of test/peers/ttrpcpeer/main.go, found by walking up from this file (src or dist). */
export function goPeerSource(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const p = path.join(dir, 'test', 'peers', 'ttrpcpeer', 'main.go');
    if (fs.existsSync(p)) return p;
  }
  throw new Error(`cannot find test/peers/ttrpcpeer/main.go above ${__dirname}`);
}

/**
 * Path of the built peer binary. The cache directory is keyed by a hash of the source, so an edit
 * rebuilds; concurrent callers (several mocha processes) each build to a private name and rename,
 * so nobody ever executes a half-written binary.
 */
export function goPeerPath(): string {
  if (cached && fs.existsSync(cached)) return cached;
  const src = goPeerSource();
  const source = fs.readFileSync(src);
  const hash = crypto.createHash('sha256').update(source).digest('hex').slice(0, 16);
  const dir = path.join(os.tmpdir(), `katavol-gopeer-${hash}`);
  const bin = path.join(dir, 'ttrpcpeer');
  if (!fs.existsSync(bin)) build(source, dir, bin);
  cached = bin;
  return bin;
}

/**
 * Go's build cache, kept between runs (and across edits of the peer, whose binary directory is keyed
 * by the source hash): under the checkout's node_modules/.cache, so a rebuild compiles only main.go
 * instead of Debian's ttrpc and its dependencies again. KATAVOL_GOCACHE overrides it.
 */
export function goBuildCache(): string {
  if (process.env.KATAVOL_GOCACHE) return process.env.KATAVOL_GOCACHE;
  const root = path.resolve(path.dirname(goPeerSource()), '..', '..', '..');
  return path.join(root, 'node_modules', '.cache', 'katavol-go-build');
}

function build(source: Buffer, dir: string, bin: string): void {
  if (!fs.existsSync(path.join(GOCODE, 'src/github.com/containerd/ttrpc/server.go'))) {
    throw new Error(`Go TTRPC peer: ttrpc sources missing under ${GOCODE}: ${INSTALL_HINT}`);
  }
  fs.mkdirSync(dir, { recursive: true });
  // A private GOPATH entry holding only the peer's package; deleted whatever happens.
  const gopath = fs.mkdtempSync(path.join(dir, 'gopath-'));
  const tmpBin = `${bin}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  try {
    const pkg = path.join(gopath, 'src', 'ttrpcpeer');
    fs.mkdirSync(pkg, { recursive: true });
    fs.writeFileSync(path.join(pkg, 'main.go'), source);
    const env = {
      ...process.env,
      GO111MODULE: 'off',
      GOPATH: `${GOCODE}:${gopath}`,
      GOCACHE: goBuildCache(), // Go's build cache is safe to share between concurrent builds
      GOFLAGS: '',
      CGO_ENABLED: '0',
    };
    try {
      execFileSync('go', ['build', '-o', tmpBin, '.'], { cwd: pkg, env, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
      if (e.code === 'ENOENT') throw new Error(`Go TTRPC peer: the go command is not installed: ${INSTALL_HINT}`);
      throw new Error(`Go TTRPC peer: go build of ${goPeerSource()} failed:\n${e.stderr?.toString() ?? e.message}`);
    }
    fs.renameSync(tmpBin, bin);
  } finally {
    fs.rmSync(gopath, { recursive: true, force: true });
    fs.rmSync(tmpBin, { force: true });
  }
}

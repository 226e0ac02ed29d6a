// Which staging and target paths the node service accepts: absolute, normalised, strictly under
// --kubelet-dir, and not reaching outside it through a symbolic link. Kubelet only ever sends such
// paths; anything else is a hostile or confused caller and must not make the plugin touch the host.
import * as fs from 'fs';
import * as path from 'path';
import { invalidArgument } from './errors';

/** The real path of the deepest existing ancestor of p (p itself if it exists). */
function realAncestor(p: string): string {
  let cur = p;
  for (;;) {
    try {
      return path.join(fs.realpathSync(cur), path.relative(cur, p));
    } catch {
      const up = path.dirname(cur);
      if (up === cur) return p;
      cur = up;
    }
  }
}

export function checkKubeletPath(volumeId: string, field: string, p: string, kubeletDir: string): string {
  const fix = `give a path under ${kubeletDir} (the --kubelet-dir this plugin was started with), as kubelet does`;
  if (!p) throw invalidArgument(volumeId, `${field} is missing`, fix);
  if (!path.isAbsolute(p) || path.normalize(p) !== p || (p.length > 1 && p.endsWith('/'))) {
    throw invalidArgument(volumeId, `${field} ${JSON.stringify(p)} is not an absolute, normalised path`, fix);
  }
  if (p.includes('\0')) throw invalidArgument(volumeId, `${field} contains a NUL byte`, fix);
  const root = realAncestor(kubeletDir);
  const real = realAncestor(p);
  if (!p.startsWith(kubeletDir + '/') || !real.startsWith(root + '/')) {
    throw invalidArgument(volumeId, `${field} ${p} is outside the kubelet directory ${kubeletDir}${p.startsWith(kubeletDir + '/') ? ` (it resolves to ${real})` : ''}`, fix);
  }
  return p;
}

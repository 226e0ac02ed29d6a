// The shim's process entry (bin/containerd-shim-katavol-v2 execs node on this file; the daemon is
// re-executed from it too).
import { main } from './main';

main(process.argv.slice(2));

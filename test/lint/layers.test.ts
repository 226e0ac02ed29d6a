// The import-boundary rule of eslint.config.mjs, proved against planted faults: each case lints a
// real file's path with replaced contents (nothing is written to disk) and expects the layer rule
// (import/no-restricted-paths) or the cycle rule (import/no-cycle) to refuse it. `make lint` checks
// the tree itself; this checks that the rule would notice if someone broke it.
import { strict as assert } from 'assert';
import * as path from 'path';
import { ESLint } from 'eslint';

const ROOT = path.resolve(__dirname, '..', '..', '..');

describe('lint: layers point one way', function () {
  this.timeout(300_000);
  let eslint: ESLint;
  before(() => {
    eslint = new ESLint({ cwd: ROOT });
  });

  /** Rule ids reported for `code` linted as if it were the file at `file` (relative to the repo). */
  async function rulesFor(file: string, code: string): Promise<string[]> {
    const [res] = await eslint.lintText(code, { filePath: path.join(ROOT, file) });
    const fatal = res.messages.filter((m) => m.fatal);
    assert.deepEqual(fatal, [], `${file} did not parse`);
    return res.messages.map((m) => m.ruleId ?? '');
  }

  const refused: Array<[string, string, string]> = [
    ['volumes -> backends', 'src/volumes/types.ts', "import { HELD_FILE } from '../backends/backend';\nexport const x = HELD_FILE;\n"],
    ['volumes -> shim (type only)', 'src/volumes/resolver.ts', "import type { BundleState } from '../shim/state';\nexport type X = BundleState;\n"],
    ['backends -> shim', 'src/backends/runc.ts', "import { readState } from '../shim/state';\nexport const x = readState;\n"],
    ['backends -> shim (lazy require)', 'src/backends/index.ts', "export const x = require('../shim/held') as unknown;\n"],
    ['backends -> cli', 'src/backends/backend.ts', "import { EXIT_OK } from '../cli/context';\nexport const x = EXIT_OK;\n"],
    ['shim -> cli', 'src/shim/state.ts', "import { EXIT_OK } from '../cli/context';\nexport const x = EXIT_OK;\n"],
    ['ttrpc -> volumes', 'src/ttrpc/errors.ts', "import { VolumeError } from '../volumes/types';\nexport const x = VolumeError;\n"],
    ['ttrpc -> shim', 'src/ttrpc/queue.ts', "import { TASK_SERVICES } from '../shim/messages';\nexport const x = TASK_SERVICES;\n"],
    ['volumes -> ttrpc', 'src/volumes/lock.ts', "import { Code } from '../ttrpc/errors';\nexport const x = Code;\n"],
    ['volumes -> csi', 'src/volumes/stats.ts', "import { CsiError } from '../csi/errors';\nexport const x = CsiError;\n"],
    ['csi -> shim', 'src/csi/identity.ts', "import { readState } from '../shim/state';\nexport const x = readState;\n"],
    ['csi -> cli', 'src/csi/options.ts', "import { EXIT_OK } from '../cli/context';\nexport const x = EXIT_OK;\n"],
    ['csi -> backends', 'src/csi/paths.ts', "import { HELD_FILE } from '../backends/backend';\nexport const x = HELD_FILE;\n"],
    ['shim -> csi', 'src/shim/sockets.ts', "import { CsiError } from '../csi/errors';\nexport const x = CsiError;\n"],
  ];
  for (const [name, file, code] of refused) {
    it(`refuses an upward import: ${name}`, async () => {
      assert.ok((await rulesFor(file, code)).includes('import/no-restricted-paths'));
    });
  }

  it('refuses an import cycle', async () => {
    // registry.ts imports encoding.ts; encoding.ts importing registry.ts closes the loop. A fresh
    // linter: the plugin caches what it read of each file, and the cases above replaced some.
    eslint = new ESLint({ cwd: ROOT });
    const rules = await rulesFor('src/volumes/encoding.ts', "import { Registry } from './registry';\nexport const r = Registry;\n");
    assert.ok(rules.includes('import/no-cycle'), rules.join(','));
  });

  it('accepts imports that point down', async () => {
    const code = [
      "import { HELD_FILE } from '../backends/backend';",
      "import { VolumeError } from '../volumes/types';",
      "import { Code } from '../ttrpc/errors';",
      'export const x = [HELD_FILE, VolumeError, Code];',
      '',
    ].join('\n');
    const rules = await rulesFor('src/shim/held.ts', code);
    assert.deepEqual(rules.filter((r) => r.startsWith('import/')), []);
  });
});

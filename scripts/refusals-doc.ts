// `make refusals-doc`: writes docs/refusals.md from the bad-input catalogue (test/refusals/catalogue.ts).
// test/refusals/refusals.test.ts fails when the committed file differs, so the doc and the tests cannot drift.
import * as fs from 'fs';
import * as path from 'path';
import { ROWS, renderRefusals } from '../test/refusals/catalogue';

const doc = path.resolve(__dirname, '..', '..', 'docs', 'refusals.md');
fs.writeFileSync(doc, renderRefusals());
console.log(`${doc}: ${ROWS.length} rows`);

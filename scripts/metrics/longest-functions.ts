// Prints the longest functions of src/ (name, lines, file:line), longest first: the figure the
// architecture notes compare before and after a refactor. `node dist/scripts/metrics/longest-functions.js [root] [N]`.
import * as fs from 'fs';
import * as path from 'path';
import * as ts from 'typescript';

interface Fn { name: string; lines: number; where: string }

function walk(dir: string, out: string[]): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
}

function nameOf(n: ts.Node, sf: ts.SourceFile): string {
  const named = n as ts.Node & { name?: ts.Node };
  if (named.name) return named.name.getText(sf);
  const parent = n.parent;
  if (parent && ts.isVariableDeclaration(parent)) return parent.name.getText(sf);
  if (parent && ts.isPropertyAssignment(parent)) return parent.name.getText(sf);
  return '(anonymous)';
}

export function longestFunctions(root: string): Fn[] {
  const files: string[] = [];
  walk(path.join(root, 'src'), files);
  const fns: Fn[] = [];
  for (const file of files) {
    const sf = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
    const visit = (n: ts.Node): void => {
      if (ts.isFunctionDeclaration(n) || ts.isMethodDeclaration(n) || ts.isFunctionExpression(n) || ts.isArrowFunction(n) || ts.isConstructorDeclaration(n) || ts.isGetAccessor(n)) {
        const body = (n as ts.FunctionLikeDeclaration).body;
        if (body) {
          const start = sf.getLineAndCharacterOfPosition(n.getStart(sf)).line;
          const end = sf.getLineAndCharacterOfPosition(n.getEnd()).line;
          fns.push({ name: nameOf(n, sf), lines: end - start + 1, where: `${path.relative(root, file)}:${start + 1}` });
        }
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
  }
  return fns.sort((a, b) => b.lines - a.lines);
}

if (require.main === module) {
  const root = path.resolve(process.argv[2] ?? path.join(__dirname, '..', '..', '..'));
  const n = Number(process.argv[3] ?? 12);
  const fns = longestFunctions(root);
  const over60 = fns.filter((f) => f.lines > 60).length;
  process.stdout.write(`${fns.length} functions in ${root}/src; ${over60} over 60 lines\n`);
  for (const f of fns.slice(0, n)) process.stdout.write(`${String(f.lines).padStart(4)}  ${f.name}  ${f.where}\n`);
}

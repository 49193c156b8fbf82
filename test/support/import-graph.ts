// The graph of relative imports between the TypeScript files under some folders, and its
// cycles (strongly connected components of more than one file, or a file importing
// itself). `import type` and imports of types only are left out unless asked for: they
// vanish from the built JavaScript, so only the others make load-order cycles.
import fs from 'node:fs';
import path from 'node:path';

export type ImportGraph = Map<string, string[]>;

const IMPORT = /^\s*(import|export)\s+(type\s+)?([^'";]*?\s+from\s+)?['"](\.[^'"]+)['"]/gm;
const TYPES_ONLY = /^\{\s*(type\s+[\w$]+(\s+as\s+[\w$]+)?\s*,?\s*)+\}\s*from/;

function tsFiles(dir: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) tsFiles(p, out);
    else if (p.endsWith('.ts')) out.push(path.resolve(p));
  }
  return out;
}

/** Every .ts file under `roots` and the files it imports (absolute paths). */
export function importGraph(roots: string[], opts: { types?: boolean } = {}): ImportGraph {
  const graph: ImportGraph = new Map();
  for (const file of roots.flatMap((r) => tsFiles(r))) {
    const deps = new Set<string>();
    for (const m of fs.readFileSync(file, 'utf8').matchAll(IMPORT)) {
      const clause = (m[3] ?? '').trim();
      if (!opts.types && (m[2] || TYPES_ONLY.test(clause))) continue;
      const target = path.resolve(path.dirname(file), m[4].replace(/\.js$/, '.ts'));
      if (fs.existsSync(target)) deps.add(target);
    }
    graph.set(file, [...deps]);
  }
  return graph;
}

/** The import cycles of `graph` (Tarjan's strongly connected components), each as its files. */
export function importCycles(graph: ImportGraph): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

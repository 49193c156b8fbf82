// No import cycles between the modules of src/ and commands/ (imports of types only
// excepted: they are gone from the built code): a cycle makes a module run before one it
// needs is loaded, and splitting a file must not make one. The checker itself is tested
// on a small tree with one cycle, one type-only cycle and none otherwise.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { importCycles, importGraph } from '../support/import-graph.js';

const root = tempDir('imgstream-import-cycles-');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('import cycles', () => {
  it('the checker finds a value cycle and leaves a type-only one out', () => {
    const files: Record<string, string> = {
      'a.ts': "import { b } from './b.js';\nexport const a = b;\n",
      'b.ts': "import {\n  c,\n} from './c.js';\nexport const b = c;\n",
      'c.ts': "import { a } from './a.js';\nexport const c = 1;\nexport const d = () => a;\n",
      'd.ts': "import type { E } from './e.js';\nexport interface D { e?: E }\n",
      'e.ts': "import { type D } from './d.js';\nexport interface E { d?: D }\n",
      'f.ts': "export * from './a.js';\n",
    };
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(root, name), text);
    const names = (cycles: string[][]) => cycles.map((c) => c.map((f) => path.basename(f)));
    expect(names(importCycles(importGraph([root])))).toEqual([['a.ts', 'b.ts', 'c.ts']]);
    expect(names(importCycles(importGraph([root], { types: true }))).sort()).toEqual([['a.ts', 'b.ts', 'c.ts'], ['d.ts', 'e.ts']]);
  });

  it('src/ and commands/ have none', () => {
    const graph = importGraph([path.join(REPO_ROOT, 'src'), path.join(REPO_ROOT, 'commands')]);
    expect(graph.size).toBeGreaterThan(100);
    expect(importCycles(graph).map((c) => c.map((f) => path.relative(REPO_ROOT, f)))).toEqual([]);
  });
});

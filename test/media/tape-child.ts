// The tape medium in a separate node process, for kill -9 tests. The source files it
// needs (tape/ and what it imports, found by following the imports) are transpiled into a temporary directory
// whose node_modules links to the repository's (for tar-stream), so the test does not
// depend on a build of the whole tree.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** `roots` and every source file they import at run time (relative imports; `import type` lines are erased by the transpiler), as paths from the repository. */
function importClosure(roots: string[]): string[] {
  const seen = new Set<string>();
  const todo = [...roots];
  for (let rel = todo.pop(); rel !== undefined; rel = todo.pop()) {
    if (seen.has(rel)) continue;
    seen.add(rel);
    const text = fs.readFileSync(path.join(REPO, rel), 'utf8');
    for (const m of text.matchAll(/^(?:import|export)(?! type )[^;]*?from '(\.\.?\/[^']+)\.js';/gms)) todo.push(path.posix.join(path.posix.dirname(rel), `${m[1]}.ts`));
  }
  return [...seen];
}

/** Transpiles the tape medium (the tape directory and what it imports) under `outRoot`; returns the path of its index.js. */
export function buildTapeModule(outRoot: string): string {
  for (const rel of importClosure(fs.readdirSync(path.join(REPO, 'src/media/tape')).filter((f) => f.endsWith('.ts')).map((f) => `src/media/tape/${f}`))) {
    const out = path.join(outRoot, rel.replace(/\.ts$/, '.js'));
    const { outputText } = ts.transpileModule(fs.readFileSync(path.join(REPO, rel), 'utf8'), {
      fileName: rel,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    });
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, outputText);
  }
  fs.writeFileSync(path.join(outRoot, 'package.json'), '{"type":"module"}\n');
  fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(outRoot, 'node_modules'));
  return path.join(outRoot, 'src/media/tape/index.js');
}

/**
 * Starts a process writing an endless stream slowly (64 KiB parts, a pause after each
 * write) to tapeTarget(options); resolves once it has written `bytesBeforeReady` bytes.
 */
export async function startSlowWriter(tapeModule: string, options: object, bytesBeforeReady: number): Promise<ChildProcess> {
  const script = `
    import { tapeTarget } from ${JSON.stringify(tapeModule)};
    const t = tapeTarget(${JSON.stringify(options)});
    const chunk = Buffer.alloc(65536);
    for (let written = 0, said = false; ; written += chunk.length) {
      chunk.fill(written & 255);
      await t.write(chunk);
      if (!said && written + chunk.length >= ${bytesBeforeReady}) { process.stdout.write('ready\\n'); said = true; }
      await new Promise((r) => setTimeout(r, 5));
    }`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => String(d).includes('ready') && resolve());
    child.on('exit', (code, signal) => reject(new Error(`slow writer exited early (${code ?? signal}): ${stderr}`)));
  });
  return child;
}

export async function kill9(child: ChildProcess): Promise<NodeJS.Signals | null> {
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  child.kill('SIGKILL');
  return exited;
}

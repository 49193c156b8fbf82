// The tape medium in a separate node process, for kill -9 tests. The few source files it
// needs (errors, mkdir -p, the media interface, tape/, the durable-file, stale-temp and crash-point helpers) are transpiled into a temporary directory
// whose node_modules links to the repository's (for tar-stream), so the test does not
// depend on a build of the whole tree.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** Transpiles the tape medium under `outRoot`; returns the path of its index.js. */
export function buildTapeModule(outRoot: string): string {
  const sources = ['src/core/errors.ts', 'src/core/size.ts', 'src/core/make-dirs.ts', 'src/volume/volume-lock.ts', 'src/media/medium.ts', 'src/fs/durable-file.ts', 'src/fs/stale-temp.ts', 'src/volume/crash-point.ts', ...fs.readdirSync(path.join(REPO, 'src/media/tape')).filter((f) => f.endsWith('.ts')).map((f) => `src/media/tape/${f}`)];
  for (const rel of sources) {
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

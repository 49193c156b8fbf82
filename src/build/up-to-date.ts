// Build step: whether dist/ was built from the sources as they are now. `npm test` and
// `npm run bench` build only when it was not (after `npm ci`, whose prepare step has just
// built, the test run does not build a second time). The build's last step records a
// sha256 of every input (what tsconfig.json compiles, the package files) in
// dist/.build-inputs; `--check` exits 0 when the inputs hash the same and the outputs the
// executable needs are there, 1 otherwise.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const STAMP = path.join(root, 'dist', '.build-inputs');
/** The folders tsconfig.json compiles, and the files that change what a build makes. */
const INPUT_DIRS = ['src', 'commands', 'test/bench', 'test/support'];
const INPUT_FILES = ['package.json', 'package-lock.json', 'tsconfig.json'];
/** What the executable cannot run without. */
const OUTPUTS = ['dist/commands/_cli/bin.js', 'dist/src/cli/imgstream.cjs', 'dist/src/cli/imgstream.cjs.cache', '.oclif.manifest.json'];

/** sha256 over every input's path and bytes, in a fixed order. */
export function inputsHash(): string {
  const files = [...INPUT_FILES];
  for (const dir of INPUT_DIRS) {
    const abs = path.join(root, dir);
    if (!fs.existsSync(abs)) continue;
    for (const rel of fs.readdirSync(abs, { recursive: true }).map(String)) {
      if (rel.endsWith('.ts')) files.push(path.join(dir, rel));
    }
  }
  const h = crypto.createHash('sha256');
  for (const f of files.sort()) {
    h.update(`${f}\0`);
    h.update(fs.existsSync(path.join(root, f)) ? fs.readFileSync(path.join(root, f)) : Buffer.alloc(0));
    h.update('\0');
  }
  return h.digest('hex');
}

export function upToDate(): boolean {
  if (!OUTPUTS.every((f) => fs.existsSync(path.join(root, f)))) return false;
  try {
    return fs.readFileSync(STAMP, 'utf8').trim() === inputsHash();
  } catch {
    return false;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv[2] === '--record') fs.writeFileSync(STAMP, `${inputsHash()}\n`);
  else if (process.argv[2] === '--check') process.exit(upToDate() ? 0 : 1);
  else throw new Error('usage: up-to-date.js --record | --check');
}

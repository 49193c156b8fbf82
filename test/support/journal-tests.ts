// What the journal and protect tests share: whether the libnbd client can run here, and
// a temporary directory with its lock directory and CLI environment.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll } from 'vitest';
import { tempDir } from './images.js';
import { PYTHON } from './nbd-writer.js';

/** The tools a journal test with a libnbd client lacks here (empty: it can run). */
export function journalTestMissing(): string[] {
  const missing: string[] = [];
  if (spawnSync('qemu-img', ['--version']).status !== 0) missing.push('qemu-img');
  if (!fs.existsSync(PYTHON) || spawnSync(PYTHON, ['-c', 'import nbd']).status !== 0) missing.push('python3-libnbd');
  return missing;
}

/** A temporary directory removed after the file's tests (kept with KEEP=1), its lock directory, and the CLI environment using it. */
export function journalTestDir(prefix: string) {
  const root = tempDir(prefix);
  const locks = path.join(root, 'locks');
  afterAll(() => (process.env.KEEP ? undefined : fs.rmSync(root, { recursive: true, force: true })));
  return { root, locks, at: (f: string) => path.join(root, f), env: { IMGSTREAM_LOCK_DIR: locks } };
}

// The README's first command runs the CLI as `npx imgstream` in a fresh clone: npm runs
// the package's bin file itself, which tsc writes without the execute bit, so the build
// sets it. A clone where it was missing failed with "imgstream: Permission denied".
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI_BIN, REPO_ROOT } from '../support/cli.js';

describe('the imgstream executable', () => {
  it('is the package bin, built executable', () => {
    const pkg = JSON.parse(fs.readFileSync(`${REPO_ROOT}/package.json`, 'utf8')) as { bin: Record<string, string> };
    expect(`${REPO_ROOT}/${pkg.bin.imgstream}`).toBe(CLI_BIN);
    expect(() => fs.accessSync(CLI_BIN, fs.constants.X_OK)).not.toThrow();
  });

  it('runs as `npx imgstream` in the repository, as the README says', () => {
    const r = spawnSync('npx', ['--no-install', 'imgstream', '--version'], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).not.toMatch(/Permission denied/);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^imgstream\/\d+\.\d+\.\d+ /);
  });
});

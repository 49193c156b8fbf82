// `npm test` ends by saying what was skipped for want of an external tool and the one
// command that installs it, before its closing line (which stays exactly "tests: N
// passed, N failed, N skipped", read by CI). Checked by running vitest itself, with the
// summary reporter, on a small test file that needs qemu-io and openssl, with a PATH
// where neither can be found.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/cli.js';

// inside the repository so the fixture resolves vitest from its node_modules
const dir = fs.mkdtempSync(path.join(REPO_ROOT, 'test', '.summary-fixture-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const fixture = `import { describe, expect, it } from 'vitest';
import { missingTools } from '${path.join(REPO_ROOT, 'test', 'support', 'external-tools.ts')}';
const missing = missingTools(['qemu-io', 'openssl']);
describe.skipIf(missing.includes('qemu-io'))('needs qemu-io', () => {
  it('a', () => expect(1).toBe(1));
  it('b', () => expect(1).toBe(1));
  it('c', () => expect(1).toBe(1));
});
describe.skipIf(missing.includes('openssl'))('needs openssl', () => {
  it('d', () => expect(1).toBe(1));
});
it('needs nothing', () => expect(missing).toEqual(['qemu-io', 'openssl']));
`;

/** Runs vitest with the summary reporter on `files` (name -> source) in a fresh directory, with a PATH holding node alone: no qemu-io, no openssl. */
function vitestOn(name: string, files: Record<string, string>) {
  const at = path.join(dir, name);
  fs.mkdirSync(at);
  for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(at, f), text);
  fs.writeFileSync(path.join(at, 'vitest.config.mjs'), `export default { test: { include: ['*.fixture.ts'] } };\n`);
  const bin = path.join(at, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--root', at, '--config', path.join(at, 'vitest.config.mjs'), '--reporter=default', `--reporter=${path.join(REPO_ROOT, 'test', 'support', 'summary-reporter.ts')}`], {
    cwd: at,
    encoding: 'utf8',
    env: { ...process.env, PATH: bin, NO_COLOR: '1', FORCE_COLOR: '0', VITEST: '', VITEST_POOL_ID: '', VITEST_WORKER_ID: '' },
    timeout: 60_000,
  });
  return { ...r, lines: r.stdout.trimEnd().split('\n') };
}

describe('the test summary', () => {
  it('names each missing tool with its skipped tests and the apt-get command, then the closing line', () => {
    const r = vitestOn('tools', { 'needs-tools.fixture.ts': fixture });
    const lines = r.lines;
    expect(r.status, r.stdout + r.stderr).toBe(0);
    // the closing line is last and exactly as CI reads it
    expect(lines.at(-1)).toBe('tests: 1 passed, 0 failed, 4 skipped');
    expect(lines.slice(-5, -1)).toEqual([
      '4 tests skipped because tools are not installed:',
      '  openssl (package openssl), needed by needs-tools.fixture.ts',
      '  qemu-io (package qemu-utils), needed by needs-tools.fixture.ts',
      'install what is missing with: sudo apt-get install -y openssl qemu-utils',
    ]);
  }, 90_000);

  it('counts a file whose hook failed as a failure (its tests show as skipped)', () => {
    const r = vitestOn('hook', {
      'hook.fixture.ts': `import { beforeAll, describe, expect, it } from 'vitest';
describe('set up fails', () => {
  beforeAll(() => { throw new Error('no'); });
  it('a', () => expect(1).toBe(1));
  it('b', () => expect(1).toBe(1));
});
it('c', () => expect(1).toBe(1));
`,
    });
    expect(r.status).not.toBe(0);
    expect(r.lines.at(-1)).toBe('tests: 1 passed, 1 failed, 2 skipped');
  }, 90_000);
});

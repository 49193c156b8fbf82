// External programs some tests need (real clients: qemu-io, nbdcopy, openssl, groff...)
// and the Debian package that installs each. A test file that skips for want of one
// calls missingTools(), which also tells the summary reporter (through a directory the
// reporter names in IMGSTREAM_TEST_MISSING_TOOLS) so `npm test` ends by saying what was
// skipped and the command that installs what is missing.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { MISSING_TOOLS_ENV, MISSING_TOOLS_FILE, type MissingToolRecord } from './tool-packages.js';

export { TOOL_PACKAGES } from './tool-packages.js';

const installed = (name: string) => spawnSync('/bin/sh', ['-c', `command -v '${name}'`], { stdio: 'ignore' }).status === 0;

/**
 * The tools of `names` that are not installed; each is recorded for the summary reporter
 * against the test file being loaded (call it at the top of a test file).
 */
export function missingTools(names: string[]): string[] {
  const missing = names.filter((n) => !installed(n));
  const dir = process.env[MISSING_TOOLS_ENV];
  const file = expect.getState().testPath;
  if (missing.length && dir && file && fs.existsSync(dir)) {
    // one short O_APPEND write per line: lines from parallel workers do not interleave
    for (const tool of missing) fs.appendFileSync(path.join(dir, MISSING_TOOLS_FILE), `${JSON.stringify({ tool, file } satisfies MissingToolRecord)}\n`);
  }
  return missing;
}

/** True when `name` is installed (recorded like missingTools when it is not). */
export function hasTool(name: string): boolean {
  return missingTools([name]).length === 0;
}

#!/usr/bin/env node
// The imgstream executable. Errors raised before a command runs (unknown command,
// unknown topic) are printed as one line too.
import { flush, run } from '@oclif/core';
import { EXIT_CODES } from '../../src/core/errors.js';

process.env.OCLIF_SKIP_NEW_VERSION_CHECK ??= 'true';
try {
  await run(process.argv.slice(2), import.meta.url);
  await flush();
} catch (err) {
  const e = err as Error & { oclif?: { exit?: number } };
  if (e.oclif?.exit === 0) process.exit(0);
  const message = (e.message ?? String(e))
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' ')
    .replace(/^command (\S+) not found/, (_m, id: string) => `unknown command "${id.replaceAll(':', ' ')}"`);
  process.stderr.write(`imgstream: ${message} (see: imgstream --help)\n`);
  process.exit(e.oclif?.exit && e.oclif.exit > 0 ? e.oclif.exit : EXIT_CODES.usage.exit);
}

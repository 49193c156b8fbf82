#!/usr/bin/env node
// The imgstream executable. The commands and what they run are loaded from one bundled
// module with its code cache (src/cli/load.ts; src/build/cli-bundle.ts writes both at build
// time). Errors raised before a command runs (unknown command, unknown topic) are printed
// as one line too. `help` before a topic or command asks for its help.
import { loadCli } from '../../src/cli/load.js';

process.env.OCLIF_SKIP_NEW_VERSION_CHECK ??= 'true';
// oclif's check of the Node version against its own package.json, which the bundle does not
// carry: it loads semver (some 5 ms of every start) to find nothing
process.env.OCLIF_DISABLE_ENGINE_WARNING ??= 'true';
const cli = loadCli();
// `imgstream help [TOPIC|COMMAND...]` is the same as `imgstream [TOPIC|COMMAND...] --help`
const given = process.argv.slice(2);
const argv = given[0] === 'help' ? [...given.slice(1), '--help'] : given;
try {
  await cli.run(argv, import.meta.url);
  await cli.flush();
} catch (err) {
  const e = err as Error & { oclif?: { exit?: number } };
  if (e.oclif?.exit === 0) process.exit(0);
  const message = (e.message ?? String(e))
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' ')
    .replace(/^command (\S+) not found\.?/i, (_m, id: string) => `unknown command "${id.replaceAll(':', ' ')}"`);
  process.stderr.write(`imgstream: ${message} (see: imgstream --help)\n`);
  process.exit(e.oclif?.exit && e.oclif.exit > 0 ? e.oclif.exit : cli.EXIT_CODES.usage.exit);
}

#!/usr/bin/env node
// The imgstream executable. The commands and what they run are loaded from one bundled
// module with its code cache (src/cli/load.ts; src/build/cli-bundle.ts writes both at build
// time); what it does with its arguments is main() there (src/cli/main.ts).
import { loadCli } from '../../src/cli/load.js';

process.env.OCLIF_SKIP_NEW_VERSION_CHECK ??= 'true';
// oclif's check of the Node version against its own package.json, which the bundle does not
// carry: it loads semver (some 5 ms of every start) to find nothing
process.env.OCLIF_DISABLE_ENGINE_WARNING ??= 'true';
const cli = loadCli();
const exit = await cli.main(process.argv.slice(2), import.meta.url);
if (exit !== undefined) process.exit(exit);

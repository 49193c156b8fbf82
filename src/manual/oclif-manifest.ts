// Build step: writes .oclif.manifest.json (the command list with flags and args), which
// oclif reads at startup instead of importing every command module on every run. It is
// build output (git-ignored, like dist/) and is written fresh by every build: the old
// one is removed first so it is never read while computing the new one.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Config } from '@oclif/core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const file = path.join(root, '.oclif.manifest.json');
fs.rmSync(file, { force: true });
const config = await Config.load({ root });
const plugin = config.plugins.get(config.pjson.name);
if (!plugin) throw new Error('root plugin not found');
fs.writeFileSync(file, `${JSON.stringify((plugin as unknown as { manifest: unknown }).manifest)}\n`);

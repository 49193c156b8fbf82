// A switch given a value (`--master=yes`, `--json=false`, `-q=1`) is a usage error in
// every command: exit 2, one line naming the switch, nothing done. oclif alone set the
// switch and took the value as the next argument: `snapshot create v.vol --master=yes`
// made a master snapshot named "yes", `snapshot delete v.vol --force=b` deleted b.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprintTree, runCli } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { runBundled } from '../support/bundled-cli.js';
import { setupOk } from '../support/in-process.js';
import { expectOneLineError } from '../support/stream-cli.js';

const root = tempDir('imgstream-cli-switch-');
const dir = path.join(root, 'work');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const vol = path.join(dir, 'v.vol');

beforeAll(async () => {
  fs.mkdirSync(dir);
  await setupOk(['volume', 'create', vol, '--size', '1M'], { env });
  await setupOk(['snapshot', 'create', vol, 'b'], { env });
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('a switch given a value', () => {
  const cases: [string[], string][] = [
    [['snapshot', 'create', vol, '--master=yes'], '--master'],
    [['snapshot', 'create', vol, 'c', '--master=yes'], '--master'],
    [['snapshot', 'delete', vol, '--force=b'], '--force'],
    [['volume', 'create', '--quiet=1', '--size', '1M'], '--quiet'],
    [['volume', 'create', path.join(dir, 'w.vol'), '--size', '1M', '-q=1'], '-q'],
    [['snapshot', 'list', vol, '--json=false'], '--json'],
    [['volume', 'info', vol, '--json=1'], '--json'],
    [['catalog', 'list', '--quiet=true'], '--quiet'],
    // a value run into a short switch: oclif took "-7" for an argument (volume create -q1 made a volume named -1)
    [['snapshot', 'create', vol, '-q7'], '-q'],
    [['volume', 'info', vol, '-q1'], '-q'],
  ];

  it('is one line naming the switch, exit 2, and changes nothing', async () => {
    for (const [args, flag] of cases) {
      const before = fingerprintTree(dir);
      const r = await runBundled(args, { env });
      expectOneLineError(r, args.join(' '), 2, new RegExp(`^imgstream: ${flag} takes no value \\(give ${flag}, or leave it out\\)$`));
      expect(r.stdout, args.join(' ')).toBe('');
      expect(fingerprintTree(dir), args.join(' ')).toEqual(before);
    }
    // the executable says the same
    const r = runCli(['snapshot', 'create', vol, '--master=yes'], { env });
    expectOneLineError(r, 'process', 2, /^imgstream: --master takes no value/);
  });

  it('is not confused with a value that holds "=" or a flag that takes one', async () => {
    // an option's value is not a switch, and the value after `--flag=` of an option is its own
    const r = await runBundled(['snapshot', 'list', vol, '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).snapshots.map((s: { name: string }) => s.name)).toEqual(['b']);
    const c = await runBundled(['volume', 'create', path.join(dir, 'x.vol'), '--size=1M', '-q'], { env });
    expect(c.code, c.stderr).toBe(0);
  });
});

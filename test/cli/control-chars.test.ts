// Control characters in a name or path the user gave are escaped in the error line (\n,
// \x1b, \x7f, \x85): the error stays one line and no escape sequence reaches the terminal.
// They were printed raw: `volume info $'no\nsuch'` gave a two-line error. A peer URL or
// name is escaped by the same function (the peer code had its own: \x0a, C1 raw).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/images.js';
import { runBundled } from '../support/bundled-cli.js';
import { runCli } from '../support/cli.js';
import { setupOk } from '../support/in-process.js';
import { expectOneLineError } from '../support/stream-cli.js';

const root = tempDir('imgstream-cli-controls-');
const vol = path.join(root, 'v.vol');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const token = path.join(root, 'token');

beforeAll(async () => {
  await setupOk(['volume', 'create', vol, '--size', '1M'], { env });
  fs.writeFileSync(token, 'x'.repeat(64), { mode: 0o600 });
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('control characters in an error', () => {
  it('are escaped, so the error is one line without raw control characters', async () => {
    const cases: [string[], string][] = [
      [['volume', 'info', path.join(root, 'no\nsuch')], 'no\\nsuch'],
      [['snapshot', 'create', vol, 'a\nb'], '"a\\nb"'],
      [['snapshot', 'create', vol, 'a\x1b[31mb'], '"a\\x1b[31mb"'],
      [['snapshot', 'create', vol, 'a\tb\x7fc\u0085d\re'], '"a\\tb\\x7fc\\x85d\\re"'],
      [['volume', 'info', path.join(root, 'x\x1b]0;title\x07')], 'x\\x1b]0;title\\x07'],
      [['\x1b[31mbogus'], '"\\x1b[31mbogus"'],
      // a peer URL's name, in the same words (the peer code escaped \n as \x0a and let C1 through)
      [['verify', '--from', 'peer://h:1/a\nb\u0085c', '--token-file', token, '--plain'], '"a\\nb\\x85c"'],
      [['dump', vol, '--level', '0', '--to', 'peer://h:0/a\nb', '--token-file', token, '--plain'], '"peer://h:0/a\\nb"'],
    ];
    for (const [args, shown] of cases) {
      const r = await runBundled(args, { env });
      const line = expectOneLineError(r, JSON.stringify(args));
      expect(line, JSON.stringify(args)).toContain(shown);
      expect(r.stderr, JSON.stringify(args)).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
    }
    // the executable, and --json keeps the name as given in its JSON object
    const r = runCli(['snapshot', 'create', vol, 'a\nb', '--json'], { env });
    expectOneLineError(r, 'process', 4, /"a\\nb"/);
    expect(JSON.parse(r.stdout).error.message).toContain('"a\nb"');
  });
});

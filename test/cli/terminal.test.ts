// What the CLI does on a terminal (a pseudo-terminal from util-linux's `script`): an image
// is not written to one (volume export -t - wrote the disk's bytes to the screen, where
// dump -t - refused: now both are exit 4), and an error line is red there unless NO_COLOR
// is set (https://no-color.org), which it ignored.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI_BIN } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';

const SCRIPT = ['/usr/bin/script', '/bin/script'].find((f) => fs.existsSync(f));
const root = tempDir('imgstream-terminal-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** `imgstream ...args` with its stdin, stdout and stderr on a pseudo-terminal: its exit code and what the terminal showed. */
function onTerminal(args: string[], more: Record<string, string> = {}): { code: number | null; shown: string } {
  const command = [process.execPath, CLI_BIN, ...args].map(quote).join(' ');
  // a terminal that shows colour, wherever the tests run (a CI variable or TERM=dumb turns chalk's off)
  const base: Record<string, string | undefined> = { ...process.env, ...env, TERM: 'xterm-256color', ...more };
  for (const k of ['CI', 'GITHUB_ACTIONS', 'COLORTERM', 'FORCE_COLOR']) delete base[k]; // (Node warns when NO_COLOR and FORCE_COLOR are both set)
  if (!('NO_COLOR' in more)) delete base.NO_COLOR;
  const r = spawnSync(SCRIPT!, ['-qec', command, '/dev/null'], { env: base, encoding: 'latin1', timeout: 60_000 });
  return { code: r.status, shown: r.stdout };
}

describe.skipIf(!SCRIPT)(`on a terminal${SCRIPT ? '' : ' (skipped: util-linux script is not installed)'}`, () => {
  it('volume export -t - and dump -t - refuse to write to it (exit 4, one line, no bytes of the disk)', async () => {
    const vol = path.join(root, 'v.vol');
    await setupOk(['volume', 'create', vol, '--size', '1M'], { env });
    fs.writeFileSync(path.join(root, 'x.raw'), Buffer.alloc(1 << 20, 0x41));
    await setupOk(['volume', 'import', vol, '--from', path.join(root, 'x.raw')], { env });
    const ex = onTerminal(['volume', 'export', vol, '-t', '-']);
    expect(ex.code, ex.shown).toBe(4);
    expect(ex.shown).toContain('refusing to write an image to a terminal');
    expect(ex.shown).not.toContain('AAAA');
    expect(ex.shown.trim().split('\n'), JSON.stringify(ex.shown)).toHaveLength(1);
    const d = onTerminal(['dump', vol, '--level', '0', '-t', '-']);
    expect(d.code, d.shown).toBe(4);
    expect(d.shown).toContain('refusing to write a stream to a terminal');
  });

  it('an error line is red, and plain with NO_COLOR set', () => {
    const missing = path.join(root, 'nosuch.vol');
    const red = onTerminal(['volume', 'info', missing]);
    expect(red.code).toBe(3);
    expect(red.shown).toContain('\x1b[31m');
    const plain = onTerminal(['volume', 'info', missing], { NO_COLOR: '1' });
    expect(plain.code).toBe(3);
    expect(plain.shown).not.toContain('\x1b[');
    expect(plain.shown).toContain('no such volume');
  });
});

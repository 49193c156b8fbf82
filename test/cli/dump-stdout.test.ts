// dump --to -, through the built CLI: the stream is all of stdout, and the summary goes
// to stderr as one line of information, the same line a dump to a file prints on stdout
// ("dumped level 0 of VOL: ... -> stdout (... stream, sha256 ...)"). It used to read
// "imgstream: dumped ...", the form of an error line. --json with --to - stays a usage
// error (the stream has stdout).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliOk, runCli, stderrLines, writeImage } from '../support/cli.js';
import { tempDir } from '../support/images.js';

const root = tempDir('imgstream-dump-stdout-');
const at = (f: string) => path.join(root, f);
const env = { IMGSTREAM_LOCK_DIR: at('locks'), IMGSTREAM_CATALOG: at('catalog.json') };
const o = { env, timeoutMs: 60_000 };

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(() => {
  cliOk(['volume', 'create', at('v.vol'), '--size', '1M', '-q'], o);
  writeImage(at('v.img'), 256, 4096, 80, 0.2);
  cliOk(['volume', 'import', at('v.vol'), '--from', at('v.img'), '-q'], o);
  cliOk(['snapshot', 'create', at('v.vol'), 'l0', '-q'], o);
}, 60_000);

describe('dump --to -', () => {
  it('the stream on stdout, its summary on stderr as one line of information', () => {
    const r = runCli(['dump', at('v.vol'), '--level', '0', '--snapshot', 'l0', '--to', '-'], o);
    expect(r.code, r.stderr).toBe(0);
    const lines = stderrLines(r);
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toMatch(/^imgstream:/);
    expect(lines[0]).toMatch(/^dumped level 0 of .*v\.vol: l0: \d+ blocks, .* -> stdout \(.* stream, sha256 [0-9a-f]{16}\.\.\.\)$/);
    // what it names is what stdout carried: a whole stream, the one the catalog records
    fs.writeFileSync(at('l0'), r.stdoutBytes);
    cliOk(['verify', at('l0')], o);
    const streamSha = /sha256 ([0-9a-f]{16})/.exec(lines[0])![1];
    expect(cliOk(['catalog', 'list', '--json'], o).stdout).toContain(streamSha);
  });

  it('--json with --to - is a usage error (exit 2)', () => {
    const r = runCli(['dump', at('v.vol'), '--level', '0', '--to', '-', '--json'], o);
    expect(r.code).toBe(2);
    expect(stderrLines(r)).toHaveLength(1);
  });
});

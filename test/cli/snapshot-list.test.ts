// `snapshot list` as text: one row per snapshot under a header, each column as wide as its
// widest cell, so a long snapshot name (up to 64 characters) never shifts the columns
// after it; BLOCKS and SIZE are right-aligned.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliOk } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { volumeWithSnapshot, setupOk } from '../support/in-process.js';

const root = tempDir('imgstream-snapshot-list-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks') };
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('snapshot list', () => {
  it('keeps its columns aligned whatever the length of the names', async () => {
    const vol = path.join(root, 'v.vol');
    await volumeWithSnapshot(vol, path.join(root, 'v.raw'), env);
    const long = `weekly-${'x'.repeat(40)}`;
    await setupOk(['snapshot', 'create', vol, long], { env });
    await setupOk(['snapshot', 'create', vol, 'z', '--shadow'], { env });
    const lines = cliOk(['snapshot', 'list', vol], { env }).stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^NAME +CREATED +BLOCKS +SIZE +FLAGS$/);
    expect(lines.slice(1).map((l) => l.split(/ {2,}/)[0].trim())).toEqual(['s1', long, 'z']);
    // every column starts where its header does (CREATED, FLAGS), or ends where it does (BLOCKS, SIZE)
    const start = (l: string, re: RegExp) => l.search(re);
    const created = lines[0].indexOf('CREATED');
    const flags = lines[0].indexOf('FLAGS');
    const blocksEnd = lines[0].indexOf('BLOCKS') + 'BLOCKS'.length;
    const sizeEnd = lines[0].indexOf('SIZE') + 'SIZE'.length;
    expect(created).toBeGreaterThan(long.length);
    for (const l of lines.slice(1)) {
      expect(start(l, /\d{4}-\d\d-\d\dT/), l).toBe(created);
      expect(l.slice(0, blocksEnd), l).toMatch(/ \d+$/);
      expect(l.slice(0, sizeEnd), l).toMatch(/ [\d.]+ (B|KiB|MiB|GiB)$/);
      expect(l.slice(flags), l).toMatch(/^(-|shadow)$/);
    }
  });
});

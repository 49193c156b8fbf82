// catalog list as text: columns stay aligned whatever the lengths of snapshot names,
// sizes and places (they were padded to fixed widths, so a 40-character snapshot name
// pushed every later column of its row to the right).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliOk } from '../support/cli.js';
import { tempDir } from '../support/images.js';

const root = tempDir('imgstream-catalog-list-');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function record(id: string, date: string, level: number, top: string, base: string | null, streamBytes: number, location: string) {
  return {
    id: `${id}-0000-4000-8000-000000000000`, volume: { uuid: `${id}${'0'.repeat(24)}`, path: '/vols/vm.vol' }, level,
    base: base === null ? null : { id: 1, name: base }, top: { id: 2, name: top }, snapshots: [top], expression: top,
    date, finished: date, media: { kind: 'file', location }, blocks: 1, dataBytes: streamBytes, streamBytes, sha256: '0'.repeat(64), status: 'complete',
  };
}

describe('catalog list', () => {
  it('aligns every column to its widest cell', () => {
    const catalog = path.join(root, 'catalog.json');
    const dumps = [
      record('aaaaaaaa', '2026-12-01T01:00:00.000Z', 0, 's1', null, 999, '/b/s.l0'),
      record('bbbbbbbb', '2026-12-02T01:00:00.000Z', 1, 'daily-2026-12-02-after-the-big-migration', 's1', 123_456_789_012, '/backups/a/very/long/path/l1'),
      record('cccccccc', '2026-12-03T01:00:00.000Z', 9, 'x', 'daily-2026-12-02-after-the-big-migration-base', 5, '/b/x.l9'),
    ];
    fs.writeFileSync(catalog, JSON.stringify({ format: 'imgstream-catalog', version: 1, dumps }));
    const lines = cliOk(['catalog', 'list', '--catalog', catalog]).stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    const [header, ...rows] = lines;
    const startOf = (name: string) => header.indexOf(name);
    rows.forEach((row, i) => {
      const d = dumps[i];
      // left-aligned columns start under their heading
      expect(row.indexOf(d.date.slice(0, 19)), row).toBe(startOf('DATE'));
      expect(row.indexOf(` ${d.top.name} `) + 1, row).toBe(startOf('TOP'));
      expect(row.indexOf(` ${d.base?.name ?? '-'} `, startOf('BASE') - 1) + 1, row).toBe(startOf('BASE'));
      expect(row.indexOf(`file ${d.media.location}`), row).toBe(startOf('WHERE'));
      // right-aligned ones end under theirs
      const lvl = row.slice(0, startOf('LVL') + 3).trimEnd();
      expect(lvl.endsWith(` ${d.level}`), row).toBe(true);
      const size = row.slice(0, startOf('SIZE') + 'SIZE'.length).trimEnd();
      expect(size.length, row).toBe(startOf('SIZE') + 'SIZE'.length);
    });
  });
});

// catalog list as text: columns stay aligned whatever the lengths of snapshot names,
// sizes and places (they were padded to fixed widths, so a 40-character snapshot name
// pushed every later column of its row to the right).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliOk, runCli } from '../support/cli.js';
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
      { ...record('cccccccc', '2026-12-03T01:00:00.000Z', 9, 'x', 'daily-2026-12-02-after-the-big-migration-base', 5, '/b/x.l9'), encrypted: true },
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
      // KEY: an encrypted stream needs its key to be read
      expect(row.slice(startOf('KEY'), startOf('KEY') + 3).trim(), row).toBe('encrypted' in d ? 'yes' : '-');
      // right-aligned ones end under theirs
      const lvl = row.slice(0, startOf('LVL') + 3).trimEnd();
      expect(lvl.endsWith(` ${d.level}`), row).toBe(true);
      const size = row.slice(0, startOf('SIZE') + 'SIZE'.length).trimEnd();
      expect(size.length, row).toBe(startOf('SIZE') + 'SIZE'.length);
    });
  });
});

describe('catalog list --volume and rebuilt catalogs', () => {
  it('finds a volume\'s dumps by path after a rebuild from scratch, keeps paths a rebuild over a catalog had, and says when the volume has none', () => {
    const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks') };
    const vol = path.join(root, 'v.vol');
    const stream = path.join(root, 'v.l0');
    const catalog = path.join(root, 'rebuilt.json');
    cliOk(['volume', 'create', vol, '--size', '1M', '-q'], { env });
    cliOk(['dump', vol, '--level', '0', '--to', stream, '--catalog', catalog, '-q'], { env });
    const first = JSON.parse(fs.readFileSync(catalog, 'utf8')).dumps[0];
    expect(first.volume.path).toBe(vol);
    // over the catalog: the path and the time the dump finished stay as they were
    cliOk(['catalog', 'rebuild', '--from', stream, '--catalog', catalog], { env });
    expect(JSON.parse(fs.readFileSync(catalog, 'utf8')).dumps[0]).toMatchObject({ volume: first.volume, finished: first.finished });
    // from scratch: the stream names no path, but the volume at the path given is known by its uuid
    fs.rmSync(catalog);
    cliOk(['catalog', 'rebuild', '--from', stream, '--catalog', catalog], { env });
    const listed = JSON.parse(cliOk(['catalog', 'list', '--catalog', catalog, '--volume', vol, '--json'], { env }).stdout) as { dumps: Array<{ id: string }> };
    expect(listed.dumps.map((d) => d.id)).toEqual([first.id]);
    const relative = JSON.parse(cliOk(['catalog', 'list', '--catalog', catalog, '--volume', path.relative(process.cwd(), vol), '--json'], { env }).stdout) as { dumps: unknown[] };
    expect(relative.dumps).toHaveLength(1);
    expect(cliOk(['catalog', 'list', '--catalog', catalog, '--volume', path.join(root, 'other.vol')], { env }).stdout).toMatch(/no dumps of volume .*other\.vol in .*rebuilt\.json \(it holds 1 dump of other volumes\)/);
  });

  it('refuses a catalog path in a directory that does not exist (exit 3), rather than saying it holds no dumps', () => {
    const r = runCli(['catalog', 'list', '--catalog', path.join(root, 'no-such-dir', 'cat.json')]);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/cat\.json: no such directory .*no-such-dir \(give --catalog a file in a directory that exists\)/);
  });
});

// The shipper's watch for a disk changed without its journal (src/journal/unjournaled-change.ts),
// on a volume no process holds: as the journal left it, changed (held back for a second,
// then an error), and unreadable for a moment (held back: not known to be unchanged); and
// from the marker shipped.json kept, where the journal's own were trimmed away.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Volume } from '../../src/volume/volume.js';
import { UnjournaledChange } from '../../src/journal/unjournaled-change.js';
import { tempDir } from '../support/images.js';

const dir = tempDir('imgstream-unjournaled-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function volumeWithBlock(name: string): string {
  const file = path.join(dir, name);
  Volume.create(file, { size: 64 * 4096, blockSize: 4096, maxSnapshots: 4 });
  const vol = Volume.open(file, { write: true });
  vol.writeLogical(3, Buffer.alloc(4096, 7));
  vol.commit();
  vol.close();
  return file;
}

describe('the watch for changes outside the journal', () => {
  it('claims nothing while the root record cannot be read, and says a lasting change is one', () => {
    const file = volumeWithBlock('a.vol');
    const watch = UnjournaledChange.fromDisk(file, `${file}.journal`);
    const t = Date.now();
    expect(watch.differs(t), 'as the journal left it').toBe(false);

    // both root record copies unreadable (a moment of a replaced file, seen on a loaded machine)
    const saved = fs.readFileSync(file);
    const damaged = Buffer.from(saved);
    damaged.fill(0, 0, 2 * 4096);
    fs.writeFileSync(file, damaged);
    expect(watch.differs(t + 10), 'unknown is no proof that nothing changed').toBe(true);
    expect(watch.differs(t + 5000), 'nor is it a change: it does not end the session').toBe(true);
    fs.writeFileSync(file, saved);
    expect(watch.differs(t + 5010), 'readable again, and as it was').toBe(false);

    // a CP by a process that journals nothing: held back for a second, then an error
    const vol = Volume.open(file, { write: true });
    vol.writeLogical(9, Buffer.alloc(4096, 1));
    vol.commit();
    vol.close();
    expect(watch.differs(t + 6000)).toBe(true);
    expect(() => watch.differs(t + 7100)).toThrow(/its disk changed without its journal/);
  });

  it('starts from the marker shipped.json kept when the journal trimmed its own away', () => {
    const file = volumeWithBlock('b.vol');
    const journal = `${file}.journal`;
    fs.mkdirSync(journal);
    // every segment up to record 40 shipped and trimmed: the journal holds no marker up to it
    const asJournaled = UnjournaledChange.fromDisk(file, journal).marker!;
    const vol = Volume.open(file, { write: true });
    vol.writeLogical(9, Buffer.alloc(4096, 1));
    vol.commit();
    vol.close();
    const t = Date.now();
    const watch = UnjournaledChange.fromJournal(file, journal, 40, asJournaled);
    expect(watch.differs(t)).toBe(true);
    expect(() => watch.differs(t + 1100)).toThrow(/its disk changed without its journal/);
  });

  it('sees a change whose new map root landed on the VBN the marker names (a freed VBN reused): the root block differs', () => {
    const file = volumeWithBlock('c.vol');
    const journal = `${file}.journal`;
    fs.mkdirSync(journal);
    const marker = UnjournaledChange.fromDisk(file, journal).marker!;
    expect(marker.rootCrc).toBeTypeOf('number');
    // the same root VBN with other contents: what an unjournaled change that reused the VBN leaves
    const v = Volume.open(file, { write: false });
    const offset = v.layout.vbnOffset(marker.mapRoot!);
    v.close();
    const fd = fs.openSync(file, 'r+');
    const block = Buffer.alloc(4096);
    fs.readSync(fd, block, 0, 4096, offset);
    block[4096 - 1] ^= 0x01; // an entry past the disk's: no reader is upset, but it is another block
    fs.writeSync(fd, block, 0, 4096, offset);
    fs.closeSync(fd);
    const t = Date.now();
    const watch = UnjournaledChange.fromJournal(file, journal, 0, marker);
    expect(watch.differs(t)).toBe(true);
    expect(() => watch.differs(t + 1100)).toThrow(/its disk changed without its journal/);
    // a marker of an earlier version (no checksum) compares the VBN only, as before
    const old = UnjournaledChange.fromJournal(file, journal, 0, { generation: marker.generation, mapRoot: marker.mapRoot });
    expect(old.differs(t)).toBe(false);
  });
});

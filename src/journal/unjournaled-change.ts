// The shipper's watch for a disk changed without its journal: served without --journal,
// imported into, written by any other command. Such a change is in no record, so a
// destination would never get it, while an idle shipper kept moving its window forward
// (claiming the disk as of now without it). Every CP of a journaled server is followed
// by a CP marker holding the volume's map root (and a checksum of its block: a freed VBN
// is reused, so an unjournaled change can leave a new root on the very VBN the marker
// names); when the volume's map root on disk differs from the last marker's and stays so with no record arriving (a marker follows
// its CP within milliseconds) and the volume's lock names no process journaling its writes
// (whose marker may be late, or lost to a kill -9 its restart makes good), the disk changed
// outside the journal. While a process that does not journal its writes holds the volume
// (a server without --journal, an import), what it acknowledges reaches the disk only at
// its next CP: no point is claimed then. One whose lock says it changes no block of the
// disk (a read-only open, a dump) does not hold points back.
import { InvalidInputError } from '../core/errors.js';
import { BlockFile } from '../volume/block-file.js';
import { VolumeLock } from '../volume/volume-lock.js';
import { readRootRecord } from '../volume/root-reader.js';
import { VolumeLayout } from '../volume/layout.js';
import { mapRootCrc } from './map-root-crc.js';
import { JournalReader } from './journal-reader.js';
import { listSegments } from './journal-files.js';
import { RecordKind, parseMarker, type JournalRecord } from './record.js';

/** How long a difference must last, with no record read, before it is a change outside the journal. */
const SETTLE_MS = 1000;
/** How long a writer without a journal holds the volume before protect says it waits for it. */
const HELD_SAY_MS = 3000;

interface CpMarker {
  generation: number;
  mapRoot?: number;
  /** crc32 of the map root block (map-root-crc.ts); absent in markers of earlier versions. */
  rootCrc?: number;
}

export class UnjournaledChange {
  private last: CpMarker | null = null;
  private since: number | null = null;

  private constructor(private readonly volume: string, private readonly dir: string) {}

  /**
   * As the journal's last CP marker up to `upTo` (the records a destination holds) left the
   * disk; where the journal holds none (trimmed as they were shipped), as `kept` (the last
   * marker a shipper read, kept in shipped.json): without one, no change would be seen.
   */
  static fromJournal(volume: string, dir: string, upTo: number, kept?: CpMarker): UnjournaledChange {
    const w = new UnjournaledChange(volume, dir);
    const segs = listSegments(dir);
    if (segs.length > 0 && segs[0].firstSeq <= upTo) {
      const r = new JournalReader(dir, segs[0].firstSeq);
      try {
        for (let rec = r.next(); rec !== null && rec.seq <= upTo; rec = r.next()) w.saw(rec);
      } catch {
        // a damaged record: the shipper's own reader names it
      } finally {
        r.close();
      }
    }
    // a later marker than upTo's is as good: the shipper reads the records up to it again
    if (w.last === null && kept !== undefined) w.last = kept;
    return w;
  }

  /** The last CP marker seen (null: none yet). */
  get marker(): CpMarker | null {
    return this.last;
  }

  /** As the disk is now: a seed or a resync just read it whole (or its changed blocks), whatever the journal says. */
  static fromDisk(volume: string, dir: string): UnjournaledChange {
    const w = new UnjournaledChange(volume, dir);
    const root = w.mapRoot();
    if (root !== null) w.last = { generation: -1, mapRoot: root.mapRoot, ...(root.rootCrc !== undefined ? { rootCrc: root.rootCrc } : {}) };
    return w;
  }

  /** Every record the shipper reads. */
  saw(rec: JournalRecord): void {
    this.since = null;
    if (rec.kind === RecordKind.Cp) this.last = parseMarker<CpMarker>(rec);
  }

  /**
   * False while the disk is as the journal's last CP marker left it (or has been different
   * for less than SETTLE_MS: its marker may be on its way). Throws once the difference
   * has lasted: the shipper stops rather than claim recovery points without the change.
   */
  differs(now: number): boolean {
    if (this.last?.mapRoot === undefined) return false;
    // looked at before the disk: a writer that commits and goes in between shows in the disk
    const writer = this.writerWithoutJournal();
    const root = this.mapRoot();
    // unreadable now (its root record being replaced, a loaded machine): not known to be as
    // the journal left it, so no point is claimed until it reads again
    if (root === null) return true;
    if (root.mapRoot === this.last.mapRoot && (this.last.rootCrc === undefined || root.rootCrc === this.last.rootCrc)) {
      this.since = null;
      // a writer without a journal holds the volume: what it acknowledges shows on the disk
      // only at its next CP, so no point is claimed while it does
      // said once it lasts: a server with --journal holds the lock a moment before it says so
      // (while it opens and recovers its journal), and a stop without the marker is brief
      if (writer === null || writer !== this.holder?.pid) this.holder = writer === null ? null : { pid: writer, since: now };
      this.heldBy = this.holder !== null && now - this.holder.since >= HELD_SAY_MS ? this.holder.pid : null;
      return writer !== null;
    }
    this.holder = null;
    this.heldBy = null;
    if (this.journalingHolder()) {
      // its own CP, its marker on the way (a loaded machine can keep it a while), or it was
      // killed between the two: every write in that CP is in a record already, and a restart
      // writes the marker. No point is claimed meanwhile.
      this.since = null;
      return true;
    }
    this.since ??= now;
    if (now - this.since < SETTLE_MS) return true;
    throw new InvalidInputError(
      `${this.volume}: its disk changed without its journal (served without --journal, or written by another command)${this.last.generation >= 0 ? ` after the journal's last CP (generation ${this.last.generation})` : ''}: the destination would miss that change, so no later recovery point is claimed`,
      `start protection over: move ${this.dir} aside, serve with --journal and protect to a new destination`,
    );
  }

  /** The process holding the volume without journaling its writes for HELD_SAY_MS or more, as differs() last found it (null: none). */
  heldBy: number | null = null;
  private holder: { pid: number; since: number } | null = null;

  /** The live process that holds the volume's lock, may write its disk and is no server journaling its writes (null: none). */
  private writerWithoutJournal(): number | null {
    const h = VolumeLock.holder(this.volume);
    if (h === null || h.served === 'ro' || h.journal || h.keepsDisk) return null;
    return h.pid;
  }

  /** The volume's lock names a server (or command) journaling its writes, alive or killed: no other process wrote since. */
  private journalingHolder(): boolean {
    const h = VolumeLock.lastHolder(this.volume);
    return h !== null && h.journal === true && h.served !== 'ro';
  }

  /** The map root on disk and the checksum of its block (none for an empty map). */
  private mapRoot(): { mapRoot: number; rootCrc?: number } | null {
    try {
      const file = BlockFile.open(this.volume, false);
      try {
        const r = readRootRecord(file, this.volume);
        if (r.mapRoot === 0) return { mapRoot: 0 };
        const layout = new VolumeLayout(r.blockSize, r.nblocks, r.maxSnapshots);
        return { mapRoot: r.mapRoot, rootCrc: mapRootCrc((b) => file.read(b, layout.vbnOffset(r.mapRoot)), r.blockSize) };
      } finally {
        file.close();
      }
    } catch {
      return null; // unreadable now (being replaced): looked at again next time
    }
  }
}

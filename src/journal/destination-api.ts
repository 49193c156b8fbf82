// What a shipper hands a protection destination, and what a destination answers: the
// contract between `imgstream protect` (journal side) and the stores that keep recovery
// points (a local directory, or one on a peer daemon).

/**
 * One entry of an interval or a seed, addressed by logical block number (LBN): a block's
 * data, or null when it reads as zeros (trim, write-zeroes). A zero entry may stand for a
 * run of `count` blocks from `lbn` (a guest's trim of 80 GiB is one entry, not 21 million).
 * The data is valid until the next entry is asked for (producers reuse their buffers): a
 * consumer copies what it keeps.
 */
export interface IntervalBlock {
  lbn: number;
  data: Buffer | null;
  /** Blocks the entry stands for (absent: 1); more than 1 only when data is null. */
  count?: number;
  /** The crc32 of data, when its source knows it already (absent: not known). */
  crc?: number;
}

/** Blocks `b` stands for. */
export function blocksOfEntry(b: IntervalBlock): number {
  return b.count ?? 1;
}

/** A snapshot the source renamed: `from` is the name it had. */
export interface SnapshotRename {
  from: string;
  to: string;
}

/** The volume a destination protects: fixed at the first transfer, checked at every later one. */
export interface ProtectedSource {
  /** The source volume's uuid. */
  uuid: string;
  /** Its path as the shipper names it (for messages and `protect status`). */
  path: string;
  blockSize: number;
  /** Bytes of the logical disk. */
  logicalSize: number;
  /** The identity of the write journal it ships from (journal-files.ts): a destination fed from one refuses another. Absent from older shippers. */
  journalId?: string;
  /** Sent at open, never stored: the identity destinations fed before it was tied to its directory knew it by (they take `journalId` in its place). */
  journalIdWas?: string;
  /**
   * Sent at open, never stored: the journal's last record now. A journal that ends before
   * what the destination holds is refused by the shipper right after (damaged, or another
   * journal): the destination records nothing of that session (its path, its retention).
   */
  journalLast?: number;
  /**
   * Sent at open, never stored: the journal's damage (a record that fails its check with
   * records after it), as the shipper says it. Every session stops at that record, so a
   * destination not seeded yet is not created (nor its state changed): its seed would be
   * the only point it ever got, and the journal moved aside could not feed it after.
   */
  journalDamage?: string;
}

/**
 * The writes acknowledged to clients in [start, end): the last version of each block
 * written in that time (one entry per LBN or run of zeroed LBNs, ascending, never
 * overlapping). Restoring as of any time t in [end, next interval's end) gives the disk
 * as it was at `end`.
 */
export interface ShippedInterval {
  /** 1, 2, 3… at one destination, without gaps (the seed is interval 0). */
  seq: number;
  /** Milliseconds since the epoch. */
  start: number;
  end: number;
  /** The journal records it covers: after `journalFrom`, up to and including `journalTo` (journal record sequence numbers). */
  journalFrom: number;
  journalTo: number;
  /** 'journal': built from journal records; 'resync': the changed blocks of a source snapshot, after the journal overflowed (every LBN that changed since the previous interval). */
  kind: 'journal' | 'resync';
  /** Snapshots taken on the source at `end` (after every write of the interval), oldest first. */
  snapshots: string[];
  /**
   * Snapshots renamed on the source during the interval, in order (before `snapshots` were
   * taken): from then on the recovery points of earlier snapshots answer to the new names.
   */
  renames?: SnapshotRename[];
  /** Blocks the interval holds (its entries' counts summed). */
  blockCount: number;
  /** Entries `blocks` yields (absent: blockCount, every entry one block). */
  entries?: number;
  /** (A synchronous source, such as an interval collected in memory, gives them as an Iterable.) */
  blocks: AsyncIterable<IntervalBlock> | Iterable<IntervalBlock>;
  /** The blocks' data buffers stay as they are until append() settles (a destination may keep them instead of copying). */
  stableData?: boolean;
}

/** The whole logical disk at one journal position: the first transfer to an empty destination. */
export interface SeedImage {
  /** Every journal record up to and including this one is in the image. */
  journalTo: number;
  /** When the image was taken (ms since the epoch): the first recovery point. */
  time: number;
  /** Mapped blocks only (ascending LBN, one block per entry); every other block reads as zeros. */
  blockCount: number;
  blocks: AsyncIterable<IntervalBlock>;
}

/** What a destination holds, as a shipper needs it to resume. */
export interface DestinationState {
  /** False until a seed completed: the shipper must send one. */
  seeded: boolean;
  /** Seq of the last interval stored (0: only the seed). */
  intervalSeq: number;
  /** The last journal record the destination holds (every one up to it). */
  journalTo: number;
  /** The recovery window: the oldest and newest times a restore may ask for (ms), null before the seed. */
  window: { start: number; end: number } | null;
  /** History kept (ms); `keepWas`: what it kept before this open changed it (null: unchanged, or new). */
  keepMs?: number;
  keepWas?: number | null;
  /**
   * A damaged interval the destination found (its seq, what is wrong with its file): its recovery points
   * and those after it cannot be rebuilt until a full resync after it. `wholeDiskWanted`:
   * none has come yet, the shipper is to send one (every block of the disk).
   */
  damage?: { seq: number; what: string; wholeDiskWanted: boolean; base?: true };
}

/** What a new destination keeps when protect is given no --keep. */
export const DEFAULT_KEEP_MS = 24 * 3600_000;

export interface ProtectDestination {
  /** How messages name it (a path, or peer://host:port/name). */
  readonly description: string;
  /**
   * Opens (creating on first use) the destination for `source`, keeping `keepMs` of
   * history (null: what it kept, DEFAULT_KEEP_MS when new). Refuses a destination that protects another volume or has another geometry,
   * a path that is a plain volume or mirror, and a destination another shipper holds.
   */
  open(source: ProtectedSource, keepMs: number | null): Promise<DestinationState>;
  /** Stores the seed (replacing an incomplete one); durable when it resolves. */
  seed(image: SeedImage): Promise<DestinationState>;
  /** Stores one interval; durable when it resolves (a crash before leaves the destination as it was). Folds history older than the window into the base. */
  append(interval: ShippedInterval): Promise<DestinationState>;
  /**
   * No write was acknowledged after the newest recovery point until `until` (ms): the
   * window reaches `until`, and a time up to it restores the newest recovery point. Sent
   * by an idle shipper, so "as of now" works on a quiet volume. Durable when it resolves.
   */
  quiet(until: number): Promise<DestinationState>;
  close(): Promise<void>;
}

// How many bytes of a write journal's records a destination has not acknowledged yet: what
// --journal-size limits. Counted from marks (a record's sequence number and the journal's
// bytes up to and including it) taken at every CP marker and every MARK_BYTES or so, across
// segments: the bytes after the last mark a destination holds count as unshipped (so the
// count is high by less than MARK_BYTES, never low). It once counted every byte of each
// segment a destination had not shipped whole, and all of the current one after a restart,
// so a protected server that kept up overflowed again and again (a 1 MiB limit reached by
// 144 KiB of changes).

/** Journal bytes between two marks (the count's error at most). */
export const MARK_BYTES = 256 << 10;

export class UnshippedBytes {
  /** Bytes of records appended, from the start of the oldest segment kept. */
  private appended: number;
  /** [seq, bytes through record seq], oldest first; the first is the floor (nothing before it is kept). */
  private marks: Array<[number, number]>;

  /** `marks`: those a scan of the segments found (journal-recovery.ts), the first the floor; none: an empty journal whose next record is `floorSeq` + 1. */
  constructor(floorSeq: number, marks: Array<[number, number]> = []) {
    this.marks = marks.length > 0 ? marks : [[floorSeq, 0]];
    this.appended = this.marks[this.marks.length - 1][1];
  }

  /** Records of `n` bytes were appended (negative: taken back, their write failed). */
  added(n: number): void {
    this.appended += n;
  }

  /** Record `seq` (the last appended) ends a CP, or ends MARK_BYTES past the last mark (`always`: a CP marker). */
  mark(seq: number, always: boolean): void {
    const last = this.marks[this.marks.length - 1];
    if (always || this.appended - last[1] >= MARK_BYTES) this.marks.push([seq, this.appended]);
  }

  /** Every record up to `seq` is gone (an overflow dropped them): counting starts again after it. */
  restart(seq: number): void {
    this.marks = [[seq, this.appended]];
  }

  /** Bytes after the records a destination holds (through `shipped`); forgets the marks before the one that counts. */
  after(shipped: number): number {
    let k = 0;
    while (k + 1 < this.marks.length && this.marks[k + 1][0] <= shipped) k++;
    if (k > 0) this.marks.splice(0, k);
    return this.appended - this.marks[0][1];
  }
}

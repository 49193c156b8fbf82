// Where image streams go and come from. Every destination (a file, stdout, a tape made of
// tape files, later a peer) implements StreamTarget for writing and StreamSource for
// reading, has an in-memory twin for tests (memory/), and passes the one contract suite
// in test/media/contract.test.ts.

/** Where a stream landed, as recorded in the catalog. */
export interface MediaPosition {
  /** 'file' | 'stdout' | 'stdin' | 'tape' | 'memory' | 'peer' | 's3' */
  kind: string;
  /** Path or address of the medium (for a tape: the first tape's directory or device). */
  location: string;
  /** Tape only: file number on the first tape (1-based), and every tape the stream spans. */
  tapeFile?: number;
  tapes?: string[];
  /** Multiplexed tape files only: the stream (its id) among the several in that tape file. */
  stream?: string;
  /**
   * S3 only: the endpoint of the S3-compatible store the object is on (absent: AWS), without
   * any user:password it was given with, and path-style addressing, as the dump used them:
   * restore --as-of reads the object there when no endpoint is given. Never credentials.
   */
  endpoint?: string;
  pathStyle?: true;
}

export interface StreamTarget {
  /** For messages: "file /backups/vm.l0", "tape /tapes/t1". */
  readonly description: string;
  /**
   * Appends bytes of the stream. The promise settles when the medium accepted them (the
   * caller may reuse the buffer afterwards). Rejects with an ImgstreamError naming the
   * problem (a full tape with no next tape, a closed pipe, an I/O error).
   */
  write(data: Buffer): Promise<void>;
  /**
   * The stream is complete: make it durable and visible under its final name, and say
   * where it is. Before finish() returns, no reader may take the stream for a complete one.
   */
  finish(): Promise<MediaPosition>;
  /**
   * The stream will not be completed: remove or invalidate what was written. Never throws;
   * resolves to what it could not remove, as a clause for the failed dump's error (an S3
   * upload that could not be aborted: "an unfinished multipart upload of ... may remain"),
   * or to nothing when nothing is left.
   */
  abort(): Promise<string | void>;
  /**
   * Optional: after abort(), what the medium held before that the dump would have replaced
   * and which stays as it was, as a clause ("the existing object s3://B/K was kept, not
   * replaced"), or null: a stopped dump says so rather than that nothing was left.
   */
  kept?(): string | null;
  /**
   * Optional: checks the medium will take the stream (a peer connects, authenticates
   * and accepts the name) before the caller does anything for it, such as taking a
   * snapshot. The first write() does it otherwise. Rejects like write().
   */
  open?(): Promise<void>;
}

export interface SourceStream {
  /** For messages: "file /backups/vm.l0", "tape /tapes/t1 file 2". */
  readonly name: string;
  readonly position: MediaPosition;
  /** The stream's bytes, in order. May be consumed once. */
  readonly bytes: AsyncIterable<Buffer>;
  /**
   * The consumer is done with `buf` (one `bytes` gave) once `after` resolves: a source may
   * read into it again then, instead of allocating (4 MiB reads into fresh buffers cost a
   * restore more than a second of garbage collection). Sources without it allocate.
   */
  recycle?(buf: Buffer, after: Promise<void>): void;
  /** Optional: bytes read from the medium so far for this stream (a multiplexed tape file's reader counts them: it reads only the stream's members). */
  bytesRead?(): number;
  /**
   * Set when the medium was asked for one volume's streams (restore --volume) but cannot
   * tell whose dump this one is (a tape file of a plain dump: its label names no volume):
   * the reader picks by the volume uuid in the stream's header.
   */
  readonly volumeUnchecked?: string;
  /** Damage in the medium around the stream that leaves the stream itself whole (a multiplexed tape file's backup log missing or damaged: its members were found by their headers). */
  readonly mediumDamage?: string;
  /** A stream the medium should hold and lost (a cut multiplexed tape file): reading it fails, naming it; verify reads the others on. */
  readonly lost?: true;
  /** A stream its dump gave up (a multiplexed tape file's aborted member): no stream, so no failure of the medium; said, not read. */
  readonly givenUp?: string;
}

export interface StreamSource {
  readonly description: string;
  /** Set when the catalog says which dump this source holds (restore --as-of): a stream of another id is refused. */
  expected?: { streamId: string; top: string; encrypted?: boolean };
  /** The streams on this medium in order (a file or a pipe holds one; a tape holds one per tape file). */
  streams(): AsyncIterable<SourceStream>;
  /**
   * Refuses what can be known wrong before any stream is read: restore and verify call it
   * for every source first, so a restore does not apply the streams before the fault (a
   * tape set missing the tape its last dump goes on on, a tape drive that cannot be
   * opened). Absent: nothing to check ahead.
   */
  precheck?(): Promise<void>;
  /**
   * What is missing from the medium that streams() read past (catalog rebuild: a tape
   * file gone from a tape, one error each), known once streams() started. Absent or empty: nothing.
   */
  missing?(): Error[];
  /** Set when streams() may be called again and reads the same streams (a file): restore reads each one's header ahead, to check the key it needs before the first stream is applied. */
  readonly rereadable?: true;
}

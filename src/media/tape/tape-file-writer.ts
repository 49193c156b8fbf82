// One tape file being written: tar-stream packs the members, RecordWriter cuts its output
// into fixed records on the open file or device. The writer keeps count of the bytes the
// archive will take (memberBytes of each member) so the target can plan what still fits.
import tar from 'tar-stream';
import { IoError } from '../../core/errors.js';
import { END_OF_ARCHIVE_BYTES, memberBytes, roundUp } from './tape-format.js';
import { RecordWriter } from './record-writer.js';

export class TapeFileWriter {
  /** Archive bytes of the members added so far (without the end of archive). */
  archiveBytes = 0;
  private readonly pack = tar.pack();
  private readonly records: RecordWriter;
  private emitted = 0;
  private failure: Error | null = null;
  private readonly ended: Promise<void>;

  constructor(
    fd: number,
    recordSize: number,
    limit: number,
    private readonly what: string,
    private readonly mtime: Date,
  ) {
    this.records = new RecordWriter(fd, recordSize, limit, what);
    this.pack.on('data', (data: unknown) => {
      const chunk = data as Buffer;
      if (this.failure) return;
      this.emitted += chunk.length;
      try {
        this.records.push(chunk);
      } catch (err) {
        this.fail(err as Error);
      }
    });
    this.ended = new Promise<void>((resolve, reject) => {
      this.pack.on('end', resolve);
      this.pack.on('error', reject);
      this.pack.on('close', () => reject(this.failure ?? new IoError(`${what}: the tar writer closed early`)));
    });
    this.ended.catch(() => {});
  }

  /** Bytes the tape file will take once closed now with `closingBytes` more archive bytes. */
  sizeIfClosedWith(closingBytes: number): number {
    return roundUp(this.archiveBytes + closingBytes, this.records.recordSize);
  }

  async add(name: string, data: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    this.archiveBytes += memberBytes(data.length);
    await new Promise<void>((resolve, reject) => {
      const entry = this.pack.entry({ name, size: data.length, mode: 0o644, mtime: this.mtime, type: 'file' }, data, (err) => (err ? reject(this.failure ?? err) : resolve()));
      // a failed write destroys the pack, which destroys this entry with the error: the
      // callback above reports it; unheard, the entry's 'error' event would end the process
      entry.on('error', () => {});
    });
    if (this.failure) throw this.failure;
  }

  /** Ends the archive and writes its last, zero-padded record. Returns the tape file's size. */
  async close(): Promise<number> {
    if (this.failure) throw this.failure;
    this.pack.finalize();
    await this.ended.catch((err) => {
      throw this.failure ?? err;
    });
    if (this.failure) throw this.failure;
    if (this.emitted !== this.archiveBytes + END_OF_ARCHIVE_BYTES) {
      throw new IoError(`${this.what}: the tar archive took ${this.emitted} bytes, ${this.archiveBytes + END_OF_ARCHIVE_BYTES} were planned`, 'this is a bug in imgstream: please report it');
    }
    this.records.flush();
    return this.records.written;
  }

  /** Stops packing; what was written stays as it is. Never throws. */
  destroy(): void {
    this.fail(new IoError(`${this.what}: the tape file was abandoned`));
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.pack.destroy(err);
  }
}

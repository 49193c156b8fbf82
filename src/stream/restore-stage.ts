// What an incremental restore keeps beside the volume until the CP that switches it in
// (.VOL.restore-stage-PID): blocks whose VBNs the volume's last CP still holds (a
// snapshot the source deleted, a shadow snapshot), and the planes of incoming snapshots
// that wait for the snapshot slots of the ones the source deleted. Nothing the last CP
// references is written before then, so a killed restore leaves the volume as it was;
// the next restore onto it removes the file once its process is gone (one that applies
// nothing too: removeStaleStage).
import fs from 'node:fs';
import path from 'node:path';
import { removeStaleTemp, tempBeside } from '../fs/stale-temp.js';
import { removeOnStop } from '../fs/stop-cleanup.js';

/** Removes the stage file a killed restore onto `volumePath` left (each restore onto the volume does, applying a stream or not: a retry may need none). */
export function removeStaleStage(volumePath: string): void {
  removeStaleTemp(path.dirname(volumePath), tempBeside(volumePath, 'restore-stage').prefix);
}

export class StageFile {
  private fd: number | null = null;
  private bytes = 0;
  private readonly dir: string;
  private readonly prefix: string;
  private readonly file: string;
  /** Staged blocks: VBN -> offset in the file. */
  readonly offsets = new Map<number, number>();
  /** Staged planes: snapshot id -> (plane block -> offset in the file). */
  readonly planes = new Map<number, Map<number, number>>();
  private unkeep: (() => void) | null = null;

  /** The stage file of a restore onto `volumePath` (`display`: the path the user gave). */
  constructor(volumePath: string, display: string) {
    this.dir = path.dirname(volumePath);
    this.prefix = tempBeside(display, 'restore-stage').prefix;
    this.file = path.join(this.dir, `${this.prefix}${process.pid}`);
  }

  /** Keeps the block for VBN `vbn`. */
  put(vbn: number, block: Uint8Array): void {
    this.offsets.set(vbn, this.append(block));
  }

  /** Keeps plane block `chunk` of snapshot `id`. */
  putPlane(id: number, chunk: number, block: Uint8Array): void {
    let m = this.planes.get(id);
    if (!m) this.planes.set(id, (m = new Map()));
    m.set(chunk, this.append(block));
  }

  read(offset: number, buf: Buffer): void {
    fs.readSync(this.fd!, buf, 0, buf.length, offset);
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
    fs.rmSync(this.file, { force: true });
    this.unkeep?.();
    this.unkeep = null;
  }

  private append(block: Uint8Array): number {
    if (this.fd === null) {
      this.unkeep = removeOnStop(this.file);
      this.fd = fs.openSync(this.file, 'w+', 0o600);
    }
    const at = this.bytes;
    fs.writeSync(this.fd, block, 0, block.length, at);
    this.bytes += block.length;
    return at;
  }
}

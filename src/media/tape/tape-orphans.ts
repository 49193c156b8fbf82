// A dump that spans tapes publishes its continuation tape files first and its first tape
// file last, so that it appears at once. Killed in between (kill -9, a crash), it leaves
// continuations whose earlier tapes hold only their unfinished partial files: tape files
// nothing can read, on tapes a dump continuing there refused ("already holds 1 tape
// file") until they were removed by hand. The next dump to the set removes them, saying
// so. It knows one only by what the killed dump left on the tape given right before it:
// the partial file of the same dump's previous tape (its id, its sequence one lower),
// never published and whose writer is gone, or such an orphan removed there in turn. A
// tape file of any other dump, complete or of another set, has no such partial before it
// and stays, and a tape holding one is refused as before.
import fs from 'node:fs';
import path from 'node:path';
import { fsyncDirectory } from '../../fs/durable-file.js';
import { abandonedPartials, listTapeFiles } from './tape-directory.js';
import { readTapeLabel, type TapeFileLabel } from './tape-file-reader.js';

const key = (id: string, sequence: number): string => `${id}/${sequence}`;

/** The label of a tape file, or null when it cannot be read (damage, an empty partial). */
async function labelOf(file: string): Promise<TapeFileLabel | null> {
  try {
    return await readTapeLabel({ name: file, path: file });
  } catch {
    return null;
  }
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** The orphaned continuations on the tapes of one dump, removed before its tapes are written. */
export class OrphanContinuations {
  /** Per tape of the set, in order: the tape files a killed dump left unfinished there ("id/sequence"). */
  private readonly unfinished: Array<Set<string>> = [];

  constructor(private readonly notice: (line: string) => void = () => {}) {}

  /**
   * Removes the orphans on the tapes of `tapes` not looked at yet (all the tapes given, at
   * the first tape file; then each tape nextTape adds). Called before the tapes' stale
   * partial files are removed: they are what tells an orphan.
   */
  async sweep(tapes: string[]): Promise<void> {
    for (let i = this.unfinished.length; i < tapes.length; i++) this.unfinished.push(await this.sweepTape(tapes[i], this.unfinished[i - 1]));
  }

  /** What `tape` holds unfinished, after removing its orphans: continuations of what `before` (the previous tape) holds unfinished. */
  private async sweepTape(tape: string, before: Set<string> | undefined): Promise<Set<string>> {
    const left = new Set<string>();
    if (!isDirectory(tape)) return left; // a drive: nothing to tell, and nothing to remove
    for (const p of abandonedPartials(tape)) {
      const l = await labelOf(p);
      if (l) left.add(key(l.streamId, l.sequence));
    }
    if (!before || before.size === 0) return left;
    const files = listTapeFiles(tape);
    const orphans: Array<{ file: string; label: TapeFileLabel }> = [];
    for (const f of files) {
      const label = await labelOf(f.path);
      // any other tape file (of a complete dump, of another set, damaged): the tape stays as it is
      if (!label || label.sequence < 2 || !before.has(key(label.streamId, label.sequence - 1))) return left;
      orphans.push({ file: f.path, label });
    }
    for (const { file, label } of orphans) {
      fs.rmSync(file, { force: true });
      left.add(key(label.streamId, label.sequence));
      this.notice(
        `tape ${tape}: removed ${path.basename(file)} (tape ${label.sequence} of ${label.multiplex ? 'multiplexed ' : ''}dump ${label.streamId}), left by a dump killed before it published its earlier tapes`,
      );
    }
    if (orphans.length > 0) fsyncDirectory(tape);
    return left;
  }
}

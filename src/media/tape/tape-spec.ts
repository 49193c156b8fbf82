// The CLI's way of naming tapes: `tape:DIR`, `tape:DIR1,DIR2,...` (a tape set, in order)
// and `tape:DIR#N` or `tape:DIR1#N,DIR2,...` (tape file N of the first tape). A tape given
// twice (also a directory under another name) is refused here.
import fs from 'node:fs';
import path from 'node:path';
import { InvalidInputError } from '../../core/errors.js';

export interface TapeSpec {
  tapes: string[];
  /** Tape file number on the first tape (1-based). */
  file?: number;
}

const HINT = 'write tape:DIR, tape:DIR1,DIR2,... or tape:DIR#N, N the tape file number on the first tape';

/** An existing directory's identity (device and inode, links followed); null for anything else (a drive may be named twice: its tape changed). */
function directoryIdentity(t: string): string | null {
  try {
    const st = fs.statSync(t);
    return st.isDirectory() ? `${st.dev}:${st.ino}` : null;
  } catch {
    return null;
  }
}

export function parseTapeSpec(text: string): TapeSpec {
  if (!text.startsWith('tape:')) throw new InvalidInputError(`"${text}" is not a tape: it does not start with tape:`, HINT);
  const names = text.slice('tape:'.length).split(',');
  let file: number | undefined;
  const tapes = names.map((name, i) => {
    const hash = name.lastIndexOf('#');
    if (hash >= 0) {
      if (i !== 0) throw new InvalidInputError(`"${text}": a tape file number (#N) belongs to the first tape only`, 'write tape:DIR1#N,DIR2,...');
      const n = name.slice(hash + 1);
      if (!/^[1-9][0-9]{0,8}$/.test(n)) throw new InvalidInputError(`"${text}": tape file number "${n}" is not a positive integer`, HINT);
      file = Number(n);
      name = name.slice(0, hash);
    }
    if (name === '') throw new InvalidInputError(`"${text}": tape ${i + 1} has an empty name`, HINT);
    return name;
  });
  // the same path twice is never a set, nor the same directory under another name (a
  // symbolic link): found here, before a dump takes its snapshot or writes its first tape,
  // or a read starts (a dump used to find the link when it got to that tape, exit 4 "tape
  // full" after the whole dump was written)
  const dirs = tapes.map(directoryIdentity);
  tapes.forEach((t, i) => {
    const before = tapes.findIndex((x) => path.resolve(x) === path.resolve(t));
    if (before < i) throw new InvalidInputError(`tape ${t} is given twice (as tapes ${before + 1} and ${i + 1} of the set)`, 'give each tape once: tape:DIR1,DIR2,...');
    const same = dirs[i] === null ? -1 : dirs.indexOf(dirs[i]);
    if (same >= 0 && same < i) throw new InvalidInputError(`tape ${t} is given twice (as tapes ${same + 1} and ${i + 1} of the set: it is the same directory as ${tapes[same]})`, 'give each tape once: tape:DIR1,DIR2,...');
  });
  return file === undefined ? { tapes } : { tapes, file };
}

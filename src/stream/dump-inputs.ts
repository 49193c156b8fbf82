// A dump never writes over what it reads or needs afterwards: the volume it dumps, the
// key or passphrase file it encrypts with, the catalog it records in. `dump --force --to
// KEYFILE` would otherwise replace the only copy of the key with a stream nobody can then
// read. Checked before the dump takes its snapshot or creates anything.
import fs from 'node:fs';
import { InvalidInputError } from '../core/errors.js';
import { sameFile } from '../fs/same-file.js';
import { parseTapeSpec } from '../media/tape/tape-spec.js';
import { isPeerSpec } from '../media/resolve.js';
import { isS3Spec } from '../media/s3/s3-url.js';

/** A file the dump reads or keeps: "the key file (--key-file)" at its path. */
export interface DumpInput {
  what: string;
  path: string;
}

/** The local files or devices a target spec writes: a file, the tapes of tape:..., none for a peer or an object store. */
function outputPaths(spec: string): string[] {
  if (spec === '-' || isPeerSpec(spec) || isS3Spec(spec)) return [];
  if (spec.startsWith('tape:')) {
    try {
      return parseTapeSpec(spec).tapes;
    } catch {
      return []; // refused with its own message when the target is made
    }
  }
  return [spec];
}

/** stdout, when it is a file (`--to - >> FILE` appends to FILE). */
function stdoutFile(): fs.Stats | null {
  try {
    const st = fs.fstatSync(1);
    return st.isFile() ? st : null;
  } catch {
    return null;
  }
}

/** Refuses (exit 4) a target that is one of the dump's inputs. */
export function refuseOutputOverInputs(spec: string, inputs: DumpInput[]): void {
  const given = inputs.filter((i) => i.path !== '');
  for (const out of outputPaths(spec)) {
    const hit = given.find((i) => sameFile(out, i.path));
    if (hit) throw new InvalidInputError(`${out}: is ${hit.what}${hit.path === out ? '' : ` (${hit.path})`}; a dump never writes over its own inputs`, 'give the stream another name');
  }
  if (spec !== '-') return;
  const st = stdoutFile();
  if (!st) return;
  for (const i of given) {
    let s: fs.Stats;
    try {
      s = fs.statSync(i.path);
    } catch {
      continue;
    }
    if (s.dev === st.dev && s.ino === st.ino) throw new InvalidInputError(`stdout: is ${i.what} (${i.path}); a dump never writes over its own inputs`, 'redirect the stream to another file');
  }
}

import fs from 'node:fs';
import { basename } from 'node:path';

/**
 * Fault injection for crash tests: IMGSTREAM_CRASH_AT=<step>[:<file name>] kills this
 * process with SIGKILL at that step of a CP (journal, root, apply, clean-root) or of a
 * snapshot (snapshot-plane), or of a journal's overflow (overflow-marker: its record
 * written, its changed blocks not saved yet; dirty-bits: dirty.bits saved, dirty.json
 * not; overflowed-cp: a CP committed while overflowed, its journal marker not written;
 * journal-lost: a journal that lost records a destination holds, its numbering moved on
 * past them, its resync not tracked yet),
 * or of a dump to tapes (tape-publish: before its tape file on that tape gets its name,
 * those on the tapes after it in the set having theirs), of any volume (tape) or only of
 * the volume file (tape directory) with that name (a process that writes two, such as a
 * mirror update to a local path), the same as a kill -9 landing exactly there.
 */
export function crashPoint(step: string, file: string): void {
  const at = process.env.IMGSTREAM_CRASH_AT;
  if (at === undefined) return;
  const [want, name] = at.split(':');
  if (want === step && (name === undefined || basename(file) === name)) process.kill(process.pid, 'SIGKILL');
}

/**
 * Fault injection for signal tests: IMGSTREAM_PAUSE_AT=<step>:<file> holds this process at
 * that step (dump-completing: a dump's stream complete, its trailer not yet written;
 * multiplex-sources-read: every source of a multiplexed dump read and its stream
 * complete on the tape, the tape files not yet closed and published; multiplex-first-end:
 * the first stream of a multiplexed dump complete on the tape, others still being read) from creating
 * `file` until `file` is removed: the test sends its signal meanwhile. The event loop runs
 * on, so signal handlers do.
 */
export async function pausePoint(step: string): Promise<void> {
  const at = process.env.IMGSTREAM_PAUSE_AT;
  if (at === undefined) return;
  const colon = at.indexOf(':');
  if (colon < 0 || at.slice(0, colon) !== step) return;
  const file = at.slice(colon + 1);
  fs.writeFileSync(file, `${process.pid}\n`);
  while (fs.existsSync(file)) await new Promise((resolve) => setTimeout(resolve, 20));
}

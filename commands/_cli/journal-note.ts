// What a command that opened a journaled volume itself (nobody serving it) says of its
// write journal: the line's ending and the --json fields (see src/journal/idle-journal.ts).
import type { IdleJournaling } from '../../src/journal/idle-journal.js';

/** What the line says of the volume's write journal, when it has one and this process opened it. */
export function journalNote(journal: IdleJournaling<unknown>['journal']): string {
  if (journal === undefined) return '';
  if (!journal.recorded) return `; not journaled, so protection destinations will not get it: ${journal.skipped}`;
  return journal.replayed > 0 ? `; journaled, after replaying ${journal.replayed} journaled writes the last CP lacked` : '; journaled';
}

export function journalJson(journal: IdleJournaling<unknown>['journal']) {
  return journal === undefined ? {} : { journaled: journal.recorded, ...(journal.recorded ? { replayed: journal.replayed } : { notJournaledBecause: journal.skipped }) };
}

/** What the line of a command that changed the disk (an import, a restore) says of the volume's write journal, when it has one. */
export function changeJournalNote(journal: IdleJournaling<unknown>['journal']): string {
  if (journal === undefined) return '';
  if (!journal.recorded) return `; its write journal could not take the change, so protect will stop at it: ${journal.skipped}`;
  return '; its write journal tracks the changed blocks: protect resyncs them';
}

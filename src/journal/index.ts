// Continuous protection (a log-assisted disk): every write an NBD client makes to a
// volume served with --journal is time-stamped and appended to the volume's write
// journal (journal-writer.ts, record format in record.ts); `imgstream protect` reads the
// journal as it grows (journal-reader.ts), cuts it into intervals in which only the last
// version of each block travels (interval-builder.ts), and ships them to a protection
// destination (destination.ts) that keeps a base volume plus the intervals of a
// retained window, so a disk can be rebuilt as of any moment in that window
// (restore-as-of.ts). When the destination is unreachable for too long the journal is
// folded into a set of changed blocks and the next transfer sends only those.
export * from './record.js';
export * from './destination-api.js';
export { JournalWriter, journalOf, type JournalRecovery } from './journal-writer.js';
export { JournalReader } from './journal-reader.js';
export { protect, type ProtectEvent, type ProtectSummary } from './shipper.js';
export { openProtectDestination } from './destination.js';

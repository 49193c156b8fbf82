// Multiplexed dumps: several volumes dumped at once onto one tape file per tape, their
// streams interleaved as they become ready, with a backup log of every member (the tape
// format is in ../media/tape/multiplex-format.ts), and the reports made from that log.
// May import ../stream (the dumps), ../media, ../catalog, ../errors.
export * from './multiplex-dump.js';
export * from './log-report.js';
export * from './rebuild-logs.js';

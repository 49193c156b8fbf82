// Writing files durably and fast, shared by every writer in imgstream: early writeback
// (syncs started as a writer goes, so its last one finds little left), direct I/O
// (page-aligned buffers, O_DIRECT appends), and files or directory entries that must
// survive a power cut whole (temporary name, fsync, rename onto a symbolic link's
// target, never the link, directory fsync), and the
// removal of temporary files their killed writers left (named after the writer's pid),
// whether two paths name one file (a writer never replaces its own inputs), the largest
// file a file system holds, and whole JSON text files read with a clear refusal when too
// large to be one string.
export { EarlyWriteback, WRITEBACK_BYTES } from './writeback.js';
export { DirectAppender } from './direct-appender.js';
export { fsyncDirectory, writeFileDurably } from './durable-file.js';
export { danglingLinkTarget, refuseDanglingLink, replacementTarget } from './link-target.js';
export { processExists, removeStaleTemp, tempBeside } from './stale-temp.js';
export { sameFile } from './same-file.js';
export { largestFileIn } from './largest-file.js';
export { MAX_TEXT_FILE_BYTES, readTextFile } from './text-file.js';

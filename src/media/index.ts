// Media: where image streams go and come from (a file, stdout/stdin, tapes, a peer
// daemon, memory for tests). Each medium implements StreamTarget and StreamSource from
// medium.ts and passes the contract suite in test/media/contract.test.ts. May import
// ../errors.js, ../format, the peer client (../peer), node built-ins and tar-stream;
// never the volume engine, never the CLI.
export * from './medium.js';
export * from './file/file-medium.js';
export * from './stdio/stdio-medium.js';
export * from './memory/memory-medium.js';
export * from './tape/index.js';
export * from './peer/peer-medium.js';
export * from './s3/index.js';

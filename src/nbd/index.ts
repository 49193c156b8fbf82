// The NBD server: offers a volume (its active file system, or a snapshot read-only) to
// real NBD clients (qemu-img, qemu-io, nbdcopy, nbd-client) over TCP or a Unix socket.
// Bytes on the wire are encoded and decoded by ../format/nbd-protocol.ts; the volume is
// read and written through ../volume (logical-io.ts); other commands reach the served
// volume through ../control. May import ../format, ../volume, ../control, ../errors and
// node:net; never prints, never imports the CLI.
export * from './server.js';
export { parseListenAddress, nbdUri, NBD_PORT, type ListenAddress } from './listen-address.js';
export { MAX_PAYLOAD_BYTES, type NbdExportStats } from './nbd-export.js';

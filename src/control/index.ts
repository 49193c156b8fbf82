// Control: reaching a volume while another imgstream process serves it. The server side
// (control-server.ts, ops.ts, pins.ts) answers requests on a Unix socket named in the
// volume's lock file and runs them through its NBD export's queue; the client side
// (control-client.ts, served-volume.ts, access.ts, export-at.ts) lets commands work on a
// volume whoever holds it. The wire format is ../format/control-protocol.ts. May import
// ../format, ../volume, ../image, ../errors, ../progress and node:net; never prints,
// never imports the CLI or ../nbd (the server hands in its queue).
export * from './ops.js';
export { PinTable, type PinHolder } from './pins.js';
export { ControlServer, type ControlQueue } from './control-server.js';
export { ControlClient } from './control-client.js';
export { ServedVolume, type SnapshotCreateOptions } from './served-volume.js';
export { LocalVolume, openVolumeAccess, withVolumeAccess, type VolumeAccess } from './access.js';
export { exportVolumeAt, type SinkFor } from './export-at.js';

// Peers: the authenticated, framed connection between imgstream processes on different
// machines (the wire format is ../format/peer-protocol.ts), the daemon behind `imgstream
// serve peer` with its registry of services, and the built-in stream services. Clients
// (src/media/peer, src/mirror) use connectPeer; services register with
// registerPeerService. May import ../format, ../errors, ../stream/stream-reader.js,
// ../fs/stale-temp.js and node built-ins (net, tls, crypto, fs); never prints,
// never imports the CLI.
export type { PeerChannel, PeerMessage } from './channel.js';
export { connectPeer, checkPeerClientOptions, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_CLIENT_IDLE_MS, type PeerClientOptions } from './client.js';
export { servePeer, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HANDSHAKES, DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_SERVER_IDLE_MS, DEFAULT_FRAME_TIMEOUT_MS, type ServePeerOptions, type PeerListening, type PeerServeResult } from './server.js';
export { registerPeerService, peerServices, isPeerOp, type PeerService, type PeerHello, type PeerContext } from './services.js';
export { streamPutService, streamGetService, validateImageStream, type StreamValidator } from './stream-service.js';
export { parsePeerUrl, formatPeerUrl, parsePeerListen, checkPeerName, parseFingerprint, formatFingerprint, hostPort, peerFlagsNote, type PeerUrl } from './peer-url.js';
export { resolveContained, isInside } from './contained-path.js';
export { readTokenFile, MIN_TOKEN_BYTES } from './token-file.js';
export { RateLimiter, type Clock } from './rate-limit.js';
export { atPeerName, daemonShuttingDown, errorFromWire, errorToWire } from './wire-error.js';
export { hideDaemonPaths } from './daemon-paths.js';

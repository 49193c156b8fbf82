import { Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { DEFAULT_FRAME_TIMEOUT_MS, DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HANDSHAKES, DEFAULT_SERVER_IDLE_MS, parsePeerListen, servePeer, type PeerListening } from '../../src/peer/index.js';
import { formatSize } from '../../src/core/size.js';
import { UsageError } from '../../src/core/errors.js';
import { registerMirrorServices } from '../../src/mirror/peer.js';
import { registerProtectServices } from '../../src/journal/protect-service.js';
import { tuneGcForStreaming } from '../../src/core/gc-tuning.js';
import { OUTPUT_FAILED, stopOnOutputFailure } from '../../src/cli/output-failure.js';

export default class ServePeer extends ImgstreamCommand {
  static override summary = 'Run the peer daemon: receive streams from imgstream clients and send them back.';
  static override description = `Listens for imgstream clients (dump --to peer://HOST:PORT/NAME, restore --from peer://..., verify peer://...) and keeps their streams as files under --root: the stream NAME is the file DIR/NAME. A stream arrives under a temporary name (.NAME.partial-PID), is parsed and checked as it arrives (every record, the trailer, the SHA-256 of the whole stream), and is fsynced and renamed to NAME only when complete and valid; only then is the client told it is stored. An interrupted, damaged or refused transfer leaves nothing under NAME. An existing NAME is replaced only when the client passes --force.

Security model. Every client and the daemon share a secret token (--token-file, the same contents on both sides, mode 600: a file others may read is refused). The token is never sent: each side proves it holds it with an HMAC-SHA256 over fresh random numbers from both sides (and, in TLS, over keys of the TLS session), so a recorded exchange is useless and a client also knows it talks to a daemon holding the token. The connection is TLS (--tls-cert and --tls-key) unless --plain: clients check the certificate against a CA (--tls-ca) or a pinned SHA-256 fingerprint (--tls-fingerprint, printed when the daemon starts). --plain sends streams in the clear: only on a network you trust, and clients must ask for it too. Names are relative paths inside --root: absolute paths, "..", names starting with "." or "-", control characters and symbolic links that lead out of the directory are refused. A client that misbehaves loses only its connection. Connections that have not authenticated yet have their own budget (--max-handshakes) and deadline (--handshake-timeout): when the budget is full, a new connection drops the one that has waited longest, so silent or slow connections from anyone can never keep a client holding the token out. Only authenticated clients take one of the --max-connections places; beyond them a client is told "busy" (exit 7). An authenticated connection is closed after --idle-timeout without a byte either way, and when a message has not fully arrived --frame-timeout after its first byte (a client trickling a byte now and then). Errors sent to clients never show the daemon's paths: files inside --root are named as clients name them (NAME), other paths as "(a path on the daemon)"; the daemon's log has the full paths.

Every connection is logged on stderr, one line per event with time, connection number and client address: connect, authentication, request and name, bytes, result, disconnect. When the daemon is ready it prints the URL clients use and the certificate fingerprint (with --json, one JSON line {"listening": {...}}); it stops on SIGINT or SIGTERM: no new connections, transfers in progress are cancelled at once as when their client goes away (a stream leaves nothing under its name, a mirror keeps its previous state and what arrived to resume from), and every client with a connection open is told "the daemon is shutting down" (exit 12; protect and mirror start retry). A write to stdout that fails (its reader gone away, as with | head; a full disk) stops it the same way, and it exits 10 with one line ("writing the output: EPIPE: ... (so it stopped, as on SIGTERM)"). It exits as soon as its services have ended; one that has not within 3 s has its connection cut and is not waited for.`;
  static override examples = [
    '(umask 077; openssl rand -hex 32 > /etc/imgstream/peer.token)',
    'openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -subj /CN=backup1 -addext subjectAltName=DNS:backup1 -keyout /etc/imgstream/peer.key -out /etc/imgstream/peer.crt',
    '<%= config.bin %> serve peer --root /srv/imgstream --listen 0.0.0.0:7420 --token-file /etc/imgstream/peer.token --tls-cert /etc/imgstream/peer.crt --tls-key /etc/imgstream/peer.key',
    '<%= config.bin %> dump vm.vol --level 0 --to peer://backup1:7420/vm1.l0 --token-file peer.token --tls-ca peer.crt',
    '<%= config.bin %> serve peer --root /srv/imgstream --listen 127.0.0.1:7420 --token-file peer.token --plain',
  ];
  static override flags = {
    root: Flags.string({ helpValue: 'DIR', description: 'Directory the streams are kept in: peer://HOST:PORT/NAME is DIR/NAME.', required: true }),
    listen: Flags.string({ helpValue: 'HOST:PORT', char: 'l', description: 'Address to listen on, e.g. 0.0.0.0:7420, [::]:7420 (port 0: any free port).', required: true }),
    'token-file': Flags.string({ helpValue: 'FILE', description: 'The shared token (mode 600), the same contents on every client.', required: true }),
    'tls-cert': Flags.string({ helpValue: 'FILE', description: 'TLS certificate (PEM), with its chain if any.', dependsOn: ['tls-key'] }),
    'tls-key': Flags.string({ helpValue: 'FILE', description: 'Private key of --tls-cert (PEM, unencrypted; keep it mode 600).', dependsOn: ['tls-cert'] }),
    plain: Flags.boolean({ description: 'Plain TCP without TLS: streams travel in the clear (a trusted network only); clients must pass --plain too.', exclusive: ['tls-cert'] }), // with --tls-key, which needs --tls-cert: one name keeps oclif's usage line clean
    'max-connections': Flags.integer({ helpValue: 'N', description: 'Authenticated connections served at once; more are told "busy" (exit 7 on the client).', default: DEFAULT_MAX_CONNECTIONS, min: 1, max: 10000 }),
    'max-handshakes': Flags.integer({ helpValue: 'N', description: 'Connections still authenticating, apart from --max-connections; one more drops the oldest of them.', default: DEFAULT_MAX_HANDSHAKES, min: 1, max: 10000 }),
    'handshake-timeout': Flags.integer({ helpValue: 'SECONDS', description: 'Time a new connection has for TLS and authentication.', default: DEFAULT_HANDSHAKE_TIMEOUT_MS / 1000, min: 1, max: 600 }),
    'idle-timeout': Flags.integer({ helpValue: 'SECONDS', description: 'Close a connection after this long without a byte either way.', default: DEFAULT_SERVER_IDLE_MS / 1000, min: 1, max: 86_400 }),
    'frame-timeout': Flags.integer({ helpValue: 'SECONDS', description: 'Close a connection when a message has not fully arrived this long after its first byte (0: no limit); the default lets a 1 MiB message take a link of 9 KB/s.', default: DEFAULT_FRAME_TIMEOUT_MS / 1000, min: 0 }),
  };

  async run() {
    const { flags } = await this.parse(ServePeer);
    tuneGcForStreaming(); // long-running, a small heap (see gc-tuning.ts)
    const hasTls = flags['tls-cert'] !== undefined && flags['tls-key'] !== undefined;
    if (!hasTls && !flags.plain) {
      throw new UsageError('give --tls-cert FILE and --tls-key FILE, or --plain', 'TLS protects streams in transit and lets clients check the daemon (make a certificate with openssl req -x509, see --help); --plain only on a network you trust, clients must pass --plain too');
    }
    const listen = parsePeerListen(flags.listen);
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    // its stdout's reader gone away, or its disk full: stopped as by SIGTERM, then exit 10 (main)
    const offOutput = stopOnOutputFailure(() => stop.abort(OUTPUT_FAILED));
    try {
      registerMirrorServices(); // mirror.update|resync|state|break and replicate.pull on DIR/NAME
      registerProtectServices(); // protect.ship and protect.status: protection destinations DIR/NAME
      const result = await servePeer({
        root: flags.root,
        listen,
        tokenFile: flags['token-file'],
        tls: hasTls ? { cert: flags['tls-cert']!, key: flags['tls-key']! } : undefined,
        plain: flags.plain,
        maxConnections: flags['max-connections'],
        maxHandshakes: flags['max-handshakes'],
        handshakeTimeoutMs: flags['handshake-timeout'] * 1000,
        idleTimeoutMs: flags['idle-timeout'] * 1000,
        frameTimeoutMs: flags['frame-timeout'] * 1000,
        signal: stop.signal,
        log: (line) => process.stderr.write(`${line}\n`),
        listening: (info) => this.ready(info),
      });
      this.say(`stopped: ${result.connections} connections (${result.refused} refused), ${formatSize(result.bytesReceived)} received, ${formatSize(result.bytesSent)} sent`);
      return result;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      offOutput();
      // a service that ignored the stop (servePeer no longer waits for it) must not keep the process alive
      if (stop.signal.aborted) setTimeout(() => process.exit(), 500).unref();
    }
  }

  /** The line scripts wait for: clients may connect once it is printed. */
  private ready(info: PeerListening): void {
    if (this.jsonEnabled()) {
      process.stdout.write(`${JSON.stringify({ listening: info })}\n`);
      return;
    }
    this.say(`serving ${info.root} at ${info.url}NAME (${info.tls ? `TLS, certificate ${info.fingerprint}` : 'plain TCP, no TLS'})`);
  }
}

// A TCP proxy for fault tests: forwards connections to a target and cuts each one (both
// sockets destroyed, like a pulled cable) once `cutAfter` bytes went through it in the
// chosen direction. cutAfter: null forwards everything.
import net from 'node:net';

export interface CutProxy {
  port: number;
  /** Bytes after which the next connections are cut (client to server, server to client or both counted), or null. */
  cutAfter: number | null;
  direction: 'up' | 'down' | 'both';
  /** Connections cut so far. */
  readonly cuts: number;
  /** Bytes forwarded so far, client to server (up) and back (down). */
  readonly bytesUp: number;
  readonly bytesDown: number;
  close(): Promise<void>;
}

export async function startCutProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<CutProxy> {
  const sockets = new Set<net.Socket>();
  let cuts = 0;
  const bytes = { up: 0, down: 0 };
  const state: CutProxy = {
    port: 0,
    cutAfter: null,
    direction: 'both',
    get cuts() {
      return cuts;
    },
    get bytesUp() {
      return bytes.up;
    },
    get bytesDown() {
      return bytes.down;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server = net.createServer((client) => {
    const limit = state.cutAfter;
    const direction = state.direction;
    const upstream = net.connect(targetPort, targetHost);
    sockets.add(client);
    sockets.add(upstream);
    let counted = 0;
    let cut = false;
    const cutNow = () => {
      if (cut) return;
      cut = true;
      cuts++;
      client.destroy();
      upstream.destroy();
    };
    const pipe = (from: net.Socket, to: net.Socket, dir: 'up' | 'down') => {
      from.on('data', (chunk: Buffer) => {
        if (cut) return;
        if (limit !== null && (direction === 'both' || direction === dir)) {
          if (counted + chunk.length >= limit) {
            const keep = limit - counted;
            if (keep > 0) to.write(chunk.subarray(0, keep));
            counted = limit;
            // let the partial write go out, then pull the cable
            setImmediate(cutNow);
            return;
          }
          counted += chunk.length;
        }
        bytes[dir] += chunk.length;
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
      });
      from.on('end', () => to.end());
      from.on('error', () => to.destroy());
      from.on('close', () => {
        sockets.delete(from);
        to.destroy();
      });
    };
    pipe(client, upstream, 'up');
    pipe(upstream, client, 'down');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}

// The daemon's built-in services for image streams (messages in
// ../format/peer-protocol.ts). stream.put stores a stream as ROOT/NAME the way the file
// medium does: under ".NAME.partial-PID" beside it, renamed into place after fsync; the
// stream is parsed and checked as it arrives (every record, the trailer, the SHA-256
// chain), and only a complete, valid stream is renamed, only then is "done" sent. A
// broken connection, an abort, a damaged stream or a daemon shutdown removes the
// temporary file; a daemon killed outright leaves it, and the next transfer to NAME
// removes it. stream.get sends ROOT/NAME back.
//
// File I/O is asynchronous: one transfer's writes and fsync never stall the others.
import fs from 'node:fs';
import path from 'node:path';
import { BusyError, CorruptError, ExistsError, InvalidInputError, NetworkError, NotFoundError, fromSystemError } from '../core/errors.js';
import { readImageStream } from '../stream/stream-reader.js';
import { removeStaleTemp } from '../fs/stale-temp.js';
import type { PeerChannel, PeerMessage } from './channel.js';
import { makeParents, removeMadeParents } from './contained-path.js';
import { SHOWN_CHARS } from './peer-url.js';
import type { PeerContext, PeerHello, PeerService } from './services.js';
import { daemonShuttingDown } from './wire-error.js';
import { escapeControls } from '../core/control-chars.js';

/** Reads a stream through, throwing a CorruptError when it is damaged or incomplete. */
export type StreamValidator = (bytes: AsyncIterable<Buffer>, what: string) => Promise<void>;

/** The default: the image stream reader checks everything a restore would. */
export async function validateImageStream(bytes: AsyncIterable<Buffer>, what: string): Promise<void> {
  // an encrypted stream is checked as catalog rebuild checks it: crc32s and the SHA-256 chain (the daemon holds no key)
  for await (const record of readImageStream(bytes, what, undefined, { withoutKey: 'headers' })) void record;
}

/** Bytes per data message stream.get sends. */
const GET_CHUNK_BYTES = 1 << 20;

/** Names being written by this process (a second transfer to the same name is refused). */
const writing = new Set<string>();

function nameOf(hello: PeerHello): string {
  if (typeof hello.name !== 'string' || hello.name === '') throw new InvalidInputError(`${hello.op} needs a name`, 'give peer://HOST:PORT/NAME');
  return hello.name;
}

function unexpected(m: PeerMessage, what: string): CorruptError {
  return new CorruptError(`unexpected message ${escapeControls(JSON.stringify(m.msg), 80)} ${what}`, 'the client does not speak this protocol');
}

/** stream.put, checking streams with `validate` (tests of the medium contract store arbitrary bytes). */
export function streamPutService(opts: { validate?: StreamValidator } = {}): PeerService {
  const validate = opts.validate ?? validateImageStream;
  return async (ch: PeerChannel, hello: PeerHello, ctx: PeerContext) => {
    const name = nameOf(hello);
    const file = ctx.path;
    if (writing.has(file)) throw new BusyError(`${escapeControls(name, SHOWN_CHARS)}: another transfer to this name is in progress`, 'wait for it to end');
    writing.add(file);
    try {
      await putStream(ch, hello, ctx, name, validate);
    } finally {
      writing.delete(file);
    }
  };
}

async function putStream(ch: PeerChannel, hello: PeerHello, ctx: PeerContext, name: string, validate: StreamValidator): Promise<void> {
  const file = ctx.path;
  const shown = escapeControls(name, SHOWN_CHARS);
  let st: fs.Stats | null = null;
  try {
    st = fs.lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, shown, 'opening the target');
  }
  if (st?.isDirectory()) throw new InvalidInputError(`${shown}: is a directory on the peer`, 'give the name of a file');
  if (st && !st.isFile() && !st.isSymbolicLink()) throw new InvalidInputError(`${shown}: not a regular file on the peer`);
  if (st && hello.force !== true) throw new ExistsError(`${shown}: already exists on the peer`, 'pass --force to replace it');
  let made = makeParents(ctx.root, file, name);
  const dir = path.dirname(file);
  const base = path.basename(file);
  removeStaleTemp(dir, `.${base}.partial-`);
  const partial = path.join(dir, `.${base}.partial-${process.pid}`);
  let fh: fs.promises.FileHandle;
  try {
    try {
      fh = await fs.promises.open(partial, 'w');
    } catch (err) {
      // an aborted transfer to a name beside this one may have removed the directory it made
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      made = made.concat(makeParents(ctx.root, file, name));
      fh = await fs.promises.open(partial, 'w');
    }
  } catch (err) {
    await removeMadeParents(made);
    throw fromSystemError(err, shown, 'creating the stream file');
  }
  let open = true;
  let stored = false;
  try {
    await ch.send({ type: 'ready' });
    let received = 0;
    let ended = false;
    // the stream as it arrives, each piece written to the file before the reader sees it
    const incoming: AsyncIterable<Buffer> = {
      [Symbol.asyncIterator]: () => ({
        next: async (): Promise<IteratorResult<Buffer>> => {
          if (ended) return { done: true, value: undefined };
          if (ctx.signal.aborted) throw daemonShuttingDown();
          let m: PeerMessage | null;
          try {
            m = await ch.receive();
          } catch (err) {
            // a killed sender's connection may end in a reset instead of a close (the daemon
            // stopping the transfer says so itself)
            if (err instanceof NetworkError && !ctx.signal.aborted) throw new NetworkError(`${shown}: the sender went away before the end of the stream (${err.message.replace(/^peer \S+: /, '')})`);
            throw err;
          }
          if (m === null) throw new NetworkError(`${shown}: the sender went away before the end of the stream`);
          if (m.msg.type === 'data' && m.payload) {
            try {
              for (let o = 0; o < m.payload.length; ) o += (await fh.write(m.payload, o)).bytesWritten;
            } catch (err) {
              throw fromSystemError(err, shown, 'writing the stream');
            }
            received += m.payload.length;
            return { done: false, value: m.payload };
          }
          if (m.msg.type === 'end') {
            if (m.msg.bytes !== received) throw new CorruptError(`${shown}: the sender sent ${escapeControls(String(m.msg.bytes), SHOWN_CHARS)} bytes but ${received} arrived`);
            ended = true;
            return { done: true, value: undefined };
          }
          if (m.msg.type === 'abort') throw new NetworkError(`${shown}: the sender aborted the stream`);
          throw unexpected(m, 'in a stream');
        },
        // the reader stops early on damage; what is left is not read
        return: async (): Promise<IteratorResult<Buffer>> => ({ done: true, value: undefined }),
      }),
    };
    await validate(incoming, `stream ${shown}`);
    if (!ended) throw new CorruptError(`${shown}: the stream continues after its end`);
    try {
      await fh.sync();
      await fh.close();
      open = false;
      await fs.promises.rename(partial, file);
      stored = true;
      const dfd = await fs.promises.open(dir, 'r');
      try {
        await dfd.sync();
      } finally {
        await dfd.close();
      }
    } catch (err) {
      throw fromSystemError(err, shown, 'storing the stream');
    }
    ctx.log(`stored ${shown}: ${received} bytes`);
    await ch.send({ type: 'done', bytes: received });
  } finally {
    if (open) await fh.close().catch(() => {});
    if (!stored) {
      await fs.promises.rm(partial, { force: true }).catch(() => {});
      await removeMadeParents(made); // an aborted upload to a/b/NAME leaves no empty a/b
    }
  }
}

export const streamGetService: PeerService = async (ch, hello, ctx) => {
  const name = nameOf(hello);
  const shown = escapeControls(name, SHOWN_CHARS);
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(ctx.path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${shown}: no such stream on the peer`);
    throw fromSystemError(err, shown, 'opening the stream');
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new InvalidInputError(`${shown}: is a directory on the peer`);
    if (!st.isFile()) throw new InvalidInputError(`${shown}: not a regular file on the peer`);
    await ch.send({ type: 'stream', bytes: st.size });
    // one buffer: send() resolves once the bytes are written, so it can be filled again
    const buf = Buffer.allocUnsafe(GET_CHUNK_BYTES);
    let sent = 0;
    for (;;) {
      if (ctx.signal.aborted) throw daemonShuttingDown();
      let n: number;
      try {
        n = (await fh.read(buf, 0, buf.length, null)).bytesRead;
      } catch (err) {
        throw fromSystemError(err, shown, 'reading the stream');
      }
      if (n === 0) break;
      await ch.send({ type: 'data' }, buf.subarray(0, n));
      sent += n;
    }
    await ch.send({ type: 'end', bytes: sent });
    ctx.log(`sent ${shown}: ${sent} bytes`);
  } finally {
    await fh.close().catch(() => {});
  }
};

// What a peer daemon offers: services by operation name. The client's HELLO names the
// operation ("stream.put") and usually a NAME; the daemon checks the name (contained in
// its directory), then hands the connection to the service. Built in: stream.put and
// stream.get (./stream-service.ts); src/mirror registers mirror.* the same way.
import { InvalidInputError } from '../core/errors.js';
import type { PeerChannel } from './channel.js';
import { streamGetService, streamPutService } from './stream-service.js';

/** The client's first message after authentication. */
export interface PeerHello {
  op: string;
  /** What the operation works on: a relative path inside the daemon's directory. */
  name?: string;
  [field: string]: unknown;
}

/** What a service knows about the connection it serves. */
export interface PeerContext {
  /** The daemon's directory (a real path). */
  root: string;
  /** hello.name resolved inside `root` (existing parts through their real paths); `root` when the hello has no name. */
  path: string;
  /** The client's address. */
  peer: string;
  /** A line for the daemon's log (time and client are added). */
  log(line: string): void;
  /**
   * Fires when the daemon shuts down: stop, leave no partial result. The channel is
   * interrupted at the same moment (receive() and sends of a payload reject with "the
   * daemon is shutting down"), so a service that works off its channel needs no check of
   * its own; one that works long without it should look here.
   */
  signal: AbortSignal;
}

/**
 * Serves one connection after its HELLO. Reply with ch.send(); throw an ImgstreamError
 * to refuse or fail (the daemon sends it to the client as an error message and logs
 * it). The daemon closes the channel when the promise settles; a service never needs
 * to catch errors only to keep the daemon alive.
 */
export type PeerService = (ch: PeerChannel, hello: PeerHello, ctx: PeerContext) => Promise<void>;

const OP = /^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)*$/;

const registry = new Map<string, PeerService>([
  ['stream.put', streamPutService()],
  ['stream.get', streamGetService],
]);

/** Offers `op` on every daemon started afterwards (servePeer without its own `services`). */
export function registerPeerService(op: string, handler: PeerService): void {
  if (!isPeerOp(op)) throw new InvalidInputError(`invalid peer operation name "${op}"`, 'use lower-case words joined by dots, e.g. mirror.update');
  if (registry.has(op)) throw new InvalidInputError(`peer operation "${op}" is already registered`);
  registry.set(op, handler);
}

/** The services registered so far. */
export function peerServices(): ReadonlyMap<string, PeerService> {
  return registry;
}

export function isPeerOp(op: unknown): op is string {
  return typeof op === 'string' && op.length <= 64 && OP.test(op);
}

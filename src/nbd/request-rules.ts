// The rules of the transmission phase that depend only on an export's view: the flags a
// connection gets, and which requests may run (the error a request gets before it is
// queued). Pure functions of the view, the session and the request.
import {
  CMD_BLOCK_STATUS,
  CMD_DISC,
  CMD_FLAG_DF,
  CMD_FLAG_REQ_ONE,
  CMD_FLAG_FAST_ZERO,
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  NBD_OK,
  TFLAG_SEND_DF,
  TFLAG_CAN_MULTI_CONN,
  TFLAG_HAS_FLAGS,
  TFLAG_READ_ONLY,
  TFLAG_SEND_FAST_ZERO,
  TFLAG_SEND_FLUSH,
  TFLAG_SEND_FUA,
  TFLAG_SEND_TRIM,
  TFLAG_SEND_WRITE_ZEROES,
} from '../format/nbd-protocol.js';
import type { NbdRequest } from '../format/nbd-transmission.js';
import type { ExportView, NbdSession } from './export-view.js';

/**
 * Largest READ or WRITE payload: 32 MiB, the protocol's default maximum, so clients that
 * never ask for block sizes are served too. TRIM and WRITE_ZEROES carry no payload and
 * may be longer.
 */
export const MAX_PAYLOAD_BYTES = 32 << 20;

/** The transmission flags a connection to `view` gets (DF only with structured replies). */
export function transmissionFlags(view: ExportView, structured: boolean): number {
  let flags = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_FUA | TFLAG_CAN_MULTI_CONN;
  if (view.readOnly) flags |= TFLAG_READ_ONLY;
  else flags |= TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES | TFLAG_SEND_FAST_ZERO;
  if (structured) flags |= TFLAG_SEND_DF;
  return flags;
}

/**
 * The error a request gets before it runs (NBD_OK when it may run). A WRITE that gets
 * an error still has its payload on the wire: the connection reads and drops it.
 */
export function validateRequest(s: NbdSession, r: NbdRequest, size: number): number {
  const end = r.offset + r.length;
  const view = s.view;
  if (view.closed && r.type !== CMD_DISC) return NBD_ESHUTDOWN;
  switch (r.type) {
    case CMD_READ:
      if (r.flags & ~(CMD_FLAG_FUA | (s.structured ? CMD_FLAG_DF : 0))) return NBD_EINVAL;
      if (r.length > MAX_PAYLOAD_BYTES) return NBD_EINVAL;
      return end > size ? NBD_EINVAL : NBD_OK;
    case CMD_BLOCK_STATUS:
      if (s.contexts.length === 0) return NBD_EINVAL; // no context was selected
      if (r.flags & ~CMD_FLAG_REQ_ONE) return NBD_EINVAL;
      return end > size || r.length === 0 ? NBD_EINVAL : NBD_OK;
    case CMD_WRITE:
      if (r.flags & ~CMD_FLAG_FUA) return NBD_EINVAL;
      if (view.readOnly) return NBD_EPERM;
      if (r.length > MAX_PAYLOAD_BYTES) return NBD_EINVAL;
      return end > size ? NBD_ENOSPC : NBD_OK;
    case CMD_FLUSH:
      if (r.flags & ~CMD_FLAG_FUA) return NBD_EINVAL;
      return r.offset !== 0 || r.length !== 0 ? NBD_EINVAL : NBD_OK;
    case CMD_TRIM:
      if (r.flags & ~CMD_FLAG_FUA) return NBD_EINVAL;
      if (view.readOnly) return NBD_EPERM;
      return end > size ? NBD_EINVAL : NBD_OK;
    case CMD_WRITE_ZEROES:
      if (r.flags & ~(CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO)) return NBD_EINVAL;
      if (view.readOnly) return NBD_EPERM;
      return end > size ? NBD_ENOSPC : NBD_OK;
    case CMD_DISC:
      return NBD_OK;
    default:
      return NBD_EINVAL; // CACHE and unknown commands were never offered
  }
}

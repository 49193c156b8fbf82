// Snapshot names: what a user may call a snapshot, and the one pattern the expression
// lexer and `VOL@SNAPSHOT` parsing agree on. '-' is allowed inside a name (dates like
// daily-2026-11-23 are common), so in expressions operators need spaces around them when
// a name could swallow them ("a-b" is one name).
import { InvalidInputError } from '../core/errors.js';

export const SNAPSHOT_NAME_MAX = 64;
/** A name starts with a letter, digit or '_' and continues with those or '.', ':', '-'. */
export const SNAPSHOT_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$/;
/** Characters that may continue a name once started (used by the expression lexer). */
export const NAME_START = /[A-Za-z0-9_]/;
export const NAME_CONTINUE = /[A-Za-z0-9_.:-]/;
/** Plane names that are not snapshots and so can never be used as snapshot names. */
export const RESERVED_PLANE_NAMES = ['active', 'moa', 'moa.0', 'moa.1'];

export function validateSnapshotName(name: string): string {
  if (!SNAPSHOT_NAME_PATTERN.test(name)) {
    throw new InvalidInputError(
      `invalid snapshot name "${name}"`,
      `use 1-${SNAPSHOT_NAME_MAX} characters from A-Z a-z 0-9 _ . : -, starting with a letter, digit or _`,
    );
  }
  if (RESERVED_PLANE_NAMES.includes(name.toLowerCase())) {
    throw new InvalidInputError(`invalid snapshot name "${name}": it is reserved for a plane`, 'choose another name');
  }
  return name;
}

/** Names a mirror relationship gives its own snapshots (mirror.TAG.N): it drops older ones by this prefix. */
export const MIRROR_SNAPSHOT_PREFIX = 'mirror.';

/**
 * A name a user gives a snapshot (snapshot create, snapshot rename): a valid name outside
 * the mirrors' namespace, where a mirror update would take it for one of its own and
 * delete it.
 */
export function validateUserSnapshotName(name: string): string {
  validateSnapshotName(name);
  if (name.toLowerCase().startsWith(MIRROR_SNAPSHOT_PREFIX)) {
    throw new InvalidInputError(`invalid snapshot name "${name}": names beginning with "${MIRROR_SNAPSHOT_PREFIX}" are mirror updates' own (an update deletes the older ones)`, 'choose another name');
  }
  return name;
}

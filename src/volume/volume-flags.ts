// Bits of the root record's flags.
/** The volume is on a block device (its size is the device's). */
export const FLAG_BLOCK_DEVICE = 1;
/** The volume is a mirror destination: only the mirror engine writes it (see ../mirror). */
export const FLAG_MIRROR = 2;
/** The mirror was broken off (`mirror break`): writable, until `mirror resync`. */
export const FLAG_MIRROR_BROKEN = 4;
/** The volume is a protection destination's base (DEST/base.vol): only the destination writes it (see ../journal). */
export const FLAG_PROTECT_BASE = 16;
/**
 * A restore onto the volume rewrote blocks of its active disk in place and stopped before
 * its last CP (restore.ts: a destination without room to stage them): its snapshots are
 * whole, its active disk is part old, part new. Only a restore opens it (to finish the
 * job; its last CP clears the flag); volume info and snapshot list read it, and a
 * snapshot's export.
 */
export const FLAG_RESTORE_UNFINISHED = 32;

/** Every flag this imgstream knows: a volume with another is a newer one's, and is not opened (that flag may mean its disk must not be read). */
export const KNOWN_FLAGS = FLAG_BLOCK_DEVICE | FLAG_MIRROR | FLAG_MIRROR_BROKEN | FLAG_PROTECT_BASE | FLAG_RESTORE_UNFINISHED;

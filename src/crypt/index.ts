// Encrypted image streams (issue 17): the user's key (a key file or a passphrase file),
// the per-stream keys derived from it, and the AEAD that seals each record's payload.
// The record layout and the header fields are specified in format/image-stream.ts; the
// stream writer and reader call this module, nothing else in src/ touches ciphers.
export { keyPrompt, readKeyRing, readKeySource, resolveKey, typedPassphrase, type KeyOption, type KeyRing, type KeyPrompt, type KeySource } from './key-source.js';
export { RecordCipher, newStreamEncryption, validEncryption, sealPayload, sealParts, TAG_BYTES, type SealJob, type StreamEncryption } from './record-cipher.js';

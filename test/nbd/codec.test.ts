// The NBD codec: every message round-trips, the layouts match the bytes proto.md gives,
// and malformed input is refused with NbdProtocolError (or null where the protocol wants
// an error reply rather than a lost session).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as nbdProtocol from '../../src/format/nbd-protocol.js';
import * as nbdTransmission from '../../src/format/nbd-transmission.js';

const nbd = { ...nbdProtocol, ...nbdTransmission };

describe('NBD codec', () => {
  it('greeting: NBDMAGIC, IHAVEOPT, handshake flags', () => {
    const g = nbd.encodeGreeting(nbd.FLAG_FIXED_NEWSTYLE | nbd.FLAG_NO_ZEROES);
    expect(g.toString('hex')).toBe(`${Buffer.from('NBDMAGIC').toString('hex')}${Buffer.from('IHAVEOPT').toString('hex')}0003`);
    expect(nbd.decodeGreeting(g)).toBe(3);
    const bad = Buffer.from(g);
    bad[8] ^= 1;
    expect(() => nbd.decodeGreeting(bad)).toThrow(nbd.NbdProtocolError);
    expect(() => nbd.decodeGreeting(g.subarray(0, 17))).toThrow(nbd.NbdProtocolError);
  });

  it('option requests and replies round-trip; a wrong magic is a protocol error', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.uint8Array({ maxLength: 300 }), (option, data) => {
        const b = nbd.encodeOption(option, data);
        expect(nbd.decodeOptionHeader(b)).toEqual({ option, length: data.length });
        expect(b.subarray(nbd.OPTION_HEADER_BYTES).equals(Buffer.from(data))).toBe(true);
        const r = nbd.encodeOptionReply(option, nbd.REP_ERR_UNSUP, data);
        expect(nbd.decodeOptionReplyHeader(r)).toEqual({ option, type: nbd.REP_ERR_UNSUP, length: data.length });
      }),
    );
    expect(nbd.encodeOptionReply(7, nbd.REP_ACK).toString('hex')).toBe('0003e889045565a9' + '00000007' + '00000001' + '00000000');
    expect(nbd.isErrorReply(nbd.REP_ERR_UNSUP)).toBe(true);
    expect(nbd.isErrorReply(nbd.REP_INFO)).toBe(false);
    const wrong = nbd.encodeOption(1);
    wrong[0] = 0;
    expect(() => nbd.decodeOptionHeader(wrong)).toThrow(nbd.NbdProtocolError);
  });

  it('INFO/GO data round-trips; lengths that do not add up decode as null', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.array(fc.integer({ min: 0, max: 65535 }), { maxLength: 5 }), (name, requests) => {
        expect(nbd.decodeInfoRequest(nbd.encodeInfoRequest({ name, requests }))).toEqual({ name, requests });
      }),
    );
    const good = nbd.encodeInfoRequest({ name: 'disk', requests: [3] });
    expect(nbd.decodeInfoRequest(good.subarray(0, good.length - 1))).toBeNull();
    expect(nbd.decodeInfoRequest(Buffer.concat([good, Buffer.alloc(1)]))).toBeNull();
    expect(nbd.decodeInfoRequest(Buffer.from([0, 0, 1, 0, 0, 0]))).toBeNull(); // name longer than the data
    expect(nbd.decodeInfoRequest(Buffer.alloc(5))).toBeNull();
    expect(nbd.decodeServerEntry(nbd.encodeServerEntry('vm'))).toBe('vm');
  });

  it('information replies have the lengths proto.md fixes', () => {
    const exp = nbd.encodeInfo({ type: nbd.INFO_EXPORT, size: 2 ** 40 + 4096, flags: 0x1234 });
    expect(exp.length).toBe(12);
    expect(nbd.decodeInfo(exp)).toEqual({ type: nbd.INFO_EXPORT, size: 2 ** 40 + 4096, flags: 0x1234 });
    const bs = nbd.encodeInfo({ type: nbd.INFO_BLOCK_SIZE, minimum: 1, preferred: 4096, maximum: 32 << 20 });
    expect(bs.toString('hex')).toBe('0003' + '00000001' + '00001000' + '02000000');
    expect(nbd.decodeInfo(bs)).toEqual({ type: nbd.INFO_BLOCK_SIZE, minimum: 1, preferred: 4096, maximum: 32 << 20 });
    expect(nbd.decodeInfo(nbd.encodeInfo({ type: nbd.INFO_NAME, name: 'ä' }))).toEqual({ type: nbd.INFO_NAME, name: 'ä' });
    expect(nbd.decodeInfo(nbd.encodeInfo({ type: nbd.INFO_DESCRIPTION, description: 'x y' }))).toEqual({ type: nbd.INFO_DESCRIPTION, description: 'x y' });
    expect(nbd.decodeInfo(Buffer.from([0, 9, 1, 2]))).toEqual({ type: 9, unknown: Buffer.from([1, 2]) });
    expect(() => nbd.decodeInfo(exp.subarray(0, 11))).toThrow(nbd.NbdProtocolError);
  });

  it('the EXPORT_NAME reply: size, flags and 124 zeros unless NO_ZEROES', () => {
    const e = { size: 1 << 30, flags: nbd.TFLAG_HAS_FLAGS | nbd.TFLAG_READ_ONLY };
    const full = nbd.encodeExportNameReply(e, false);
    expect(full.length).toBe(134);
    expect(full.subarray(10).equals(Buffer.alloc(124))).toBe(true);
    expect(nbd.encodeExportNameReply(e, true).length).toBe(10);
    expect(nbd.decodeExportNameReply(full)).toEqual(e);
  });

  it('requests and simple replies round-trip, with 64-bit offsets and opaque cookies', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 65535 }),
        fc.integer({ min: 0, max: 65535 }),
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        (flags, type, cookie, offset, length) => {
          const r = { flags, type, cookie: Buffer.from(cookie), offset, length };
          const b = nbd.encodeRequest(r);
          expect(b.length).toBe(nbd.REQUEST_BYTES);
          expect(nbd.decodeRequest(b)).toEqual(r);
          const reply = nbd.encodeSimpleReply(nbd.NBD_EINVAL, r.cookie);
          expect(nbd.decodeSimpleReply(reply)).toEqual({ error: nbd.NBD_EINVAL, cookie: r.cookie });
        },
      ),
    );
    const req = nbd.encodeRequest({ flags: nbd.CMD_FLAG_FUA, type: nbd.CMD_WRITE, cookie: Buffer.from('0102030405060708', 'hex'), offset: 4096, length: 512 });
    expect(req.toString('hex')).toBe('25609513' + '0001' + '0001' + '0102030405060708' + '0000000000001000' + '00000200');
    // an offset of 2^63 decodes past any export (not exactly: numbers hold 53 bits)
    const far = Buffer.from(req);
    far.writeBigUInt64BE(1n << 63n, 16);
    expect(nbd.decodeRequest(far).offset).toBeGreaterThan(Number.MAX_SAFE_INTEGER);
    far.writeUInt32BE(0x67446698, 0);
    expect(() => nbd.decodeRequest(far)).toThrow(nbd.NbdProtocolError);
    // a READ reply's data goes right after the header it is written into
    const into = Buffer.alloc(nbd.SIMPLE_REPLY_BYTES + 3, 7);
    nbd.encodeSimpleReply(0, Buffer.alloc(8, 9), into);
    expect(into.toString('hex')).toBe('67446698' + '00000000' + '0909090909090909' + '070707');
  });
});

describe('structured replies and metadata contexts (codec)', () => {
  const cookie = Buffer.from('cookie!!');
  it('chunk headers, holes, errors and block status round-trip', () => {
    const h = nbd.decodeChunkHeader(nbd.encodeChunkHeader(nbd.REPLY_FLAG_DONE, nbd.REPLY_TYPE_OFFSET_DATA, cookie, 4104));
    expect(h).toEqual({ flags: 1, type: 1, cookie, length: 4104 });
    const hole = nbd.encodeHoleChunk(0, cookie, 2 ** 40, 65536);
    expect(nbd.decodeChunkHeader(hole)).toMatchObject({ type: nbd.REPLY_TYPE_OFFSET_HOLE, length: 12 });
    expect(Number(hole.readBigUInt64BE(20))).toBe(2 ** 40);
    expect(hole.readUInt32BE(28)).toBe(65536);
    const err = nbd.encodeErrorChunk(nbd.NBD_EINVAL, cookie, 'bad');
    expect(nbd.decodeChunkHeader(err)).toMatchObject({ flags: 1, type: nbd.REPLY_TYPE_ERROR, length: 9 });
    expect(err.subarray(26).toString()).toBe('bad');
    const extents = [{ length: 8192, flags: 0 }, { length: 4096, flags: 3 }];
    const bs = nbd.encodeBlockStatusChunk(1, cookie, 7, extents);
    expect(nbd.decodeBlockStatusPayload(bs.subarray(20))).toEqual({ contextId: 7, extents });
    expect(() => nbd.decodeBlockStatusPayload(Buffer.alloc(10))).toThrow(nbd.NbdProtocolError);
    expect(() => nbd.decodeChunkHeader(Buffer.alloc(20))).toThrow(nbd.NbdProtocolError);
  });
  it('metadata context requests round-trip, and lengths that do not add up are null', () => {
    const r = { name: 'disk', queries: ['base:allocation', 'imgstream:image:active - monday'] };
    expect(nbd.decodeMetaContextRequest(nbd.encodeMetaContextRequest(r))).toEqual(r);
    expect(nbd.decodeMetaContextRequest(nbd.encodeMetaContextRequest({ name: '', queries: [] }))).toEqual({ name: '', queries: [] });
    const whole = nbd.encodeMetaContextRequest(r);
    for (const cut of [0, 7, 12, whole.length - 1]) expect(nbd.decodeMetaContextRequest(whole.subarray(0, cut))).toBeNull();
    expect(nbd.decodeMetaContextRequest(Buffer.concat([whole, Buffer.from([0])]))).toBeNull();
    expect(nbd.decodeMetaContextReply(nbd.encodeMetaContextReply(3, 'base:allocation'))).toEqual({ id: 3, name: 'base:allocation' });
  });
});

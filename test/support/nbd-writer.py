# A real NBD client (libnbd) for the journal tests: random writes, overwrites, zeroes and
# trims for --seconds, one JSON line per acknowledged request with the client's times
# just before sending (t0) and after the reply (t1), in ms since the epoch. The data of a
# write is bytes derived from its seed, so the test rebuilds it without it being logged.
#   nbd-writer.py URI --seconds S --seed N [--hot FRACTION] [--flush-every K] [--pause-ms MS] [--stop-file F]
import errno, json, os, random, struct, sys, time, argparse
import nbd

p = argparse.ArgumentParser()
p.add_argument('uri')
p.add_argument('--seconds', type=float, default=5)
p.add_argument('--seed', type=int, default=1)
p.add_argument('--hot', type=float, default=0.0, help='share of writes that go to a hot set of 1%% of the blocks')
p.add_argument('--flush-every', type=int, default=50)
p.add_argument('--pause-ms', type=float, default=0)
p.add_argument('--aligned', action='store_true', help='whole 4 KiB blocks only')
p.add_argument('--count', type=int, default=0, help='stop after this many requests')
p.add_argument('--enospc-ok', action='store_true', help='a request the server refuses with ENOSPC is logged with "failed": "ENOSPC" and the writer goes on')
p.add_argument('--stop-file', default=None, help='stop (after a flush) once this file exists: ends between two requests')
p.add_argument('--announce', action='store_true', help='print each request (with "pending": true) before sending it')
a = p.parse_args()

BS = 4096
rnd = random.Random(a.seed)
h = nbd.NBD()
h.connect_uri(a.uri)
size = h.get_size()
blocks = size // BS
hot = max(1, blocks // 100)

def data_of(seed, n):
    # 16-byte words (seed, word index) little-endian: the test rebuilds them (test/support/nbd-writer.ts)
    return b''.join(struct.pack('<QQ', seed, j) for j in range((n + 15) // 16))[:n]

def out(o):
    sys.stdout.write(json.dumps(o) + '\n')
    sys.stdout.flush()

def call(fn, o):
    # True when the request succeeded; a refused one (--enospc-ok) is logged as failed
    try:
        fn()
        return True
    except nbd.Error as e:
        if not (a.enospc_ok and e.errnum == errno.ENOSPC): raise
        o.update(failed='ENOSPC', t1=time.time() * 1000)
        out(o)
        time.sleep(max(a.pause_ms, 1) / 1000)
        return False

end = time.time() + a.seconds
i = 0
while time.time() < end and (a.count == 0 or i < a.count) and not (a.stop_file and os.path.exists(a.stop_file)):
    i += 1
    k = rnd.random()
    if a.hot and rnd.random() < a.hot:
        blk = rnd.randrange(hot)
    else:
        blk = rnd.randrange(blocks)
    if a.aligned or rnd.random() < 0.8:
        off = blk * BS
        ln = BS * rnd.choice([1, 1, 1, 2, 4, 8])
    else:
        off = blk * BS + 512 * rnd.randrange(8)
        ln = 512 * rnd.randrange(1, 20)
    ln = min(ln, size - off)
    if k < 0.8:
        seed = rnd.randrange(1 << 30)
        buf = data_of(seed, ln)
        t0 = time.time() * 1000
        if a.announce: out({'op': 'w', 'off': off, 'len': ln, 'seed': seed, 't0': t0, 'pending': True})
        if not call(lambda: h.pwrite(buf, off), {'op': 'w', 'off': off, 'len': ln, 'seed': seed, 't0': t0}): continue
        t1 = time.time() * 1000
        out({'op': 'w', 'off': off, 'len': ln, 'seed': seed, 't0': t0, 't1': t1})
    elif k < 0.9:
        t0 = time.time() * 1000
        if a.announce: out({'op': 'z', 'off': off, 'len': ln, 't0': t0, 'pending': True})
        if not call(lambda: h.zero(ln, off), {'op': 'z', 'off': off, 'len': ln, 't0': t0}): continue
        t1 = time.time() * 1000
        out({'op': 'z', 'off': off, 'len': ln, 't0': t0, 't1': t1})
    else:
        t0 = time.time() * 1000
        if a.announce: out({'op': 't', 'off': off, 'len': ln, 't0': t0, 'pending': True})
        if not call(lambda: h.trim(ln, off), {'op': 't', 'off': off, 'len': ln, 't0': t0}): continue
        t1 = time.time() * 1000
        out({'op': 't', 'off': off, 'len': ln, 't0': t0, 't1': t1})
    if a.flush_every and i % a.flush_every == 0:
        t0 = time.time() * 1000
        if not call(h.flush, {'op': 'f', 't0': t0}): continue
        t1 = time.time() * 1000
        out({'op': 'f', 't0': t0, 't1': t1})
    if a.pause_ms:
        time.sleep(a.pause_ms / 1000)
if a.stop_file:
    t0 = time.time() * 1000
    if call(h.flush, {'op': 'f', 't0': t0}): out({'op': 'f', 't0': t0, 't1': time.time() * 1000})
h.shutdown()

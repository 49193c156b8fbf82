# Random 4 KiB writes through NBD as fast as the server takes them: libnbd's asynchronous
# API with --depth requests in flight, for --seconds. Prints one JSON line: ops, bytes,
# seconds, and the ack latencies' p50/p99 (ms).
#   nbd-load.py URI --seconds S [--depth D] [--seed N] [--hot FRACTION]
import argparse, json, os, random, time
import nbd

p = argparse.ArgumentParser()
p.add_argument('uri')
p.add_argument('--seconds', type=float, default=5)
p.add_argument('--depth', type=int, default=16)
p.add_argument('--seed', type=int, default=1)
p.add_argument('--hot', type=float, default=0.0)
a = p.parse_args()

BS = 4096
rnd = random.Random(a.seed)
h = nbd.NBD()
h.connect_uri(a.uri)
blocks = h.get_size() // BS
hot = max(1, blocks // 100)
bufs = [nbd.Buffer.from_bytearray(bytearray(os.urandom(BS))) for _ in range(64)]
ops = 0
lat = []
inflight = {}
end = time.time() + a.seconds

def submit():
    blk = rnd.randrange(hot) if a.hot and rnd.random() < a.hot else rnd.randrange(blocks)
    t = time.time()
    c = h.aio_pwrite(bufs[rnd.randrange(64)], blk * BS)
    inflight[c] = t

start = time.time()
while time.time() < end:
    while len(inflight) < a.depth:
        submit()
    h.poll(-1)
    for c in list(inflight):
        if h.aio_command_completed(c):
            lat.append((time.time() - inflight.pop(c)) * 1000)
            ops += 1
while inflight:
    h.poll(-1)
    for c in list(inflight):
        if h.aio_command_completed(c):
            lat.append((time.time() - inflight.pop(c)) * 1000)
            ops += 1
h.flush()
secs = time.time() - start
h.shutdown()
lat.sort()
print(json.dumps({'ops': ops, 'bytes': ops * BS, 'seconds': secs, 'p50': lat[len(lat) // 2], 'p99': lat[int(len(lat) * 0.99)]}))

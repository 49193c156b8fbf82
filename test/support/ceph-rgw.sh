#!/usr/bin/env bash
# ceph-rgw.sh start DIR PORT_BASE | stop DIR [fast] | stop-rgw DIR
# The tests' S3 server: a throwaway single-node Ceph cluster (one monitor, one OSD on
# memstore, radosgw) listening on 127.0.0.1 only, from Debian's ceph-mon ceph-osd radosgw
# ceph-common packages (installed by .ci/run). Adapted from the measured reference in
# shared/reference/ceph-rgw: ready in about 5 s, about 150 MiB.
#   start: makes the cluster in DIR (must not exist or be empty): mon on PORT_BASE,
#          daemons on PORT_BASE+100..199, radosgw on PORT_BASE+80, an S3 user; writes
#          DIR/s3.env (S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
#   stop:  kills exactly the pids recorded in DIR/pids (radosgw first: it hangs when the
#          OSD goes first), then removes DIR. "fast": SIGKILL at once.
#   stop-rgw: kills radosgw only (the fault tests: the gateway stops mid-upload);
#   start-rgw DIR PORT_BASE starts it again.
# Pitfalls (each handled below): pool creation waits on 1 s monitor rounds unless paxos
# propose interval is short; deleted objects linger 2 h in the OSD's RAM unless rgw gc runs
# sooner; radosgw in the foreground writes no pid file; S3 clients need path-style.
set -euo pipefail
cmd=${1:?start|stop|stop-rgw}
DIR=${2:?cluster directory}
# absolute from here on: the daemons are told -c $DIR/ceph.conf, and stop tells ours from
# others by that path (a relative DIR matched none of them, killed nothing, removed DIR)
DIR=$(realpath -m -- "$DIR")

ours() {  # pid -> true if it is a ceph daemon of this cluster (guards against pid reuse)
  local c
  c=$(tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $c =~ ^(ceph-mon|ceph-osd|radosgw)\  && $c == *" -c $DIR/ceph.conf "* ]]
}
wait_gone() { local i; for ((i = 0; i < $2; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
kill_one() {  # name signal
  local f=$DIR/pids/$1.pid p
  [ -e "$f" ] || return 0
  p=$(cat "$f")
  if [[ $p =~ ^[0-9]+$ ]] && ours "$p"; then
    kill "-$2" "$p" 2>/dev/null || true
    wait_gone "$p" 100 || { kill -KILL "$p" 2>/dev/null; wait_gone "$p" 50 || true; }
  fi
  rm -f "$f"
}
stop_all() {
  [ -d "$DIR/pids" ] || { rm -rf "$DIR"; return 0; }
  local sig=TERM
  [ "${1:-}" = fast ] && sig=KILL
  for n in rgw.gw osd.0 mon.a; do kill_one "$n" "$sig"; done
  rm -rf "$DIR"
}
case $cmd in
  stop) stop_all "${3:-}"; exit 0 ;;
  stop-rgw) kill_one rgw.gw KILL; exit 0 ;;
  start-rgw)
    setsid radosgw -n client.rgw.gw -c "$DIR/ceph.conf" -f </dev/null >>"$DIR/log/rgw.gw.out" 2>&1 &
    echo $! > "$DIR/pids/rgw.gw.pid"
    port=$((${3:?port base} + 80))
    for ((i = 0; i < 200; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && exit 0; sleep 0.1; done
    echo "radosgw did not come back on port $port" >&2; exit 1 ;;
  start) ;;
  *) echo "usage: $0 start DIR PORT_BASE | stop DIR [fast] | stop-rgw DIR" >&2; exit 2 ;;
esac

BASE_PORT=${3:?port base}
MON_PORT=$BASE_PORT
RGW_PORT=$((BASE_PORT + 80))
OSD_STORE=memstore
STORE_SIZE_MB=${STORE_SIZE_MB:-2048}
S3_USER=test
START_TIMEOUT=${START_TIMEOUT:-60}
log() { echo "[ceph-rgw $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
for b in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool; do
  command -v "$b" >/dev/null || die "$b not found (apt-get install -y ceph-mon ceph-osd radosgw ceph-common)"
done
if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then die "$DIR exists and is not empty"; fi
for p in "$MON_PORT" "$RGW_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p on 127.0.0.1 is already in use"; fi
done
mkdir -p "$DIR"/{run,log,pids,crash,mon.a,osd.0,rgw.gw,tmp}
DIR=$(cd "$DIR" && pwd)
CONF=$DIR/ceph.conf
READY=0
on_exit() {
  local rc=$?
  [ "$READY" = 1 ] && return 0
  trap - EXIT INT TERM
  for f in "$DIR"/log/*.log "$DIR"/log/*.out; do [ -s "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
  stop_all fast
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM
uuid() { cat /proc/sys/kernel/random/uuid; }
FSID=$(uuid)
OSD_UUID=$(uuid)

# ---------------------------------------------------------------- config
# ceph metavariables ($name, $id, $cluster) are escaped so they reach ceph literally.
cat > "$CONF" <<EOF
[global]
fsid = $FSID
mon initial members = a
mon host = [v2:127.0.0.1:$MON_PORT]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr1 = false
ms bind msgr2 = true
ms bind port min = $((BASE_PORT + 100))
ms bind port max = $((BASE_PORT + 199))
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
mon cluster log file = $DIR/log/cluster.log
crash dir = $DIR/crash
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1
paxos propose interval = 0.1

[mon]
mon data = $DIR/mon.\$id

[mgr]
mgr data = $DIR/mgr.\$id

[osd]
osd data = $DIR/osd.\$id
osd objectstore = $OSD_STORE
osd crush initial weight = 1
osd crush update on start = true
memstore device bytes = $((STORE_SIZE_MB * 1024 * 1024))
bluestore block create = true
bluestore block size = $((STORE_SIZE_MB * 1024 * 1024))
bluestore fsck on mkfs = false
bluestore fsck on mount = false
osd memory target = 1073741824

[client.rgw.gw]
rgw data = $DIR/rgw.gw
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
# delete tail objects of deleted S3 objects soon (default 2 h) so memstore RAM is given back
rgw gc obj min wait = 10
rgw gc processor period = 15
EOF

# ---------------------------------------------------------------- keys
# One keyring holds every key; ceph-mon --mkfs imports all of them (with caps) into the auth db.
KR=$DIR/keyring
ceph-authtool --create-keyring "$KR" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$KR" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$KR" --gen-key -n osd.0 \
  --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
ceph-authtool "$KR" --gen-key -n mgr.x \
  --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$KR" --gen-key -n client.rgw.gw \
  --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
chmod 600 "$KR"

# ---------------------------------------------------------------- helpers
ceph_() { timeout 30 ceph -c "$CONF" --connect-timeout 20 "$@"; }

start_daemon() {  # name binary args...   (-f = foreground, logs to $DIR/log/<name>.log)
  local name=$1; shift
  setsid "$@" -c "$CONF" -f </dev/null >>"$DIR/log/$name.out" 2>&1 &
  echo $! > "$DIR/pids/$name.pid"
  log "started $name pid $!"
}

wait_for() {  # description command...
  local what=$1; shift
  local deadline=$(( $(date +%s) + START_TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    for f in "$DIR"/pids/*.pid; do
      kill -0 "$(cat "$f")" 2>/dev/null || die "$(basename "$f" .pid) died while waiting for $what"
    done
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out waiting for $what"
    sleep 0.5
  done
  log "ok: $what"
}

# ---------------------------------------------------------------- mon
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$KR" >>"$DIR/log/mkfs.out" 2>&1
start_daemon mon.a ceph-mon -i a
wait_for "mon quorum" ceph_ quorum_status

# ---------------------------------------------------------------- osd
OSD_ID=$(ceph_ osd new "$OSD_UUID")
[ "$OSD_ID" = 0 ] || die "expected osd id 0, got '$OSD_ID'"
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >>"$DIR/log/mkfs.out" 2>&1
start_daemon osd.0 ceph-osd -i 0
osd_up() { local j; j=$(ceph_ osd dump --format json) && [[ $j == *'"up":1'* ]]; }
wait_for "osd.0 up" osd_up

# ---------------------------------------------------------------- radosgw
start_daemon rgw.gw radosgw -n client.rgw.gw
s3_up() { (exec 3<>"/dev/tcp/127.0.0.1/$RGW_PORT") 2>/dev/null; }
wait_for "S3 on 127.0.0.1:$RGW_PORT" s3_up

# ---------------------------------------------------------------- S3 user
USER_JSON=$(timeout 60 radosgw-admin -c "$CONF" -n client.admin user create \
  --uid "$S3_USER" --display-name "$S3_USER")
AK=$(node -e 'const k=JSON.parse(require("fs").readFileSync(0,"utf8")).keys[0]; process.stdout.write(k.access_key)' <<<"$USER_JSON")
SK=$(node -e 'const k=JSON.parse(require("fs").readFileSync(0,"utf8")).keys[0]; process.stdout.write(k.secret_key)' <<<"$USER_JSON")
[ -n "$AK" ] && [ -n "$SK" ] || die "could not read S3 keys from radosgw-admin output"

cat > "$DIR/s3.env" <<EOF
S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
AWS_ACCESS_KEY_ID=$AK
AWS_SECRET_ACCESS_KEY=$SK
AWS_DEFAULT_REGION=us-east-1
CEPH_DIR=$DIR
EOF
READY=1
log "cluster ready in $DIR"
cat "$DIR/s3.env"


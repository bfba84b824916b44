#!/usr/bin/env bash
# Starts a whole p2pd CDN on this machine as separate processes on
# 127.0.0.1: an embedded etcd inside the tracker, the origin serving
# $MEDIA_DIR, one cachenode and the edge on $PORT. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

MEDIA_DIR=${MEDIA_DIR:-./mediafiles}
PORT=${PORT:-8080}
RUN_DIR=${RUN_DIR:-./.run}
BIN=${BIN:-./bin}

mkdir -p "$MEDIA_DIR" "$RUN_DIR"
if [ -z "$(ls -A "$MEDIA_DIR")" ]; then
  echo "note: $MEDIA_DIR is empty; put video files there (they are published at start)." >&2
fi

# The admin API's bearer token: made once, kept in the run directory.
TOKEN_FILE="$RUN_DIR/admin-token"
[ -s "$TOKEN_FILE" ] || head -c 18 /dev/urandom | base64 | tr '+/' '-_' > "$TOKEN_FILE"
chmod 600 "$TOKEN_FILE"
# The origin credential the tracker demands of the origin to publish
# (docs/security.md): made once too.
ORIGIN_TOKEN_FILE="$RUN_DIR/origin-token"
[ -s "$ORIGIN_TOKEN_FILE" ] || head -c 24 /dev/urandom | base64 | tr '+/' '-_' > "$ORIGIN_TOKEN_FILE"
chmod 600 "$ORIGIN_TOKEN_FILE"

trap 'trap - INT TERM EXIT; kill 0 2>/dev/null; wait 2>/dev/null' INT TERM EXIT

# prefix NAME CMD...: runs CMD with its log lines prefixed by NAME.
prefix() {
  local name=$1; shift
  "$@" 2>&1 | sed -u "s/^/[$name] /" &
}

# wait_ready NAME URL: polls an ops /readyz until it answers 200.
wait_ready() {
  local name=$1 url=$2
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$name did not become ready ($url)" >&2
  exit 1
}

prefix tracker "$BIN/tracker" --listen 127.0.0.1:7000 --embedded-etcd "$RUN_DIR/etcd" \
  --etcd-client-addr 127.0.0.1:2379 --etcd-peer-addr 127.0.0.1:2380 --ops 127.0.0.1:9091 \
  --origin-token-file "$ORIGIN_TOKEN_FILE"
wait_ready tracker http://127.0.0.1:9091/readyz

prefix origin "$BIN/origin" --listen 127.0.0.1:7100 --tracker 127.0.0.1:7000 \
  --media-dir "$MEDIA_DIR" --rescan 10s --ops 127.0.0.1:9090 --admin-token-file "$TOKEN_FILE" \
  --origin-token-file "$ORIGIN_TOKEN_FILE"
prefix cachenode "$BIN/cachenode" --listen 127.0.0.1:7200 --tracker 127.0.0.1:7000 \
  --cache-dir "$RUN_DIR/cache" --ops 127.0.0.1:9092
prefix edge "$BIN/edge" --listen "127.0.0.1:$PORT" --tracker 127.0.0.1:7000 --ops 127.0.0.1:9093
wait_ready origin http://127.0.0.1:9090/readyz
wait_ready cachenode http://127.0.0.1:9092/readyz
wait_ready edge http://127.0.0.1:9093/readyz

echo
echo "p2pd is up: http://127.0.0.1:$PORT/  (media: $MEDIA_DIR; Ctrl-C stops)"
echo "  try: curl -r 0-99 http://127.0.0.1:$PORT/README.txt"
echo "  admin: export P2PD_ADMIN_SERVER=http://127.0.0.1:9090 P2PD_ADMIN_TOKEN=$(cat "$TOKEN_FILE")"
echo "         $BIN/p2pd admin publish movie.mp4    # dashboard: http://127.0.0.1:9090/ui/#token=$(cat "$TOKEN_FILE")"
echo
wait

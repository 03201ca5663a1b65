#!/usr/bin/env bash
# The servers helio-backends' tests run against: a Redis server (Debian's redis-server) and an
# S3-compatible server (moto, from PyPI), on free loopback ports.
#
#   bash ci/remote-servers.sh install   # installs what is missing (apt-get, a Python venv)
#   eval "$(bash ci/remote-servers.sh start)"   # installs, starts both, prints the exports
#       HELIO_TEST_REDIS_URL, HELIO_TEST_S3_ENDPOINT (for the shared servers) and
#       HELIO_TEST_REDIS_SERVER, HELIO_TEST_MOTO_SERVER (the binaries the outage tests start)
#   bash ci/remote-servers.sh stop      # stops the servers `start` started (by their pid files)
#
# State (the moto venv, pid files, logs) lives in $HELIO_SERVERS_DIR, default
# ~/.cache/helio-servers. HELIO_MOTO_VENV=1 installs moto into the venv even if one is on PATH.
# Any failure exits non-zero with the server's log: the tests must never run without servers.
set -euo pipefail

DIR="${HELIO_SERVERS_DIR:-$HOME/.cache/helio-servers}"
RUN="$DIR/run"
VENV="$DIR/moto-venv"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { printf '%s\n' "$*" >&2; }

apt_install() {
  $SUDO apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@" >&2
}

# A moto_server that runs: $HELIO_TEST_MOTO_SERVER, the venv's, or one on PATH; else "".
find_moto() {
  local candidate
  for candidate in "${HELIO_TEST_MOTO_SERVER:-}" "$VENV/bin/moto_server"; do
    if [ -n "$candidate" ] && "$candidate" --help >/dev/null 2>&1; then echo "$candidate"; return; fi
  done
  if [ "${HELIO_MOTO_VENV:-0}" != 1 ] && moto_server --help >/dev/null 2>&1; then
    command -v moto_server
  fi
}

install_moto() {
  log "installing moto[server] into $VENV"
  mkdir -p "$DIR"
  if ! python3 -m venv "$VENV" >&2; then
    apt_install python3-venv
    python3 -m venv "$VENV" >&2
  fi
  "$VENV/bin/pip" install -q 'moto[server]>=5,<6' >&2
}

install() {
  if ! command -v redis-server >/dev/null 2>&1; then
    log "installing redis-server"
    apt_install redis-server
  fi
  if [ -z "$(find_moto)" ]; then install_moto; fi
  [ -n "$(find_moto)" ] || { log "moto_server still does not run after installing it"; exit 1; }
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits up to 60 s for 127.0.0.1:$1 to accept connections from process $2 ($3 names it).
wait_port() {
  local port=$1 pid=$2 name=$3 tries=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited before listening on port $port; its log:"; cat "$RUN/$name.log" >&2; exit 1
    fi
    tries=$((tries + 1))
    if [ "$tries" -ge 600 ]; then
      log "$name did not listen on port $port within 60 s; its log:"; cat "$RUN/$name.log" >&2; exit 1
    fi
    sleep 0.1
  done
}

# Starts "$name" from the command after it, detached, logging to $RUN/$name.log.
launch() {
  local name=$1; shift
  "$@" </dev/null >"$RUN/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

start() {
  install
  stop
  mkdir -p "$RUN/redis-data"
  local moto redis_port moto_port
  moto="$(find_moto)"
  redis_port="$(free_port)"
  moto_port="$(free_port)"
  launch redis redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$RUN/redis-data"
  launch moto "$moto" -H 127.0.0.1 -p "$moto_port"
  wait_port "$redis_port" "$(cat "$RUN/redis.pid")" redis
  wait_port "$moto_port" "$(cat "$RUN/moto.pid")" moto
  log "Redis on 127.0.0.1:$redis_port and moto (S3) on 127.0.0.1:$moto_port"
  echo "export HELIO_TEST_REDIS_URL=redis://127.0.0.1:$redis_port"
  echo "export HELIO_TEST_S3_ENDPOINT=http://127.0.0.1:$moto_port"
  echo "export HELIO_TEST_REDIS_SERVER=$(command -v redis-server)"
  echo "export HELIO_TEST_MOTO_SERVER=$moto"
}

stop() {
  local name pid
  for name in redis moto; do
    [ -f "$RUN/$name.pid" ] || continue
    pid="$(cat "$RUN/$name.pid")"
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN/$name.pid"
  done
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) log "usage: $0 install|start|stop"; exit 2 ;;
esac

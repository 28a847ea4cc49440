#!/usr/bin/env bash
# A cluster of hosts on one machine, for trying faults by hand: the coordinator and N workers each
# run in a network namespace of their own, joined by a private bridge (10.231.0.0/24), with the
# same topology as tests/faults.rs (host 0: clients, host 1: the coordinator, host 2+i: worker i).
# Needs root and `ip`. Nothing outside the namespaces this script creates is touched.
#
#   sudo bash bench/netns.sh up 3            # coordinator + 3 workers (BIN=... to pick a binary)
#   sudo bash bench/netns.sh client submit examples/seasonal-gru.toml   # any client command
#   sudo bash bench/netns.sh cut 2           # worker 0's link down, both ways (half-open TCP)
#   sudo bash bench/netns.sh cut-out 2       # host 2's outbound traffic vanishes (one way)
#   sudo bash bench/netns.sh cut-between 1 2 # the coordinator and worker 0 lose each other only
#   sudo bash bench/netns.sh restore 2       # undo the cuts of host 2 (restore 1 too after cut-between)
#   sudo bash bench/netns.sh stop 2 | cont 2 | kill 2   # SIGSTOP / SIGCONT / SIGKILL host 2's process
#   sudo bash bench/netns.sh down            # kill every process and delete the namespaces
#
# Logs and the state database are in $RT_NETNS_DIR (default /tmp/ringtrain-netns).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${RT_NETNS_DIR:-/tmp/ringtrain-netns}
PREFIX=rtm
BR=$PREFIX-br
NOWHERE=02:00:00:00:de:ad
ns() { echo "$PREFIX-h$1"; }
addr() { echo "10.231.0.$((10 + $1))"; }
if [ -z "${BIN:-}" ]; then
  BIN=${CARGO_TARGET_DIR:-target}/release/ringtrain
fi
BIN=$(realpath "$BIN" 2>/dev/null || echo "$BIN")

hosts() { cat "$DIR/hosts" 2>/dev/null || echo 0; }

up() {
  local workers=$1 n=$(( $1 + 2 )) i
  [ -x "$BIN" ] || { echo "missing $BIN: cargo build --release -p ringtrain-cli, or BIN=..." >&2; exit 1; }
  ip netns list | grep -q "^$BR" && { echo "already up: bench/netns.sh down first" >&2; exit 1; }
  mkdir -p "$DIR"
  echo "$n" >"$DIR/hosts"
  ip netns add "$BR"
  ip -n "$BR" link add br0 type bridge
  ip -n "$BR" link set br0 up
  for ((i = 0; i < n; i++)); do
    ip netns add "$(ns $i)"
    ip -n "$BR" link add "v$i" type veth peer name eth0 netns "$(ns $i)"
    ip -n "$BR" link set "v$i" master br0
    ip -n "$BR" link set "v$i" up
    ip -n "$(ns $i)" addr add "$(addr $i)/24" dev eth0
    ip -n "$(ns $i)" link set eth0 up
    ip -n "$(ns $i)" link set lo up
  done
  ip netns exec "$(ns 1)" "$BIN" coordinator --listen "$(addr 1):7070" \
    --metrics-listen 127.0.0.1:0 --state "$DIR/state.db" --lease-ms 3000 \
    --collective-timeout-ms 10000 >"$DIR/coordinator.out" 2>"$DIR/coordinator.log" &
  echo $! >"$DIR/pid-1"
  sleep 1
  for ((i = 0; i < workers; i++)); do
    local h=$((i + 2))
    ip netns exec "$(ns $h)" "$BIN" worker --coordinator "$(addr 1):7070" \
      --listen "$(addr $h):0" --advertise "$(addr $h)" --metrics-listen 127.0.0.1:0 \
      --threads 1 --name "worker-$i" >"$DIR/worker-$i.out" 2>"$DIR/worker-$i.log" &
    echo $! >"$DIR/pid-$h"
  done
  echo "coordinator $(addr 1):7070 (host 1); workers on hosts 2..$((n - 1)); logs in $DIR"
}

down() {
  local i n
  n=$(hosts)
  for ((i = 0; i < n; i++)); do
    for pid in $(ip netns pids "$(ns $i)" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$(ns $i)" 2>/dev/null || true
  done
  ip netns del "$BR" 2>/dev/null || true
  rm -f "$DIR"/pid-* "$DIR/hosts"
}

drop_from() { ip -n "$(ns $1)" neigh replace "$(addr $2)" lladdr $NOWHERE dev eth0 nud permanent; }

case "${1:-}" in
  up) up "${2:?number of workers}" ;;
  down) down ;;
  client) shift; ip netns exec "$(ns 0)" "$BIN" "$@" --coordinator "$(addr 1):7070" ;;
  cut) ip -n "$BR" link set "v${2:?host}" down ;;
  cut-out)
    for ((j = 0; j < $(hosts); j++)); do [ "$j" = "${2:?host}" ] || drop_from "$2" "$j"; done ;;
  cut-between) drop_from "${2:?host}" "${3:?host}"; drop_from "$3" "$2" ;;
  restore)
    ip -n "$BR" link set "v${2:?host}" up
    for ((j = 0; j < $(hosts); j++)); do
      [ "$j" = "$2" ] || ip -n "$(ns $2)" neigh del "$(addr $j)" dev eth0 2>/dev/null || true
    done ;;
  stop) kill -STOP "$(cat "$DIR/pid-${2:?host}")" ;;
  cont) kill -CONT "$(cat "$DIR/pid-${2:?host}")" ;;
  kill) kill -KILL "$(cat "$DIR/pid-${2:?host}")" ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac

# shellcheck shell=bash
# Shared by the cluster benchmarks in this directory (sourced, not run): starts, stops and
# inspects `skiff node` processes on 127.0.0.1, each with its data directory and log under
# $BENCH_DIR. The nodes are killed when the sourcing script exits, whatever the reason.
#
# Set before calling cluster_start:
#   SKIFF       the skiff binary (default: target/release/skiff of this checkout)
#   BENCH_DIR   where data directories and logs go (default: a fresh directory under /tmp)
#   NODE_FLAGS  an array of extra flags for every node (default: none)
#   NODE_WORKERS  each node's --worker-threads (default: the machine's CPUs divided among the
#               nodes, at least 1). The nodes share one machine here, so each gets its share,
#               as `skiff demo` does; a node alone on its machine takes one per CPU. On two
#               CPUs with three nodes, one worker each gave +4 % puts/s at 1 client, +8 % at
#               256 and +13 % linearizable gets/s at 256 over two each (compare.sh, 4 rounds,
#               2026-12-05).

set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
SKIFF=${SKIFF:-$REPO_ROOT/target/release/skiff}
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/skiff-bench.XXXXXX)}
mkdir -p "$BENCH_DIR"
declare -a NODE_FLAGS=("${NODE_FLAGS[@]+"${NODE_FLAGS[@]}"}")
declare -a NODE_PIDS=()
declare -a CLIENT_ADDRS=()
PEERS=""

[[ -x $SKIFF ]] || { echo "no skiff binary at $SKIFF (cargo build --release -p skiff)" >&2; exit 1; }

# Prints `count` free ports on 127.0.0.1, one a line (bound, then released for the nodes).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
for s in sockets:
    print(s.getsockname()[1])
EOF
}

# cluster_start SIZE: starts nodes 1..SIZE and waits for a leader.
cluster_start() {
    local size=$1 ports
    mapfile -t ports < <(free_ports $((2 * size)))
    NODE_WORKERS=${NODE_WORKERS:-$(($(nproc) / size > 0 ? $(nproc) / size : 1))}
    PEERS=""
    for ((id = 1; id <= size; id++)); do
        PEERS+="${PEERS:+,}$id=127.0.0.1:${ports[id - 1]}"
        CLIENT_ADDRS[id]=127.0.0.1:${ports[size + id - 1]}
    done
    for ((id = 1; id <= size; id++)); do
        node_start "$id"
    done
    trap cluster_stop EXIT
    wait_for_leader >/dev/null
}

# node_start ID [FLAGS...]: starts (or restarts) node ID on its data directory, with
# NODE_FLAGS and then FLAGS.
node_start() {
    local id=$1
    shift
    SKIFF_LOG=${SKIFF_LOG:-info} "$SKIFF" node --id "$id" --data-dir "$BENCH_DIR/node-$id" \
        --client-addr "${CLIENT_ADDRS[id]}" --peers "$PEERS" --worker-threads "$NODE_WORKERS" \
        "${NODE_FLAGS[@]+"${NODE_FLAGS[@]}"}" "$@" \
        </dev/null >>"$BENCH_DIR/node-$id.log" 2>&1 &
    NODE_PIDS[id]=$!
}

# node_kill ID: SIGKILLs node ID.
node_kill() {
    local pid=${NODE_PIDS[$1]:-}
    if [[ -n $pid ]]; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        NODE_PIDS[$1]=""
    fi
}

# cluster_stop: kills every node this script started.
cluster_stop() {
    local id
    for id in "${!NODE_PIDS[@]}"; do
        node_kill "$id"
    done
}

# endpoints: every node's client address, comma-separated.
endpoints() {
    local IFS=,
    echo "${CLIENT_ADDRS[*]}"
}

# status ID: node ID's /v1/status (JSON), or nothing if it does not answer.
status() {
    curl -sf --max-time 2 "http://${CLIENT_ADDRS[$1]}/v1/status" || true
}

# wait_for_leader: prints the leader's id once a node reports one (gives up after 30 s).
wait_for_leader() {
    local deadline=$((SECONDS + 30)) id leader
    while ((SECONDS < deadline)); do
        for id in "${!CLIENT_ADDRS[@]}"; do
            leader=$(status "$id" | jq -r '.leader // empty' 2>/dev/null || true)
            if [[ -n $leader && $leader != null && -n ${NODE_PIDS[leader]:-} ]]; then
                echo "$leader"
                return 0
            fi
        done
        sleep 0.2
    done
    echo "no leader within 30 s; logs in $BENCH_DIR" >&2
    return 1
}

# field ID NAME: a number from node ID's status.
field() {
    status "$1" | jq -r ".$2 // 0"
}

# rss_kib PID: the resident memory of a process in KiB.
rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

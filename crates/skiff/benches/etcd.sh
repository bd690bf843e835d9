#!/usr/bin/env bash
# skiff against etcd 3.4 on this machine, measured in the same run by the same load generator.
#
# For each of ROUNDS rounds: a fresh three-member etcd cluster (Debian's etcd-server, default
# settings: every write fsynced before it is acknowledged), then a fresh three-node skiff cluster
# (default settings), each on 127.0.0.1 with data under a fresh directory, each measured with
# `skiff bench --op OP` through its leader at each client count, then stopped. skiff is measured
# through its HTTP API; etcd through its v3 JSON gateway (`skiff bench --protocol etcd`), the
# HTTP front door etcd serves on its client port. Prints one line per system, round, operation
# and client count, then the ratio skiff / etcd of the ops/s medians.
#
# etcd-server is installed with apt-get when missing (root only; it is only this benchmark's).
#
#   crates/skiff/benches/etcd.sh                               # puts and gets at 1, 64, 256
#   ROUNDS=3 CLIENTS=1,16 OP=put DURATION=15s crates/skiff/benches/etcd.sh

ROUNDS=${ROUNDS:-2}
CLIENTS=${CLIENTS:-1,64,256}
OP=${OP:-both}
DURATION=${DURATION:-10s}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-256}

source "$(dirname "$0")/cluster.sh"

if ! command -v etcd >/dev/null 2>&1; then
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "etcd is not installed and apt-get (as root) is not available: apt-get install etcd-server" >&2
        exit 1
    fi
    echo "installing Debian's etcd-server" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi

declare -a ETCD_PIDS=()
declare -a ETCD_ADDRS=()

# etcd_start: three etcd members on free ports, data under $BENCH_DIR/etcd-N.
etcd_start() {
    local ports cluster="" id
    mapfile -t ports < <(free_ports 6)
    for id in 1 2 3; do
        cluster+="${cluster:+,}e$id=http://127.0.0.1:${ports[id - 1]}"
        ETCD_ADDRS[id]=127.0.0.1:${ports[id + 2]}
    done
    for id in 1 2 3; do
        etcd --name "e$id" --data-dir "$BENCH_DIR/etcd-$id" \
            --listen-peer-urls "http://127.0.0.1:${ports[id - 1]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${ports[id - 1]}" \
            --listen-client-urls "http://${ETCD_ADDRS[id]}" \
            --advertise-client-urls "http://${ETCD_ADDRS[id]}" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token skiff-bench --logger zap --log-level warn \
            </dev/null >>"$BENCH_DIR/etcd-$id.log" 2>&1 &
        ETCD_PIDS[id]=$!
    done
}

# etcd_stop: kills the etcd members this script started.
etcd_stop() {
    local id
    for id in "${!ETCD_PIDS[@]}"; do
        kill -KILL "${ETCD_PIDS[id]}" 2>/dev/null || true
        wait "${ETCD_PIDS[id]}" 2>/dev/null || true
    done
    ETCD_PIDS=()
}
trap 'etcd_stop; cluster_stop' EXIT

# etcd_leader_first: the etcd client addresses, the leader's first (waits up to 30 s for one).
etcd_leader_first() {
    local deadline=$((SECONDS + 30)) id answer
    while ((SECONDS < deadline)); do
        for id in 1 2 3; do
            answer=$(curl -sf --max-time 2 -X POST -d '{}' \
                "http://${ETCD_ADDRS[id]}/v3/maintenance/status" || true)
            if [[ -n $answer ]] && jq -e '.leader != null and .leader == .header.member_id' \
                <<<"$answer" >/dev/null; then
                local others=() other
                for other in 1 2 3; do
                    ((other == id)) || others+=("${ETCD_ADDRS[other]}")
                done
                echo "${ETCD_ADDRS[id]},${others[0]},${others[1]}"
                return 0
            fi
        done
        sleep 0.2
    done
    echo "etcd elected no leader within 30 s; logs in $BENCH_DIR" >&2
    return 1
}

# measure SYSTEM ROUND ENDPOINTS PROTOCOL: one bench, its lines prefixed with SYSTEM and ROUND.
measure() {
    "$SKIFF" bench --endpoints "$3" --protocol "$4" --op "$OP" --clients "$CLIENTS" \
        --duration "$DURATION" --keys "$KEYS" --value-size "$VALUE_SIZE" -w table 2>/dev/null \
        | awk -v name="$1" -v round="$2" '/^(put|get) / && $2 ~ /^[0-9]+$/ { print name, round, $0 }'
}

results="$BENCH_DIR/results"
echo "SYSTEM ROUND OP CLIENTS OPS/S P50 P90 P99 MAX ERRORS"
for ((round = 1; round <= ROUNDS; round++)); do
    etcd_start
    measure etcd "$round" "$(etcd_leader_first)" etcd | tee -a "$results"
    etcd_stop
    rm -rf "$BENCH_DIR"/etcd-*
    cluster_start 3
    measure skiff "$round" "$(endpoints)" skiff | tee -a "$results"
    cluster_stop
    rm -rf "$BENCH_DIR"/node-*
done

echo
echo "median ops/s over $ROUNDS rounds, skiff / etcd:"
awk '
    { rates[$3 " " $4, $1] = rates[$3 " " $4, $1] " " $5; keys[$3 " " $4] = 1 }
    function median(list,    values, count, i, j, swap) {
        count = split(list, values, " ")
        for (i = 1; i <= count; i++)
            for (j = i + 1; j <= count; j++)
                if (values[j] + 0 < values[i] + 0) { swap = values[i]; values[i] = values[j]; values[j] = swap }
        return count % 2 ? values[(count + 1) / 2] : (values[count / 2] + values[count / 2 + 1]) / 2
    }
    END {
        for (key in keys) {
            skiff = median(rates[key, "skiff"]); etcd = median(rates[key, "etcd"])
            printf "%-12s skiff %8.0f  etcd %8.0f  ratio %.2f\n", key, skiff, etcd, etcd ? skiff / etcd : 0
        }
    }' "$results" | sort

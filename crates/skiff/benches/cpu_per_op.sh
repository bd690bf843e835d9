#!/usr/bin/env bash
# CPU time per operation of each process, for one or more skiff builds in the same run.
#
# Throughput on this two-CPU machine swings by a quarter from one minute to the next; the CPU
# a process spends per operation swings much less, and the leader's is what bounds puts/s at
# many clients (one worker thread per node). For each of ROUNDS rounds, each binary in turn gets
# a fresh three-node cluster and one `skiff bench --op OP` run through the leader at CLIENTS
# clients for DURATION; the script prints ops/s, p99, and the user+system CPU microseconds per
# operation of the leader, of the two followers together and of the bench, read from
# /proc/PID/stat (nodes) and bash's `time` (bench) around the run. Operations are counted as
# ops/s times DURATION; the CPU includes the bench's set-up (for gets, writing KEYS keys first),
# the same for every build, so compare builds, not operations.
#
#   crates/skiff/benches/cpu_per_op.sh OLD_SKIFF NEW_SKIFF
#   ROUNDS=5 OP=get CLIENTS=64 DURATION=5s crates/skiff/benches/cpu_per_op.sh target/release/skiff

set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 SKIFF [SKIFF ...]" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
OP=${OP:-put}
CLIENTS=${CLIENTS:-256}
DURATION=${DURATION:-4s}
KEYS=${KEYS:-10000}
here=$(cd "$(dirname "$0")" && pwd)
[[ $DURATION =~ ^[0-9]+s$ ]] || { echo "DURATION must be whole seconds, as 4s" >&2; exit 2; }

echo "BINARY ROUND OP CLIENTS OPS/S P99 LEADER_US FOLLOWERS_US BENCH_US TOTAL_US"
for ((round = 1; round <= ROUNDS; round++)); do
    for binary in "$@"; do
        SKIFF=$(realpath "$binary") bash -c '
            source "$1/cluster.sh"
            op=$2 clients=$3 duration=$4 keys=$5 round=$6
            cluster_start 3 >/dev/null
            leader=$(wait_for_leader)
            ticks=$(getconf CLK_TCK)
            cpu() { awk "{ print \$14 + \$15 }" "/proc/$1/stat"; }
            declare -a before=() after=()
            for id in 1 2 3; do before[id]=$(cpu "${NODE_PIDS[id]}"); done
            TIMEFORMAT="%U %S"
            { time "$SKIFF" bench --endpoints "${CLIENT_ADDRS[leader]}" --op "$op" \
                --clients "$clients" --duration "$duration" --keys "$keys" --value-size 256 \
                >"$BENCH_DIR/bench.out" 2>/dev/null; } 2>"$BENCH_DIR/bench.time"
            for id in 1 2 3; do after[id]=$(cpu "${NODE_PIDS[id]}"); done
            leader_ticks=0 follower_ticks=0
            for id in 1 2 3; do
                spent=$((after[id] - before[id]))
                if ((id == leader)); then leader_ticks=$spent; else follower_ticks=$((follower_ticks + spent)); fi
            done
            line=$(awk -v op="$op" -v c="$clients" "\$1 == op && \$2 == c" "$BENCH_DIR/bench.out" | tail -1)
            [[ -n $line ]] || { echo "no result line for $op at $clients clients" >&2; exit 1; }
            read -r bench_user bench_system <"$BENCH_DIR/bench.time"
            awk -v binary="$(basename "$SKIFF")" -v round="$round" -v line="$line" \
                -v seconds="${duration%s}" -v ticks="$ticks" -v leader="$leader_ticks" \
                -v followers="$follower_ticks" -v bench="$bench_user + $bench_system" "BEGIN {
                    split(line, field, \" +\"); ops = field[3] * seconds
                    split(bench, b, \" [+] \"); bench_us = (b[1] + b[2]) * 1e6 / ops
                    leader_us = leader / ticks * 1e6 / ops; followers_us = followers / ticks * 1e6 / ops
                    printf \"%s %d %s %s %.0f %s %.1f %.1f %.1f %.1f\n\", binary, round, field[1],
                        field[2], field[3], field[6], leader_us, followers_us, bench_us,
                        leader_us + followers_us + bench_us
                }"
            cluster_stop
            rm -rf "$BENCH_DIR"
        ' _ "$here" "$OP" "$CLIENTS" "$DURATION" "$KEYS" "$round"
    done
done

#!/usr/bin/env bash
# Puts and gets of two skiff builds, measured in the same run: for each of ROUNDS rounds, each
# binary in turn gets a fresh three-node cluster (default settings, snapshots on) and runs
# `skiff bench --op both`. Alternating the binaries spreads the machine's background load over
# both. Prints one table line per binary, round and operation.
#
#   crates/skiff/benches/compare.sh OLD_SKIFF NEW_SKIFF
#   ROUNDS=3 CLIENTS=16,64 DURATION=15s crates/skiff/benches/compare.sh old new

set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 OLD_SKIFF NEW_SKIFF" >&2; exit 2; }
ROUNDS=${ROUNDS:-2}
CLIENTS=${CLIENTS:-64}
DURATION=${DURATION:-15s}
KEYS=${KEYS:-10000}
here=$(cd "$(dirname "$0")" && pwd)
binaries=("$(realpath "$1")" "$(realpath "$2")")

echo "BINARY ROUND OP CLIENTS OPS/S P50 P90 P99 MAX ERRORS"
for ((round = 1; round <= ROUNDS; round++)); do
    for binary in "${binaries[@]}"; do
        SKIFF=$binary bash -c '
            source "$1/cluster.sh"
            cluster_start 3
            "$SKIFF" bench --endpoints "$(endpoints)" --op both --clients "$2" \
                --duration "$3" --keys "$4" -w table 2>/dev/null | awk "/^(put|get) /"
            cluster_stop
            rm -rf "$BENCH_DIR"
        ' _ "$here" "$CLIENTS" "$DURATION" "$KEYS" | sed "s|^|$(basename "$binary") $round |"
    done
done

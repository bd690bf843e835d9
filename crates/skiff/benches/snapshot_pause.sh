#!/usr/bin/env bash
# How long taking a snapshot holds up the driver, and what snapshots cost clients.
#
# Starts a three-node cluster (release build), fills it with KEYS keys, then runs
# `skiff bench --op put` over those keys with CLIENTS clients for DURATION while every node
# snapshots every SNAPSHOT_ENTRIES entries. Prints the bench's summary, and each node's
# "taking a snapshot" log lines: `keys`, and `view`, the time the driver spent making the
# point-in-time view the snapshot is serialized from (the only part of a snapshot that runs on
# the driver; the file is written by another thread).
#
#   crates/skiff/benches/snapshot_pause.sh            # defaults below
#   SKIFF=/path/to/other/skiff KEYS=200000 crates/skiff/benches/snapshot_pause.sh
#
# Compare two builds by running it once with each (SKIFF=...), one after the other.

KEYS=${KEYS:-80000}
CLIENTS=${CLIENTS:-64}
DURATION=${DURATION:-30s}
SNAPSHOT_ENTRIES=${SNAPSHOT_ENTRIES:-10000}

source "$(dirname "$0")/cluster.sh"
NODE_FLAGS=(--snapshot-entries "$SNAPSHOT_ENTRIES")
cluster_start 3
echo "cluster up: $(endpoints); logs in $BENCH_DIR"

# Fill the store: random puts over KEYS keys, long enough that nearly every key is written.
echo "filling for ${FILL:-40s}"
"$SKIFF" bench --endpoints "$(endpoints)" --op put --clients 256 --keys "$KEYS" \
    --duration "${FILL:-40s}" --key-prefix k/ --value-size 100 -w json >/dev/null

for id in 1 2 3; do wc -l <"$BENCH_DIR/node-$id.log" >"$BENCH_DIR/node-$id.mark"; done
"$SKIFF" bench --endpoints "$(endpoints)" --op put --clients "$CLIENTS" --keys "$KEYS" \
    --duration "$DURATION" --key-prefix k/ --value-size 100

echo
echo "snapshots taken during the bench (node, keys, view):"
for id in 1 2 3; do
    tail -n +"$(($(cat "$BENCH_DIR/node-$id.mark") + 1))" "$BENCH_DIR/node-$id.log" \
        | grep 'taking a snapshot' \
        | sed -E 's/\x1b\[[0-9;]*m//g' \
        | sed -nE "s/.*keys=([0-9]+).*(copy|view)=([0-9.]+[µnm]?s).*/node $id \1 \3/p"
done

#!/usr/bin/env bash
# Disk and memory under an endless write load, with snapshots on: do they stay bounded?
#
# A three-node cluster (release build, default snapshot settings unless NODE_FLAGS says
# otherwise) takes puts of VALUE_SIZE bytes over KEYS keys from CLIENTS clients for DURATION
# seconds. Every SAMPLE seconds it records, for each node: the log's bytes on disk (its *.wal
# segment files), its snapshot files' bytes (*.snap, temporaries included), its resident
# memory, and the leader's last index. Prints the samples as a table (also kept in
# $BENCH_DIR/samples.tsv), then each node's minimum and maximum over the second half of the
# run, when the store has reached its size.
#
#   crates/skiff/benches/bounded_resources.sh                 # 10 minutes, a sample every 10 s
#   DURATION=120 SAMPLE=5 crates/skiff/benches/bounded_resources.sh

DURATION=${DURATION:-600}
SAMPLE=${SAMPLE:-10}
CLIENTS=${CLIENTS:-64}
KEYS=${KEYS:-100000}
VALUE_SIZE=${VALUE_SIZE:-256}

source "$(dirname "$0")/cluster.sh"
cluster_start 3
echo "cluster up: $(endpoints); logs in $BENCH_DIR; ${DURATION}s of puts from $CLIENTS clients"

# bytes_of DIR PATTERN: the total size of the files in DIR matching PATTERN.
bytes_of() {
    find "$1" -maxdepth 1 -name "$2" -printf '%s\n' 2>/dev/null | awk '{s += $1} END {print s + 0}'
}

"$SKIFF" bench --endpoints "$(endpoints)" --op put --clients "$CLIENTS" --keys "$KEYS" \
    --value-size "$VALUE_SIZE" --duration "${DURATION}s" -w json >"$BENCH_DIR/bench.json" 2>/dev/null &
bench=$!
samples=$BENCH_DIR/samples.tsv
echo "SECONDS	NODE	LOG_MIB	SNAPSHOT_MIB	RSS_MIB	LAST_INDEX" | tee "$samples"
started=$SECONDS
while kill -0 "$bench" 2>/dev/null; do
    leader=$(wait_for_leader 2>/dev/null || echo 1)
    last=$(field "$leader" last_index)
    for id in 1 2 3; do
        dir=$BENCH_DIR/node-$id
        printf '%d\t%d\t%.1f\t%.1f\t%.1f\t%d\n' $((SECONDS - started)) "$id" \
            "$(echo "$(bytes_of "$dir" '*.wal') / 1048576" | bc -l)" \
            "$(echo "$(bytes_of "$dir" '*.snap*') / 1048576" | bc -l)" \
            "$(echo "$(rss_kib "${NODE_PIDS[id]}") / 1024" | bc -l)" "$last" | tee -a "$samples"
    done
    sleep "$SAMPLE"
done
wait "$bench" || true
echo
jq -r '.runs[0] | "bench: \(.requests) puts, \(.requests_per_second | floor)/s, \(.errors) errors"' \
    "$BENCH_DIR/bench.json" 2>/dev/null || cat "$BENCH_DIR/bench.json"
echo "second half of the run, per node (min - max):"
awk -F'\t' -v half=$((DURATION / 2)) 'NR > 1 && $1 >= half {
        n = $2
        if (!(n in seen)) { seen[n] = 1; lmin[n] = lmax[n] = $3; smin[n] = smax[n] = $4; rmin[n] = rmax[n] = $5 }
        if ($3 < lmin[n]) lmin[n] = $3; if ($3 > lmax[n]) lmax[n] = $3
        if ($4 < smin[n]) smin[n] = $4; if ($4 > smax[n]) smax[n] = $4
        if ($5 < rmin[n]) rmin[n] = $5; if ($5 > rmax[n]) rmax[n] = $5
    }
    END { for (n in seen) printf "node %s: log %.1f - %.1f MiB, snapshots %.1f - %.1f MiB, RSS %.1f - %.1f MiB\n",
          n, lmin[n], lmax[n], smin[n], smax[n], rmin[n], rmax[n] }' "$samples" | sort

#!/usr/bin/env bash
# Catching up a far-behind follower, and what it costs the clients of the leader.
#
# A three-node cluster (release build); one follower is stopped while ENTRIES entries are
# written (puts of VALUE_SIZE bytes), then restarted. While it catches up, CLIENTS clients keep
# writing through the leader in back-to-back `skiff bench` slices of SLICE each; once it has
# caught up, the same number of slices runs again with all three nodes in step. Prints:
#   - the catch-up: entries, seconds, entries/s (from the restart until the leader reports the
#     follower's match index at the leader's last index as of the restart);
#   - each slice's puts/s, p50 and p99, marked `catch-up` or `in step`, and the median of each
#     over the slices, with the ratio catch-up / in step;
#   - the same for DOWN_SLICES slices (default 5) run before the restart, while the follower is
#     still down (`one down`), and the ratios catch-up / one down and one down / in step: with
#     one follower out of step the leader must wait for the other one and for its own disk,
#     rather than for the faster two of three, which costs the tail whatever the catch-up does;
#   - leader changes during the catch-up (heartbeats must keep the leader in place);
#   - the mean fsync time of the leader and of the follower in step, during the catch-up and
#     after it: all three nodes share this machine's disk, so the catching-up follower's
#     writes slow theirs, which a deployment with a disk per node does not see; with the share
#     of fsyncs over 0.8 ms, the tail that the clients' p99 feels.
# LAGGER_NICE: the niceness the follower restarts at (default 0), to tell its CPU's share in
# what the clients feel from the leader's.
#
# MODE=log (default): no snapshots, so the follower is fed from the leader's log on disk.
# MODE=snapshot: snapshots every 10,000 entries with 5,000 kept behind, so the follower gets the
# leader's snapshot and then the log after it.
# CATCHUP_RATE: every node's --catchup-rate, the bytes of entries per second a leader reads from
# its log for followers catching up (default: the node's default, 16 MiB/s; 0: unpaced).
#
#   crates/skiff/benches/catchup.sh                       # 1,000,000 entries, 16 clients
#   ENTRIES=200000 MODE=snapshot crates/skiff/benches/catchup.sh
#   CATCHUP_RATE=0 crates/skiff/benches/catchup.sh        # unpaced, as fast as the leader reads

ENTRIES=${ENTRIES:-1000000}
CLIENTS=${CLIENTS:-16}
VALUE_SIZE=${VALUE_SIZE:-64}
SLICE=${SLICE:-5s}
DOWN_SLICES=${DOWN_SLICES:-5}
LAGGER_NICE=${LAGGER_NICE:-0}
MODE=${MODE:-log}

source "$(dirname "$0")/cluster.sh"
case $MODE in
    log) NODE_FLAGS=(--snapshot-entries 0 --snapshot-log-bytes 0) ;;
    snapshot) NODE_FLAGS=(--snapshot-entries 10000 --snapshot-catchup-entries 5000) ;;
    *) echo "MODE is log or snapshot, not $MODE" >&2; exit 2 ;;
esac
# The node's own default unless CATCHUP_RATE says otherwise, named in the header either way.
CATCHUP_RATE=${CATCHUP_RATE:-$("$SKIFF" node --print-config | awk -F' = ' '$1 == "catchup-rate" { print $2 }')}
NODE_FLAGS+=(--catchup-rate "$CATCHUP_RATE")
cluster_start 3
leader=$(wait_for_leader)
lagger=$((leader % 3 + 1))
echo "cluster up: $(endpoints); leader $leader; node $lagger will fall behind; \
catch-up rate $CATCHUP_RATE bytes/s; logs in $BENCH_DIR"

# progress_match ID: the match index the leader reports for node ID.
progress_match() {
    status "$leader" | jq -r ".progress[] | select(.id == $1) | .match"
}

# fsync_totals ID: node ID's fsync count, total seconds, and count of those over 0.8 ms.
fsync_totals() {
    curl -sf "http://${CLIENT_ADDRS[$1]}/metrics" | awk '
        /^skiff_disk_wal_fsync_duration_seconds_sum/ { sum = $2 }
        /^skiff_disk_wal_fsync_duration_seconds_count/ { count = $2 }
        /^skiff_disk_wal_fsync_duration_seconds_bucket\{le="0.0008"\}/ { fast = $2 }
        END { print count, sum, count - fast }'
}

# fsync_mean BEFORE AFTER: the mean fsync in ms between two fsync_totals, and the share of
# fsyncs over 0.8 ms (the disk's tail, which the clients' p99 feels).
fsync_mean() {
    echo "$1 $2" | awk '{ if ($4 > $1) printf "%.2f ms (%d fsyncs, %.2f %% over 0.8 ms)", \
        ($5 - $2) * 1000 / ($4 - $1), $4 - $1, ($6 - $3) * 100 / ($4 - $1) }'
}

# slice LABEL: one bench slice through the leader; prints LABEL, puts/s, p50 and p99 in ms.
slice() {
    "$SKIFF" bench --endpoints "${CLIENT_ADDRS[leader]}" --op put --clients "$CLIENTS" \
        --duration "$SLICE" --value-size "$VALUE_SIZE" --key-prefix load/ -w json 2>/dev/null \
        | jq -r --arg name "$1" '.runs[0] | [$name, (.requests_per_second | floor),
            (.latency_distribution[] | select(.percent == 50) | .seconds * 1000),
            (.latency_distribution[] | select(.percent == 99) | .seconds * 1000)] | @tsv'
}

behind_from=$(field "$lagger" applied)
node_kill "$lagger"
start_index=$(field "$leader" last_index)
target=$((start_index + ENTRIES))
echo "node $lagger stopped at applied index $behind_from; writing $ENTRIES entries"
while (($(field "$leader" last_index) < target)); do
    # At most 20 s at a time, less near the end (puts run at about 10,000/s here).
    seconds=$(((target - $(field "$leader" last_index)) / 10000 + 1))
    "$SKIFF" bench --endpoints "${CLIENT_ADDRS[leader]}" --op put --clients 256 \
        --duration "$((seconds < 20 ? seconds : 20))s" --value-size "$VALUE_SIZE" \
        --key-prefix fill/ -w json >/dev/null 2>&1
    echo "  leader's last index $(field "$leader" last_index) of $target"
done

caught_up_at=$(field "$leader" last_index)
# The same slices with the follower still down: the leader then commits with the one follower
# in step and its own disk, never with the faster of two followers, whatever the catch-up costs.
: >"$BENCH_DIR/slices.tsv"
for ((i = 0; i < DOWN_SLICES; i++)); do
    slice "one down" >>"$BENCH_DIR/slices.tsv"
done
caught_up_at=$(field "$leader" last_index)
changes_before=$(curl -sf "http://${CLIENT_ADDRS[leader]}/metrics" \
    | awk '/^skiff_server_leader_changes_seen_total /{print $2}')
echo "restarting node $lagger: $((caught_up_at - behind_from)) entries behind"
in_step=$((6 - leader - lagger))
leader_fsyncs=$(fsync_totals "$leader")
in_step_fsyncs=$(fsync_totals "$in_step")
started=$(date +%s.%N)
if ((LAGGER_NICE != 0)); then
    # Every thread of the follower at that niceness from its first moment (a wrapper that
    # execs, so NODE_PIDS still names the node).
    printf '#!/bin/sh\nexec nice -n %d "%s" "$@"\n' "$LAGGER_NICE" "$SKIFF" >"$BENCH_DIR/nice-skiff"
    chmod +x "$BENCH_DIR/nice-skiff"
    SKIFF="$BENCH_DIR/nice-skiff" node_start "$lagger"
else
    node_start "$lagger"
fi
done_at=""
while [[ -z $done_at ]]; do
    slice catch-up >>"$BENCH_DIR/slices.tsv" &
    slice_pid=$!
    while kill -0 "$slice_pid" 2>/dev/null; do
        matched=$(progress_match "$lagger" || true)
        if [[ -z $done_at ]] && ((${matched:-0} >= caught_up_at)); then
            done_at=$(date +%s.%N)
            fsyncs_during="leader $(fsync_mean "$leader_fsyncs" "$(fsync_totals "$leader")"), \
in step $(fsync_mean "$in_step_fsyncs" "$(fsync_totals "$in_step")")"
        fi
        sleep 0.2
    done
    wait "$slice_pid"
    # A slice that ended after the catch-up did is not all catch-up: label it so.
    if [[ -n $done_at ]]; then sed -i '$ s/^catch-up/mixed/' "$BENCH_DIR/slices.tsv"; fi
done
changes_after=$(curl -sf "http://${CLIENT_ADDRS[leader]}/metrics" \
    | awk '/^skiff_server_leader_changes_seen_total /{print $2}')
during=$(grep -c '^catch-up' "$BENCH_DIR/slices.tsv" || true)
leader_fsyncs=$(fsync_totals "$leader")
in_step_fsyncs=$(fsync_totals "$in_step")
for ((i = 0; i < (during > 3 ? during : 3); i++)); do
    slice "in step" >>"$BENCH_DIR/slices.tsv"
done
fsyncs_after="leader $(fsync_mean "$leader_fsyncs" "$(fsync_totals "$leader")"), \
in step $(fsync_mean "$in_step_fsyncs" "$(fsync_totals "$in_step")")"

seconds=$(echo "$done_at - $started" | bc -l)
entries=$((caught_up_at - behind_from))
printf '\ncatch-up (%s): %d entries in %.1f s = %.0f entries/s (from the restart, process start included)\n' \
    "$MODE" "$entries" "$seconds" "$(echo "$entries / $seconds" | bc -l)"
echo "leader changes during the catch-up: $((changes_after - changes_before))"
echo "mean fsync during the catch-up: $fsyncs_during"
echo "mean fsync in step after it:    $fsyncs_after"
echo
echo "SLICE	PUTS/S	P50_MS	P99_MS   ($CLIENTS clients, $SLICE each, through the leader)"
cat "$BENCH_DIR/slices.tsv"
python3 - "$BENCH_DIR/slices.tsv" <<'EOF'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
def medians(label):
    picked = [r for r in rows if r[0] == label]
    if not picked:
        return None
    return [statistics.median(float(r[i]) for r in picked) for i in (1, 2, 3)] + [len(picked)]
during, after, down = medians("catch-up"), medians("in step"), medians("one down")
print()
for label, m in (("one down", down), ("catch-up", during), ("in step", after)):
    if m:
        print(f"median over {m[3]} {label} slices: {m[0]:.0f} puts/s, p50 {m[1]:.2f} ms, p99 {m[2]:.2f} ms")
def ratio(name, a, b):
    print(f"{name}: puts/s x{a[0] / b[0]:.2f}, p50 x{a[1] / b[1]:.2f}, p99 x{a[2] / b[2]:.2f}")
if during and after:
    ratio("catch-up / in step", during, after)
    if down:
        ratio("catch-up / one down", during, down)
        ratio("one down / in step", down, after)
else:
    print("no slice ran wholly during the catch-up: make SLICE shorter or ENTRIES larger")
EOF

#!/usr/bin/env bash
# Catching up a far-behind follower, and what it costs the clients of the leader.
#
# A three-node cluster (release build); one follower is stopped while ENTRIES entries are
# written (puts of VALUE_SIZE bytes), then restarted. While it catches up, CLIENTS clients keep
# writing through the leader in back-to-back `skiff bench` slices of SLICE each; once it has
# caught up, the same number of slices (3 at least) runs again with all three nodes in step.
# That is one round; ROUNDS rounds (default 1) run one after the other on the same cluster,
# with the same follower stopped each time (another one only if it has become the leader), so
# that the ratios of several rounds can be set side by side: this machine's speed drifts by
# about 20 % over minutes and its p99 is noisy, so one round's ratio is not to be trusted
# alone. Each round prints:
#   - the catch-up: entries, seconds, entries/s (from the restart until the leader reports the
#     follower's match index at the leader's last index as of the restart);
#   - each slice's puts/s, p50, p99 and mean latency in ms, marked `catch-up` or `in step`,
#     and the median of each over the round's slices, with the ratio catch-up / in step;
#   - the same for DOWN_SLICES slices (default 5) run before the restart, while the follower is
#     still down (`one down`), and the ratios catch-up / one down and one down / in step: with
#     one follower out of step the leader must wait for the other one and for its own disk,
#     rather than for the faster two of three, which costs the tail whatever the catch-up does;
#   - leader changes during the catch-up (heartbeats must keep the leader in place);
#   - the mean fsync time of the leader and of the follower in step, during the catch-up and
#     after it: all three nodes share this machine's disk, so the catching-up follower's
#     writes slow theirs, which a deployment with a disk per node does not see; with the share
#     of fsyncs over 0.8 ms, the tail that the clients' p99 feels.
# With more than one round, the end prints each round's ratios side by side and the median over
# the rounds of each. The mean latency is `skiff bench`'s own (`average_seconds` in its JSON);
# the clients are closed-loop, so it is about CLIENTS / puts/s (Little's law) and its ratios
# mirror those of puts/s, unlike p50 and p99. Every slice is in $BENCH_DIR/slices.tsv, one a
# line: round, label, puts/s, p50, p99, mean (ms).
# LAGGER_NICE: the niceness the follower restarts at (default 0), to tell its CPU's share in
# what the clients feel from the leader's.
#
# MODE=log (default): no snapshots, so the follower is fed from the leader's log on disk.
# MODE=snapshot: snapshots every 10,000 entries with 5,000 kept behind, so the follower gets the
# leader's snapshot and then the log after it.
# CATCHUP_RATE: every node's --catchup-rate, the bytes of entries per second a leader reads from
# its log for followers catching up (default: the node's default, 8 MiB/s; 0: unpaced).
#
#   crates/skiff/benches/catchup.sh                       # 1,000,000 entries, 16 clients
#   ENTRIES=200000 MODE=snapshot crates/skiff/benches/catchup.sh
#   CATCHUP_RATE=0 crates/skiff/benches/catchup.sh        # unpaced, as fast as the leader reads
#   ROUNDS=5 ENTRIES=300000 SLICE=1s crates/skiff/benches/catchup.sh   # median of 5 rounds

ENTRIES=${ENTRIES:-1000000}
CLIENTS=${CLIENTS:-16}
VALUE_SIZE=${VALUE_SIZE:-64}
SLICE=${SLICE:-5s}
DOWN_SLICES=${DOWN_SLICES:-5}
LAGGER_NICE=${LAGGER_NICE:-0}
MODE=${MODE:-log}
ROUNDS=${ROUNDS:-1}

source "$(dirname "$0")/cluster.sh"
case $MODE in
    log) NODE_FLAGS=(--snapshot-entries 0 --snapshot-log-bytes 0) ;;
    snapshot) NODE_FLAGS=(--snapshot-entries 10000 --snapshot-catchup-entries 5000) ;;
    *) echo "MODE is log or snapshot, not $MODE" >&2; exit 2 ;;
esac
((ROUNDS >= 1)) || { echo "ROUNDS is 1 or more, not $ROUNDS" >&2; exit 2; }
# The node's own default unless CATCHUP_RATE says otherwise, named in the header either way.
CATCHUP_RATE=${CATCHUP_RATE:-$("$SKIFF" node --print-config | awk -F' = ' '$1 == "catchup-rate" { print $2 }')}
NODE_FLAGS+=(--catchup-rate "$CATCHUP_RATE")
LAGGER_SKIFF=$SKIFF
if ((LAGGER_NICE != 0)); then
    # Every thread of the follower at that niceness from its first moment (a wrapper that
    # execs, so NODE_PIDS still names the node).
    printf '#!/bin/sh\nexec nice -n %d "%s" "$@"\n' "$LAGGER_NICE" "$SKIFF" >"$BENCH_DIR/nice-skiff"
    chmod +x "$BENCH_DIR/nice-skiff"
    LAGGER_SKIFF=$BENCH_DIR/nice-skiff
fi
cluster_start 3
leader=$(wait_for_leader)
lagger=$((leader % 3 + 1))
echo "cluster up: $(endpoints); leader $leader; node $lagger will fall behind; \
catch-up rate $CATCHUP_RATE bytes/s; $ROUNDS round(s); logs in $BENCH_DIR"

# progress_match ID: the match index the leader reports for node ID.
progress_match() {
    status "$leader" | jq -r ".progress[] | select(.id == $1) | .match"
}

# leader_changes: the leader changes the leader has seen.
leader_changes() {
    curl -sf "http://${CLIENT_ADDRS[leader]}/metrics" \
        | awk '/^skiff_server_leader_changes_seen_total /{print $2}'
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

# slice ROUND LABEL: one bench slice through the leader; prints ROUND, LABEL, puts/s, and p50,
# p99 and mean latency in ms.
slice() {
    "$SKIFF" bench --endpoints "${CLIENT_ADDRS[leader]}" --op put --clients "$CLIENTS" \
        --duration "$SLICE" --value-size "$VALUE_SIZE" --key-prefix load/ -w json 2>/dev/null \
        | jq -r '.runs[0] | [.requests_per_second,
            (.latency_distribution[] | select(.percent == 50) | .seconds),
            (.latency_distribution[] | select(.percent == 99) | .seconds),
            .average_seconds] | @tsv' \
        | awk -F'\t' -v round="$1" -v label="$2" \
            '{ printf "%d\t%s\t%d\t%.3f\t%.3f\t%.3f\n", round, label, $1, $2 * 1000, $3 * 1000, $4 * 1000 }'
}

# report ROUND: the medians of round ROUND's slices, by label, and their ratios.
# report summary: each round's ratios side by side, and the median over the rounds of each.
report() {
    python3 - "$BENCH_DIR/slices.tsv" "$BENCH_DIR/rounds.tsv" "$1" <<'EOF'
import statistics, sys
slices = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
rounds = [line.rstrip("\n").split("\t") for line in open(sys.argv[2]) if line.strip()]
METRICS = ("puts/s", "p50", "p99", "mean")
RATIOS = (("catch-up / in step", "catch-up", "in step"),
          ("catch-up / one down", "catch-up", "one down"),
          ("one down / in step", "one down", "in step"))
def medians(round_, label):
    picked = [r for r in slices if r[0] == round_ and r[1] == label]
    if not picked:
        return None
    return [statistics.median(float(r[i]) for r in picked) for i in (2, 3, 4, 5)] + [len(picked)]
def ratios(round_):
    """Each ratio's four figures (puts/s, p50, p99, mean) in round_, None where a side is missing."""
    found = {}
    for name, top, bottom in RATIOS:
        a, b = medians(round_, top), medians(round_, bottom)
        found[name] = [x / y for x, y in zip(a[:4], b[:4])] if a and b else None
    return found
if sys.argv[3] != "summary":
    round_ = sys.argv[3]
    for label in ("one down", "catch-up", "in step"):
        m = medians(round_, label)
        if m:
            print(f"median over {m[4]} {label} slices: {m[0]:.0f} puts/s, p50 {m[1]:.3f} ms, "
                  f"p99 {m[2]:.3f} ms, mean {m[3]:.3f} ms")
    for name, figures in ratios(round_).items():
        if figures:
            print(f"{name}: " + ", ".join(f"{metric} x{x:.2f}" for metric, x in zip(METRICS, figures)))
    if not medians(round_, "catch-up"):
        print("no slice ran wholly during the catch-up: make SLICE shorter or ENTRIES larger")
    sys.exit()
names = [r[0] for r in rounds]
by_round = [ratios(name) for name in names]
print(f"{'':29}" + "".join(f"{'round ' + name:>10}" for name in names) + f"{'median':>10}")
speeds = [float(r[1]) / float(r[2]) for r in rounds]
print(f"{'catch-up entries/s':29}" + "".join(f"{x:10.0f}" for x in speeds)
      + f"{statistics.median(speeds):10.0f}")
for name, _, _ in RATIOS:
    for i, metric in enumerate(METRICS):
        row = [found[name][i] if found[name] else None for found in by_round]
        present = [x for x in row if x is not None]
        median = f"x{statistics.median(present):.2f}" if present else "-"
        cells = "".join(f"{'x%.2f' % x if x is not None else '-':>10}" for x in row)
        print(f"{name + ' ' + metric:29}{cells}{median:>10}")
EOF
}

# run_round ROUND: one episode: the follower stopped, ENTRIES written, DOWN_SLICES slices with
# it down, its restart and the catch-up slices, then the slices in step; prints its figures.
run_round() {
    local round=$1 behind_from start_index target seconds caught_up_at changes_before
    local changes_after in_step leader_fsyncs in_step_fsyncs started done_at fsyncs_during
    local fsyncs_after slice_pid matched during entries i written rate=0 chunk last_index
    # A round starts with all three nodes in step, the leader wherever the last round left it.
    leader=$(wait_for_leader)
    if ((leader == lagger)); then
        lagger=$((leader % 3 + 1))
        echo "node $leader leads now: node $lagger falls behind from this round on"
    fi
    in_step=$((6 - leader - lagger))
    echo
    echo "== round $round of $ROUNDS: leader $leader, node $lagger falls behind"
    behind_from=$(field "$lagger" applied)
    node_kill "$lagger"
    start_index=$(field "$leader" last_index)
    target=$((start_index + ENTRIES))
    echo "node $lagger stopped at applied index $behind_from; writing $ENTRIES entries"
    written=$start_index
    while ((written < target)); do
        # A first chunk of 1 s measures the rate (22,000-46,000 puts/s here), then chunks of
        # at most 20 s sized by the last one's rate, so that the fill overshoots ENTRIES by
        # about a second's puts, not by a guessed rate's error (10,000/s, assumed before,
        # wrote 312,717 entries for 100,000).
        chunk=$((rate > 0 ? (target - written) / rate : 1))
        chunk=$((chunk < 1 ? 1 : chunk > 20 ? 20 : chunk))
        "$SKIFF" bench --endpoints "${CLIENT_ADDRS[leader]}" --op put --clients 256 \
            --duration "${chunk}s" --value-size "$VALUE_SIZE" \
            --key-prefix fill/ -w json >/dev/null 2>&1
        last_index=$(field "$leader" last_index)
        rate=$(((last_index - written) / chunk + 1))
        written=$last_index
        echo "  leader's last index $written of $target"
    done

    # The same slices with the follower still down: the leader then commits with the one
    # follower in step and its own disk, never with the faster of two followers, whatever the
    # catch-up costs.
    for ((i = 0; i < DOWN_SLICES; i++)); do
        slice "$round" "one down" >>"$BENCH_DIR/slices.tsv"
    done
    caught_up_at=$(field "$leader" last_index)
    changes_before=$(leader_changes)
    echo "restarting node $lagger: $((caught_up_at - behind_from)) entries behind"
    leader_fsyncs=$(fsync_totals "$leader")
    in_step_fsyncs=$(fsync_totals "$in_step")
    started=$(date +%s.%N)
    SKIFF=$LAGGER_SKIFF node_start "$lagger"
    done_at=""
    while [[ -z $done_at ]]; do
        slice "$round" catch-up >>"$BENCH_DIR/slices.tsv" &
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
        if [[ -n $done_at ]]; then sed -i '$ s/\tcatch-up\t/\tmixed\t/' "$BENCH_DIR/slices.tsv"; fi
    done
    changes_after=$(leader_changes)
    during=$(awk -F'\t' -v round="$round" '$1 == round && $2 == "catch-up"' \
        "$BENCH_DIR/slices.tsv" | wc -l)
    leader_fsyncs=$(fsync_totals "$leader")
    in_step_fsyncs=$(fsync_totals "$in_step")
    for ((i = 0; i < (during > 3 ? during : 3); i++)); do
        slice "$round" "in step" >>"$BENCH_DIR/slices.tsv"
    done
    fsyncs_after="leader $(fsync_mean "$leader_fsyncs" "$(fsync_totals "$leader")"), \
in step $(fsync_mean "$in_step_fsyncs" "$(fsync_totals "$in_step")")"

    seconds=$(echo "$done_at - $started" | bc -l)
    entries=$((caught_up_at - behind_from))
    printf '%d\t%d\t%s\n' "$round" "$entries" "$seconds" >>"$BENCH_DIR/rounds.tsv"
    printf '\ncatch-up (%s): %d entries in %.1f s = %.0f entries/s (from the restart, process start included)\n' \
        "$MODE" "$entries" "$seconds" "$(echo "$entries / $seconds" | bc -l)"
    echo "leader changes during the catch-up: $((changes_after - changes_before))"
    echo "mean fsync during the catch-up: $fsyncs_during"
    echo "mean fsync in step after it:    $fsyncs_after"
    echo
    echo "ROUND	SLICE	PUTS/S	P50_MS	P99_MS	MEAN_MS   ($CLIENTS clients, $SLICE each, through the leader)"
    awk -F'\t' -v round="$round" '$1 == round' "$BENCH_DIR/slices.tsv"
    echo
    report "$round"
}

: >"$BENCH_DIR/slices.tsv"
: >"$BENCH_DIR/rounds.tsv"
for ((round = 1; round <= ROUNDS; round++)); do
    run_round "$round"
done
if ((ROUNDS > 1)); then
    echo
    echo "== $ROUNDS rounds: each round's ratios (of its medians), and their median"
    report summary
fi

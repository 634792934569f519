#!/usr/bin/env bash
# mpsc 4->1 (or 1->1), weft + weft::sync beside tokio + tokio::sync, in
# interleaved rounds, each labelled with the machine's cross-core handoff
# time measured just before and after it (see src/bin/handoff.rs: the
# benchmark VM alternates between a fast and a slow state).
#
#   bash benches/scripts/mpsc_states.sh [ROUNDS [mpsc4|mpsc1]]
#
# Prints one line per round: handoff before/after (ns), weft and tokio
# medians (ms, 5 iterations of 1 M messages each), weft/tokio; then the
# ratios grouped by state (slow: both handoffs over 150 ns, fast: both
# under 100 ns).
set -euo pipefail
rounds=${1:-20}
workload=${2:-mpsc4}
cd "$(dirname "$0")/../.."
cargo build --release -q -p weft-benches --bin sync_profile --bin handoff
bin=target/release
log=$(mktemp)
for _ in $(seq 1 "$rounds"); do
    before=$($bin/handoff | cut -d' ' -f1)
    weft=$($bin/sync_profile weft "$workload" 1000000 2 5 | awk '{print $4}')
    tokio=$($bin/sync_profile tokio "$workload" 1000000 2 5 | awk '{print $4}')
    after=$($bin/handoff | cut -d' ' -f1)
    weft=${weft%ms}
    tokio=${tokio%ms}
    ratio=$(awk -v w="$weft" -v t="$tokio" 'BEGIN { printf "%.2f", w / t }')
    echo "$before $after $weft $tokio $ratio" | tee -a "$log"
done
awk '{
    state = ($1 > 150 && $2 > 150) ? "slow" : ($1 < 100 && $2 < 100) ? "fast" : "mixed"
    r[state] = r[state] " " $5; n[state]++
} END { for (s in n) print s " (" n[s] " rounds):" r[s] }' "$log"
rm -f "$log"
